//! Scripting features (issue 5): duplicate URLs in one batch, `--print-paths`
//! / `-0`, `--save-failed` (and its round trip through `-i`), `--dry-run`
//! (HEAD only, with the `GET` + `Range: bytes=0-0` fallback), `-N` /
//! `--timestamping` (mtime from Last-Modified, conditional rerun), and
//! `--file-allocation`.
//!
//! Every test owns its server and sandbox, so they run in parallel, and
//! every file is checked byte for byte.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::server::parse_range_header;
use common::*;
use serde_json::Value;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("out")
}

fn events<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// The one `summary` event, which must be the last line.
#[track_caller]
fn summary(evs: &[Value]) -> &Value {
    let s = events(evs, "summary");
    assert_eq!(s.len(), 1, "summary events: {s:?}");
    assert!(
        std::ptr::eq(s[0], evs.last().unwrap()),
        "summary is not last"
    );
    s[0]
}

/// Lines of `text` that contain every one of `needles`.
fn lines_with<'a>(text: &'a str, needles: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// A path printed by volley, resolved against the child's working directory.
fn resolve(sandbox: &Sandbox, printed: &str) -> PathBuf {
    let p = Path::new(printed);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        sandbox.cwd().join(p)
    }
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// SHA-256 of `bytes` as lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A list file parsed into `(url, option lines)`.
fn parse_list(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("option line before any URL: {line:?}\n{text}"));
            last.1.push(line.trim().to_string());
        } else {
            out.push((line.trim().to_string(), Vec::new()));
        }
    }
    out
}

/// The mtime of a file in whole seconds since the epoch.
fn mtime_secs(path: &Path) -> u64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: no mtime: {e}", path.display()))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .unwrap_or_else(|e| panic!("{}: cannot set mtime: {e}", path.display()));
}

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Ways a size may be written: the byte count or indicatif's human form
/// (`777 B`, `2.93 KiB`, `3.00 MiB`).
fn size_forms(n: u64) -> Vec<String> {
    let mut v = vec![n.to_string()];
    let units = ["KiB", "MiB", "GiB"];
    let mut x = n as f64;
    for u in units {
        x /= 1024.0;
        if x < 1024.0 {
            v.push(format!("{x:.2} {u}"));
            v.push(format!("{x:.1} {u}"));
            break;
        }
    }
    v
}

/// Send SIGINT to a child and wait for its exit status.
fn interrupt(child: &mut std::process::Child, errlog: &Path) -> std::process::ExitStatus {
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    match status {
        Some(s) => s,
        None => abort_child(child, errlog, "volley did not exit within 10 s of SIGINT"),
    }
}

// ---------------------------------------------------------------------------
// 1. Duplicate URLs in one batch
// ---------------------------------------------------------------------------

