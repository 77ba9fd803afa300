//! Mirrors: several URLs on one line of a `-i` list are sources of one file
//! (aria2c's format). A failed source is left for the others before a retry
//! is spent on it; one whose error another try would not fix (404) is
//! abandoned for good; a split download spreads its connections over the
//! live sources, sends `If-Range` only to the server whose validators it
//! holds, and drops a mirror whose size disagrees. Checksums, `--save-failed`,
//! naming (`out=`, first URL) and the JSON `retry` events of a switch are
//! covered too.
//!
//! Every body is pseudo-random (`content(seed, len)`), and a mirror that must
//! not contribute serves other bytes, so a piece from the wrong source is
//! caught by the byte-for-byte comparison. Every test owns its servers (two
//! servers: two hosts) and sandbox, so they run in parallel.

mod common;

use std::path::PathBuf;
use std::time::Duration;

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

/// One list line with `urls` as mirrors, tab-separated.
fn mirrors(urls: &[&str]) -> String {
    urls.join("\t")
}

fn events<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// SHA-256 of `bytes` as lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One line per request: method, range, If-Range, fault, body bytes sent.
fn describe(reqs: &[RecordedRequest]) -> String {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "#{i} {} {} range {:?} if-range {:?} fault {:?} sent {}",
                r.method,
                r.target,
                r.header("range"),
                r.header("if-range"),
                r.fault,
                r.body_bytes_sent(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests on both servers, for failure messages.
fn both(a: &TestServer, b: &TestServer) -> String {
    format!(
        "--- server A ---\n{}\n--- server B ---\n{}",
        describe(&a.all_requests()),
        describe(&b.all_requests())
    )
}

/// Run volley on a list file (written from `lines`) with `args`, saving into
/// the sandbox's `out` dir. Returns the run and the output dir.
fn run_list(lines: &[String], args: &[&str]) -> (Run, PathBuf, Volley) {
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(&list, lines);
    let mut all: Vec<String> = vec![
        "-d".into(),
        path_arg(&dir),
        "-i".into(),
        path_arg(&list),
        "--retry-wait".into(),
        "0".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let r = run(v.args(&all));
    (r, dir, v)
}

// ---------------------------------------------------------------------------
// Fallback between sources
// ---------------------------------------------------------------------------

#[test]
fn first_mirror_404_file_comes_from_second_without_a_retry() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(1, 300 * KIB);
    a.route(
        "/f/data.bin",
        Route::new(content(99, 300 * KIB)).always(Fault::Status(404)),
    );
    b.file("/f/data.bin", body.clone());
    let (ua, ub) = (a.url("/f/data.bin"), b.url("/f/data.bin"));
    let (r, dir, _v) = run_list(&[mirrors(&[&ua, &ub])], &["--retries", "0", "--json"]);
    r.expect_code(0);
    assert_file_eq(dir.join("data.bin"), &body);
    assert_no_part_files(&dir);
    assert_eq!(list_tree(&dir), vec!["data.bin".to_string()]);
    assert_eq!(a.hits("/f/data.bin"), 1, "{}", both(&a, &b));
    assert_eq!(b.hits("/f/data.bin"), 1, "{}", both(&a, &b));

    // The switch is explained: from the first URL, trying the second.
    let evs = parse_json_lines(&r.stdout);
    let retries = events(&evs, "retry");
    assert!(
        retries.iter().any(|e| {
            let reason = e["reason"].as_str().unwrap_or_default();
            reason.contains(&format!("from {ua}")) && reason.contains(&format!("trying {ub}"))
        }),
        "no retry event explains the switch: {retries:?}\n{}",
        r.stdout_str()
    );
    let done = events(&evs, "done");
    assert_eq!(done.len(), 1, "{}", r.stdout_str());
    assert_eq!(done[0]["bytes"].as_u64(), Some(body.len() as u64));
    let failed = events(&evs, "failed");
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn first_mirror_resets_or_closes_second_is_tried_at_once() {
    let a = TestServer::start();
    let b = TestServer::start();
    let reset_body = content(2, 400 * KIB);
    let close_body = content(3, 200 * KIB);
    // Server A: the same bytes as B, but every answer breaks. Different
    // ETags: validators of one server mean nothing to another.
    a.route(
        "/r/reset.bin",
        Route::new(reset_body.clone())
            .etag("\"a-reset\"")
            .always(Fault::ResetAfter(100 * KIB)),
    );
    a.route(
        "/r/close.bin",
        Route::new(close_body.clone())
            .etag("\"a-close\"")
            .always(Fault::CloseWithoutResponse),
    );
    b.route(
        "/r/reset.bin",
        Route::new(reset_body.clone()).etag("\"b-reset\""),
    );
    b.route(
        "/r/close.bin",
        Route::new(close_body.clone()).etag("\"b-close\""),
    );
    let lines = [
        mirrors(&[&a.url("/r/reset.bin"), &b.url("/r/reset.bin")]),
        mirrors(&[&a.url("/r/close.bin"), &b.url("/r/close.bin")]),
    ];
    let (r, dir, _v) = run_list(&lines, &["--retries", "0"]);
    r.expect_code(0);
    assert_file_eq(dir.join("reset.bin"), &reset_body);
    assert_file_eq(dir.join("close.bin"), &close_body);
    assert_no_part_files(&dir);
    assert!(b.hits("/r/reset.bin") >= 1, "{}", both(&a, &b));
    assert!(b.hits("/r/close.bin") >= 1, "{}", both(&a, &b));
    // A's ETag is never offered to B as If-Range (a resume from the bytes A
    // sent asks B for the rest without A's validator).
    for req in b.all_requests() {
        assert!(
            req.header("if-range").is_none(),
            "B got A's validator: {}",
            both(&a, &b)
        );
    }
    // No restart: B never sent more than the file.
    assert!(
        b.body_bytes_sent("/r/reset.bin") <= reset_body.len() as u64,
        "{}",
        both(&a, &b)
    );
}

#[test]
fn all_mirrors_404_fails_with_exit_1_and_each_is_asked_once() {
    let a = TestServer::start();
    let b = TestServer::start();
    a.route(
        "/n/gone.bin",
        Route::new(content(4, 1000)).always(Fault::Status(404)),
    );
    b.route(
        "/elsewhere/gone.bin",
        Route::new(content(4, 1000)).always(Fault::Status(404)),
    );
    let ua = a.url("/n/gone.bin");
    let ub = b.url("/elsewhere/gone.bin");
    // Retries are left, but a 404 is not worth another try on either.
    let (r, dir, _v) = run_list(&[mirrors(&[&ua, &ub])], &["--retries", "3"]);
    r.expect_code(1);
    r.expect_stderr_contains(&ua);
    r.expect_stderr_contains("404");
    assert!(!dir.join("gone.bin").exists(), "{:?}", list_tree(&dir));
    assert_no_part_files(&dir);
    assert_eq!(a.hits("/n/gone.bin"), 1, "{}", both(&a, &b));
    assert_eq!(b.hits("/elsewhere/gone.bin"), 1, "{}", both(&a, &b));
}

#[test]
fn transient_failure_on_every_mirror_spends_one_retry() {
    // Both mirrors answer 503 once. With one retry, the download succeeds
    // after both failed; with none, it fails.
    for (retries, code) in [("1", 0), ("0", 1)] {
        let a = TestServer::start();
        let b = TestServer::start();
        let body = content(5, 250 * KIB);
        a.route(
            "/t/busy.bin",
            Route::new(body.clone()).fault(Fault::Status(503)),
        );
        b.route(
            "/t/busy.bin",
            Route::new(body.clone()).fault(Fault::Status(503)),
        );
        let (r, dir, _v) = run_list(
            &[mirrors(&[&a.url("/t/busy.bin"), &b.url("/t/busy.bin")])],
            &["--retries", retries, "--json"],
        );
        r.expect_code(code);
        let evs = parse_json_lines(&r.stdout);
        let note = format!("--retries {retries}\n{}\n{}", both(&a, &b), r.stderr);
        // Both were tried before the verdict.
        assert_eq!(a.pending_faults("/t/busy.bin"), 0, "{note}");
        assert_eq!(b.pending_faults("/t/busy.bin"), 0, "{note}");
        if code == 0 {
            assert_file_eq(dir.join("busy.bin"), &body);
            assert_no_part_files(&dir);
            assert_eq!(
                a.hits("/t/busy.bin") + b.hits("/t/busy.bin"),
                3,
                "two failures, one success: {note}"
            );
            // The switch is free; the retry after both failed is try 2.
            let attempts: Vec<u64> = events(&evs, "retry")
                .iter()
                .filter_map(|e| e["attempt"].as_u64())
                .collect();
            assert!(attempts.contains(&2), "{attempts:?}\n{note}");
            assert!(
                attempts.iter().all(|&n| n <= 2),
                "more than one retry spent: {attempts:?}\n{note}"
            );
        } else {
            assert!(!dir.join("busy.bin").exists(), "{:?}", list_tree(&dir));
            assert_eq!(a.hits("/t/busy.bin"), 1, "{note}");
            assert_eq!(b.hits("/t/busy.bin"), 1, "{note}");
            assert_eq!(events(&evs, "failed").len(), 1, "{}", r.stdout_str());
        }
    }
}

#[test]
fn a_404_source_is_abandoned_for_good() {
    // A: 404 (no other try would help). B: 503 once, then fine. The retry
    // spent after both failed goes to B only; A is not asked again.
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(6, 120 * KIB);
    a.route(
        "/g/file.bin",
        Route::new(content(60, 120 * KIB)).always(Fault::Status(404)),
    );
    b.route(
        "/g/file.bin",
        Route::new(body.clone()).fault(Fault::Status(503)),
    );
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/g/file.bin"), &b.url("/g/file.bin")])],
        &["--retries", "2"],
    );
    r.expect_code(0);
    assert_file_eq(dir.join("file.bin"), &body);
    assert_eq!(a.hits("/g/file.bin"), 1, "{}", both(&a, &b));
    assert_eq!(b.hits("/g/file.bin"), 2, "{}", both(&a, &b));
}

#[test]
fn healthy_first_source_leaves_the_mirror_alone() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(7, 200 * KIB);
    a.file("/h/ok.bin", body.clone());
    b.file("/h/ok.bin", content(70, 200 * KIB));
    let (r, dir, _v) = run_list(&[mirrors(&[&a.url("/h/ok.bin"), &b.url("/h/ok.bin")])], &[]);
    r.expect_code(0);
    assert_file_eq(dir.join("ok.bin"), &body);
    assert_eq!(b.total_hits(), 0, "{}", both(&a, &b));
}

// ---------------------------------------------------------------------------
// Split downloads over mirrors
// ---------------------------------------------------------------------------

#[test]
fn split_download_spreads_connections_over_mirrors() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(8, 8 * MIB);
    // Same bytes, different ETags (each server's own validator). A modest
    // pace, so every connection has work when it connects.
    let pace = (64 * KIB, Duration::from_millis(4));
    a.route(
        "/s/big.bin",
        Route::new(body.clone())
            .etag("\"a-etag\"")
            .throttle(pace.0, pace.1),
    );
    b.route(
        "/s/big.bin",
        Route::new(body.clone())
            .etag("\"b-etag\"")
            .throttle(pace.0, pace.1),
    );
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/s/big.bin"), &b.url("/s/big.bin")])],
        &["-x", "4", "--min-split-size", "1M", "--json"],
    );
    let note = both(&a, &b);
    r.expect_code(0);
    assert_file_eq(dir.join("big.bin"), &body);
    assert_no_part_files(&dir);
    assert!(
        !state_path(&dir.join("big.bin")).exists(),
        "{:?}",
        list_tree(&dir)
    );

    let ra = a.requests("/s/big.bin");
    let rb = b.requests("/s/big.bin");
    // The first request goes to the first URL and reveals the size.
    assert_eq!(
        ra.first().and_then(|q| q.range()),
        Some((0, None)),
        "{note}"
    );
    // Both servers served ranges of the file.
    assert!(ra.len() >= 2, "A served only the first request:\n{note}");
    assert!(!rb.is_empty(), "B was never asked:\n{note}");
    for q in &rb {
        assert!(q.method.eq_ignore_ascii_case("GET"), "{note}");
        let Some((_, Some(_))) = q.range() else {
            panic!("B got a request without a closed range:\n{note}");
        };
        // B never sees A's validator.
        assert!(q.header("if-range").is_none(), "{note}");
    }
    for q in &ra[1..] {
        let Some((s, Some(_))) = q.range() else {
            panic!("A got a segment request without a closed range:\n{note}");
        };
        assert!(s > 0, "{note}");
        // A's segments carry A's own validator.
        assert_eq!(q.header("if-range"), Some("\"a-etag\""), "{note}");
    }
    // No restart: about one file's worth of body crossed the wire (the first,
    // open-ended answer may run a little past its piece).
    let sent = a.body_bytes_sent("/s/big.bin") + b.body_bytes_sent("/s/big.bin");
    assert!(
        sent >= body.len() as u64 && sent < 2 * body.len() as u64,
        "{sent} body bytes sent for a {} byte file:\n{note}",
        body.len()
    );
    let evs = parse_json_lines(&r.stdout);
    let retries = events(&evs, "retry");
    assert!(
        retries.is_empty(),
        "a healthy split download over mirrors retried: {retries:?}\n{note}"
    );
    let starts = events(&evs, "start");
    assert_eq!(starts.len(), 1, "restarted: {starts:?}");
}

