//! Resilience tests: the `volley` binary against the fault-injecting test
//! server — resets, stalls, Retry-After, servers that ignore Range or change
//! the file between tries, short bodies, close-delimited bodies, credentials
//! across redirects, kills and signals with a resuming rerun, unwritable
//! output locations, and the per-host concurrency window (AIMD).
//!
//! Every test owns its server and sandbox, so they run in parallel, and each
//! checks the final bytes byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

/// End of the `[0, n]` prefix the state file records as on disk.
fn state_done_end(state: &Value) -> Option<u64> {
    let first = state["done"].get(0)?;
    (first[0].as_u64()? == 0).then(|| first[1].as_u64())?
}

/// GET requests on `path`, in arrival order.
fn gets(server: &TestServer, path: &str) -> Vec<RecordedRequest> {
    server
        .requests(path)
        .into_iter()
        .filter(|r| r.method.eq_ignore_ascii_case("GET"))
        .collect()
}

/// The offset N of a `Range: bytes=N-` header.
fn range_start(req: &RecordedRequest) -> Option<u64> {
    req.header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn events<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// Lines of stderr that contain every one of `needles`.
fn stderr_lines_with<'a>(stderr: &'a str, needles: &[&str]) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Assert the download left neither `NAME.part` nor its state file.
#[track_caller]
fn assert_no_leftovers(final_path: &Path) {
    let dir = final_path.parent().unwrap();
    assert!(
        !part_path(final_path).exists() && !state_path(final_path).exists(),
        "leftovers next to {}: {:?}",
        final_path.display(),
        list_tree(dir)
    );
}

/// Wait for a spawned child to exit; `None` after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

// ---------------------------------------------------------------------------
// 1. Resets mid-body: resume, not restart
// ---------------------------------------------------------------------------