#[test]
fn duplicate_url_is_downloaded_once_json() {
    let server = TestServer::start();
    let a = content(1, 40_000);
    let b = content(2, 10_000);
    server.file("/dup/a.bin", a.clone());
    server.file("/dup/b.bin", b.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    let url_a = server.url("/dup/a.bin");
    write_list(
        &list,
        &[url_a.clone(), server.url("/dup/b.bin"), url_a.clone()],
    );
    let r = run(v.args(["--json", "-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert_eq!(
        server.hits_with_method("/dup/a.bin", "GET"),
        1,
        "the duplicate URL was fetched more than once: {:?}",
        server.requests("/dup/a.bin")
    );
    assert_eq!(
        server.hits("/dup/a.bin"),
        1,
        "the duplicate produced a request"
    );
    assert_file_eq(dir.join("a.bin"), &a);
    assert_file_eq(dir.join("b.bin"), &b);
    assert_eq!(
        list_tree(&dir),
        vec!["a.bin".to_string(), "b.bin".to_string()],
        "a duplicate got its own file"
    );

    let evs = parse_json_lines(&r.stdout);
    let dups = events(&evs, "duplicate");
    assert_eq!(dups.len(), 1, "duplicate events: {evs:?}");
    let d = dups[0];
    assert_eq!(d["id"].as_u64(), Some(2), "{d}");
    assert_eq!(d["of"].as_u64(), Some(0), "{d}");
    assert_eq!(d["url"], url_a.as_str(), "{d}");
    let done_a: Vec<_> = events(&evs, "done")
        .into_iter()
        .filter(|e| e["id"].as_u64() == Some(0))
        .collect();
    assert_eq!(done_a.len(), 1, "{evs:?}");
    assert_eq!(
        d["path"], done_a[0]["path"],
        "duplicate path is not the first's"
    );
    assert!(
        same_file(
            &resolve(&v.sandbox, d["path"].as_str().expect("path")),
            &dir.join("a.bin")
        ),
        "{d}"
    );
    // The duplicate has no start/done/failed of its own.
    for kind in ["start", "done", "failed", "skipped"] {
        assert!(
            events(&evs, kind)
                .iter()
                .all(|e| e["id"].as_u64() != Some(2)),
            "duplicate id 2 has a {kind} event: {evs:?}"
        );
    }
    let s = summary(&evs);
    assert_eq!(s["succeeded"].as_u64(), Some(2), "{s}");
    assert_eq!(s["skipped"].as_u64(), Some(1), "{s}");
    assert_eq!(s["failed"].as_u64(), Some(0), "{s}");
}

#[test]
fn duplicate_url_plain_mode_says_duplicate() {
    let server = TestServer::start();
    let a = content(3, 20_000);
    server.file("/dup/a.bin", a.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let url = server.url("/dup/a.bin");
    let r = run(v.args(["--progress", "plain", "-d", &path_arg(&dir), &url, &url]));
    r.expect_code(0).expect_empty_stdout();
    assert_eq!(
        server.hits("/dup/a.bin"),
        1,
        "{:?}",
        server.requests("/dup/a.bin")
    );
    assert_file_eq(dir.join("a.bin"), &a);
    assert_eq!(list_tree(&dir), vec!["a.bin".to_string()]);
    assert!(
        r.stderr.to_lowercase().contains("duplicate"),
        "no line says duplicate:\n{}",
        r.stderr
    );
    r.expect_stderr_contains("1 succeeded")
        .expect_stderr_contains("1 skipped")
        .expect_stderr_contains("0 failed");
}

#[test]
fn duplicate_url_with_same_out_name_is_downloaded_once() {
    let server = TestServer::start();
    let a = content(4, 12_345);
    server.file("/dup/a.bin", a.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    let url = server.url("/dup/a.bin");
    write_list(
        &list,
        &[
            url.clone(),
            "  out=same.bin".to_string(),
            url.clone(),
            "  out=same.bin".to_string(),
        ],
    );
    let r = run(v.args(["--json", "-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert_eq!(server.hits("/dup/a.bin"), 1);
    assert_eq!(list_tree(&dir), vec!["same.bin".to_string()]);
    assert_file_eq(dir.join("same.bin"), &a);
    let evs = parse_json_lines(&r.stdout);
    let dups = events(&evs, "duplicate");
    assert_eq!(dups.len(), 1, "{evs:?}");
    assert_eq!(dups[0]["of"].as_u64(), Some(0));
    assert_eq!(dups[0]["id"].as_u64(), Some(1));
    assert!(
        dups[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("same.bin")),
        "{}",
        dups[0]
    );
}

#[test]
fn same_url_with_different_out_names_is_downloaded_twice() {
    let server = TestServer::start();
    let a = content(5, 30_000);
    server.file("/dup/a.bin", a.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    let url = server.url("/dup/a.bin");
    write_list(
        &list,
        &[url.clone(), url.clone(), "  out=other.bin".to_string()],
    );
    let r = run(v.args(["--json", "-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert_eq!(
        server.hits_with_method("/dup/a.bin", "GET"),
        2,
        "{:?}",
        server.requests("/dup/a.bin")
    );
    assert_eq!(
        list_tree(&dir),
        vec!["a.bin".to_string(), "other.bin".to_string()]
    );
    assert_file_eq(dir.join("a.bin"), &a);
    assert_file_eq(dir.join("other.bin"), &a);
    let evs = parse_json_lines(&r.stdout);
    assert!(events(&evs, "duplicate").is_empty(), "{evs:?}");
    let s = summary(&evs);
    assert_eq!(s["succeeded"].as_u64(), Some(2), "{s}");
    assert_eq!(s["skipped"].as_u64(), Some(0), "{s}");
}

/// The contract names "same out=/dir=": the same URL into another dir is
/// another download.
#[test]
fn same_url_with_different_dir_is_downloaded_twice() {
    let server = TestServer::start();
    let a = content(6, 9_999);
    server.file("/dup/a.bin", a.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    let url = server.url("/dup/a.bin");
    write_list(&list, &[url.clone(), url.clone(), "  dir=sub".to_string()]);
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert_eq!(server.hits_with_method("/dup/a.bin", "GET"), 2);
    assert_file_eq(dir.join("a.bin"), &a);
    assert_file_eq(dir.join("sub").join("a.bin"), &a);
}

// ---------------------------------------------------------------------------
// 2. --print-paths and -0
// ---------------------------------------------------------------------------

#[test]
fn print_paths_lists_completed_and_skipped_files_only() {
    let server = TestServer::start();
    let one = content(10, 5_000);
    let two = content(11, 70_000);
    server.file("/p/one.bin", one.clone());
    server.file("/p/two.bin", two.clone());
    server.file("/p/have.bin", content(12, 100));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("have.bin"), b"already here\n").unwrap();
    let r = run(v.args([
        "--print-paths",
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.url("/p/one.bin"),
        &server.url("/p/missing.bin"),
        &server.url("/p/have.bin"),
        &server.url("/p/two.bin"),
    ]));
    r.expect_code(1);
    let out = r.stdout_str();
    assert!(
        out.ends_with('\n'),
        "stdout does not end with a newline: {out:?}"
    );
    let mut printed: Vec<PathBuf> = out.lines().map(|l| resolve(&v.sandbox, l)).collect();
    printed.sort();
    let mut expected = vec![
        dir.join("have.bin"),
        dir.join("one.bin"),
        dir.join("two.bin"),
    ];
    expected.sort();
    assert_eq!(printed.len(), 3, "stdout: {out:?}");
    for (p, e) in printed.iter().zip(&expected) {
        assert!(
            same_file(p, e),
            "printed {p:?}, expected {e:?}; stdout {out:?}"
        );
    }
    assert!(
        !out.contains("missing"),
        "a failed download was printed: {out:?}"
    );
    assert_file_eq(dir.join("one.bin"), &one);
    assert_file_eq(dir.join("two.bin"), &two);
    assert_file_eq(dir.join("have.bin"), b"already here\n");
    assert_eq!(server.hits("/p/have.bin"), 0);
}

#[test]
fn print0_separates_paths_with_nul() {
    let server = TestServer::start();
    let a = content(13, 1_000);
    let b = content(14, 2_000);
    server.file("/p/a.bin", a.clone());
    server.file("/p/b.bin", b.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/p/a.bin"),
            "  out=with space.bin".to_string(),
            server.url("/p/b.bin"),
        ],
    );
    let r = run(v.args(["-0", "-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert!(
        !r.stdout.contains(&b'\n'),
        "newline on stdout with -0: {:?}",
        r.stdout_str()
    );
    assert!(r.stdout.ends_with(&[0]), "{:?}", r.stdout_str());
    let mut printed: Vec<PathBuf> = r
        .stdout
        .split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| resolve(&v.sandbox, std::str::from_utf8(s).unwrap()))
        .collect();
    printed.sort();
    assert_eq!(printed.len(), 2, "{:?}", r.stdout_str());
    assert!(same_file(&printed[0], &dir.join("b.bin")), "{printed:?}");
    assert!(
        same_file(&printed[1], &dir.join("with space.bin")),
        "{printed:?}"
    );
    assert_file_eq(dir.join("with space.bin"), &a);
    assert_file_eq(dir.join("b.bin"), &b);

    // The long spelling is the same option.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(["--print0", "-d", &path_arg(&dir), &server.url("/p/a.bin")]));
    r.expect_code(0);
    let got: Vec<_> = r
        .stdout
        .split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(got.len(), 1, "{:?}", r.stdout_str());
    assert!(same_file(
        &resolve(&v.sandbox, std::str::from_utf8(got[0]).unwrap()),
        &dir.join("a.bin")
    ));
}

/// A path is printed when its file completes, not at the end of the run.
#[test]
fn print_paths_prints_each_path_as_it_completes() {
    let server = TestServer::start();
    let fast = content(15, 3_000);
    let slow = content(16, 96 * KIB);
    server.file("/p/fast.bin", fast.clone());
    server.route(
        "/p/slow.bin",
        Route::new(slow.clone()).throttle(4 * KIB, Duration::from_millis(100)),
    );
    let mut p = volley_process();
    let dir = out_dir(&p.sandbox);
    let errlog = p.sandbox.root().join("stderr.txt");
    p.args([
        "--print-paths",
        "-j",
        "2",
        "-d",
        &path_arg(&dir),
        &server.url("/p/slow.bin"),
        &server.url("/p/fast.bin"),
    ])
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(&errlog).unwrap());
    let mut child = p.spawn().expect("spawn volley");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(l) => l,
        Err(_) => abort_child(&mut child, &errlog, "no path printed within 15 s"),
    };
    // The slow file (about 2.4 s) is still on its way.
    let slow_done = dir.join("slow.bin").exists();
    assert!(
        same_file(&resolve(&p.sandbox, &first), &dir.join("fast.bin")),
        "first printed path {first:?}"
    );
    assert!(
        !slow_done,
        "the first path was only printed after the slow file had completed"
    );
    let second = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => abort_child(&mut child, &errlog, "second path not printed"),
    };
    assert!(
        same_file(&resolve(&p.sandbox, &second), &dir.join("slow.bin")),
        "second printed path {second:?}"
    );
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(rx.try_recv().is_err(), "more lines on stdout");
    assert_file_eq(dir.join("fast.bin"), &fast);
    assert_file_eq(dir.join("slow.bin"), &slow);
}

/// `-q` quiets stderr, not the paths.
#[test]
fn print_paths_with_quiet() {
    let server = TestServer::start();
    server.file("/p/q.bin", content(18, 4_000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "-q",
        "--print-paths",
        "-d",
        &path_arg(&dir),
        &server.url("/p/q.bin"),
    ]));
    r.expect_code(0);
    let out = r.stdout_str();
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed.len(), 1, "stdout: {out:?}");
    assert!(
        same_file(&resolve(&v.sandbox, printed[0]), &dir.join("q.bin")),
        "{out:?}"
    );
}

#[test]
fn print_paths_conflicts_with_json_and_stdout_output() {
    let server = TestServer::start();
    server.file("/p/a.bin", content(17, 100));
    let url = server.url("/p/a.bin");
    for args in [
        vec!["--print-paths", "--json"],
        vec!["--print-paths", "-o", "-"],
    ] {
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v.args(&args).args(["-d", &path_arg(&dir), &url]));
        if r.code != Some(2) {
            panic!("{args:?}: expected exit 2, got {:?}\n{}", r.code, r.stderr);
        }
        assert!(!dir.exists(), "{args:?}: created {dir:?}");
    }
    assert_eq!(server.total_hits(), 0, "a usage error made requests");
}

// ---------------------------------------------------------------------------
// 3. --save-failed
// ---------------------------------------------------------------------------

#[test]
fn save_failed_round_trip_retries_only_the_failed_download() {
    let server = TestServer::start();
    let ok1 = content(20, 10_000);
    let bad = content(21, 25_000);
    let ok2 = content(22, 7_000);
    server.file("/sf/ok1.bin", ok1.clone());
    server.route(
        "/sf/bad.bin",
        Route::new(bad.clone()).always(Fault::Status(404)),
    );
    server.file("/sf/ok2.bin", ok2.clone());
    let sandbox = Sandbox::new();
    let dir = out_dir(&sandbox);
    let list = sandbox.root().join("list.txt");
    let saved = sandbox.root().join("failed.txt");
    let bad_url = server.url("/sf/bad.bin");
    let digest = sha256_hex(&bad);
    write_list(
        &list,
        &[
            server.url("/sf/ok1.bin"),
            "  out=first.bin".to_string(),
            bad_url.clone(),
            "  out=keep.bin".to_string(),
            "  dir=sub".to_string(),
            "  header=X-Token: abc".to_string(),
            "  connections=2".to_string(),
            "  limit_rate=10M".to_string(),
            format!("  checksum=sha-256={digest}"),
            server.url("/sf/ok2.bin"),
        ],
    );
    let mut v = volley();
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
        "--save-failed",
        &path_arg(&saved),
    ]));
    r.expect_code(1);
    assert_file_eq(dir.join("first.bin"), &ok1);
    assert_file_eq(dir.join("ok2.bin"), &ok2);
    let text = std::fs::read_to_string(&saved)
        .unwrap_or_else(|e| panic!("--save-failed file not written: {e}\n{}", r.stderr));
    let entries = parse_list(&text);
    assert_eq!(entries.len(), 1, "saved list:\n{text}");
    let (url, opts) = &entries[0];
    assert_eq!(url, &bad_url, "saved list:\n{text}");
    // Header names are case-insensitive; the value is kept as given.
    assert!(
        opts.iter().any(|o| o
            .strip_prefix("header=")
            .and_then(|h| h.split_once(':'))
            .is_some_and(|(k, v)| k.eq_ignore_ascii_case("x-token") && v.trim() == "abc")),
        "header= missing from the saved entry:\n{text}"
    );
    for want in ["out=keep.bin", "connections=2"] {
        assert!(
            opts.iter().any(|o| o == want),
            "option {want:?} missing from the saved entry:\n{text}"
        );
    }
    assert!(
        opts.iter()
            .any(|o| o.starts_with("dir=") && o.trim_end_matches('/').ends_with("sub")),
        "dir= missing:\n{text}"
    );
    assert!(
        opts.iter().any(|o| o.starts_with("limit_rate=")),
        "limit_rate= missing:\n{text}"
    );
    assert!(
        opts.iter().any(|o| {
            let o = o.to_lowercase();
            o.starts_with("checksum=") && o.contains("sha-256") && o.contains(&digest)
        }),
        "checksum= missing:\n{text}"
    );

    // Fix the server; the saved list fetches exactly the failed download.
    server.set_always("/sf/bad.bin", None);
    let before_bad = server.hits("/sf/bad.bin");
    let before_ok = server.hits("/sf/ok1.bin") + server.hits("/sf/ok2.bin");
    let mut v = volley();
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&saved)]));
    r.expect_code(0);
    assert_eq!(
        server.hits("/sf/bad.bin"),
        before_bad + 1,
        "{:?}",
        server.requests("/sf/bad.bin")
    );
    assert_eq!(
        server.hits("/sf/ok1.bin") + server.hits("/sf/ok2.bin"),
        before_ok,
        "completed downloads were fetched again"
    );
    let last = server.requests("/sf/bad.bin").pop().unwrap();
    assert_eq!(last.header("x-token"), Some("abc"), "{last:?}");
    assert_file_eq(dir.join("sub").join("keep.bin"), &bad);
    let mut files = list_tree(&dir);
    files.sort();
    assert_eq!(
        files,
        vec![
            "first.bin".to_string(),
            "ok2.bin".to_string(),
            "sub/keep.bin".to_string()
        ]
    );
}