#[test]
fn split_download_drops_a_mirror_with_another_size() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(9, 8 * MIB);
    let pace = (64 * KIB, Duration::from_millis(4));
    a.route(
        "/d/big.bin",
        Route::new(body.clone())
            .etag("\"a\"")
            .throttle(pace.0, pace.1),
    );
    // B: another file, a little larger: every range it is asked for exists
    // there, but its Content-Range total differs, and its bytes would spoil
    // the file.
    b.route(
        "/d/big.bin",
        Route::new(content(90, 8 * MIB + 64 * KIB))
            .etag("\"b\"")
            .throttle(pace.0, pace.1),
    );
    let ub = b.url("/d/big.bin");
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/d/big.bin"), &ub])],
        &["-x", "4", "--min-split-size", "1M", "--json"],
    );
    let note = format!("{}\n{}", both(&a, &b), r.stderr);
    r.expect_code(0);
    assert_file_eq(dir.join("big.bin"), &body);
    assert_no_part_files(&dir);
    assert!(
        !b.requests("/d/big.bin").is_empty(),
        "B never asked:\n{note}"
    );
    let evs = parse_json_lines(&r.stdout);
    let retries = events(&evs, "retry");
    assert!(
        retries.iter().any(|e| {
            let reason = e["reason"].as_str().unwrap_or_default();
            reason.contains("dropped") && reason.contains(&ub)
        }),
        "no retry event says B was dropped: {retries:?}\n{note}"
    );
    // Dropped for good: once the drop was reported, B gets no more requests
    // than the connections that were already on their way to it (at most
    // one per connection).
    assert!(b.hits("/d/big.bin") <= 4, "{note}");
    // A was never restarted: the file came once from A.
    assert!(
        a.body_bytes_sent("/d/big.bin") < 2 * body.len() as u64,
        "{note}"
    );
}