#[test]
fn two_resets_mid_body_resume_instead_of_restarting() {
    let server = TestServer::start();
    let len = 2 * MIB;
    let body = content(1, len);
    // First try: reset after 40 % of the file. The second try is a 206 from
    // there on; resetting it after another 30 % of the file cuts at ~70 %.
    server.route(
        "/reset.bin",
        Route::new(body.clone()).etag("\"r1\"").faults([
            Fault::ResetAfter(len * 4 / 10),
            Fault::ResetAfter(len * 3 / 10),
        ]),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/reset.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("reset.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);

    let reqs = gets(&server, "/reset.bin");
    assert_eq!(reqs.len(), 3, "{reqs:#?}");
    assert!(!reqs[0].has_header("range"), "first try sent Range");
    let n1 = range_start(&reqs[1]).unwrap_or_else(|| panic!("2nd try: {reqs:#?}"));
    let n2 = range_start(&reqs[2]).unwrap_or_else(|| panic!("3rd try: {reqs:#?}"));
    assert!(
        n1 > 0 && n1 <= (len * 4 / 10) as u64,
        "2nd try resumed from {n1}"
    );
    assert!(
        n2 > n1 && n2 <= n1 + (len * 3 / 10) as u64,
        "3rd try resumed from {n2} (2nd from {n1})"
    );
    for r in &reqs[1..] {
        assert_eq!(r.header("if-range"), Some("\"r1\""), "{r:#?}");
        assert_eq!(r.header("accept-encoding"), Some("identity"), "{r:#?}");
    }
    // A restart would cost ≥ 2× the file; resuming costs ~1×.
    let sent = server.body_bytes_sent("/reset.bin");
    assert!(
        sent < (len + len / 2) as u64,
        "server sent {sent} body bytes for a {len}-byte file: restarted?"
    );
}

// ---------------------------------------------------------------------------
// 2. A stalled server is cut by the idle timeout and resumed
// ---------------------------------------------------------------------------

#[test]
fn stall_is_cut_by_idle_timeout_and_resumed() {
    let server = TestServer::start();
    let len = MIB;
    let body = content(2, len);
    server.route(
        "/stall.bin",
        Route::new(body.clone())
            .etag("\"s1\"")
            .fault(Fault::StallAfter(256 * KIB, Duration::from_secs(30))),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let t = Instant::now();
    let r = run(v.args([
        "--timeout",
        "0.5",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/stall.bin"),
    ]));
    let took = t.elapsed();
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("stall.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    // Generous on purpose (a busy CI stretches runs): it only has to tell a
    // stall that was cut short from one that was waited out.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let reqs = gets(&server, "/stall.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let n = range_start(&reqs[1]);
    assert!(
        n.is_some_and(|n| n > 0 && n <= (256 * KIB) as u64),
        "2nd try did not resume after the stall: {:#?}",
        reqs[1]
    );
}

// ---------------------------------------------------------------------------
// 2b. A stall while the host's other downloads flow is the connection's
//     problem: resumed at once (--stall-timeout), outside the retry budget
// ---------------------------------------------------------------------------

/// A route that keeps sending for a few seconds (16 KiB every 40 ms):
/// another download from the same host that receives data all along.
fn flowing(server: &TestServer, path: &str) -> Vec<u8> {
    let body = content(41, MIB);
    server.route(
        path,
        Route::new(body.clone()).throttle(16 * KIB, Duration::from_millis(40)),
    );
    body
}

/// Run `-j 2` on `/stall.bin` and `/flow.bin` with `extra` flags, in JSON.
fn run_beside_a_flow(server: &TestServer, extra: &[&str]) -> (Run, PathBuf, Volley) {
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let mut args = vec![
        "--json".to_string(),
        "-j".into(),
        "2".into(),
        "--retry-wait".into(),
        "0.01".into(),
        "-d".into(),
        path_arg(&dir),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(server.url("/stall.bin"));
    args.push(server.url("/flow.bin"));
    let r = run(v.args(&args));
    // The sandbox (and so `dir`) must outlive the checks: it goes with them.
    (r, dir, v)
}

#[test]
fn stall_while_the_host_flows_is_resumed_at_once_without_spending_a_retry() {
    let server = TestServer::start();
    let body = content(40, MIB);
    // The first answer stalls after 256 KiB for far longer than the run may
    // take; the idle timeout is longer still.
    server.route(
        "/stall.bin",
        Route::new(body.clone())
            .etag("\"s2\"")
            .fault(Fault::StallAfter(256 * KIB, Duration::from_secs(300))),
    );
    let flow = flowing(&server, "/flow.bin");
    // --retries 0: a counted retry would fail the download.
    let (r, dir, _v) = run_beside_a_flow(
        &server,
        &[
            "--stall-timeout",
            "0.5",
            "--timeout",
            "300",
            "--retries",
            "0",
        ],
    );
    r.expect_code(0);
    assert_file_eq(dir.join("stall.bin"), &body);
    assert_file_eq(dir.join("flow.bin"), &flow);
    assert_no_leftovers(&dir.join("stall.bin"));
    let reqs = gets(&server, "/stall.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let n = range_start(&reqs[1]);
    assert!(
        n.is_some_and(|n| n > 0 && n <= (256 * KIB) as u64),
        "the second try did not resume after the stall: {:#?}",
        reqs[1]
    );
    assert_eq!(
        gets(&server, "/flow.bin").len(),
        1,
        "the flowing download was disturbed"
    );
    let evs = parse_json_lines(&r.stdout);
    let retries = events(&evs, "retry");
    assert_eq!(retries.len(), 1, "{retries:#?}");
    let reason = retries[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("--stall-timeout")
            && reason.contains("127.0.0.1")
            && reason.contains("not counted"),
        "{reason}"
    );
    assert_eq!(
        retries[0]["delay_secs"].as_f64(),
        Some(0.0),
        "{:#?}",
        retries[0]
    );
}

#[test]
fn stalls_that_take_the_file_no_further_spend_retries() {
    // The server says it does ranges but starts over on every try, and stalls
    // at the same place each time: only the first stall is free.
    let server = TestServer::start();
    let body = content(43, MIB);
    server.route(
        "/stall.bin",
        Route::new(body)
            .no_ranges()
            .header("Accept-Ranges", "bytes")
            .always(Fault::StallAfter(256 * KIB, Duration::from_secs(300))),
    );
    let flow = flowing(&server, "/flow.bin");
    let (r, dir, _v) = run_beside_a_flow(
        &server,
        &[
            "--stall-timeout",
            "0.2",
            "--timeout",
            "300",
            "--retries",
            "2",
        ],
    );
    r.expect_code(1);
    assert_file_eq(dir.join("flow.bin"), &flow);
    assert!(!dir.join("stall.bin").exists());
    // One free try, then the budget of 2 retries after the first counted one.
    assert_eq!(gets(&server, "/stall.bin").len(), 4);
    let evs = parse_json_lines(&r.stdout);
    let reasons: Vec<&str> = events(&evs, "retry")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(reasons[0].contains("not counted"), "{reasons:#?}");
    assert!(
        reasons[1..]
            .iter()
            .all(|r| r.contains("--stall-timeout") && r.ends_with("trying again")),
        "{reasons:#?}"
    );
}

#[test]
fn stall_is_waited_out_when_alone_unresumable_or_the_stall_timeout_is_off() {
    // Alone on its host: nothing says the connection is to blame.
    let server = TestServer::start();
    let body = content(42, MIB);
    server.route(
        "/stall.bin",
        Route::new(body.clone()).fault(Fault::StallAfter(256 * KIB, Duration::from_millis(1500))),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    run(v.args([
        "--stall-timeout",
        "0.2",
        "-d",
        &path_arg(&dir),
        &server.url("/stall.bin"),
    ]))
    .expect_code(0);
    assert_file_eq(dir.join("stall.bin"), &body);
    assert_eq!(gets(&server, "/stall.bin").len(), 1, "a lone stall was cut");

    // Beside a flowing download, but the server does not do ranges (the
    // body would start over), or --stall-timeout 0 turns the rule off.
    for (ranges, flag) in [(false, "0.2"), (true, "0")] {
        let server = TestServer::start();
        let route = Route::new(body.clone())
            .fault(Fault::StallAfter(256 * KIB, Duration::from_millis(1500)));
        server.route("/stall.bin", if ranges { route } else { route.no_ranges() });
        let flow = flowing(&server, "/flow.bin");
        let (r, dir, _v) = run_beside_a_flow(&server, &["--stall-timeout", flag]);
        r.expect_code(0);
        assert_file_eq(dir.join("stall.bin"), &body);
        assert_file_eq(dir.join("flow.bin"), &flow);
        assert_eq!(
            gets(&server, "/stall.bin").len(),
            1,
            "cut with ranges={ranges}, --stall-timeout {flag}"
        );
        assert!(events(&parse_json_lines(&r.stdout), "retry").is_empty());
    }
}

// ---------------------------------------------------------------------------
// 3. Retry-After is honoured
// ---------------------------------------------------------------------------

#[test]
fn retry_after_429_is_honoured() {
    let server = TestServer::start();
    let body = content(3, 20 * KIB);
    server.route(
        "/busy.bin",
        Route::new(body.clone()).fault(Fault::StatusWithHeaders(429, vec![("Retry-After", "2")])),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let t = Instant::now();
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/busy.bin"),
    ]));
    let took = t.elapsed();
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("busy.bin"), &body);
    let reqs = gets(&server, "/busy.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let gap = reqs[1].received_at - reqs[0].received_at;
    assert!(
        gap >= Duration::from_millis(1900),
        "retried {gap:?} after a 429 with Retry-After: 2"
    );
    assert!(took >= Duration::from_millis(1900), "run took {took:?}");
    // Generous on purpose: only a wait far beyond Retry-After fails it.
    assert!(took < Duration::from_secs(10), "run took {took:?}");
}

// ---------------------------------------------------------------------------
// 4. A server that ignores Range on resume: start over, no mix
// ---------------------------------------------------------------------------

#[test]
fn range_ignored_on_resume_starts_over() {
    let server = TestServer::start();
    let len = 512 * KIB;
    let body = content(4, len);
    server.route(
        "/ign.bin",
        Route::new(body.clone())
            .etag("\"i1\"")
            .faults([Fault::ResetAfter(len / 2), Fault::IgnoreRange]),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/ign.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("ign.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/ign.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert!(
        range_start(&reqs[1]).is_some_and(|n| n > 0),
        "2nd try did not ask to resume: {:#?}",
        reqs[1]
    );
}

// ---------------------------------------------------------------------------
// 5. The file changes on the server between tries: no splice
// ---------------------------------------------------------------------------

/// Version A (ETag "a") resets mid-body on its only request; then version B
/// (same length, other bytes, ETag "b") takes its place.
fn changing_file(server: &TestServer, path: &str, b_route: impl FnOnce(Route) -> Route) -> Vec<u8> {
    let len = 512 * KIB;
    let a = content(50, len);
    let b = content(51, len);
    assert_ne!(a, b);
    server.route(
        path,
        Route::new(a)
            .etag("\"a\"")
            .fault(Fault::ResetAfter(len / 2))
            .then(b_route(Route::new(b.clone()).etag("\"b\""))),
    );
    b
}

#[test]
fn content_changed_between_tries_is_not_spliced() {
    let server = TestServer::start();
    // The server honours If-Range: the resumed request gets 200 with B.
    let b = changing_file(&server, "/chg.bin", |r| r);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/chg.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("chg.bin");
    assert_file_eq(&fin, &b);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/chg.bin");
    assert!(reqs.len() >= 2, "{reqs:#?}");
    assert!(range_start(&reqs[1]).is_some_and(|n| n > 0), "{reqs:#?}");
    assert_eq!(reqs[1].header("if-range"), Some("\"a\""), "{reqs:#?}");
}

#[test]
fn changed_content_206_from_a_server_ignoring_if_range_is_refused() {
    let server = TestServer::start();
    // The server ignores If-Range and answers the resumed request with a 206
    // of version B: volley must notice the ETag changed and start over.
    let b = changing_file(&server, "/chg206.bin", Route::ignore_if_range);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/chg206.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("chg206.bin");
    assert_file_eq(&fin, &b);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/chg206.bin");
    assert!(
        reqs.len() >= 3,
        "expected a refused 206 and a restart: {reqs:#?}"
    );
    assert!(range_start(&reqs[1]).is_some_and(|n| n > 0), "{reqs:#?}");
    assert!(
        !reqs.last().unwrap().has_header("range"),
        "the final try should start from 0: {reqs:#?}"
    );
}

// ---------------------------------------------------------------------------
// 6. Content-Length larger than the body on every try
// ---------------------------------------------------------------------------

#[test]
fn short_body_on_every_try_fails_and_keeps_the_prefix() {
    let server = TestServer::start();
    let len = 256 * KIB;
    let n = 100 * KIB;
    let body = content(6, len);
    // No range support: every try is a 200 that restarts the file and ends
    // after n bytes, so exactly n bytes are on disk at the end.
    server.route(
        "/short.bin",
        Route::new(body.clone())
            .no_ranges()
            .always(Fault::ShortBody(n)),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let url = server.url("/short.bin");
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
    let fin = dir.join("short.bin");
    assert!(!fin.exists(), "final file exists after failure");
    let part = std::fs::read(part_path(&fin))
        .unwrap_or_else(|e| panic!("no .part ({e}): {:?}", list_tree(&dir)));
    assert_bytes_eq(".part", &part, &body[..n]);
    let state = read_state(&fin).unwrap_or_else(|| panic!("no state: {:?}", list_tree(&dir)));
    assert_eq!(state_done_end(&state), Some(n as u64), "{state}");
    assert_eq!(state["url"], url.as_str(), "{state}");
    assert_eq!(gets(&server, "/short.bin").len(), 3);
    r.expect_stderr_contains("1 failed");
    assert!(
        !stderr_lines_with(&r.stderr, &["failed", &url]).is_empty(),
        "no failure line names {url}:\n{}",
        r.stderr
    );
}

#[test]
fn short_body_on_every_try_with_ranges_appends_each_piece() {
    let server = TestServer::start();
    let len = 256 * KIB;
    let n = 50 * KIB;
    let body = content(7, len);
    // With ranges, every try resumes where the last one stopped and adds
    // another n bytes: 3 tries → 3n bytes.
    server.route(
        "/short2.bin",
        Route::new(body.clone())
            .etag("\"sh\"")
            .always(Fault::ShortBody(n)),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retries",
        "2",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/short2.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    r.expect_stderr_contains("1 failed");
    let fin = dir.join("short2.bin");
    assert!(!fin.exists(), "final file exists after failure");
    let part = std::fs::read(part_path(&fin))
        .unwrap_or_else(|e| panic!("no .part ({e}): {:?}", list_tree(&dir)));
    assert_bytes_eq(".part", &part, &body[..3 * n]);
    let state = read_state(&fin).unwrap_or_else(|| panic!("no state: {:?}", list_tree(&dir)));
    assert_eq!(state_done_end(&state), Some(3 * n as u64), "{state}");
    let starts: Vec<_> = gets(&server, "/short2.bin")
        .iter()
        .map(range_start)
        .collect();
    assert_eq!(
        starts,
        vec![None, Some(n as u64), Some(2 * n as u64)],
        "Range offsets of the three tries"
    );
}

// ---------------------------------------------------------------------------
// 7. No Content-Length: the body ends when the connection closes
// ---------------------------------------------------------------------------

#[test]
fn close_delimited_body_without_content_length() {
    let server = TestServer::start();
    let body = content(8, 300 * KIB + 7);
    server.route(
        "/nolen.bin",
        Route::new(body.clone()).always(Fault::NoContentLength),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(["--json", "-d", &path_arg(&dir), &server.url("/nolen.bin")]));
    r.expect_code(0);
    let fin = dir.join("nolen.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let evs = parse_json_lines(&r.stdout);
    let starts = events(&evs, "start");
    assert_eq!(starts.len(), 1, "{evs:?}");
    assert!(
        starts[0]["size"].is_null(),
        "size should be unknown: {}",
        starts[0]
    );
    let dones = events(&evs, "done");
    assert_eq!(dones.len(), 1, "{evs:?}");
    assert_eq!(dones[0]["bytes"].as_u64(), Some(body.len() as u64));
}

// ---------------------------------------------------------------------------
// 8. Credentials are not sent after a redirect to another host
// ---------------------------------------------------------------------------

/// Server A redirects `from` (302) to `to` on server B, which serves a file.
fn cross_host(a: &TestServer, b: &TestServer, from: &str, to: &str, seed: u64) -> Vec<u8> {
    let body = content(seed, 10 * KIB);
    b.file(to, body.clone());
    a.redirect(from, 302, &b.url(to));
    assert_ne!(a.port(), b.port());
    body
}

#[test]
fn header_credentials_are_dropped_on_cross_host_redirect() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = cross_host(&a, &b, "/start", "/file", 80);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "-H",
        "Authorization: Bearer secret",
        "-H",
        "Cookie: a=b",
        "-d",
        &path_arg(&dir),
        &a.url("/start"),
    ]));
    r.expect_code(0);
    // Named after the URL given, not the redirect's target (see tests/safety.rs).
    assert_file_eq(dir.join("start"), &body);
    let seen_a = a.requests("/start");
    assert_eq!(seen_a.len(), 1, "{seen_a:#?}");
    assert_eq!(seen_a[0].header("authorization"), Some("Bearer secret"));
    assert_eq!(seen_a[0].header("cookie"), Some("a=b"));
    let seen_b = b.all_requests();
    assert!(!seen_b.is_empty());
    for req in &seen_b {
        assert!(
            !req.has_header("authorization") && !req.has_header("cookie"),
            "credentials leaked to the other host: {req:#?}"
        );
    }
}

#[test]
fn url_userinfo_is_dropped_on_cross_host_redirect() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = cross_host(&a, &b, "/start2", "/file2", 81);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let url = format!("http://user:pw@127.0.0.1:{}/start2", a.port());
    let r = run(v.args(["-d", &path_arg(&dir), &url]));
    r.expect_code(0);
    assert_file_eq(dir.join("start2"), &body);
    let seen_a = a.requests("/start2");
    assert_eq!(seen_a.len(), 1, "{seen_a:#?}");
    // base64("user:pw")
    assert_eq!(
        seen_a[0].header("authorization"),
        Some("Basic dXNlcjpwdw==")
    );
    let seen_b = b.all_requests();
    assert!(!seen_b.is_empty());
    for req in &seen_b {
        assert!(
            !req.has_header("authorization"),
            "URL credentials leaked to the other host: {req:#?}"
        );
    }
}

#[test]
fn list_header_credentials_are_dropped_on_cross_host_redirect() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = cross_host(&a, &b, "/start3", "/file3", 82);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            a.url("/start3"),
            "  header=Authorization: Bearer listsecret".to_string(),
            "  header=Cookie: c=d".to_string(),
        ],
    );
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(0);
    assert_file_eq(dir.join("start3"), &body);
    let seen_a = a.requests("/start3");
    assert_eq!(seen_a.len(), 1, "{seen_a:#?}");
    assert_eq!(seen_a[0].header("authorization"), Some("Bearer listsecret"));
    assert_eq!(seen_a[0].header("cookie"), Some("c=d"));
    for req in &b.all_requests() {
        assert!(
            !req.has_header("authorization") && !req.has_header("cookie"),
            "credentials leaked to the other host: {req:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 9./10. Killed or interrupted, then rerun: resume and fetch only the rest
// ---------------------------------------------------------------------------

/// A ~4 MiB file that takes ~3 s to send.
const SLOW_LEN: usize = 4 * MIB;
const SLOW_ETAG: &str = "\"slow-1\"";

fn slow_route(body: &[u8]) -> Route {
    Route::new(body.to_vec())
        .etag(SLOW_ETAG)
        .throttle(32 * KIB, Duration::from_millis(25))
}

/// Spawn volley on `url` into `dir`, stderr to `errlog`.
fn spawn_volley(p: &mut VolleyProcess, dir: &Path, url: &str, errlog: &Path) -> Child {
    p.args(["--timeout", "30", "-d", &path_arg(dir), url])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(errlog).unwrap());
    p.spawn().expect("spawn volley")
}

/// After the first run stopped with `n` bytes recorded: serve the file fast
/// (same ETag), rerun the same command and check it fetched only the rest.
fn rerun_resumes(server: &TestServer, path: &str, dir: &Path, body: &[u8], n: u64) {
    server.route(path, Route::new(body.to_vec()).etag(SLOW_ETAG));
    settle(server);
    server.reset_stats();
    let mut v = volley();
    let r = run(v.args(["--timeout", "30", "-d", &path_arg(dir), &server.url(path)]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join(path.trim_start_matches('/'));
    assert_file_eq(&fin, body);
    assert_no_leftovers(&fin);
    let reqs = gets(server, path);
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={n}-").as_str()),
        "the rerun should resume from the recorded offset: {:#?}",
        reqs[0]
    );
    assert_eq!(reqs[0].header("if-range"), Some(SLOW_ETAG));
    let sent = server.body_bytes_sent(path);
    assert_eq!(
        sent,
        body.len() as u64 - n,
        "the rerun fetched {sent} bytes, the rest is {}",
        body.len() as u64 - n
    );
}

/// The state after a stopped run: `.part` exists and starts with the `n`
/// recorded bytes; no final file. Returns `n`.
#[track_caller]
fn check_stopped(dir: &Path, name: &str, body: &[u8], url: &str) -> u64 {
    let fin = dir.join(name);
    assert!(!fin.exists(), "final file exists after the stop");
    let part = std::fs::read(part_path(&fin))
        .unwrap_or_else(|e| panic!("no .part ({e}): {:?}", list_tree(dir)));
    let state = read_state(&fin)
        .unwrap_or_else(|| panic!("no state file after the stop: {:?}", list_tree(dir)));
    assert_eq!(state["url"], url, "{state}");
    assert_eq!(state["size"].as_u64(), Some(body.len() as u64), "{state}");
    assert_eq!(state["etag"], SLOW_ETAG, "{state}");
    let n = state_done_end(&state).unwrap_or_else(|| panic!("no done range: {state}"));
    assert!(
        n > 0 && n < body.len() as u64,
        "state records {n} bytes of {}",
        body.len()
    );
    assert!(
        part.len() as u64 >= n,
        ".part holds {} bytes, the state records {n}",
        part.len()
    );
    assert_bytes_eq(
        ".part recorded prefix",
        &part[..n as usize],
        &body[..n as usize],
    );
    n
}

#[test]
fn sigkill_mid_download_then_rerun_fetches_only_the_rest() {
    let server = TestServer::start();
    let body = content(9, SLOW_LEN);
    server.route("/kill.bin", slow_route(&body));
    let url = server.url("/kill.bin");
    let mut p = volley_process();
    let dir = out_dir(&p.sandbox);
    let errlog = p.sandbox.root().join("stderr.txt");
    let mut child = spawn_volley(&mut p, &dir, &url, &errlog);
    let fin = dir.join("kill.bin");
    // The state file is written every second during a download.
    let recorded = wait_until(Duration::from_secs(10), || {
        read_state(&fin)
            .and_then(|s| state_done_end(&s))
            .is_some_and(|n| n > 0)
    });
    if !recorded {
        abort_child(
            &mut child,
            &errlog,
            "no state file with progress within 10 s",
        );
    }
    if child.try_wait().unwrap().is_some() {
        abort_child(
            &mut child,
            &errlog,
            "volley ended before it could be killed",
        );
    }
    child.kill().expect("SIGKILL"); // std sends SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "not killed by a signal: {status:?}");
    let n = check_stopped(&dir, "kill.bin", &body, &url);
    rerun_resumes(&server, "/kill.bin", &dir, &body, n);
}

fn signal_then_rerun(signal: &str, name: &str, seed: u64) {
    let server = TestServer::start();
    let body = content(seed, SLOW_LEN);
    let path = format!("/{name}");
    server.route(&path, slow_route(&body));
    let url = server.url(&path);
    let mut p = volley_process();
    let dir = out_dir(&p.sandbox);
    let errlog = p.sandbox.root().join("stderr.txt");
    let mut child = spawn_volley(&mut p, &dir, &url, &errlog);
    let started = wait_until(Duration::from_secs(10), || {
        server.body_bytes_sent(&path) >= 512 * KIB as u64
    });
    if !started {
        abort_child(&mut child, &errlog, "the server never sent 512 KiB");
    }
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success());
    let Some(status) = wait_exit(&mut child, Duration::from_secs(10)) else {
        abort_child(&mut child, &errlog, "volley did not exit within 10 s");
    };
    let stderr = std::fs::read_to_string(&errlog).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(130),
        "SIG{signal}: {status:?}; stderr:\n{stderr}"
    );
    let n = check_stopped(&dir, name, &body, &url);
    rerun_resumes(&server, &path, &dir, &body, n);
}

#[test]
fn sigint_exits_130_then_rerun_resumes() {
    signal_then_rerun("INT", "int.bin", 10);
}

#[test]
fn sigterm_exits_130_then_rerun_resumes() {
    signal_then_rerun("TERM", "term.bin", 11);
}

// ---------------------------------------------------------------------------
// 11. An output location that cannot be created fails only that download
// ---------------------------------------------------------------------------

#[test]
fn unwritable_output_dir_fails_only_that_download() {
    let server = TestServer::start();
    let good = content(12, 30 * KIB);
    server.file("/good.bin", good.clone());
    server.file("/bad.bin", content(13, 30 * KIB));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    // Tests run as root, so permissions do not stop a write; a directory
    // under a regular file cannot be created by anyone.
    let blocker = v.sandbox.root().join("blocker");
    std::fs::write(&blocker, b"a regular file").unwrap();
    let bad_dir = blocker.join("sub");
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/bad.bin"),
            format!("  dir={}", path_arg(&bad_dir)),
            server.url("/good.bin"),
        ],
    );
    let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&list)]));
    r.expect_code(1).expect_empty_stdout();
    assert_file_eq(dir.join("good.bin"), &good);
    assert_no_part_files(&dir);
    assert!(!dir.join("bad.bin").exists());
    assert_eq!(
        std::fs::read(&blocker).unwrap(),
        b"a regular file",
        "the blocking file was touched"
    );
    let lines = stderr_lines_with(&r.stderr, &[&path_arg(&bad_dir)]);
    assert!(
        lines
            .iter()
            .any(|l| l.to_lowercase().contains("not a directory")),
        "no stderr line names {} with the reason:\n{}",
        bad_dir.display(),
        r.stderr
    );
    r.expect_stderr_contains("1 failed");
}