#[test]
fn save_failed_when_everything_succeeds_lists_nothing() {
    let server = TestServer::start();
    server.file("/sf/a.bin", content(23, 1_000));
    server.file("/sf/b.bin", content(24, 2_000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let saved = v.sandbox.root().join("failed.txt");
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        "--save-failed",
        &path_arg(&saved),
        &server.url("/sf/a.bin"),
        &server.url("/sf/b.bin"),
    ]));
    r.expect_code(0);
    if let Ok(text) = std::fs::read_to_string(&saved) {
        assert!(
            parse_list(&text).is_empty(),
            "saved list of a successful run is not empty:\n{text}"
        );
        assert!(!text.contains("http"), "{text}");
    }
}

/// Interrupted and never-started downloads are saved too; completed (and
/// already complete) ones are not.
#[test]
fn save_failed_lists_interrupted_and_not_started_downloads() {
    let server = TestServer::start();
    const HALF: usize = 128 * KIB;
    server.file("/sf/fast.bin", content(25, 2_000));
    server.route(
        "/sf/stall.bin",
        Route::new(content(26, 2 * HALF)).always(Fault::StallAfter(HALF, Duration::from_secs(60))),
    );
    server.file("/sf/later1.bin", content(27, 1_000));
    server.file("/sf/later2.bin", content(28, 1_000));
    let mut p = volley_process();
    let dir = out_dir(&p.sandbox);
    let errlog = p.sandbox.root().join("stderr.txt");
    let saved = p.sandbox.root().join("failed.txt");
    let list = p.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/sf/fast.bin"),
            server.url("/sf/stall.bin"),
            server.url("/sf/later1.bin"),
            "  out=renamed.bin".to_string(),
            server.url("/sf/later2.bin"),
        ],
    );
    p.args([
        "-j",
        "1",
        "--timeout",
        "30",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
        "--save-failed",
        &path_arg(&saved),
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&errlog).unwrap());
    let mut child = p.spawn().expect("spawn volley");
    if !wait_until(Duration::from_secs(10), || {
        server.body_bytes_sent("/sf/stall.bin") >= HALF as u64
    }) {
        abort_child(&mut child, &errlog, "the stalled download never started");
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = interrupt(&mut child, &errlog);
    let stderr = std::fs::read_to_string(&errlog).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert_eq!(server.hits("/sf/later1.bin"), 0);
    let text = std::fs::read_to_string(&saved)
        .unwrap_or_else(|e| panic!("--save-failed file not written: {e}\n{stderr}"));
    let entries = parse_list(&text);
    let urls: Vec<&str> = entries.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        urls,
        vec![
            server.url("/sf/stall.bin").as_str(),
            server.url("/sf/later1.bin").as_str(),
            server.url("/sf/later2.bin").as_str(),
        ],
        "saved list:\n{text}"
    );
    assert!(
        entries[1].1.iter().any(|o| o == "out=renamed.bin"),
        "out= of a never-started download lost:\n{text}"
    );
    assert_file_eq(dir.join("fast.bin"), &content(25, 2_000));
}