#[test]
fn split_download_drops_a_smaller_mirror() {
    // A smaller mirror cannot serve the ranges past its end (416, with its
    // size in `Content-Range: bytes */N`): it disagrees with the file's size
    // and is dropped like any other; the first server finishes the file.
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(10, 8 * MIB);
    let pace = (64 * KIB, Duration::from_millis(4));
    a.route(
        "/d/small.bin",
        Route::new(body.clone()).throttle(pace.0, pace.1),
    );
    b.route(
        "/d/small.bin",
        Route::new(content(100, 3 * MIB)).throttle(pace.0, pace.1),
    );
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/d/small.bin"), &b.url("/d/small.bin")])],
        &["-x", "4", "--min-split-size", "1M", "--json"],
    );
    let note = format!("{}\n{}", both(&a, &b), r.stderr);
    r.expect_code(0);
    let got = std::fs::read(dir.join("small.bin"))
        .unwrap_or_else(|e| panic!("no small.bin ({e}): {:?}\n{note}", list_tree(&dir)));
    if let Err(msg) = bytes_diff(&got, &body) {
        panic!("small.bin differs: {msg}\n{note}\n{}", r.stdout_str());
    }
    assert!(
        !b.requests("/d/small.bin").is_empty(),
        "B never asked:\n{note}"
    );
}