// ---------------------------------------------------------------------------
// 12. Per-host window (AIMD) backs off under overload
// ---------------------------------------------------------------------------

#[test]
fn host_window_backs_off_when_the_server_is_overloaded() {
    let server = TestServer::start();
    // More than 2 requests at once → 429 (no Retry-After). Each answer takes
    // ~40 ms so that requests overlap.
    server.limit_in_flight(2);
    let mut expected = Vec::new();
    let mut lines = Vec::new();
    for i in 0..40u64 {
        let body = content(1000 + i, 16 * KIB + i as usize);
        let path = format!("/w/f{i:02}.bin");
        server.route(
            &path,
            Route::new(body.clone()).always(Fault::DelayHeaders(Duration::from_millis(40))),
        );
        lines.push(server.url(&path));
        expected.push((format!("f{i:02}.bin"), body));
    }
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(&list, &lines);
    let t = Instant::now();
    let r = run(v.args([
        "-j",
        "16",
        "--max-per-host",
        "16",
        "--retry-wait",
        "0.05",
        "--max-retry-wait",
        "0.5",
        "--retries",
        "10",
        "--json",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
    ]));
    let took = t.elapsed();
    r.expect_code(0);
    for (name, body) in &expected {
        assert_file_eq(dir.join(name), body);
    }
    assert_no_part_files(&dir);
    let requests = server
        .all_requests()
        .iter()
        .filter(|r| r.method.eq_ignore_ascii_case("GET"))
        .count();
    let rejected = server.overload_rejections();
    eprintln!("{requests} requests, {rejected} answered 429, {took:?}");
    assert!(
        rejected < requests / 2 && rejected < 40,
        "{rejected} of {requests} requests were answered 429: the host window did not back off"
    );
    let evs = parse_json_lines(&r.stdout);
    // README: `host` is `scheme://host:port`; accept a bare `host:port` too.
    let host = format!("127.0.0.1:{}", server.port());
    let windows: Vec<u64> = events(&evs, "host")
        .into_iter()
        .filter(|e| {
            e["host"]
                .as_str()
                .is_some_and(|h| h == host || h == format!("http://{host}"))
        })
        .filter_map(|e| e["window"].as_u64())
        .collect();
    assert!(
        !windows.is_empty(),
        "no `host` event with a window for {host}; host events: {:?}",
        events(&evs, "host")
    );
    assert!(
        windows.iter().any(|&w| w < 16),
        "the window never shrank below --max-per-host: {windows:?}"
    );
}