// ---------------------------------------------------------------------------
// 4. --dry-run
// ---------------------------------------------------------------------------

/// Three downloads: a plain file, a redirect and a Content-Disposition name.
/// Returns `(url, final_url, size, name)` for each.
fn dry_run_routes(server: &TestServer) -> Vec<(String, String, u64, &'static str)> {
    server.file("/d/plain.bin", content(30, 777));
    server.redirect("/r/start", 302, &server.url("/final/data.bin"));
    server.file("/final/data.bin", content(31, 3 * MIB));
    server.route(
        "/cd",
        Route::new(content(32, 555)).content_disposition("attachment; filename=\"report.pdf\""),
    );
    vec![
        (
            server.url("/d/plain.bin"),
            server.url("/d/plain.bin"),
            777,
            "plain.bin",
        ),
        (
            server.url("/r/start"),
            server.url("/final/data.bin"),
            3 * MIB as u64,
            // The URL given names the file, not the redirect (issue 13).
            "start",
        ),
        (server.url("/cd"), server.url("/cd"), 555, "report.pdf"),
    ]
}

#[track_caller]
fn assert_no_body_requests(server: &TestServer, paths: &[&str]) {
    for p in paths {
        let non_head: Vec<_> = server
            .requests(p)
            .into_iter()
            .filter(|r| r.method != "HEAD")
            .collect();
        assert!(non_head.is_empty(), "dry run sent to {p}: {non_head:?}");
        assert_eq!(server.body_bytes_sent(p), 0, "body bytes sent for {p}");
    }
}

#[test]
fn dry_run_resolves_with_head_only_and_writes_nothing() {
    let server = TestServer::start();
    let plan = dry_run_routes(&server);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let before = list_tree(v.sandbox.root());
    let urls: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
    let r = run(v
        .args(["--dry-run", "--progress", "plain", "-d", &path_arg(&dir)])
        .args(&urls));
    r.expect_code(0).expect_empty_stdout();
    assert!(!dir.exists(), "--dry-run created {dir:?}");
    assert_eq!(list_tree(v.sandbox.root()), before, "--dry-run wrote files");
    assert_no_body_requests(
        &server,
        &["/d/plain.bin", "/r/start", "/final/data.bin", "/cd"],
    );
    for p in ["/d/plain.bin", "/r/start", "/final/data.bin", "/cd"] {
        assert!(server.hits_with_method(p, "HEAD") >= 1, "no HEAD to {p}");
    }
    for (url, final_url, size, name) in &plan {
        let lines: Vec<&str> = lines_with(&r.stderr, &[final_url.as_str(), name, "200"])
            .into_iter()
            .filter(|l| l.contains("download"))
            .filter(|l| size_forms(*size).iter().any(|s| l.contains(s.as_str())))
            .collect();
        assert!(
            !lines.is_empty(),
            "no stderr line for {url} with final URL {final_url}, 200, size {size} ({:?}), \
             name {name} and 'download':\n{}",
            size_forms(*size),
            r.stderr
        );
    }
}

#[test]
fn dry_run_json_plan_events() {
    let server = TestServer::start();
    let plan = dry_run_routes(&server);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let urls: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
    let r = run(v
        .args(["--dry-run", "--json", "-d", &path_arg(&dir)])
        .args(&urls));
    r.expect_code(0);
    assert!(!dir.exists(), "--dry-run created {dir:?}");
    assert_no_body_requests(
        &server,
        &["/d/plain.bin", "/r/start", "/final/data.bin", "/cd"],
    );
    let evs = parse_json_lines(&r.stdout);
    for kind in ["start", "done", "progress"] {
        assert!(
            events(&evs, kind).is_empty(),
            "{kind} event in dry run: {evs:?}"
        );
    }
    let plans = events(&evs, "plan");
    assert_eq!(plans.len(), plan.len(), "{evs:?}");
    for (i, (url, final_url, size, name)) in plan.iter().enumerate() {
        let e = plans
            .iter()
            .find(|e| e["id"].as_u64() == Some(i as u64))
            .unwrap_or_else(|| panic!("no plan for id {i}: {evs:?}"));
        assert_eq!(e["url"], url.as_str(), "{e}");
        assert_eq!(e["final_url"], final_url.as_str(), "{e}");
        assert_eq!(e["status"].as_u64(), Some(200), "{e}");
        assert_eq!(e["size"].as_u64(), Some(*size), "{e}");
        let path = e["path"].as_str().unwrap_or_else(|| panic!("no path: {e}"));
        assert_eq!(
            resolve(&v.sandbox, path),
            dir.join(name),
            "plan path {path:?}: {e}"
        );
        assert_eq!(e["action"], "download", "{e}");
        assert!(!e["ts"].is_null(), "{e}");
    }
    summary(&evs);
}

