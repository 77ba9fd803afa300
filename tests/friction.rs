//! What a new user trips on (issue 16): messages, options and the end of a
//! run, each checked as a user meets it. The progress display's items are in
//! tests/terminal.rs (a pseudo-terminal).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const KIB: usize = 1024;

fn out_dir(v: &Volley) -> PathBuf {
    v.sandbox.root().join("out")
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

#[test]
fn a_refused_connection_is_said_in_plain_words_once() {
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        "http://127.0.0.1:1/x.bin",
    ]));
    r.expect_code(1);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("failed "))
        .expect("a failed line");
    assert_eq!(
        line,
        "failed   http://127.0.0.1:1/x.bin: connection refused by 127.0.0.1 port 1"
    );
    assert!(line.len() < 120);
    let failed_lines = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("failed "))
        .count();
    assert_eq!(failed_lines, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("client error ("), "{}", r.stderr);
    assert!(!r.stderr.contains("error sending request"), "{}", r.stderr);
}

#[test]
fn an_output_directory_that_cannot_be_made_is_one_usage_error() {
    let mut v = volley();
    let afile = v.sandbox.root().join("afile");
    std::fs::write(&afile, b"x").unwrap();
    let urls: Vec<String> = (0..50)
        .map(|i| format!("http://127.0.0.1:1/{i}.bin"))
        .collect();
    let r = run(v.args(["-d", &path_arg(&afile.join("sub"))]).args(&urls));
    r.expect_code(2).expect_empty_stdout();
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    r.expect_stderr_contains("--dir");
    r.expect_stderr_contains("afile/sub");
}

#[test]
fn retries_count_the_same_way_after_a_checksum_mismatch_and_a_failure() {
    let server = TestServer::start();
    let good = content(1, 4 * KIB);
    // The first answer's bytes are wrong (a mismatch); the next is cut.
    server.route(
        "/c.bin",
        Route::new(content(2, 4 * KIB))
            .then(Route::new(good.clone()).faults([Fault::ResetAfter(KIB)])),
    );
    let sum = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&good);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--json",
        "--retry-wait",
        "0.01",
        "--checksum",
        &format!("sha-256={sum}"),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("c.bin"), &good);
    let attempts: Vec<(u64, u64)> = parse_json_lines(&r.stdout)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["max_attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    // The try from scratch after the mismatch is the second (of one more
    // than the budget: it costs none of it); the one after the reset the third.
    assert_eq!(attempts, vec![(2, 7), (3, 7)], "{}", r.stderr);
}

#[test]
fn a_url_without_a_scheme_gets_a_suggestion() {
    let mut v = volley();
    let r = run(v.arg("example.org/f.iso"));
    r.expect_code(2);
    r.expect_stderr_contains("https://example.org/f.iso");
    assert!(
        !r.stderr.contains("relative URL without a base"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_byte_order_mark_starting_a_list_is_skipped() {
    let server = TestServer::start();
    server.file("/bom.bin", content(3, 500));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("list.txt");
    let mut text = vec![0xEF, 0xBB, 0xBF];
    text.extend_from_slice(format!("{}\n", server.url("/bom.bin")).as_bytes());
    std::fs::write(&list, text).unwrap();
    run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)])).expect_code(0);
    assert_file_eq(dir.join("bom.bin"), &content(3, 500));
}

#[test]
fn a_bad_config_value_names_the_key_and_the_file_in_words() {
    for (text, says) in [
        ("jobs = 0\n", "jobs in "),
        ("jobs = \"many\"\n", "a whole number"),
        ("retry_wait = true\n", "a number"),
        ("timeout = 0\n", "timeout in "),
    ] {
        let mut v = volley();
        let config = v.sandbox.root().join("c.toml");
        std::fs::write(&config, text).unwrap();
        let r = run(v.args(["--config", &path_arg(&config), "http://127.0.0.1:1/x"]));
        r.expect_code(2);
        r.expect_stderr_contains(says);
        r.expect_stderr_contains(&path_arg(&config));
        for rust in ["usize", "u32", "f64", "--jobs", "--timeout"] {
            assert!(!r.stderr.contains(rust), "{text:?}: {}", r.stderr);
        }
    }
    // A flag is still named as the flag.
    let mut v = volley();
    let r = run(v.args(["-j", "0", "http://127.0.0.1:1/x"]));
    r.expect_code(2).expect_stderr_contains("--jobs");
}