/// The fault mix of a flaky network (issue 15): one request in about seven
/// breaks, at random (seeded): a reset mid-body, a 503, a stall the idle
/// timeout cuts, or a short body.
fn chaos_routes(server: &TestServer, files: u64) -> Vec<(String, Vec<u8>)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..files)
        .map(|i| {
            let len = 20_000 + (next() % 40_000) as usize;
            let body = content(5000 + i, len);
            let path = format!("/chaos/c{i:03}.bin");
            let mut route = Route::new(body.clone());
            if next() % 100 < 15 {
                route = route.fault(match next() % 4 {
                    0 => Fault::ResetAfter(len / 3),
                    1 => Fault::Status(503),
                    2 => Fault::StallAfter(len / 2, Duration::from_secs(3)),
                    _ => Fault::ShortBody(len / 2),
                });
            }
            server.route(&path, route);
            (server.url(&path), body)
        })
        .collect()
}

#[test]
fn scattered_faults_do_not_shrink_the_host_window() {
    let server = TestServer::start();
    let files = chaos_routes(&server, 300);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &files.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
    );
    let r = run(v.args([
        "-j",
        "16",
        "--max-per-host",
        "16",
        "--timeout",
        "0.5",
        "--retry-wait",
        "0.01",
        "--json",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&list),
    ]));
    r.expect_code(0);
    for (url, body) in &files {
        let name = url.rsplit('/').next().unwrap();
        assert_file_eq(dir.join(name), body);
    }
    assert_no_part_files(&dir);
    // Resets, stalls, short bodies and bare 503s (no Retry-After: issue 15
    // names a 429 or a Retry-After as the busy signals) are each one
    // request's problem: scattered, they leave the host's window alone
    // (halving on every fault held it near 3; halving once per window of
    // requests on every 503 still held it between 2 and 8 in the benchmark's
    // chaos run, where 6 s stalls then took most of its slots).
    let evs = parse_json_lines(&r.stdout);
    let windows: Vec<u64> = events(&evs, "host")
        .into_iter()
        .filter_map(|e| e["window"].as_u64())
        .collect();
    let lowest = windows.iter().copied().min().unwrap_or(16);
    assert!(
        lowest >= 8,
        "the window fell to {lowest} under scattered faults: {windows:?}"
    );
}