#[test]
fn dry_run_reports_resume_and_skip() {
    let server = TestServer::start();
    let part_body = content(33, 300 * KIB);
    server.route(
        "/dr/part.bin",
        Route::new(part_body.clone())
            .etag("\"p1\"")
            .fault(Fault::ResetAfter(100 * KIB)),
    );
    server.file("/dr/have.bin", content(34, 4_000));
    server.file("/dr/new.bin", content(35, 6_000));
    let sandbox = Sandbox::new();
    let dir = out_dir(&sandbox);
    // A first run leaves part.bin.part and its state.
    let mut v = volley();
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.url("/dr/part.bin"),
    ]));
    r.expect_code(1);
    let final_part = dir.join("part.bin");
    let part = part_path(&final_part);
    assert!(
        part.exists() && state_path(&final_part).exists(),
        "{:?}",
        list_tree(&dir)
    );
    std::fs::write(dir.join("have.bin"), b"local copy\n").unwrap();
    let part_before = std::fs::read(&part).unwrap();
    let state_before = std::fs::read(state_path(&final_part)).unwrap();
    let tree_before = list_tree(&dir);
    server.reset_stats();

    let urls = [
        server.url("/dr/part.bin"),
        server.url("/dr/have.bin"),
        server.url("/dr/new.bin"),
    ];
    let mut v = volley();
    let r = run(v
        .args(["--dry-run", "--json", "-d", &path_arg(&dir)])
        .args(&urls));
    r.expect_code(0);
    let evs = parse_json_lines(&r.stdout);
    let action = |id: u64| -> String {
        events(&evs, "plan")
            .into_iter()
            .find(|e| e["id"].as_u64() == Some(id))
            .and_then(|e| e["action"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no plan with an action for id {id}: {evs:?}"))
    };
    assert!(action(0).starts_with("resume"), "{evs:?}");
    assert!(action(1).starts_with("skip"), "{evs:?}");
    assert_eq!(action(2), "download", "{evs:?}");
    // Nothing changed on disk.
    assert_eq!(list_tree(&dir), tree_before);
    assert_eq!(std::fs::read(&part).unwrap(), part_before, ".part changed");
    assert_eq!(
        std::fs::read(state_path(&final_part)).unwrap(),
        state_before,
        "state changed"
    );
    assert_file_eq(dir.join("have.bin"), b"local copy\n");
    assert_no_body_requests(&server, &["/dr/part.bin", "/dr/have.bin", "/dr/new.bin"]);

    // Plain output says the same.
    let mut v = volley();
    let r = run(v
        .args(["--dry-run", "--progress", "plain", "-d", &path_arg(&dir)])
        .args(&urls));
    r.expect_code(0).expect_empty_stdout();
    for (name, word) in [
        ("part.bin", "resume"),
        ("have.bin", "skip"),
        ("new.bin", "download"),
    ] {
        assert!(
            !lines_with(&r.stderr, &[name, word]).is_empty(),
            "no stderr line with {name} and {word}:\n{}",
            r.stderr
        );
    }
    assert_eq!(list_tree(&dir), tree_before);
    assert_no_body_requests(&server, &["/dr/part.bin", "/dr/have.bin", "/dr/new.bin"]);
}

#[test]
fn dry_run_404_fails_that_line_and_exits_1() {
    let server = TestServer::start();
    server.file("/d/ok.bin", content(36, 1_234));
    let missing = server.url("/d/missing.bin");
    let ok = server.url("/d/ok.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--dry-run",
        "--progress",
        "plain",
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &missing,
        &ok,
    ]));
    r.expect_code(1).expect_empty_stdout();
    let bad_lines: Vec<&str> = lines_with(&r.stderr, &[&missing, "404"])
        .into_iter()
        .filter(|l| l.to_lowercase().contains("fail"))
        .collect();
    assert!(
        !bad_lines.is_empty(),
        "no line names {missing} with failed and 404:\n{}",
        r.stderr
    );
    assert!(
        !lines_with(&r.stderr, &[&ok, "ok.bin", "download"]).is_empty(),
        "the good download has no plan line:\n{}",
        r.stderr
    );
    assert!(!dir.exists());
    assert_no_body_requests(&server, &["/d/ok.bin"]);
    assert_eq!(server.body_bytes_sent("/d/missing.bin"), 0);

    // JSON: exit 1 and the 404 is reported for id 0.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--dry-run",
        "--json",
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &missing,
        &ok,
    ]));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);
    let reported = evs.iter().any(|e| {
        e["id"].as_u64() == Some(0)
            && ((e["event"] == "plan"
                && e["status"].as_u64() == Some(404)
                && e["action"].as_str().is_some_and(|a| a.starts_with("fail")))
                || (e["event"] == "failed"
                    && e["reason"].as_str().is_some_and(|r| r.contains("404"))))
    });
    assert!(reported, "404 not reported for id 0: {evs:?}");
    let s = summary(&evs);
    assert_eq!(s["failed"].as_u64(), Some(1), "{s}");
    assert!(!dir.exists());
}

/// The name a download would be saved under follows `--on-exists`, and a
/// split download is still resolved with one HEAD.
#[test]
fn dry_run_follows_on_exists_and_split_settings() {
    let server = TestServer::start();
    let body = content(38, 5 * MIB);
    server.route("/d/big.bin", Route::new(body).etag("\"d1\""));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big.bin"), b"old\n").unwrap();
    let r = run(v.args([
        "--dry-run",
        "--json",
        "--on-exists",
        "rename",
        "-x",
        "4",
        "--min-split-size",
        "1M",
        "-d",
        &path_arg(&dir),
        &server.url("/d/big.bin"),
    ]));
    r.expect_code(0);
    let evs = parse_json_lines(&r.stdout);
    let plans = events(&evs, "plan");
    assert_eq!(plans.len(), 1, "{evs:?}");
    let e = plans[0];
    assert_eq!(e["action"], "download", "{e}");
    assert_eq!(e["size"].as_u64(), Some(5 * MIB as u64), "{e}");
    assert_eq!(
        resolve(&v.sandbox, e["path"].as_str().unwrap_or("")),
        dir.join("big.1.bin"),
        "{e}"
    );
    assert_no_body_requests(&server, &["/d/big.bin"]);
    assert_eq!(list_tree(&dir), vec!["big.bin".to_string()]);
    assert_file_eq(dir.join("big.bin"), b"old\n");
}

/// One request to a [`RawServer`]: method, `Range` header, body bytes written.
type RawRequest = (String, Option<String>, usize);

/// What [`RawServer`] answers.
#[derive(Clone)]
enum RawMode {
    /// `HEAD` → 405; `GET` → the body (206 for a `Range`).
    RefuseHead(Arc<Vec<u8>>),
    /// `200` with `Content-Length: HUGE_LENGTH` (1 EiB) to every request;
    /// a `GET` gets `HUGE_PREFIX` body bytes, then nothing for 20 s.
    HugeLength,
}

const HUGE_LENGTH: u64 = 1 << 60;
const HUGE_PREFIX: usize = 64 * KIB;

/// A minimal blocking HTTP/1.1 server for answers the test server cannot
/// give (a refused `HEAD`, a Content-Length no disk can hold), recording
/// `(method, Range header, body bytes written)` per request.
struct RawServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<RawRequest>>>,
}

impl RawServer {
    fn start(mode: RawMode) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        // The accept loop lives until the test process ends.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = log2.clone();
                let mode = mode.clone();
                std::thread::spawn(move || serve_raw(stream, &mode, &log));
            }
        });
        RawServer { addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn log(&self) -> Vec<RawRequest> {
        self.log.lock().unwrap().clone()
    }
}

fn serve_raw(stream: TcpStream, mode: &RawMode, log: &Mutex<Vec<RawRequest>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let method = line.split_whitespace().next().unwrap_or("").to_string();
        let is_head = method.eq_ignore_ascii_case("HEAD");
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("range") {
                    range = Some(v.trim().to_string());
                }
            }
        }
        let body = match mode {
            RawMode::RefuseHead(body) => body,
            RawMode::HugeLength => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {HUGE_LENGTH}\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                );
                let n = if is_head { 0 } else { HUGE_PREFIX };
                log.lock().unwrap().push((method.clone(), range.clone(), n));
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                if is_head {
                    continue;
                }
                if out.write_all(&content(77, n)).is_err() {
                    return;
                }
                let _ = out.flush();
                // Hold the connection until the client gives up (or 20 s).
                let _ = out.set_read_timeout(Some(Duration::from_secs(20)));
                let mut buf = [0u8; 1024];
                let _ = std::io::Read::read(&mut reader, &mut buf);
                return;
            }
        };
        let total = body.len();
        let (head, slice): (String, &[u8]) = if is_head {
            (
                "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n"
                    .to_string(),
                &[],
            )
        } else {
            match range.as_deref().and_then(parse_range_header) {
                Some((a, b)) if (a as usize) < total => {
                    let a = a as usize;
                    let end = b.map_or(total - 1, |b| (b as usize).min(total - 1));
                    (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{end}/{total}\r\n\
                             Content-Length: {}\r\nAccept-Ranges: bytes\r\n\
                             Content-Type: application/octet-stream\r\n\r\n",
                            end + 1 - a
                        ),
                        &body[a..=end],
                    )
                }
                _ => (
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    ),
                    &body[..],
                ),
            }
        };
        log.lock()
            .unwrap()
            .push((method.clone(), range.clone(), slice.len()));
        if out.write_all(head.as_bytes()).is_err() || out.write_all(slice).is_err() {
            return;
        }
        let _ = out.flush();
    }
}