#[test]
fn summary_failures_are_in_input_order() {
    let server = TestServer::start();
    // The first fails last (its 404 comes after a delay).
    server.route(
        "/slow-missing",
        Route::new(Vec::new())
            .status(404)
            .always(Fault::DelayHeaders(Duration::from_millis(300))),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    // No retries: the refused ones fail at once, before the first.
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.url("/slow-missing"),
        "http://127.0.0.1:1/refused-a",
        "http://127.0.0.1:1/refused-b",
    ]));
    r.expect_code(1);
    // They did end in another order than the input's (the lines as they
    // happened), so the summary's order is its own.
    let as_they_ended: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("failed "))
        .collect();
    assert_eq!(as_they_ended.len(), 3, "{}", r.stderr);
    assert!(as_they_ended[2].contains("/slow-missing"), "{}", r.stderr);
    let failed: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("  failed: "))
        .collect();
    assert_eq!(failed.len(), 3, "{}", r.stderr);
    assert!(failed[0].contains("/slow-missing"), "{failed:?}");
    assert!(failed[1].contains("refused-a"), "{failed:?}");
    assert!(failed[2].contains("refused-b"), "{failed:?}");
}

#[test]
fn a_resumed_download_says_what_this_run_fetched() {
    let server = TestServer::start();
    let body = content(4, 300 * KIB);
    server.route(
        "/r.bin",
        Route::new(body.clone())
            .etag("\"r\"")
            .faults([Fault::ResetAfter(100 * KIB)]),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    // The first run fails after 100 KiB; the second resumes.
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.url("/r.bin"),
    ]));
    r.expect_code(1);
    let mut v2 = volley();
    let r = run(v2.args(["-d", &path_arg(&dir), &server.url("/r.bin")]));
    r.expect_code(0);
    assert_file_eq(dir.join("r.bin"), &body);
    let done = r
        .stderr
        .lines()
        .find(|l| l.starts_with("done "))
        .expect("a done line");
    assert!(done.contains("(300 KiB, 200 KiB fetched in "), "{done}");
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

#[test]
fn output_takes_a_path_and_a_device() {
    let server = TestServer::start();
    let body = content(5, 20 * KIB);
    server.file("/o.bin", body.clone());
    let mut v = volley();
    let root = v.sandbox.root().to_path_buf();
    // A path relative to -d, a path above it, an absolute path.
    let dir = root.join("base");
    let absolute = path_arg(&root.join("abs/y.bin"));
    for (given, lands) in [
        ("sub/x.bin", dir.join("sub/x.bin")),
        ("../up.bin", root.join("up.bin")),
        (absolute.as_str(), root.join("abs/y.bin")),
    ] {
        let mut v = volley();
        let r = run(v.args(["-d", &path_arg(&dir), "-o", given, &server.url("/o.bin")]));
        r.expect_code(0);
        assert_file_eq(&lands, &body);
    }
    // /dev/null is written into, not replaced.
    let r = run(v.args(["-o", "/dev/null", &server.url("/o.bin")]));
    r.expect_code(0);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // A name that comes from a server still cannot escape: out= stays a name.
    let mut v = volley();
    let list = v.sandbox.root().join("l.txt");
    write_list(&list, &[server.url("/o.bin"), "  out=../x.bin".to_string()]);
    run(v.args(["-i", &path_arg(&list)])).expect_code(2);
}