// ---------------------------------------------------------------------------
// 13. Retry-After pauses new requests to the whole host
// ---------------------------------------------------------------------------

#[test]
fn retry_after_pauses_the_whole_host() {
    let server = TestServer::start();
    let files: Vec<(&str, Vec<u8>)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, content(1300 + i as u64, 8 * KIB)))
        .collect();
    // /a answers its first request at once with 429 + Retry-After: 1.
    server.route(
        "/p/a",
        Route::new(files[0].1.clone())
            .fault(Fault::StatusWithHeaders(429, vec![("Retry-After", "1")])),
    );
    // /b and /c are in flight when the 429 goes out and finish ~200 ms later,
    // which frees their job slots for /d and /e.
    for (n, body) in &files[1..3] {
        server.route(
            &format!("/p/{n}"),
            Route::new(body.clone()).always(Fault::DelayHeaders(Duration::from_millis(200))),
        );
    }
    for (n, body) in &files[3..] {
        server.file(&format!("/p/{n}"), body.clone());
    }
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v
        .args([
            "-j",
            "3",
            "--max-per-host",
            "3",
            "--retry-wait",
            "0.01",
            "-d",
            &path_arg(&dir),
        ])
        .args(files.iter().map(|(n, _)| server.url(&format!("/p/{n}")))));
    r.expect_code(0);
    for (n, body) in &files {
        assert_file_eq(dir.join(n), body);
    }
    // Assumption: /a, /b and /c are started together (-j 3, input order), so
    // their first requests reach the server within a few milliseconds of each
    // other; anything that arrives more than 150 ms after the 429 was sent
    // was started after volley saw the 429 (that is /d, /e and /a's retry),
    // and must wait for the Retry-After.
    let all = server.all_requests();
    let t429 = all
        .iter()
        .find(|r| r.path == "/p/a")
        .expect("a request for /p/a")
        .received_at;
    let late: Vec<(String, Duration)> = all
        .iter()
        .filter(|r| r.received_at > t429 + Duration::from_millis(150))
        .map(|r| (r.path.clone(), r.received_at - t429))
        .collect();
    assert!(
        late.iter().any(|(p, _)| p == "/p/d") && late.iter().any(|(p, _)| p == "/p/e"),
        "/d and /e should start after the 429: {late:?}"
    );
    let early: Vec<_> = late
        .iter()
        .filter(|(_, after)| *after < Duration::from_millis(900))
        .collect();
    assert!(
        early.is_empty(),
        "requests to the host during its Retry-After pause (time after the 429): {early:?}"
    );
}