#[test]
fn dry_run_falls_back_to_ranged_get_when_head_is_refused() {
    let body = content(37, 200 * KIB);
    let server = RawServer::start(RawMode::RefuseHead(Arc::new(body.clone())));
    let url = server.url("/nohead/file.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(["--dry-run", "--json", "-d", &path_arg(&dir), &url]));
    r.expect_code(0);
    let log = server.log();
    let gets: Vec<_> = log.iter().filter(|(m, _, _)| m != "HEAD").collect();
    assert!(!gets.is_empty(), "no GET fallback after 405: {log:?}");
    for (m, range, _) in &gets {
        assert_eq!(m, "GET", "{log:?}");
        assert_eq!(range.as_deref(), Some("bytes=0-0"), "{log:?}");
    }
    let sent: usize = log.iter().map(|(_, _, n)| n).sum();
    assert!(sent <= 1, "{sent} body bytes sent in a dry run: {log:?}");
    assert!(!dir.exists(), "--dry-run created {dir:?}");
    let evs = parse_json_lines(&r.stdout);
    let plans = events(&evs, "plan");
    assert_eq!(plans.len(), 1, "{evs:?}");
    let e = plans[0];
    assert_eq!(e["size"].as_u64(), Some(body.len() as u64), "{e}");
    assert_eq!(e["action"], "download", "{e}");
    assert!(
        e["path"].as_str().is_some_and(|p| p.ends_with("file.bin")),
        "{e}"
    );
    assert_eq!(e["final_url"], url.as_str(), "{e}");

    // And the same server still serves a real download (sanity check of
    // the helper).
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(["-d", &path_arg(&dir), &url]));
    r.expect_code(0);
    assert_file_eq(dir.join("file.bin"), &body);
}

// ---------------------------------------------------------------------------
// 5. -N / --timestamping
// ---------------------------------------------------------------------------

/// 2020-09-13T12:26:40Z.
const LM_OLD: u64 = 1_600_000_000;
/// 2023-11-14T22:13:20Z.
const LM_NEW: u64 = 1_700_000_000;

fn ts_setup(len: usize) -> (TestServer, Sandbox, PathBuf, Vec<u8>) {
    let server = TestServer::start();
    let body = content(40, len);
    server.route(
        "/ts/file.bin",
        Route::new(body.clone()).last_modified(epoch(LM_OLD)),
    );
    let sandbox = Sandbox::new();
    let dir = out_dir(&sandbox);
    (server, sandbox, dir, body)
}

/// First download with -N; asserts the mtime.
fn ts_first_run(server: &TestServer, dir: &Path, body: &[u8]) {
    let mut v = volley();
    let r = run(v.args(["-N", "-d", &path_arg(dir), &server.url("/ts/file.bin")]));
    r.expect_code(0);
    assert_file_eq(dir.join("file.bin"), body);
    assert_eq!(
        mtime_secs(&dir.join("file.bin")),
        LM_OLD,
        "mtime is not the server's Last-Modified"
    );
}

/// The value of `If-Modified-Since` sent by the requests after `skip`.
fn ims_values(server: &TestServer, skip: usize) -> Vec<String> {
    server
        .requests("/ts/file.bin")
        .into_iter()
        .skip(skip)
        .filter_map(|r| r.header("if-modified-since").map(str::to_string))
        .collect()
}