// ---------------------------------------------------------------------------
// Checksums, --save-failed, names
// ---------------------------------------------------------------------------

#[test]
fn checksum_is_verified_with_mirrors() {
    let body = content(11, 150 * KIB);
    let right = sha256_hex(&body);
    let wrong = sha256_hex(b"something else");
    for (digest, code) in [(&right, 0), (&wrong, 1)] {
        let a = TestServer::start();
        let b = TestServer::start();
        a.route(
            "/c/sum.bin",
            Route::new(body.clone()).always(Fault::Status(404)),
        );
        b.file("/c/sum.bin", body.clone());
        let (r, dir, _v) = run_list(
            &[
                mirrors(&[&a.url("/c/sum.bin"), &b.url("/c/sum.bin")]),
                format!("  checksum=sha-256={digest}"),
            ],
            &["--retries", "0", "--json"],
        );
        r.expect_code(code);
        let evs = parse_json_lines(&r.stdout);
        if code == 0 {
            assert_file_eq(dir.join("sum.bin"), &body);
            let done = events(&evs, "done");
            assert_eq!(done.len(), 1, "{}", r.stdout_str());
            let checksum = done[0]["checksum"].as_str().unwrap_or_default();
            assert!(
                checksum.to_lowercase().contains(&right),
                "done event checksum {checksum:?}"
            );
        } else {
            assert!(!dir.join("sum.bin").exists(), "{:?}", list_tree(&dir));
            assert_no_part_files(&dir);
            let failed = events(&evs, "failed");
            assert_eq!(failed.len(), 1, "{}", r.stdout_str());
            let reason = failed[0]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains(&wrong), "reason {reason:?}");
        }
    }
}

