//! What a server or a list may try: choosing the file name by a redirect, names
//! that read as options, headers and credentials that follow a redirect to
//! another origin, a Referer that leaks the URL, a 416 of another size taken as
//! complete, passwords in state files and events, names that collide with
//! another download's partial file, names too long for the partial suffixes,
//! and a list on stdin that is read to its end before anything starts.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const KIB: usize = 1024;

fn out_dir(v: &Volley) -> PathBuf {
    v.sandbox.root().join("out")
}

/// Permission bits of a file.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------
// 1. A redirect does not choose the file name
// ---------------------------------------------------------------------------

#[test]
fn a_redirect_does_not_choose_the_file_name() {
    let server = TestServer::start();
    let body = content(1, 20 * KIB);
    server.redirect("/good.iso", 302, "/.bashrc");
    server.file("/.bashrc", body.clone());
    server.redirect("/dl", 302, "/f/");
    server.file("/f/", content(2, 3 * KIB));
    server.redirect("/up", 302, "/f/sub/..");
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        &server.url("/good.iso"),
        &server.url("/dl"),
        &server.url("/up"),
    ]));
    r.expect_code(0);
    assert_eq!(list_tree(&dir), ["dl", "good.iso", "up"].map(String::from));
    assert_file_eq(dir.join("up"), &content(2, 3 * KIB));
    assert_file_eq(dir.join("good.iso"), &body);
    assert_file_eq(dir.join("dl"), &content(2, 3 * KIB));
}

#[test]
fn trust_server_names_names_the_file_after_the_last_url() {
    let server = TestServer::start();
    let body = content(3, 10 * KIB);
    server.redirect("/download", 302, "/mirror/pkg-1.0.tar.gz");
    server.file("/mirror/pkg-1.0.tar.gz", body.clone());
    for how in ["flag", "config"] {
        let mut v = volley();
        let dir = out_dir(&v);
        if how == "flag" {
            v.arg("--trust-server-names");
        } else {
            let config = v.sandbox.root().join("c.toml");
            std::fs::write(&config, "trust_server_names = true\n").unwrap();
            v.args(["--config", &path_arg(&config)]);
        }
        let r = run(v.args(["-d", &path_arg(&dir), &server.url("/download")]));
        r.expect_code(0);
        assert_eq!(list_tree(&dir), vec!["pkg-1.0.tar.gz".to_string()], "{how}");
        assert_file_eq(dir.join("pkg-1.0.tar.gz"), &body);
    }
}

#[test]
fn content_disposition_still_names_a_redirected_download() {
    let server = TestServer::start();
    server.redirect("/get", 302, "/blob/123");
    server.route(
        "/blob/123",
        Route::new(content(4, 5 * KIB)).content_disposition("attachment; filename=\"report.pdf\""),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    run(v.args(["-d", &path_arg(&dir), &server.url("/get")])).expect_code(0);
    assert_eq!(list_tree(&dir), vec!["report.pdf".to_string()]);
}

// ---------------------------------------------------------------------------
// 2. A name never starts with '-'
// ---------------------------------------------------------------------------

#[test]
fn a_server_name_never_starts_with_a_dash() {
    let server = TestServer::start();
    server.route(
        "/a",
        Route::new(content(5, 100)).content_disposition("attachment; filename=\"-rf\""),
    );
    server.route(
        "/b",
        Route::new(content(6, 100))
            .content_disposition("attachment; filename*=UTF-8''--checkpoint=1.bin"),
    );
    server.file("/-x.bin", content(7, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        &server.url("/a"),
        &server.url("/b"),
        &server.url("/-x.bin"),
    ]));
    r.expect_code(0);
    let names = list_tree(&dir);
    assert!(names.iter().all(|n| !n.starts_with('-')), "{names:?}");
    assert_file_eq(dir.join("_rf"), &content(5, 100));
    assert_file_eq(dir.join("_-checkpoint=1.bin"), &content(6, 100));
    assert_file_eq(dir.join("_x.bin"), &content(7, 100));
}

// ---------------------------------------------------------------------------
// 3. Headers and credentials go only to the origin they were given for
// ---------------------------------------------------------------------------

/// Requests on `path` that carried `header`.
fn with_header(server: &TestServer, path: &str, header: &str) -> usize {
    server
        .requests(path)
        .iter()
        .filter(|r| r.has_header(header))
        .count()
}