#[test]
fn timestamping_sets_mtime_from_last_modified() {
    let (server, sandbox, dir, body) = ts_setup(50_000);
    ts_first_run(&server, &dir, &body);
    // Long spelling, a second file, in a split download too.
    let big = content(41, 3 * MIB);
    server.route(
        "/ts/big.bin",
        Route::new(big.clone()).last_modified(epoch(LM_NEW)),
    );
    let mut v = volley();
    let r = run(v.args([
        "--timestamping",
        "-x",
        "4",
        "--min-split-size",
        "1M",
        "-d",
        &path_arg(&dir),
        &server.url("/ts/big.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("big.bin"), &big);
    assert_eq!(mtime_secs(&dir.join("big.bin")), LM_NEW);
    drop(sandbox);
}

#[test]
fn timestamping_rerun_skips_on_304() {
    let (server, sandbox, dir, body) = ts_setup(40_000);
    ts_first_run(&server, &dir, &body);
    let file = dir.join("file.bin");
    // Same size, other bytes, same mtime: a re-download would be visible.
    let local = content(99, body.len());
    std::fs::write(&file, &local).unwrap();
    set_mtime(&file, epoch(LM_OLD));
    let n = server.hits("/ts/file.bin");
    server.add_faults(
        "/ts/file.bin",
        [Fault::Custom {
            status: 304,
            headers: vec![(
                "Last-Modified".to_string(),
                httpdate::fmt_http_date(epoch(LM_OLD)),
            )],
            body: Vec::new(),
        }],
    );
    let mut v = volley();
    let r = run(v.args([
        "-N",
        "--print-paths",
        "-d",
        &path_arg(&dir),
        &server.url("/ts/file.bin"),
    ]));
    r.expect_code(0);
    // Skipped as already complete: its path is printed all the same.
    let out = r.stdout_str();
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed.len(), 1, "stdout: {out:?}");
    assert!(
        same_file(&resolve(&v.sandbox, printed[0]), &file),
        "{out:?}"
    );
    assert!(server.hits("/ts/file.bin") > n, "-N rerun made no request");
    let ims = ims_values(&server, n);
    assert!(
        !ims.is_empty(),
        "no If-Modified-Since sent: {:?}",
        server.requests("/ts/file.bin")
    );
    for v in &ims {
        assert_eq!(
            httpdate::parse_http_date(v).ok(),
            Some(epoch(LM_OLD)),
            "If-Modified-Since {v:?}"
        );
    }
    assert_file_eq(&file, &local);
    assert_eq!(mtime_secs(&file), LM_OLD);
    assert_eq!(list_tree(&dir), vec!["file.bin".to_string()]);
    r.expect_stderr_contains("0 succeeded")
        .expect_stderr_contains("1 skipped");
    drop(sandbox);
}

/// A server that ignores If-Modified-Since answers 200; the same
/// Last-Modified (or an older one) and the same size still mean "skip".
#[test]
fn timestamping_rerun_skips_on_200_with_same_date_and_size() {
    let (server, sandbox, dir, body) = ts_setup(60_000);
    ts_first_run(&server, &dir, &body);
    let file = dir.join("file.bin");
    let local = content(98, body.len());
    std::fs::write(&file, &local).unwrap();
    set_mtime(&file, epoch(LM_OLD));
    // A second file whose local copy is newer than the server's.
    let other = content(42, 8_000);
    server.route(
        "/ts/other.bin",
        Route::new(other.clone()).last_modified(epoch(LM_OLD)),
    );
    let other_local = content(97, other.len());
    std::fs::write(dir.join("other.bin"), &other_local).unwrap();
    set_mtime(&dir.join("other.bin"), epoch(LM_NEW));
    let n = server.hits("/ts/file.bin");
    let mut v = volley();
    let r = run(v.args([
        "-N",
        "--json",
        "-d",
        &path_arg(&dir),
        &server.url("/ts/file.bin"),
        &server.url("/ts/other.bin"),
    ]));
    r.expect_code(0);
    let ims = ims_values(&server, n);
    assert!(
        !ims.is_empty(),
        "no If-Modified-Since sent: {:?}",
        server.requests("/ts/file.bin")
    );
    assert!(
        server
            .requests("/ts/other.bin")
            .iter()
            .any(|r| r.has_header("if-modified-since")),
        "no If-Modified-Since for other.bin"
    );
    assert_file_eq(&file, &local);
    assert_eq!(mtime_secs(&file), LM_OLD);
    assert_file_eq(dir.join("other.bin"), &other_local);
    assert_eq!(mtime_secs(&dir.join("other.bin")), LM_NEW);
    assert_no_part_files(&dir);
    let evs = parse_json_lines(&r.stdout);
    let s = summary(&evs);
    assert_eq!(s["skipped"].as_u64(), Some(2), "{s}");
    assert_eq!(s["succeeded"].as_u64(), Some(0), "{s}");
    assert_eq!(events(&evs, "skipped").len(), 2, "{evs:?}");
    drop(sandbox);
}

#[test]
fn timestamping_rerun_downloads_a_newer_file() {
    let (server, sandbox, dir, body) = ts_setup(45_000);
    ts_first_run(&server, &dir, &body);
    // Same size, newer date: only the date tells it changed.
    let newer = content(43, body.len());
    server.route(
        "/ts/file.bin",
        Route::new(newer.clone()).last_modified(epoch(LM_NEW)),
    );
    let n = server.hits("/ts/file.bin");
    let mut v = volley();
    let r = run(v.args(["-N", "-d", &path_arg(&dir), &server.url("/ts/file.bin")]));
    r.expect_code(0);
    assert!(
        !ims_values(&server, n).is_empty(),
        "no If-Modified-Since sent"
    );
    assert_file_eq(dir.join("file.bin"), &newer);
    assert_eq!(mtime_secs(&dir.join("file.bin")), LM_NEW);
    assert_eq!(list_tree(&dir), vec!["file.bin".to_string()]);
    r.expect_stderr_contains("1 succeeded");
    drop(sandbox);
}

/// As new but another size: downloaded again.
#[test]
fn timestamping_rerun_downloads_when_size_differs() {
    let (server, sandbox, dir, body) = ts_setup(30_000);
    ts_first_run(&server, &dir, &body);
    let file = dir.join("file.bin");
    std::fs::write(&file, &body[..1000]).unwrap();
    set_mtime(&file, epoch(LM_OLD));
    let mut v = volley();
    let r = run(v.args(["-N", "-d", &path_arg(&dir), &server.url("/ts/file.bin")]));
    r.expect_code(0);
    assert_file_eq(&file, &body);
    assert_eq!(mtime_secs(&file), LM_OLD);
    assert_eq!(list_tree(&dir), vec!["file.bin".to_string()]);
    drop(sandbox);
}

#[test]
fn without_timestamping_existing_file_is_skipped_without_request() {
    let (server, sandbox, dir, body) = ts_setup(20_000);
    ts_first_run(&server, &dir, &body);
    // The server has a newer version, but without -N nobody asks.
    server.route(
        "/ts/file.bin",
        Route::new(content(44, 20_000)).last_modified(epoch(LM_NEW)),
    );
    server.reset_stats();
    let mut v = volley();
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/ts/file.bin")]));
    r.expect_code(0);
    assert_eq!(server.total_hits(), 0);
    assert_file_eq(dir.join("file.bin"), &body);
    assert_eq!(mtime_secs(&dir.join("file.bin")), LM_OLD);
    drop(sandbox);
}

// ---------------------------------------------------------------------------
// 6. --file-allocation
// ---------------------------------------------------------------------------

#[test]
fn file_allocation_bad_value_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/fa/a.bin", content(50, 100));
    for bad in ["bogus", "", "FALLOC2"] {
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v.args([
            "--file-allocation",
            bad,
            "-d",
            &path_arg(&dir),
            &server.url("/fa/a.bin"),
        ]));
        if r.code != Some(2) {
            panic!("--file-allocation {bad:?}: exit {:?}\n{}", r.code, r.stderr);
        }
        assert!(!dir.exists());
    }
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn file_allocation_modes_single_stream() {
    let server = TestServer::start();
    let files: Vec<(String, Vec<u8>)> = [0usize, 1, 64 * KIB, 300 * KIB + 7]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let body = content(51 + i as u64, n);
            let name = format!("f{i}.bin");
            server.file(&format!("/fa/{name}"), body.clone());
            (name, body)
        })
        .collect();
    // One more without a Content-Length (size unknown: nothing to reserve).
    let nolen = content(59, 70 * KIB);
    server.route(
        "/fa/nolen.bin",
        Route::new(nolen.clone()).always(Fault::NoContentLength),
    );
    for mode in ["none", "prealloc", "falloc"] {
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v
            .args(["--file-allocation", mode, "-d", &path_arg(&dir)])
            .args(files.iter().map(|(n, _)| server.url(&format!("/fa/{n}"))))
            .arg(server.url("/fa/nolen.bin")));
        r.expect_code(0);
        for (name, body) in &files {
            assert_file_eq(dir.join(name), body);
        }
        assert_file_eq(dir.join("nolen.bin"), &nolen);
        assert_no_part_files(&dir);
        assert_eq!(list_tree(&dir).len(), files.len() + 1, "{mode}");
    }
}

#[test]
fn file_allocation_modes_split_download() {
    let server = TestServer::start();
    let body = content(60, 5 * MIB + 12_345);
    server.route("/fa/big.bin", Route::new(body.clone()).etag("\"b1\""));
    for mode in ["none", "prealloc", "falloc"] {
        server.reset_stats();
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v.args([
            "--file-allocation",
            mode,
            "-x",
            "4",
            "--min-split-size",
            "1M",
            "-d",
            &path_arg(&dir),
            &server.url("/fa/big.bin"),
        ]));
        r.expect_code(0);
        assert_file_eq(dir.join("big.bin"), &body);
        assert_no_part_files(&dir);
        assert!(
            server.hits_with_method("/fa/big.bin", "GET") >= 2,
            "{mode}: not split: {:?}",
            server.requests("/fa/big.bin")
        );
    }
}