#[test]
fn checksum_of_a_split_download_over_mirrors() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(12, 4 * MIB);
    let pace = (64 * KIB, Duration::from_millis(2));
    a.route(
        "/c/split.bin",
        Route::new(body.clone())
            .etag("\"a\"")
            .throttle(pace.0, pace.1),
    );
    b.route(
        "/c/split.bin",
        Route::new(body.clone())
            .etag("\"b\"")
            .throttle(pace.0, pace.1),
    );
    let (r, dir, _v) = run_list(
        &[
            mirrors(&[&a.url("/c/split.bin"), &b.url("/c/split.bin")]),
            format!("  checksum=sha-256={}", sha256_hex(&body)),
        ],
        &["-x", "4", "--min-split-size", "1M"],
    );
    r.expect_code(0);
    assert_file_eq(dir.join("split.bin"), &body);
    assert!(b.hits("/c/split.bin") >= 1, "{}", both(&a, &b));
}

#[test]
fn save_failed_keeps_the_mirrors_on_the_url_line() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(13, 90 * KIB);
    a.route(
        "/sf/lost.bin",
        Route::new(body.clone()).always(Fault::Status(404)),
    );
    b.route(
        "/other/lost2.bin",
        Route::new(body.clone()).always(Fault::Status(404)),
    );
    let ua = a.url("/sf/lost.bin");
    let ub = b.url("/other/lost2.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    let saved = v.sandbox.root().join("failed.txt");
    // Space-separated in the input; tab-separated when written back.
    write_list(&list, &[format!("{ua} {ub}"), "  out=kept.bin".to_string()]);
    let r = run(v.args([
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
        "--retries",
        "0",
        "--save-failed",
        &path_arg(&saved),
    ]));
    r.expect_code(1);
    let text = std::fs::read_to_string(&saved)
        .unwrap_or_else(|e| panic!("--save-failed file not written: {e}\n{}", r.stderr));
    let url_lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(char::is_whitespace))
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        url_lines,
        vec![format!("{ua}\t{ub}").as_str()],
        "saved list:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.trim() == "out=kept.bin"),
        "saved list:\n{text}"
    );

    // Round trip: the mirror comes back; the saved list fetches from it.
    b.set_always("/other/lost2.bin", None);
    let mut v2 = volley();
    let r = run(v2.args([
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&saved),
        "--retries",
        "0",
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("kept.bin"), &body);
    assert_eq!(list_tree(&dir), vec!["kept.bin".to_string()]);
    assert_eq!(a.hits("/sf/lost.bin"), 2, "{}", both(&a, &b));
    assert_eq!(b.hits("/other/lost2.bin"), 2, "{}", both(&a, &b));
}