#[test]
fn a_rate_of_zero_is_no_cap() {
    let server = TestServer::start();
    server.file("/z.bin", content(6, 64 * KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("l.txt");
    write_list(&list, &[server.url("/z.bin"), "  limit_rate=0".to_string()]);
    let r = run(v.args([
        "--limit-rate",
        "0",
        "--limit-rate-per-download",
        "0",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("z.bin"), &content(6, 64 * KIB));
}

#[test]
fn dry_run_skips_complete_files_without_asking_and_shows_failures() {
    let server = TestServer::start();
    server.file("/have.bin", content(7, 100));
    server.route(
        "/gone.bin",
        Route::new(b"not found page".to_vec()).status(404),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("have.bin"), content(7, 100)).unwrap();
    let r = run(v.args([
        "--dry-run",
        "--json",
        "-d",
        &path_arg(&dir),
        &server.url("/have.bin"),
        &server.url("/gone.bin"),
    ]));
    r.expect_code(1);
    assert_eq!(
        server.hits("/have.bin"),
        0,
        "a complete file was asked about"
    );
    let events = parse_json_lines(&r.stdout);
    let plan = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == "plan" && e["url"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no plan for {name}"))
    };
    let have = plan("have.bin");
    assert!(
        have["action"].as_str().unwrap().starts_with("skip"),
        "{have}"
    );
    assert!(
        have["path"].as_str().unwrap().ends_with("have.bin"),
        "{have}"
    );
    let gone = plan("gone.bin");
    assert!(gone["size"].is_null(), "an error page's size: {gone}");
    assert!(
        gone["action"].as_str().unwrap().starts_with("fail"),
        "{gone}"
    );
    let summary = events.last().unwrap();
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
}

#[test]
fn completion_offers_the_values_of_enumerated_options_and_directories() {
    let mut v = volley();
    let r = run(v.args(["--completions", "fish"]));
    r.expect_code(0);
    let script = r.stdout_str();
    for (option, value) in [
        ("on-exists", "rename"),
        ("progress", "plain"),
        ("file-allocation", "prealloc"),
    ] {
        let line = script
            .lines()
            .find(|l| l.contains(&format!("-l {option} ")))
            .unwrap_or_else(|| panic!("no completion for --{option}"));
        assert!(line.contains(value) && line.contains("-f"), "{line}");
    }
    let dir = script.lines().find(|l| l.contains("-l dir ")).unwrap();
    assert!(dir.contains("__fish_complete_directories"), "{dir}");
}

#[test]
fn help_points_at_what_an_installed_binary_has() {
    let mut v = volley();
    let r = run(v.arg("--help"));
    r.expect_code(0);
    let help = r.stdout_str();
    assert!(!help.contains("README"), "--help names README");
    assert!(
        !help.contains("config.example.toml"),
        "--help names the example file"
    );
    assert!(help.contains("--print-config"));
    // The example it prints is a valid config file once uncommented.
    let mut v = volley();
    let r = run(v.arg("--print-config"));
    r.expect_code(0);
    let uncommented: String = r
        .stdout_str()
        .lines()
        .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = v.sandbox.root().join("c.toml");
    std::fs::write(&config, uncommented).unwrap();
    let mut v = volley();
    let r = run(v.args([
        "--config",
        &path_arg(&config),
        "--dry-run",
        "http://127.0.0.1:1/x",
    ]));
    // (Its example paths need not exist: only the file's own errors count,
    // which name the file: a parse error, or a value of a key in it.)
    assert!(
        !r.stderr.contains("config file") && !r.stderr.contains(&path_arg(&config)),
        "the printed example does not parse: {}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------
// The list of unfinished downloads, however the run ends
// ---------------------------------------------------------------------------

/// Whether process `pid` is stopped (SIGSTOP), as /proc says.
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(") ")?.1.starts_with('T')))
        .unwrap_or(false)
}

/// Start a run of three stalling downloads with `--save-failed`, wait for
/// them to start, send `signals` while it is stopped (so that a second one
/// arrives before the first has ended the run), and return the list
/// written and what it said on stderr.
fn save_failed_after(signals: &[libc::c_int]) -> (String, String) {
    let server = TestServer::start();
    for i in 0..3 {
        server.route(
            &format!("/s{i}.bin"),
            Route::new(content(10 + i, 100 * KIB))
                .always(Fault::StallAfter(10 * KIB, Duration::from_secs(60))),
        );
    }
    let mut p = volley_process();
    let dir = p.sandbox.root().join("out");
    let list = p.sandbox.root().join("failed.txt");
    let errlog = p.sandbox.root().join("stderr.txt");
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("/s{i}.bin"))).collect();
    let mut child = p
        .args([
            "--timeout",
            "120",
            "--save-failed",
            &path_arg(&list),
            "-d",
            &path_arg(&dir),
        ])
        .args(&urls)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || server.in_flight() == 3),
        "the downloads did not start"
    );
    let pid = child.id();
    let kill = |sig| {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    };
    kill(libc::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(10), || is_stopped(pid)),
        "volley did not stop"
    );
    for &sig in signals {
        kill(sig);
    }
    kill(libc::SIGCONT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    (
        std::fs::read_to_string(&list).unwrap_or_default(),
        std::fs::read_to_string(&errlog).unwrap_or_default(),
    )
}

#[test]
fn the_unfinished_list_is_written_however_the_run_ends() {
    // Two signals of one kind would merge while volley is stopped: the
    // second ones differ from the first.
    for signals in [
        vec![libc::SIGINT],
        vec![libc::SIGINT, libc::SIGTERM],
        vec![libc::SIGTERM, libc::SIGHUP],
        vec![libc::SIGHUP, libc::SIGINT],
    ] {
        let (list, stderr) = save_failed_after(&signals);
        for i in 0..3 {
            assert!(
                list.contains(&format!("/s{i}.bin")),
                "{signals:?}: {list:?}"
            );
        }
        // One signal ends the run as usual (with its summary); a second one
        // ends it at once, without: the path under test was taken.
        assert_eq!(
            stderr.contains("volley: interrupted"),
            signals.len() == 1,
            "{signals:?}: {stderr}"
        );
    }
}