/// A download cut short under each mode resumes from what it recorded:
/// space reserved up front is never taken for data.
#[test]
fn file_allocation_modes_resume_after_reset() {
    let server = TestServer::start();
    let body = content(61, 400 * KIB);
    for mode in ["none", "prealloc", "falloc"] {
        let path = format!("/fa/{mode}.bin");
        server.route(
            &path,
            Route::new(body.clone())
                .etag("\"r1\"")
                .fault(Fault::ResetAfter(150 * KIB)),
        );
        let sandbox = Sandbox::new();
        let dir = out_dir(&sandbox);
        let mut v = volley();
        let r = run(v.args([
            "--file-allocation",
            mode,
            "--retries",
            "0",
            "-d",
            &path_arg(&dir),
            &server.url(&path),
        ]));
        r.expect_code(1);
        let final_path = dir.join(format!("{mode}.bin"));
        assert!(!final_path.exists(), "{mode}: final file after a reset");
        assert!(
            part_path(&final_path).exists(),
            "{mode}: {:?}",
            list_tree(&dir)
        );
        let mut v = volley();
        let r = run(v.args([
            "--file-allocation",
            mode,
            "-d",
            &path_arg(&dir),
            &server.url(&path),
        ]));
        r.expect_code(0);
        assert_file_eq(&final_path, &body);
        assert_no_part_files(&dir);
        let reqs = server.requests(&path);
        let last = reqs.last().unwrap();
        let start = last.range().map(|(s, _)| s).unwrap_or(0);
        assert!(
            start > 0 && start <= 150 * KIB as u64,
            "{mode}: resume asked for {:?} (recorded data up to 150 KiB)",
            last.header("range")
        );
    }
}

/// The config key is accepted too, and a bad value there is an error.
#[test]
fn file_allocation_config_key() {
    let server = TestServer::start();
    let body = content(62, 100 * KIB);
    server.file("/fa/c.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg = v.sandbox.root().join("c.toml");
    std::fs::write(&cfg, "file_allocation = \"prealloc\"\n").unwrap();
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/fa/c.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("c.bin"), &body);

    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg = v.sandbox.root().join("c.toml");
    std::fs::write(&cfg, "file_allocation = \"sparse-ish\"\n").unwrap();
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/fa/c.bin"),
    ]));
    r.expect_code(2);
    r.expect_stderr_contains("file_allocation");
    assert_eq!(server.hits("/fa/c.bin"), 1);
}

/// A file whose declared size no filesystem can hold fails at once, before
/// its body is transferred (not after the idle timeout), naming the lack of
/// space, whatever the allocation mode.
#[test]
fn free_space_check_fails_before_the_body() {
    let server = RawServer::start(RawMode::HugeLength);
    let url = server.url("/huge/file.bin");
    for mode in ["none", "falloc"] {
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let started = std::time::Instant::now();
        let r = run(v.args([
            "--file-allocation",
            mode,
            "--retries",
            "0",
            "--timeout",
            "25",
            "-d",
            &path_arg(&dir),
            &url,
        ]));
        let took = started.elapsed();
        r.expect_code(1);
        // Generous on purpose: the download it stops would take far longer.
        assert!(
            took < Duration::from_secs(10),
            "{mode}: took {took:?}: the space check did not stop the download\n{}",
            r.stderr
        );
        let lower = r.stderr.to_lowercase();
        assert!(
            lower.contains("free") || lower.contains("space"),
            "{mode}: the failure does not mention free space:\n{}",
            r.stderr
        );
        assert!(!dir.join("file.bin").exists());
        let part = part_path(&dir.join("file.bin"));
        let part_len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        assert!(
            part_len <= HUGE_PREFIX as u64,
            "{mode}: .part holds {part_len} bytes"
        );
    }
}

/// What each mode does to the `.part` while the body is on its way:
/// `none` lets it grow, `prealloc` sizes it up front (sparse), `falloc`
/// reserves the blocks (posix_fallocate; this filesystem supports it).
#[test]
fn file_allocation_modes_reserve_space_up_front() {
    use std::os::unix::fs::MetadataExt;
    const SIZE: usize = 4 * MIB;
    const SENT: usize = 64 * KIB;
    let server = TestServer::start();
    server.route(
        "/fa/slow.bin",
        Route::new(content(63, SIZE)).always(Fault::StallAfter(SENT, Duration::from_secs(60))),
    );
    for mode in ["none", "prealloc", "falloc"] {
        server.reset_stats();
        let mut p = volley_process();
        let dir = out_dir(&p.sandbox);
        let errlog = p.sandbox.root().join("stderr.txt");
        p.args([
            "--file-allocation",
            mode,
            "--timeout",
            "30",
            "-d",
            &path_arg(&dir),
            &server.url("/fa/slow.bin"),
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap());
        let mut child = p.spawn().expect("spawn volley");
        let part = part_path(&dir.join("slow.bin"));
        if !wait_until(Duration::from_secs(10), || {
            server.body_bytes_sent("/fa/slow.bin") >= SENT as u64 && part.exists()
        }) {
            abort_child(
                &mut child,
                &errlog,
                &format!("{mode}: download never started"),
            );
        }
        // Give the writer a moment to reserve and write what arrived.
        std::thread::sleep(Duration::from_millis(300));
        let meta = std::fs::metadata(&part).unwrap();
        let allocated = meta.blocks() * 512;
        let _ = interrupt(&mut child, &errlog);
        match mode {
            "none" => assert!(
                allocated < SIZE as u64 && meta.len() < SIZE as u64,
                "none: .part is {} bytes long, {allocated} allocated",
                meta.len()
            ),
            // Sized up front with ftruncate (sparse, as the config docs say).
            "prealloc" => assert_eq!(
                meta.len(),
                SIZE as u64,
                "prealloc: .part not sized up front ({allocated} bytes allocated)"
            ),
            _ => assert!(
                (allocated >= SIZE as u64 || !fallocate_works(&dir)) && meta.len() == SIZE as u64,
                "{mode}: only {allocated} bytes allocated for a {SIZE}-byte file (len {})",
                meta.len()
            ),
        }
    }
}

/// Whether posix_fallocate reserves blocks on the filesystem of `dir`.
fn fallocate_works(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = tempfile::tempfile_in(dir) else {
        return false;
    };
    // SAFETY: a valid open file descriptor.
    unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, 4096) == 0 }
}

/// A dry run writes nothing at all: not the --save-failed list, not the
/// cookie jar (review finding).
#[test]
fn dry_run_writes_no_failed_list_and_no_cookie_jar() {
    // No route: 404 for HEAD as for GET.
    let server = TestServer::start();
    let mut v = volley();
    let dir = v.sandbox.root().join("out");
    let failed = v.sandbox.root().join("failed.txt");
    let jar = v.sandbox.root().join("jar.txt");
    let r = run(v.args([
        "--dry-run",
        "-d",
        &path_arg(&dir),
        "--save-failed",
        &path_arg(&failed),
        "--save-cookies",
        &path_arg(&jar),
        &server.url("/gone.bin"),
    ]));
    r.expect_code(1);
    assert!(!failed.exists(), "--save-failed written in a dry run");
    assert!(!jar.exists(), "--save-cookies written in a dry run");
    assert!(!dir.exists());
}