// ---------------------------------------------------------------------------
// 14. Permanent errors fail at once, transient ones are retried
// ---------------------------------------------------------------------------

#[test]
fn not_found_fails_at_once_while_503_is_retried() {
    let server = TestServer::start();
    let busy = content(14, 40 * KIB);
    server.route(
        "/busy.bin",
        Route::new(busy.clone()).faults([Fault::Status(503), Fault::Status(503)]),
    );
    server.route(
        "/forbidden.bin",
        Route::new(content(15, 100)).always(Fault::Status(403)),
    );
    let missing = server.url("/missing.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let t = Instant::now();
    let r = run(v.args([
        "--retries",
        "5",
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &missing,
        &server.url("/forbidden.bin"),
        &server.url("/busy.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    assert_file_eq(dir.join("busy.bin"), &busy);
    assert_eq!(gets(&server, "/missing.bin").len(), 1, "404 was retried");
    assert_eq!(gets(&server, "/forbidden.bin").len(), 1, "403 was retried");
    assert_eq!(
        gets(&server, "/busy.bin").len(),
        3,
        "503 was not retried twice"
    );
    assert!(!dir.join("missing.bin").exists());
    assert!(!dir.join("forbidden.bin").exists());
    assert!(
        !stderr_lines_with(&r.stderr, &[&missing, "404"]).is_empty(),
        "no stderr line names {missing} with 404:\n{}",
        r.stderr
    );
    r.expect_stderr_contains("2 failed");
    // Generous on purpose: only a hang or a retry storm fails it.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Extra: If-Range falls back to Last-Modified when the ETag is weak
// ---------------------------------------------------------------------------

#[test]
fn resume_with_weak_etag_uses_last_modified_for_if_range() {
    let server = TestServer::start();
    let len = 512 * KIB;
    let body = content(16, len);
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
    server.route(
        "/weak.bin",
        Route::new(body.clone())
            .etag("W/\"w1\"")
            .last_modified_str(lm)
            .fault(Fault::ResetAfter(len / 2)),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/weak.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("weak.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/weak.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert!(range_start(&reqs[1]).is_some_and(|n| n > 0), "{reqs:#?}");
    assert_eq!(reqs[1].header("if-range"), Some(lm), "{:#?}", reqs[1]);
    // The server answered 206 (Last-Modified matches): no restart.
    let sent = server.body_bytes_sent("/weak.bin");
    assert!(sent < (len + len / 4) as u64, "server sent {sent} bytes");
}

// ---------------------------------------------------------------------------
// Extra: a state file that already covers the whole file (416 on resume)
// ---------------------------------------------------------------------------

/// Put `part` in `DIR/f.bin.part` and a state file recording `[0, done)` of a
/// `size`-byte file with ETag `"e1"` from `url`.
fn prepare_partial(dir: &Path, url: &str, part: &[u8], size: usize, done: usize) {
    std::fs::create_dir_all(dir).expect("mkdir out");
    let fin = dir.join("f.bin");
    std::fs::write(part_path(&fin), part).expect("write .part");
    let state = serde_json::json!({
        "version": 1,
        "url": url,
        "size": size,
        "etag": "\"e1\"",
        "last_modified": null,
        "done": [[0, done]],
    });
    std::fs::write(state_path(&fin), state.to_string()).expect("write state");
}

#[test]
fn complete_part_file_with_416_finishes_without_body() {
    let server = TestServer::start();
    let len = 200 * KIB + 5;
    let body = content(17, len);
    server.route("/f.bin", Route::new(body.clone()).etag("\"e1\""));
    let url = server.url("/f.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    prepare_partial(&dir, &url, &body, len, len);
    let r = run(v.args(["--retry-wait", "0.01", "-d", &path_arg(&dir), &url]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("f.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    assert_eq!(list_tree(&dir), vec!["f.bin".to_string()]);
    let reqs = gets(&server, "/f.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(range_start(&reqs[0]), Some(len as u64), "{:#?}", reqs[0]);
    assert_eq!(reqs[0].header("if-range"), Some("\"e1\""), "{:#?}", reqs[0]);
    assert_eq!(
        server.body_bytes_sent("/f.bin"),
        0,
        "the server sent a body"
    );
}

#[test]
fn half_part_file_from_state_resumes_from_the_middle() {
    let server = TestServer::start();
    let len = 200 * KIB + 6;
    let half = len / 2;
    let body = content(18, len);
    server.route("/f.bin", Route::new(body.clone()).etag("\"e1\""));
    let url = server.url("/f.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    prepare_partial(&dir, &url, &body[..half], len, half);
    let r = run(v.args(["--retry-wait", "0.01", "-d", &path_arg(&dir), &url]));
    r.expect_code(0).expect_empty_stdout();
    let fin = dir.join("f.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/f.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={half}-").as_str()),
        "{:#?}",
        reqs[0]
    );
    assert_eq!(reqs[0].header("if-range"), Some("\"e1\""), "{:#?}", reqs[0]);
    assert_eq!(server.body_bytes_sent("/f.bin"), (len - half) as u64);
}