#[test]
fn file_is_named_from_out_or_the_first_url() {
    let a = TestServer::start();
    let b = TestServer::start();
    let one = content(14, 70 * KIB);
    let two = content(15, 80 * KIB);
    for path in ["/first/name1.bin", "/first/x.bin"] {
        a.route(
            path,
            Route::new(content(140, 10)).always(Fault::Status(404)),
        );
    }
    b.file("/other/name2.bin", one.clone());
    b.file("/other/y.bin", two.clone());
    let lines = [
        // Tab-separated; the file comes from B but is named after A's URL.
        mirrors(&[&a.url("/first/name1.bin"), &b.url("/other/name2.bin")]),
        // Space-separated, with out=.
        format!("{}   {}", a.url("/first/x.bin"), b.url("/other/y.bin")),
        "  out=given.bin".to_string(),
    ];
    let (r, dir, _v) = run_list(&lines, &["--retries", "0", "--json"]);
    r.expect_code(0);
    assert_file_eq(dir.join("name1.bin"), &one);
    assert_file_eq(dir.join("given.bin"), &two);
    assert_eq!(
        list_tree(&dir),
        vec!["given.bin".to_string(), "name1.bin".to_string()]
    );
    // Two downloads (two lines), not four.
    let evs = parse_json_lines(&r.stdout);
    assert_eq!(events(&evs, "done").len(), 2, "{}", r.stdout_str());
    assert_eq!(
        events(&evs, "summary")[0]["succeeded"].as_u64(),
        Some(2),
        "{}",
        r.stdout_str()
    );
}

#[test]
fn split_download_survives_a_mirror_that_404s() {
    // B does not have the file at all. The connections sent to it must fall
    // back to A; A is healthy and must not be abandoned for B's 404.
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(16, 8 * MIB);
    let pace = (64 * KIB, Duration::from_millis(4));
    a.route(
        "/d/half.bin",
        Route::new(body.clone())
            .etag("\"a\"")
            .throttle(pace.0, pace.1),
    );
    b.route(
        "/d/half.bin",
        Route::new(content(160, 8 * MIB)).always(Fault::Status(404)),
    );
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/d/half.bin"), &b.url("/d/half.bin")])],
        &["-x", "4", "--min-split-size", "1M", "--json"],
    );
    let note = format!("{}\n{}\n{}", both(&a, &b), r.stderr, retry_lines(&r));
    if r.code != Some(0) {
        panic!("exit {:?}, expected 0\n{note}", r.code);
    }
    let got = std::fs::read(dir.join("half.bin"))
        .unwrap_or_else(|e| panic!("no half.bin ({e}): {:?}\n{note}", list_tree(&dir)));
    if let Err(msg) = bytes_diff(&got, &body) {
        panic!("half.bin differs: {msg}\n{note}");
    }
}