#[test]
fn custom_headers_do_not_follow_a_redirect_to_another_origin() {
    let a = TestServer::start();
    // Another port of the same host is another origin.
    let b = TestServer::start();
    a.redirect("/r", 302, &b.url("/f.bin"));
    b.file("/f.bin", content(8, 4 * KIB));
    a.redirect("/same", 302, "/g.bin");
    a.file("/g.bin", content(9, 4 * KIB));
    a.redirect("/listed", 302, &b.url("/h.bin"));
    b.file("/h.bin", content(10, 4 * KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            a.url("/listed"),
            "  header=X-List-Key: lk".to_string(),
            "  header=Authorization: Bearer listtoken".to_string(),
        ],
    );
    let r = run(v.args([
        "-H",
        "X-API-Key: k",
        "-H",
        "Cookie: session=1",
        "--http-user",
        "alice",
        "--http-password",
        "pw",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
        &a.url("/r"),
        &a.url("/same"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("r"), &content(8, 4 * KIB));
    assert_file_eq(dir.join("same"), &content(9, 4 * KIB));
    assert_file_eq(dir.join("listed"), &content(10, 4 * KIB));
    // The origin given got everything.
    assert_eq!(with_header(&a, "/r", "x-api-key"), 1);
    assert_eq!(with_header(&a, "/r", "authorization"), 1);
    assert_eq!(with_header(&a, "/listed", "x-list-key"), 1);
    // A same-origin redirect keeps them.
    assert_eq!(with_header(&a, "/g.bin", "x-api-key"), 1);
    assert_eq!(with_header(&a, "/g.bin", "cookie"), 1);
    assert_eq!(with_header(&a, "/g.bin", "authorization"), 1);
    // Another origin gets none of them.
    for req in b.all_requests() {
        for h in ["x-api-key", "x-list-key", "authorization", "cookie"] {
            assert!(!req.has_header(h), "{h} went to {}: {req:#?}", req.path);
        }
    }
}

#[test]
fn url_credentials_go_to_the_same_origin_after_a_redirect_and_nowhere_else() {
    let a = TestServer::start();
    let b = TestServer::start();
    a.redirect("/same", 302, "/in.bin");
    a.file("/in.bin", content(11, KIB));
    a.redirect("/away", 302, &b.url("/out.bin"));
    b.file("/out.bin", content(12, KIB));
    let with_user = |path: &str| a.url(path).replace("http://", "http://u:p@");
    let mut v = volley();
    let dir = out_dir(&v);
    run(v.args([
        "-d",
        &path_arg(&dir),
        &with_user("/same"),
        &with_user("/away"),
    ]))
    .expect_code(0);
    assert_eq!(with_header(&a, "/in.bin", "authorization"), 1);
    assert_eq!(with_header(&b, "/out.bin", "authorization"), 0);
}

// ---------------------------------------------------------------------------
// 4. No Referer unless asked
// ---------------------------------------------------------------------------

#[test]
fn no_referer_is_sent_unless_asked() {
    let a = TestServer::start();
    let b = TestServer::start();
    a.redirect("/signed", 302, &b.url("/data.bin"));
    b.file("/data.bin", content(13, KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    run(v.args(["-d", &path_arg(&dir), &a.url("/signed?token=SECRET")])).expect_code(0);
    assert_eq!(with_header(&a, "/signed", "referer"), 0);
    assert_eq!(with_header(&b, "/data.bin", "referer"), 0);
    // --referer is sent to the origin it is given for only.
    let mut v = volley();
    let dir = out_dir(&v);
    run(v.args([
        "--referer",
        "https://example.org/page",
        "-d",
        &path_arg(&dir),
        &a.url("/signed?token=SECRET"),
    ]))
    .expect_code(0);
    let asked = a.requests("/signed");
    assert_eq!(
        asked.last().and_then(|r| r.header("referer")),
        Some("https://example.org/page")
    );
    assert_eq!(with_header(&b, "/data.bin", "referer"), 0);
}

// ---------------------------------------------------------------------------
// 5. A 416 of another size is not "complete"
// ---------------------------------------------------------------------------

#[test]
fn a_416_with_another_size_starts_over() {
    let server = TestServer::start();
    let now = content(14, 100_000);
    server.file("/f.bin", now.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f.bin");
    std::fs::write(part_path(&file), content(15, 150_000)).unwrap();
    let state = serde_json::json!({
        "version": 1,
        "url": server.url("/f.bin"),
        "size": 150_000,
        "etag": null,
        "last_modified": null,
        "done": [[0, 150_000]],
    });
    std::fs::write(state_path(&file), state.to_string()).unwrap();
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/f.bin")]));
    r.expect_code(0);
    assert_file_eq(&file, &now);
    assert!(server
        .requests("/f.bin")
        .iter()
        .any(|r| r.range().is_some()));
}

#[test]
fn a_416_with_the_size_on_disk_completes() {
    let server = TestServer::start();
    let body = content(16, 90_000);
    server.file("/g.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("g.bin");
    std::fs::write(part_path(&file), &body).unwrap();
    let state = serde_json::json!({
        "version": 1, "url": server.url("/g.bin"), "size": null, "etag": null,
        "last_modified": null, "done": [[0, 90_000]],
    });
    std::fs::write(state_path(&file), state.to_string()).unwrap();
    run(v.args(["-d", &path_arg(&dir), &server.url("/g.bin")])).expect_code(0);
    assert_file_eq(&file, &body);
    assert_eq!(server.body_bytes_sent("/g.bin"), 0, "nothing fetched again");
}

// ---------------------------------------------------------------------------
// 6. A password in a URL is never shown or kept readable
// ---------------------------------------------------------------------------

#[test]
fn a_password_in_the_url_is_not_shown_and_state_files_are_private() {
    let server = TestServer::start();
    let body = content(17, 300 * KIB);
    // Every try breaks off after 100 KiB: the download fails, its state stays.
    server.route(
        "/p.bin",
        Route::new(body.clone()).always(Fault::ResetAfter(100 * KIB)),
    );
    let url = server
        .url("/p.bin")
        .replace("http://", "http://alice:s3cr3tPW@");
    let mut v = volley();
    let dir = out_dir(&v);
    let failed = v.sandbox.root().join("failed.txt");
    let r = run(v.args([
        "--json",
        "--retries",
        "1",
        "--retry-wait",
        "0",
        "--save-failed",
        &path_arg(&failed),
        "-d",
        &path_arg(&dir),
        &url,
    ]));
    r.expect_code(1);
    let stdout = r.stdout_str();
    assert!(!stdout.contains("s3cr3tPW"), "{stdout}");
    assert!(!r.stderr.contains("s3cr3tPW"), "{}", r.stderr);
    assert!(stdout.contains("alice:***@"), "{stdout}");
    let state = state_path(&dir.join("p.bin"));
    let text = std::fs::read_to_string(&state).expect("a state file");
    assert!(!text.contains("s3cr3tPW"), "{text}");
    assert_eq!(mode(&state), 0o600);
    // The list for a rerun keeps the password, and only its owner reads it.
    let list = std::fs::read_to_string(&failed).unwrap();
    assert!(list.contains("alice:s3cr3tPW@"), "{list}");
    assert_eq!(mode(&failed), 0o600);
    // A rerun of the list resumes with the recorded state and completes.
    server.set_always("/p.bin", None);
    let mut v2 = volley();
    let r = run(v2.args(["-d", &path_arg(&dir), "-i", &path_arg(&failed)]));
    r.expect_code(0);
    assert!(!r.stderr.contains("s3cr3tPW"), "{}", r.stderr);
    assert_file_eq(dir.join("p.bin"), &body);
    let last = server.requests("/p.bin").pop().unwrap();
    assert!(last.range().is_some_and(|(s, _)| s > 0), "{last:#?}");
}

// ---------------------------------------------------------------------------
// 7. NAME.part beside NAME
// ---------------------------------------------------------------------------

#[test]
fn a_name_ending_like_a_partial_file_is_refused_with_its_line() {
    let server = TestServer::start();
    server.file("/a", content(18, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("l.txt");
    write_list(
        &list,
        &[
            server.url("/a"),
            "  out=big.bin".to_string(),
            server.url("/a"),
            "  out=big.bin.part".to_string(),
            server.url("/a"),
            "  out=x.part.volley".to_string(),
        ],
    );
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(2);
    r.expect_stderr_contains(&format!("{}:4:", list.display()));
    r.expect_stderr_contains(&format!("{}:6:", list.display()));
    assert_eq!(server.total_hits(), 0);
    let mut v = volley();
    let r = run(v.args(["-o", "f.part", &server.url("/a")]));
    r.expect_code(2).expect_stderr_contains("--output");
}

#[test]
fn downloads_named_name_and_name_part_both_arrive_whole() {
    let server = TestServer::start();
    let big = content(19, 6 * 1024 * KIB);
    let small = content(20, 3 * KIB);
    server.file("/x/big.bin", big.clone());
    server.file("/y/big.bin.part", small.clone());
    for order in [[0, 1], [1, 0]] {
        let urls = [server.url("/x/big.bin"), server.url("/y/big.bin.part")];
        let mut v = volley();
        let dir = out_dir(&v);
        let r = run(v
            .args(["-x", "4", "--min-split-size", "1M", "-d", &path_arg(&dir)])
            .args(order.map(|i| urls[i].clone())));
        r.expect_code(0);
        let names = list_tree(&dir);
        assert_eq!(names.len(), 2, "{names:?}");
        let mut found = names
            .iter()
            .map(|n| std::fs::read(dir.join(n)).unwrap())
            .collect::<Vec<_>>();
        found.sort_by_key(Vec::len);
        assert_bytes_eq("small", &found[0], &small);
        assert_bytes_eq("big", &found[1], &big);
    }
}

// ---------------------------------------------------------------------------
// 8. Long names given by the user
// ---------------------------------------------------------------------------

#[test]
fn a_long_given_name_works_through_checkpoints_and_resume() {
    let server = TestServer::start();
    let body = content(21, 400 * KIB);
    // The first try breaks off: the state is written and the second resumes.
    server.route(
        "/long.bin",
        Route::new(body.clone())
            .throttle(32 * KIB, Duration::from_millis(60))
            .faults([Fault::ResetAfter(200 * KIB)]),
    );
    for len in [250, 253, 255] {
        let name = format!("{}.bin", "n".repeat(len - 4));
        let mut v = volley();
        let dir = out_dir(&v);
        let r = run(v.args([
            "--retry-wait",
            "0",
            "-d",
            &path_arg(&dir),
            "-o",
            &name,
            &server.url("/long.bin"),
        ]));
        r.expect_code(0);
        assert_file_eq(dir.join(&name), &body);
        assert_eq!(list_tree(&dir), vec![name.clone()]);
        server.add_faults("/long.bin", [Fault::ResetAfter(200 * KIB)]);
    }
    // Every try after a reset asked for the rest only.
    let resumed = server
        .requests("/long.bin")
        .iter()
        .filter(|r| r.range().is_some_and(|(s, _)| s > 0))
        .count();
    assert_eq!(resumed, 3);
}

// ---------------------------------------------------------------------------
// 9. A list on stdin starts as it arrives
// ---------------------------------------------------------------------------

#[test]
fn a_piped_list_starts_before_stdin_closes() {
    let server = TestServer::start();
    for i in 0..20 {
        server.file(&format!("/s/{i}.bin"), content(100 + i, 2 * KIB));
    }
    let mut p = volley_process();
    let dir = p.sandbox.root().join("out");
    let errlog = p.sandbox.root().join("err.txt");
    let mut child = p
        .args(["-d", &path_arg(&dir), "-i", "-", "--progress", "plain"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", server.url("/s/0.bin")).unwrap();
    stdin.flush().unwrap();
    // The first URL is fetched while the producer is still writing.
    if !wait_until(Duration::from_secs(10), || dir.join("0.bin").exists()) {
        abort_child(
            &mut child,
            &errlog,
            "the first URL was not fetched before stdin closed",
        );
    }
    // A bad line is a failed download, not the end of the run.
    writeln!(stdin, "not a url").unwrap();
    for i in 1..20 {
        writeln!(stdin, "{}", server.url(&format!("/s/{i}.bin"))).unwrap();
    }
    drop(stdin);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_TIMEOUT {
            abort_child(&mut child, &errlog, "volley did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&errlog).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("<stdin>:2"), "{stderr}");
    for i in 0..20 {
        assert_file_eq(dir.join(format!("{i}.bin")), &content(100 + i, 2 * KIB));
    }
}

#[test]
fn a_piped_list_is_held_up_by_the_pipe_not_read_into_memory() {
    // The producer writes far more lines than volley reads ahead; volley must
    // not have read them all while the first downloads are still running.
    let server = TestServer::start();
    server.route(
        "/slow.bin",
        Route::new(content(30, 64 * KIB)).throttle(8 * KIB, Duration::from_millis(200)),
    );
    let mut p = volley_process();
    let dir = p.sandbox.root().join("out");
    let mut child = p
        .args([
            "-d",
            &path_arg(&dir),
            "-i",
            "-",
            "-j",
            "1",
            "--progress",
            "none",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let url = server.url("/slow.bin");
        let mut written = 0usize;
        for i in 0..200_000 {
            if writeln!(stdin, "{url}?n={i}").is_err() {
                break;
            }
            written += 1;
        }
        (written, server)
    });
    // Give the producer time to fill whatever volley would take.
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    let (written, _server) = writer.join().unwrap();
    assert!(
        written < 50_000,
        "volley took {written} lines while its first download ran"
    );
}

#[test]
fn a_list_file_is_still_checked_whole_before_any_download() {
    let server = TestServer::start();
    server.file("/a.bin", content(31, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("l.txt");
    write_list(&list, &[server.url("/a.bin"), "not a url".to_string()]);
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(2);
    r.expect_stderr_contains(&format!("{}:2:", list.display()));
    assert_eq!(server.total_hits(), 0);
    // The same list redirected from a file into stdin is a file too.
    let mut p = volley_process();
    let out = p
        .args(["-d", &path_arg(&dir), "-i", "-"])
        .stdin(std::fs::File::open(&list).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.total_hits(), 0);
}
