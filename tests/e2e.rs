//! End-to-end tests: the `volley` binary against the hand-written test server.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KIB: usize = 1024;

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(v: &Volley) -> PathBuf {
    v.sandbox.root().join("out")
}

/// Lines of stderr that contain every one of `needles`.
fn stderr_lines_with<'a>(stderr: &'a str, needles: &[&str]) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

// ---------------------------------------------------------------------------
// The test server itself
// ---------------------------------------------------------------------------

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn server_selftest_ranges_head_and_404() {
    let server = TestServer::start();
    let body = content(1, 100_000);
    server.route(
        "/f.bin",
        Route::new(body.clone())
            .etag("\"v1\"")
            .last_modified_str("Wed, 21 Oct 2015 07:28:00 GMT")
            .header("X-Extra", "yes"),
    );
    rt().block_on(async {
        let c = client();
        let url = server.url("/f.bin");

        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert_eq!(r.headers()["etag"], "\"v1\"");
        assert_eq!(r.headers()["x-extra"], "yes");
        assert_eq!(r.headers()["content-length"], "100000");
        assert_bytes_eq("full GET", &r.bytes().await.unwrap(), &body);

        let r = c
            .get(&url)
            .header("Range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
        assert_bytes_eq("range 10-19", &r.bytes().await.unwrap(), &body[10..20]);

        let r = c
            .get(&url)
            .header("Range", "bytes=99990-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 99990-99999/100000");
        assert_bytes_eq("open range", &r.bytes().await.unwrap(), &body[99990..]);

        let r = c
            .get(&url)
            .header("Range", "bytes=-5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_bytes_eq("suffix range", &r.bytes().await.unwrap(), &body[99995..]);

        let r = c
            .get(&url)
            .header("Range", "bytes=100000-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["content-range"], "bytes */100000");
        assert!(r.bytes().await.unwrap().is_empty());

        // If-Range: matching ETag → 206; other ETag → 200 full; date works too.
        let r = c
            .get(&url)
            .header("Range", "bytes=0-9")
            .header("If-Range", "\"v1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().len(), 10);
        let r = c
            .get(&url)
            .header("Range", "bytes=0-9")
            .header("If-Range", "\"v0\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_bytes_eq("If-Range mismatch", &r.bytes().await.unwrap(), &body);
        let r = c
            .get(&url)
            .header("Range", "bytes=0-9")
            .header("If-Range", "Wed, 21 Oct 2015 07:28:00 GMT")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.bytes().await.unwrap().len(), 10);

        let r = c.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-length"], "100000");
        assert!(r.bytes().await.unwrap().is_empty());

        let r = c.get(server.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(!r.bytes().await.unwrap().is_empty());
    });
    assert_eq!(server.hits("/f.bin"), 9);
    assert_eq!(server.hits_with_method("/f.bin", "HEAD"), 1);
    assert_eq!(server.hits("/nope"), 1);
    let reqs = server.requests("/f.bin");
    assert_eq!(reqs[1].header("range"), Some("bytes=10-19"));
    assert!(!reqs[0].has_header("range"));
    assert!(!reqs[0].has_header("authorization"));
    // Keep-alive: reqwest reuses one connection for these sequential requests.
    assert_eq!(server.connections(), 1, "keep-alive not working");
}

#[test]
fn server_selftest_faults_and_redirects() {
    let server = TestServer::start();
    let body = content(2, 50_000);
    server.route(
        "/flaky",
        Route::new(body.clone()).faults([
            Fault::Status(503),
            Fault::StatusWithHeaders(429, vec![("Retry-After", "2")]),
            Fault::ResetAfter(1000),
            Fault::ShortBody(2000),
            Fault::NoContentLength,
            Fault::IgnoreRange,
            Fault::StallAfter(10, Duration::from_millis(50)),
        ]),
    );
    server.redirect("/r1", 302, &server.url("/r2"));
    server.redirect("/r2", 301, "/flaky");
    rt().block_on(async {
        let c = client();
        let url = server.url("/flaky");
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        // Reset: headers arrive, the body errors out.
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["content-length"], "50000");
        assert!(r.bytes().await.is_err(), "reset body should fail");
        // Short body: also an error for a Content-Length-aware client.
        let r = c.get(&url).send().await.unwrap();
        assert!(r.bytes().await.is_err(), "short body should fail");
        // No Content-Length: delimited by close, full body.
        let r = c.get(&url).send().await.unwrap();
        assert!(r.headers().get("content-length").is_none());
        assert_bytes_eq("no-length body", &r.bytes().await.unwrap(), &body);
        // IgnoreRange: 200 full body despite Range.
        let r = c
            .get(&url)
            .header("Range", "bytes=5-9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_bytes_eq("ignored range", &r.bytes().await.unwrap(), &body);
        // Stall, then the rest.
        let t = Instant::now();
        let r = c.get(&url).send().await.unwrap();
        assert_bytes_eq("stalled body", &r.bytes().await.unwrap(), &body);
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Plan exhausted: normal; and via a redirect chain.
        let r = c.get(server.url("/r1")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.url().path(), "/flaky");
        assert_bytes_eq("after redirects", &r.bytes().await.unwrap(), &body);
    });
    assert_eq!(server.hits("/flaky"), 8);
    assert_eq!(server.hits("/r1"), 1);
    assert_eq!(server.hits("/r2"), 1);
    assert_eq!(server.pending_faults("/flaky"), 0);
    // Two 20-byte status bodies, 1000 (reset) + 2000 (short), three full
    // bodies and one more via the redirects.
    // The server counts after each write returns, which may be a moment after
    // the client has read the bytes: wait for the count to settle.
    let expected = 40 + 3000 + 4 * 50_000;
    wait_until(Duration::from_secs(5), || {
        server.body_bytes_sent("/flaky") == expected
    });
    assert_eq!(server.body_bytes_sent("/flaky"), expected);
}

#[test]
fn server_selftest_raw_keepalive_and_close() {
    use std::io::{Read, Write};
    let server = TestServer::start();
    server.file("/a", b"hello".to_vec());
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Two pipelined requests on one connection, the second asks to close.
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap(); // returns because the server closes
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
    assert_eq!(all.matches("hello").count(), 2);
    assert!(all.contains("Connection: close"));
    assert_eq!(server.hits("/a"), 2);
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// 1. A batch of 50 files from a list
// ---------------------------------------------------------------------------

#[test]
fn batch_of_50_files_from_list() {
    let server = TestServer::start();
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("list.txt");
    let mut expected = Vec::new();
    let mut lines = vec!["# a batch of fifty".to_string(), String::new()];
    for i in 0..50u64 {
        let len = match i {
            0 => 0,
            1 => 1,
            2 => 300 * KIB,
            3 => 64 * KIB,
            4 => 64 * KIB + 1,
            _ => (i as usize * 6151) % (300 * KIB),
        };
        let body = content(1000 + i, len);
        let name = format!("f{i:02}.bin");
        server.file(&format!("/batch/{name}"), body.clone());
        lines.push(server.url(&format!("/batch/{name}")));
        if i == 25 {
            lines.push(String::new());
            lines.push("# halfway".to_string());
        }
        expected.push((name, body));
    }
    write_list(&list, &lines);

    let r = run(v.args(["-j", "4", "-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0).expect_empty_stdout();
    for (name, body) in &expected {
        assert_file_eq(dir.join(name), body);
    }
    assert_no_part_files(&dir);
    assert_eq!(list_tree(&dir).len(), 50, "{:?}", list_tree(&dir));
    r.expect_stderr_contains("50 succeeded")
        .expect_stderr_contains("0 skipped")
        .expect_stderr_contains("0 failed");
    assert!(
        server.max_in_flight() <= 4,
        "-j 4 but {} requests at once",
        server.max_in_flight()
    );
}

// ---------------------------------------------------------------------------
// 2. URLs on stdin
// ---------------------------------------------------------------------------

#[test]
fn urls_from_stdin_combined_with_argument() {
    let server = TestServer::start();
    let bodies: Vec<_> = (0..3)
        .map(|i| content(20 + i, 10_000 + i as usize))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        server.file(&format!("/s/in{i}.bin"), b.clone());
    }
    server.file("/s/arg.bin", content(29, 777));
    let mut v = volley();
    let dir = out_dir(&v);
    let stdin = format!(
        "{}\n# comment\n\n{}\n{}\n",
        server.url("/s/in0.bin"),
        server.url("/s/in1.bin"),
        server.url("/s/in2.bin")
    );
    let r = run(v
        .args(["-d", &path_arg(&dir), "-i", "-", &server.url("/s/arg.bin")])
        .write_stdin(stdin));
    r.expect_code(0).expect_empty_stdout();
    for (i, b) in bodies.iter().enumerate() {
        assert_file_eq(dir.join(format!("in{i}.bin")), b);
    }
    assert_file_eq(dir.join("arg.bin"), &content(29, 777));
    assert_eq!(list_tree(&dir).len(), 4);
}

#[test]
fn urls_from_stdin_only() {
    let server = TestServer::start();
    server.file("/only.bin", content(31, 4321));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v
        .args(["-d", &path_arg(&dir), "-i", "-"])
        .write_stdin(format!("{}\n", server.url("/only.bin"))));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("only.bin"), &content(31, 4321));
}

// ---------------------------------------------------------------------------
// 3. -o - writes the body to stdout
// ---------------------------------------------------------------------------

#[test]
fn output_dash_writes_body_to_stdout() {
    let server = TestServer::start();
    let body = content(3, 1024 * KIB + 123);
    server.file("/big.bin", body.clone());
    let mut v = volley();
    let r = run(v.args(["-o", "-", &server.url("/big.bin")]));
    r.expect_code(0);
    assert_bytes_eq("stdout", &r.stdout, &body);
    // Nothing was written to the working directory (no file called "-").
    assert_eq!(list_tree(&v.sandbox.cwd()), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 4. List parse errors
// ---------------------------------------------------------------------------

#[test]
fn list_parse_errors_are_all_reported_and_nothing_is_fetched() {
    let server = TestServer::start();
    server.file("/good1.bin", content(4, 100));
    server.file("/good2.bin", content(5, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/good1.bin"),                              // 1
            "not-a-url".to_string(),                               // 2: malformed
            format!("ftp://127.0.0.1:{}/file.bin", server.port()), // 3: unsupported scheme
            server.url("/good2.bin"),                              // 4
            "   bogus=1".to_string(),                              // 5: unknown option key
        ],
    );
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(2).expect_empty_stdout();
    let list_s = path_arg(&list);
    for line in [2, 3, 5] {
        r.expect_stderr_contains(&format!("{list_s}:{line}:"));
    }
    for line in [1, 4] {
        assert!(
            !r.stderr.contains(&format!("{list_s}:{line}:")),
            "good line {line} reported as bad:\n{}",
            r.stderr
        );
    }
    assert_eq!(server.total_hits(), 0, "requests were made");
    assert_eq!(list_tree(&dir), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 5. One 404 among good URLs
// ---------------------------------------------------------------------------

#[test]
fn one_404_fails_only_that_download() {
    let server = TestServer::start();
    let bodies: Vec<_> = (0..3).map(|i| content(50 + i, 20_000)).collect();
    let mut urls = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        server.file(&format!("/ok{i}.bin"), b.clone());
        urls.push(server.url(&format!("/ok{i}.bin")));
    }
    let missing = server.url("/missing.bin");
    urls.insert(1, missing.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v
        .args(["-d", &path_arg(&dir), "--retries", "0"])
        .args(&urls));
    r.expect_code(1).expect_empty_stdout();
    for (i, b) in bodies.iter().enumerate() {
        assert_file_eq(dir.join(format!("ok{i}.bin")), b);
    }
    assert!(!dir.join("missing.bin").exists());
    r.expect_stderr_contains("3 succeeded")
        .expect_stderr_contains("0 skipped")
        .expect_stderr_contains("1 failed");
    assert!(
        !stderr_lines_with(&r.stderr, &[&missing, "404"]).is_empty(),
        "no stderr line names {missing} with 404:\n{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------
// 6. Content-Disposition names
// ---------------------------------------------------------------------------

#[test]
fn content_disposition_traversal_stays_inside_dir() {
    let server = TestServer::start();
    let body = content(6, 5000);
    server.route(
        "/download",
        Route::new(body.clone()).content_disposition("attachment; filename=\"../../evil.txt\""),
    );
    let mut v = volley();
    let dir = v.sandbox.root().join("a").join("b").join("out");
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/download")]));
    r.expect_code(0).expect_empty_stdout();
    let files = list_tree(&dir);
    assert_eq!(files.len(), 1, "expected one file in the dir: {files:?}");
    let name = &files[0];
    assert!(
        !name.contains('/') && !name.contains("..") && name.ends_with("evil.txt"),
        "unsafe or unexpected name {name:?}"
    );
    assert_file_eq(dir.join(name), &body);
    // Nothing anywhere else in the sandbox (parents of the dir, cwd, home).
    assert_eq!(
        list_tree(v.sandbox.root()),
        vec![format!("a/b/out/{name}")],
        "files written outside --dir"
    );
}

#[test]
fn content_disposition_rfc5987_name_is_decoded() {
    let server = TestServer::start();
    let body = content(7, 3000);
    server.route(
        "/get?id=7",
        Route::new(body.clone())
            .content_disposition("attachment; filename*=UTF-8''na%C3%AFve%20file.txt"),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/get?id=7")]));
    r.expect_code(0).expect_empty_stdout();
    assert_eq!(list_tree(&dir), vec!["naïve file.txt".to_string()]);
    assert_file_eq(dir.join("naïve file.txt"), &body);
}

#[test]
fn name_falls_back_to_decoded_path_segment_then_index_html() {
    let server = TestServer::start();
    server.file("/dir/my%20file.dat", content(8, 100));
    server.file("/", content(9, 50));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        &server.url("/dir/my%20file.dat"),
        &format!("{}/", server.base()),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("my file.dat"), &content(8, 100));
    assert_file_eq(dir.join("index.html"), &content(9, 50));
}

// ---------------------------------------------------------------------------
// 7. Duplicate names in one batch
// ---------------------------------------------------------------------------

#[test]
fn duplicate_names_get_numbered_in_input_order() {
    let server = TestServer::start();
    let a = content(10, 40_000);
    let b = content(11, 30_000);
    let c = content(12, 20_000);
    // /a/ is slow to start, so it finishes last: names must follow input
    // order, not completion order.
    server.route(
        "/a/file.bin",
        Route::new(a.clone()).fault(Fault::DelayHeaders(Duration::from_millis(400))),
    );
    server.file("/b/file.bin", b.clone());
    server.file("/c/file.bin", c.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-j",
        "3",
        "-d",
        &path_arg(&dir),
        &server.url("/a/file.bin"),
        &server.url("/b/file.bin"),
        &server.url("/c/file.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("file.bin"), &a);
    assert_file_eq(dir.join("file.1.bin"), &b);
    assert_file_eq(dir.join("file.2.bin"), &c);
    assert_eq!(list_tree(&dir).len(), 3);
}

// ---------------------------------------------------------------------------
// 8. --on-exists
// ---------------------------------------------------------------------------

const OLD: &[u8] = b"old contents\n";

/// Server with /x/file.bin, and a volley whose out dir already holds
/// file.bin = OLD.
fn on_exists_setup() -> (TestServer, Volley, PathBuf, Vec<u8>) {
    let server = TestServer::start();
    let new = content(13, 12_345);
    server.file("/x/file.bin", new.clone());
    let v = volley();
    let dir = out_dir(&v);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file.bin"), OLD).unwrap();
    (server, v, dir, new)
}

#[test]
fn on_exists_skip_is_default_and_makes_no_request() {
    let (server, mut v, dir, _) = on_exists_setup();
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/x/file.bin")]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("file.bin"), OLD);
    assert_eq!(server.total_hits(), 0, "skip must not contact the server");
    assert_eq!(list_tree(&dir), vec!["file.bin".to_string()]);
    r.expect_stderr_contains("0 succeeded")
        .expect_stderr_contains("1 skipped");

    // Explicit --on-exists skip behaves the same.
    let (server, mut v, dir, _) = on_exists_setup();
    let r = run(v.args([
        "--on-exists",
        "skip",
        "-d",
        &path_arg(&dir),
        &server.url("/x/file.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("file.bin"), OLD);
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn on_exists_overwrite_replaces() {
    let (server, mut v, dir, new) = on_exists_setup();
    let r = run(v.args([
        "--on-exists",
        "overwrite",
        "-d",
        &path_arg(&dir),
        &server.url("/x/file.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("file.bin"), &new);
    assert_eq!(list_tree(&dir), vec!["file.bin".to_string()]);
}

#[test]
fn on_exists_rename_keeps_old_and_numbers_new() {
    let (server, mut v, dir, new) = on_exists_setup();
    let r = run(v.args([
        "--on-exists",
        "rename",
        "-d",
        &path_arg(&dir),
        &server.url("/x/file.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("file.bin"), OLD);
    assert_file_eq(dir.join("file.1.bin"), &new);
    assert_eq!(list_tree(&dir).len(), 2);
}

#[test]
fn on_exists_fail_fails_that_download() {
    let (server, mut v, dir, _) = on_exists_setup();
    let other = content(14, 999);
    server.file("/y/other.bin", other.clone());
    let r = run(v.args([
        "--on-exists",
        "fail",
        "-d",
        &path_arg(&dir),
        &server.url("/x/file.bin"),
        &server.url("/y/other.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert_file_eq(dir.join("file.bin"), OLD);
    assert_file_eq(dir.join("other.bin"), &other);
    assert!(!dir.join("file.1.bin").exists());
    r.expect_stderr_contains("1 succeeded")
        .expect_stderr_contains("1 failed");
}

// ---------------------------------------------------------------------------
// 9. Redirects
// ---------------------------------------------------------------------------

#[test]
fn redirect_loop_fails_only_that_download() {
    let server = TestServer::start();
    server.redirect("/loop/a", 302, &server.url("/loop/b"));
    server.redirect("/loop/b", 302, &server.url("/loop/a"));
    let good = content(15, 8000);
    server.file("/good.bin", good.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let looping = server.url("/loop/a");
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        "--retries",
        "0",
        &looping,
        &server.url("/good.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert_file_eq(dir.join("good.bin"), &good);
    assert_eq!(list_tree(&dir), vec!["good.bin".to_string()]);
    let lower = r.stderr.to_lowercase();
    assert!(
        !stderr_lines_with(&lower, &[&looping.to_lowercase(), "redirect"]).is_empty(),
        "no stderr line names {looping} with 'redirect':\n{}",
        r.stderr
    );
    // It stopped: bounded by the default --max-redirects (10) plus retries.
    assert!(server.hits("/loop/a") + server.hits("/loop/b") <= 12);
}

#[test]
fn redirect_chain_is_followed_and_named_after_final_url_with_trust_server_names() {
    let server = TestServer::start();
    let body = content(16, 33_333);
    server.redirect("/r/start", 302, &server.url("/r/mid"));
    server.redirect("/r/mid", 302, "/final/data.bin"); // relative Location
    server.file("/final/data.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--trust-server-names",
        "-d",
        &path_arg(&dir),
        &server.url("/r/start"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_eq!(list_tree(&dir), vec!["data.bin".to_string()]);
    assert_file_eq(dir.join("data.bin"), &body);
    // By default the URL given names it (issue 13: a redirect does not
    // choose the name).
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/r/start")]));
    r.expect_code(0).expect_empty_stdout();
    assert_eq!(list_tree(&dir), vec!["start".to_string()]);
    assert_file_eq(dir.join("start"), &body);
}

#[test]
fn max_redirects_is_enforced() {
    let server = TestServer::start();
    server.redirect("/r/start", 301, &server.url("/r/mid"));
    server.redirect("/r/mid", 301, &server.url("/final/data.bin"));
    server.file("/final/data.bin", content(17, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        "--retries",
        "0",
        "--max-redirects",
        "1",
        &server.url("/r/start"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert!(!dir.join("data.bin").exists());
    assert!(r.stderr.to_lowercase().contains("redirect"), "{}", r.stderr);
    assert_eq!(server.hits("/final/data.bin"), 0);
}

// ---------------------------------------------------------------------------
// 10. --json
// ---------------------------------------------------------------------------

fn events<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

#[test]
fn json_events_and_summary() {
    let server = TestServer::start();
    let sizes = [0usize, 1000, 70_000, 200_000];
    let mut urls = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        server.file(&format!("/j/f{i}.bin"), content(60 + i as u64, n));
        urls.push(server.url(&format!("/j/f{i}.bin")));
    }
    let missing = server.url("/j/missing.bin");
    let mut all = urls.clone();
    all.push(missing.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v
        .args(["--json", "--retries", "0", "-d", &path_arg(&dir)])
        .args(&all));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);
    assert!(!evs.is_empty(), "no JSON on stdout");
    for e in &evs {
        assert!(e.is_object(), "not an object: {e}");
        assert!(e["event"].is_string(), "no event field: {e}");
        assert!(!e["ts"].is_null(), "no ts: {e}");
    }
    for (i, url) in urls.iter().enumerate() {
        let starts: Vec<_> = events(&evs, "start")
            .into_iter()
            .filter(|e| e["url"] == url.as_str())
            .collect();
        let dones: Vec<_> = events(&evs, "done")
            .into_iter()
            .filter(|e| e["url"] == url.as_str())
            .collect();
        assert_eq!(starts.len(), 1, "start events for {url}: {starts:?}");
        assert_eq!(dones.len(), 1, "done events for {url}: {dones:?}");
        let done = dones[0];
        assert_eq!(done["bytes"].as_u64(), Some(sizes[i] as u64), "{done}");
        let path = done["path"].as_str().expect("done.path");
        assert!(path.ends_with(&format!("f{i}.bin")), "{done}");
        assert_eq!(starts[0]["id"], done["id"], "start/done ids differ");
        let start_pos = evs.iter().position(|e| std::ptr::eq(e, starts[0]));
        let done_pos = evs.iter().position(|e| std::ptr::eq(e, done));
        assert!(start_pos < done_pos, "done before start for {url}");
        assert_file_eq(
            dir.join(format!("f{i}.bin")),
            &content(60 + i as u64, sizes[i]),
        );
    }
    let failed = events(&evs, "failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["url"], missing.as_str());
    assert!(
        failed[0]["reason"].as_str().unwrap_or("").contains("404"),
        "{}",
        failed[0]
    );
    let summaries = events(&evs, "summary");
    assert_eq!(summaries.len(), 1);
    let s = summaries[0];
    assert!(std::ptr::eq(s, evs.last().unwrap()), "summary is not last");
    assert_eq!(s["succeeded"].as_u64(), Some(4), "{s}");
    assert_eq!(s["skipped"].as_u64(), Some(0), "{s}");
    assert_eq!(s["failed"].as_u64(), Some(1), "{s}");
    assert_eq!(
        s["bytes"].as_u64(),
        Some(sizes.iter().sum::<usize>() as u64),
        "{s}"
    );
    assert!(s["elapsed"].is_f64(), "elapsed not a float: {s}");
    assert_eq!(s["interrupted"], Value::Bool(false), "{s}");
}

#[test]
fn json_reports_skipped() {
    let server = TestServer::start();
    server.file("/k/have.bin", content(70, 10));
    let mut v = volley();
    let dir = out_dir(&v);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("have.bin"), OLD).unwrap();
    let r = run(v.args(["--json", "-d", &path_arg(&dir), &server.url("/k/have.bin")]));
    r.expect_code(0);
    let evs = parse_json_lines(&r.stdout);
    let skipped = events(&evs, "skipped");
    assert_eq!(skipped.len(), 1, "{evs:?}");
    assert_eq!(skipped[0]["url"], server.url("/k/have.bin").as_str());
    let s = events(&evs, "summary");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["skipped"].as_u64(), Some(1));
    assert_eq!(s[0]["succeeded"].as_u64(), Some(0));
    assert_eq!(s[0]["failed"].as_u64(), Some(0));
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn json_retry_events() {
    let server = TestServer::start();
    let body = content(71, 5000);
    server.route(
        "/flaky.bin",
        Route::new(body.clone()).faults([Fault::Status(503), Fault::Status(503)]),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--json",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/flaky.bin"),
    ]));
    r.expect_code(0);
    let evs = parse_json_lines(&r.stdout);
    let retries = events(&evs, "retry");
    assert_eq!(retries.len(), 2, "{evs:?}");
    for e in &retries {
        assert!(e["attempt"].is_u64(), "{e}");
        assert!(e["delay_secs"].is_number(), "{e}");
        assert!(e["reason"].is_string(), "{e}");
    }
    let s = events(&evs, "summary");
    assert_eq!(s[0]["succeeded"].as_u64(), Some(1));
    assert_file_eq(dir.join("flaky.bin"), &body);
}

// ---------------------------------------------------------------------------
// 11. Config file
// ---------------------------------------------------------------------------

/// Four slow-ish files so concurrency can be observed.
fn throttled_files(server: &TestServer, prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let body = content(80 + i as u64, 48 * KIB);
            server.route(
                &format!("/{prefix}/t{i}.bin"),
                Route::new(body.clone()).throttle(16 * KIB, Duration::from_millis(30)),
            );
            (server.url(&format!("/{prefix}/t{i}.bin")), body)
        })
        .collect()
}

#[test]
fn config_file_is_used() {
    let server = TestServer::start();
    let files = throttled_files(&server, "c", 4);
    let mut v = volley();
    let dir = out_dir(&v);
    let cfg = v.sandbox.root().join("volley.toml");
    std::fs::write(
        &cfg,
        "jobs = 2\nuser_agent = \"from-config\"\nheaders = [\"X-Conf: yes\"]\n",
    )
    .unwrap();
    let r = run(v
        .args(["--config", &path_arg(&cfg), "-d", &path_arg(&dir)])
        .args(files.iter().map(|(u, _)| u)));
    r.expect_code(0).expect_empty_stdout();
    for (i, (_, body)) in files.iter().enumerate() {
        assert_file_eq(dir.join(format!("t{i}.bin")), body);
    }
    let reqs = server.all_requests();
    assert!(!reqs.is_empty());
    for req in &reqs {
        assert_eq!(req.header("user-agent"), Some("from-config"), "{req:?}");
        assert_eq!(req.header("x-conf"), Some("yes"), "{req:?}");
    }
    assert!(
        server.max_in_flight() <= 2,
        "jobs = 2 but {} requests at once",
        server.max_in_flight()
    );
}

#[test]
fn flag_overrides_config() {
    let server = TestServer::start();
    server.file("/u.bin", content(90, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let cfg = v.sandbox.root().join("volley.toml");
    std::fs::write(&cfg, "jobs = 2\nuser_agent = \"from-config\"\n").unwrap();
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-U",
        "from-flag",
        "-d",
        &path_arg(&dir),
        &server.url("/u.bin"),
    ]));
    r.expect_code(0);
    let reqs = server.requests("/u.bin");
    assert!(!reqs.is_empty());
    for req in &reqs {
        assert_eq!(req.header("user-agent"), Some("from-flag"));
    }
}

#[test]
fn default_config_path_is_read() {
    let server = TestServer::start();
    server.file("/d.bin", content(91, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let cfg_dir = v.sandbox.config_home().join("volley");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.toml"),
        "user_agent = \"from-default-config\"\n",
    )
    .unwrap();
    let r = run(v.args(["-d", &path_arg(&dir), &server.url("/d.bin")]));
    r.expect_code(0);
    for req in server.requests("/d.bin") {
        assert_eq!(req.header("user-agent"), Some("from-default-config"));
    }
    assert_file_eq(dir.join("d.bin"), &content(91, 100));
}

#[test]
fn config_unknown_key_is_an_error() {
    let server = TestServer::start();
    server.file("/z.bin", content(92, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let cfg = v.sandbox.root().join("bad.toml");
    std::fs::write(&cfg, "jbs = 3\n").unwrap();
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/z.bin"),
    ]));
    r.expect_code(2)
        .expect_empty_stdout()
        .expect_stderr_contains("jbs")
        .expect_stderr_contains(&path_arg(&cfg));
    assert_eq!(server.total_hits(), 0);
    assert!(!dir.join("z.bin").exists());
}

#[test]
fn config_wrong_type_is_an_error() {
    let server = TestServer::start();
    server.file("/z.bin", content(93, 100));
    let mut v = volley();
    let dir = out_dir(&v);
    let cfg = v.sandbox.root().join("bad.toml");
    std::fs::write(&cfg, "jobs = \"many\"\n").unwrap();
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/z.bin"),
    ]));
    r.expect_code(2)
        .expect_empty_stdout()
        .expect_stderr_contains("jobs");
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn jobs_and_max_per_host_limit_concurrency() {
    let server = TestServer::start();
    let files = throttled_files(&server, "m", 4);
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v
        .args(["-j", "4", "--max-per-host", "1", "-d", &path_arg(&dir)])
        .args(files.iter().map(|(u, _)| u)));
    r.expect_code(0);
    for (i, (_, body)) in files.iter().enumerate() {
        assert_file_eq(dir.join(format!("t{i}.bin")), body);
    }
    assert_eq!(
        server.max_in_flight(),
        1,
        "--max-per-host 1 but {} requests at once",
        server.max_in_flight()
    );
}

// ---------------------------------------------------------------------------
// 12. Interrupted downloads leave NAME.part, never NAME
// ---------------------------------------------------------------------------

#[test]
fn reset_mid_body_keeps_part_file() {
    let server = TestServer::start();
    let body = content(100, 256 * KIB);
    server.route(
        "/cut.bin",
        Route::new(body.clone()).always(Fault::ResetAfter(128 * KIB)),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--retries",
        "0",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/cut.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert!(
        !dir.join("cut.bin").exists(),
        "final file exists after failure"
    );
    let part = dir.join("cut.bin.part");
    assert!(part.exists(), "no .part file: {:?}", list_tree(&dir));
    let got = std::fs::read(&part).unwrap();
    assert!(got.len() <= 128 * KIB, ".part has {} bytes", got.len());
    assert_bytes_eq(".part prefix", &got, &body[..got.len()]);
    r.expect_stderr_contains("1 failed");
    assert_eq!(server.hits_with_method("/cut.bin", "GET"), 1);
}

#[test]
fn sigint_mid_body_exits_130_and_keeps_part_file() {
    let server = TestServer::start();
    const HALF: usize = 256 * KIB;
    let body = content(101, 2 * HALF);
    server.route(
        "/stall.bin",
        Route::new(body.clone()).always(Fault::StallAfter(HALF, Duration::from_secs(60))),
    );
    let mut p = volley_process();
    let dir = p.sandbox.root().join("out");
    let errlog = p.sandbox.root().join("stderr.txt");
    let url = server.url("/stall.bin");
    p.args(["--timeout", "30", "-d", &path_arg(&dir), &url])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap());
    let mut child = p.spawn().expect("spawn volley");
    let part = dir.join("stall.bin.part");
    // Wait until the first half is on the wire and the download is stalled.
    // volley may still hold those bytes in memory (it need not write them to
    // the .part file before the stall ends), so "the .part has bytes" is
    // only waited for briefly, and checked after the interrupt instead.
    let sent = wait_until(Duration::from_secs(10), || {
        server.body_bytes_sent("/stall.bin") >= HALF as u64
    });
    if !sent {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "server never sent the first half (sent {}); stderr:\n{}",
            server.body_bytes_sent("/stall.bin"),
            std::fs::read_to_string(&errlog).unwrap_or_default()
        );
    }
    wait_until(Duration::from_millis(500), || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
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
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "volley did not exit within 10 s of SIGINT; stderr:\n{}",
            std::fs::read_to_string(&errlog).unwrap_or_default()
        );
    };
    let stderr = std::fs::read_to_string(&errlog).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(130),
        "status {status:?}; stderr:\n{stderr}"
    );
    // The summary counts the bytes fetched before the interrupt.
    assert!(
        stderr.contains("256 KiB in "),
        "summary should count the 256 KiB transferred; stderr:\n{stderr}"
    );
    assert!(
        part.exists(),
        "no .part after SIGINT: {:?}",
        list_tree(&dir)
    );
    assert!(
        !dir.join("stall.bin").exists(),
        "final file exists after SIGINT"
    );
    // What had arrived is kept, and it is a true prefix of the body.
    let got = std::fs::read(&part).unwrap();
    assert!(
        !got.is_empty() && got.len() <= HALF,
        ".part holds {} bytes after SIGINT (server sent {HALF})",
        got.len()
    );
    assert_bytes_eq(".part prefix", &got, &body[..got.len()]);
}

// ---------------------------------------------------------------------------
// 13. Retries
// ---------------------------------------------------------------------------

#[test]
fn retries_after_503_then_succeeds() {
    let server = TestServer::start();
    let body = content(110, 50_000);
    server.route(
        "/retry.bin",
        Route::new(body.clone()).faults([Fault::Status(503), Fault::Status(503)]),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--json",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/retry.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("retry.bin"), &body);
    assert_eq!(server.hits_with_method("/retry.bin", "GET"), 3);
    assert_eq!(
        server.hits("/retry.bin"),
        3,
        "{:?}",
        server.requests("/retry.bin")
    );
    // --retry-wait is honoured: each wait is at most 0.01 s x 2^(n-1) (what
    // volley said it waits, not a clock a busy machine could stretch).
    let retries: Vec<f64> = parse_json_lines(&r.stdout)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["delay_secs"].as_f64().expect("delay_secs"))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries[0] <= 0.01 && retries[1] <= 0.02, "{retries:?}");
}

#[test]
fn retries_exhausted_fails() {
    let server = TestServer::start();
    server.route(
        "/down.bin",
        Route::new(content(111, 100)).always(Fault::Status(503)),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let url = server.url("/down.bin");
    let r = run(v.args([
        "--retries",
        "2",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &url,
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert_eq!(server.hits_with_method("/down.bin", "GET"), 3);
    assert!(!dir.join("down.bin").exists());
    assert!(
        !stderr_lines_with(&r.stderr, &[&url, "503"]).is_empty(),
        "no stderr line names {url} with 503:\n{}",
        r.stderr
    );
}

#[test]
fn retries_after_reset_and_short_body() {
    let server = TestServer::start();
    let body = content(112, 200 * KIB);
    server.route(
        "/cut.bin",
        Route::new(body.clone())
            .etag("\"e1\"")
            .faults([Fault::ResetAfter(50 * KIB), Fault::ShortBody(120 * KIB)]),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/cut.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("cut.bin"), &body);
    assert_no_part_files(&dir);
    assert_eq!(server.hits_with_method("/cut.bin", "GET"), 3);
}

#[test]
fn idle_timeout_triggers_retry() {
    let server = TestServer::start();
    let body = content(113, 100 * KIB);
    server.route(
        "/idle.bin",
        Route::new(body.clone()).fault(Fault::StallAfter(10 * KIB, Duration::from_secs(20))),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--json",
        "--timeout",
        "0.5",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/idle.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("idle.bin"), &body);
    assert!(server.hits_with_method("/idle.bin", "GET") >= 2);
    // The stalled try was abandoned by the idle timeout (not waited out: the
    // stall is 20 s), and said so.
    let reasons: Vec<String> = parse_json_lines(&r.stdout)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("idle timeout")),
        "{reasons:?}"
    );
    let first = &server.requests("/idle.bin")[0];
    assert!(
        first.body_bytes_sent() < body.len() as u64,
        "the stalled answer was read to its end"
    );
}

// ---------------------------------------------------------------------------
// 14. Headers and per-URL list options
// ---------------------------------------------------------------------------

#[test]
fn headers_and_list_options() {
    let server = TestServer::start();
    let one = content(120, 1000);
    let two = content(121, 2000);
    let three = content(122, 3000);
    server.file("/h/one.bin", one.clone());
    server.file("/h/two.bin", two.clone());
    server.file("/h/three.bin", three.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/h/one.bin"),
            "  header=X-Per: 1".to_string(),
            server.url("/h/two.bin"),
            server.url("/h/three.bin"),
            "  out=renamed.bin".to_string(),
            "\tdir=sub".to_string(),
        ],
    );
    let r = run(v.args([
        "-H",
        "X-Token: abc",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
    ]));
    r.expect_code(0).expect_empty_stdout();
    for req in server.all_requests() {
        assert_eq!(req.header("x-token"), Some("abc"), "{req:?}");
    }
    let reqs_one = server.requests("/h/one.bin");
    assert!(!reqs_one.is_empty());
    for req in &reqs_one {
        assert_eq!(req.header("x-per"), Some("1"), "{req:?}");
    }
    for path in ["/h/two.bin", "/h/three.bin"] {
        let reqs = server.requests(path);
        assert!(!reqs.is_empty());
        for req in &reqs {
            assert!(!req.has_header("x-per"), "x-per leaked to {path}: {req:?}");
        }
    }
    assert_file_eq(dir.join("one.bin"), &one);
    assert_file_eq(dir.join("two.bin"), &two);
    assert_file_eq(dir.join("sub").join("renamed.bin"), &three);
    assert_eq!(list_tree(&dir).len(), 3, "{:?}", list_tree(&dir));
}

#[test]
fn user_agent_flag_and_output_name() {
    let server = TestServer::start();
    let body = content(123, 4096);
    server.file("/ua.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-U",
        "volley-test/1",
        "-o",
        "named.out",
        "-d",
        &path_arg(&dir),
        &server.url("/ua.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_eq!(list_tree(&dir), vec!["named.out".to_string()]);
    assert_file_eq(dir.join("named.out"), &body);
    for req in server.requests("/ua.bin") {
        assert_eq!(req.header("user-agent"), Some("volley-test/1"));
    }
}

// ---------------------------------------------------------------------------
// 15. Usage errors
// ---------------------------------------------------------------------------

#[test]
fn unknown_flag_is_usage_error() {
    let server = TestServer::start();
    server.file("/a.bin", content(130, 10));
    let mut v = volley();
    let r = run(v.args(["--definitely-not-a-flag", &server.url("/a.bin")]));
    r.expect_code(2).expect_empty_stdout();
    assert_eq!(server.total_hits(), 0);
}

#[test]
fn output_with_two_urls_is_usage_error() {
    let server = TestServer::start();
    server.file("/a.bin", content(131, 10));
    server.file("/b.bin", content(132, 10));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "-o",
        "x.bin",
        "-d",
        &path_arg(&dir),
        &server.url("/a.bin"),
        &server.url("/b.bin"),
    ]));
    r.expect_code(2).expect_empty_stdout();
    assert_eq!(server.total_hits(), 0);
    assert_eq!(list_tree(&dir), Vec::<String>::new());
}

#[test]
fn bad_on_exists_value_is_usage_error() {
    let server = TestServer::start();
    server.file("/a.bin", content(133, 10));
    let mut v = volley();
    let r = run(v.args(["--on-exists", "explode", &server.url("/a.bin")]));
    r.expect_code(2).expect_empty_stdout();
    assert_eq!(server.total_hits(), 0);
}