/// The `retry` and `failed` events of a `--json` run, one per line.
fn retry_lines(r: &Run) -> String {
    r.stdout_str()
        .lines()
        .filter(|l| l.contains("\"retry\"") || l.contains("\"failed\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dropping_a_mirror_spends_no_retry() {
    // As above, with `--retries 0`, and A's answers paced (its first answer
    // slowly, its first segments late; B's a little late, after A's first
    // burst) so that no data arrives between the failures of the two
    // connections sent to B.
    // Dropping a mirror that disagrees is not a failure of the download:
    // A finishes the file.
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(17, 8 * MIB);
    a.route(
        "/d/paced.bin",
        Route::new(body.clone())
            .etag("\"a\"")
            .throttle(64 * KIB, Duration::from_millis(4))
            .throttle_range_start(0, 64 * KIB, Duration::from_millis(200))
            .segment_faults([
                Fault::DelayHeaders(Duration::from_millis(300)),
                Fault::DelayHeaders(Duration::from_millis(300)),
            ]),
    );
    b.route(
        "/d/paced.bin",
        Route::new(content(170, 8 * MIB + 64 * KIB))
            .etag("\"b\"")
            .segment_always(Fault::DelayHeaders(Duration::from_millis(50))),
    );
    let ub = b.url("/d/paced.bin");
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/d/paced.bin"), &ub])],
        &[
            "-x",
            "4",
            "--min-split-size",
            "1M",
            "--json",
            "--retries",
            "0",
        ],
    );
    let note = format!("{}\n{}\n{}", both(&a, &b), r.stderr, retry_lines(&r));
    if r.code != Some(0) {
        panic!("exit {:?}, expected 0\n{note}", r.code);
    }
    let got = std::fs::read(dir.join("paced.bin"))
        .unwrap_or_else(|e| panic!("no paced.bin ({e}): {:?}\n{note}", list_tree(&dir)));
    if let Err(msg) = bytes_diff(&got, &body) {
        panic!("paced.bin differs: {msg}\n{note}");
    }
}

// ---------------------------------------------------------------------------
// Regressions from review
// ---------------------------------------------------------------------------

/// A dead mirror in a split download whose first URL is slow to send: the
/// budget runs out on the mirror, and the next try must spend a retry (with
/// `--retries 0`, fail) instead of starting over at once, forever.
#[test]
fn a_dead_mirror_does_not_make_a_split_download_loop() {
    let a = TestServer::start();
    let body = content(71, 2 * MIB);
    a.route(
        "/slow.bin",
        Route::new(body.clone()).throttle(16 * KIB, Duration::from_millis(20)),
    );
    let dead = "http://127.0.0.1:1/slow.bin";
    let started = std::time::Instant::now();
    let (r, _dir, _v) = run_list(
        &[mirrors(&[&a.url("/slow.bin"), dead])],
        &["-x", "4", "--min-split-size", "64K", "--retries", "0"],
    );
    // Generous on purpose: it only has to catch an endless loop.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "looped for {:?}",
        started.elapsed()
    );
    assert!(
        a.hits("/slow.bin") < 50,
        "{} requests to the first URL",
        a.hits("/slow.bin")
    );
    // Either it finished from the first URL or it failed cleanly.
    assert!(matches!(r.code, Some(0) | Some(1)), "{:?}", r.code);
}

/// A mirror answering a shifted range is dropped; the data is kept and the
/// first URL finishes the file.
#[test]
fn a_mirror_with_a_wrong_content_range_is_dropped_not_restarted() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(72, 4 * MIB);
    a.route("/r.bin", Route::new(body.clone()).etag("\"a\""));
    // B always answers bytes from another start.
    b.route(
        "/r.bin",
        Route::new(body.clone()).always(Fault::Custom {
            status: 206,
            headers: vec![("Content-Range".into(), format!("bytes 1-10/{}", body.len()))],
            body: body[1..11].to_vec(),
        }),
    );
    let (r, dir, _v) = run_list(
        &[mirrors(&[&a.url("/r.bin"), &b.url("/r.bin")])],
        &[
            "-x",
            "4",
            "--min-split-size",
            "1M",
            "--retries",
            "0",
            "--json",
        ],
    );
    r.expect_code(0);
    assert_file_eq(dir.join("r.bin"), &body);
    let evs = parse_json_lines(&r.stdout);
    assert!(
        events(&evs, "retry")
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("dropped")),
        "{}",
        r.stdout_str()
    );
    assert!(
        !r.stdout_str().contains("starting over"),
        "{}",
        r.stdout_str()
    );
}

/// `--http-user` and an `Authorization` list header go to the download's own
/// host only, never to a mirror on another host.
#[test]
fn secrets_do_not_reach_mirrors() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(73, 100 * KIB);
    a.route(
        "/s.bin",
        Route::new(body.clone()).always(Fault::Status(503)),
    );
    b.file("/s.bin", body.clone());
    let (r, dir, _v) = run_list(
        &[
            mirrors(&[&a.url("/s.bin"), &b.url("/s.bin")]),
            "  header=Cookie: session=secret".into(),
        ],
        &[
            "--retries",
            "0",
            "--http-user",
            "me",
            "--http-password",
            "pw",
            "-H",
            "Authorization: Bearer tok",
        ],
    );
    r.expect_code(0);
    assert_file_eq(dir.join("s.bin"), &body);
    let to_a = a.requests("/s.bin");
    assert!(
        to_a[0].has_header("authorization"),
        "the URL's own host gets them"
    );
    assert!(to_a[0].has_header("cookie"));
    for req in b.requests("/s.bin") {
        assert!(
            !req.has_header("authorization"),
            "{:?}",
            req.header("authorization")
        );
        assert!(!req.has_header("cookie"), "{:?}", req.header("cookie"));
    }
}
