//! Credentials and cookies: `--http-user`/`--http-password`, `--netrc`,
//! `--netrc-file`, `--load-cookies` and `--save-cookies`, against the test server.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const KIB: usize = 1024;

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(v: &Volley) -> PathBuf {
    v.sandbox.root().join("out")
}

/// Write `text` to `name` in the sandbox root and return its path.
fn sandbox_file(v: &Volley, name: &str, text: &str) -> PathBuf {
    let path = v.sandbox.root().join(name);
    std::fs::write(&path, text).expect("write sandbox file");
    path
}

/// Standard base64 with padding (what `Authorization: Basic` carries).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Basic base64(user:pass)`.
fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

#[test]
fn base64_helper_matches_known_values() {
    assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b""), "");
}

/// Panic unless no request `server` saw carried `header`.
#[track_caller]
fn assert_no_header(server: &TestServer, header: &str) {
    let seen = server.all_requests();
    assert!(!seen.is_empty(), "the server saw no request");
    for req in &seen {
        assert!(
            !req.has_header(header),
            "{header} was sent to {}: {req:#?}",
            req.path
        );
    }
}

/// Panic unless every request on `path` carried `header: value` (and there was one).
#[track_caller]
fn assert_every_request_has(server: &TestServer, path: &str, header: &str, value: &str) {
    let seen = server.requests(path);
    assert!(!seen.is_empty(), "no request for {path}");
    for req in &seen {
        assert_eq!(req.header(header), Some(value), "{req:#?}");
    }
}

// ---------------------------------------------------------------------------
// netrc
// ---------------------------------------------------------------------------

#[test]
fn netrc_file_credentials_go_to_the_listed_host_only() {
    let server = TestServer::start();
    let other = TestServer::start();
    let a = content(1, 4 * KIB);
    let b = content(2, 4 * KIB);
    server.file("/a.bin", a.clone());
    other.file("/b.bin", b.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "# test credentials\nmachine example.org login nobody password nothing\n\
         machine 127.0.0.1\n  login alice\n  password s3cret\n",
    );
    let r = run(v.args([
        "--netrc-file",
        &path_arg(&netrc),
        "-d",
        &path_arg(&dir),
        &server.url("/a.bin"),
        // Another host name for the other server: netrc matches names, not ports.
        &other.localhost_url("/b.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("a.bin"), &a);
    assert_file_eq(dir.join("b.bin"), &b);
    assert_every_request_has(
        &server,
        "/a.bin",
        "authorization",
        &basic("alice", "s3cret"),
    );
    assert_no_header(&other, "authorization");
}

#[test]
fn every_request_of_a_split_download_carries_credentials_and_cookies() {
    let server = TestServer::start();
    let body = content(18, 1024 * KIB);
    server.file("/big.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "machine 127.0.0.1 login alice password s3cret\n",
    );
    let cookies = sandbox_file(
        &v,
        "cookies.txt",
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tname\tvalue\n",
    );
    let r = run(v.args([
        "--netrc-file",
        &path_arg(&netrc),
        "--load-cookies",
        &path_arg(&cookies),
        "-x",
        "4",
        "--min-split-size",
        "128K",
        "-d",
        &path_arg(&dir),
        &server.url("/big.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("big.bin"), &body);
    let seen = server.requests("/big.bin");
    assert!(seen.len() > 1, "the download was not split: {seen:#?}");
    assert_every_request_has(
        &server,
        "/big.bin",
        "authorization",
        &basic("alice", "s3cret"),
    );
    assert_every_request_has(&server, "/big.bin", "cookie", "name=value");
}

#[test]
fn netrc_default_entry_applies_to_unlisted_hosts() {
    let server = TestServer::start();
    server.file("/d.bin", content(3, KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "machine example.org login x password y\ndefault login anon password guest\n",
    );
    let r = run(v.args([
        "--netrc-file",
        &path_arg(&netrc),
        "-d",
        &path_arg(&dir),
        &server.localhost_url("/d.bin"),
    ]));
    r.expect_code(0);
    assert_every_request_has(&server, "/d.bin", "authorization", &basic("anon", "guest"));
}

#[test]
fn plain_netrc_reads_home_netrc_and_tolerates_its_absence() {
    let server = TestServer::start();
    server.file("/h.bin", content(4, KIB));

    // No ~/.netrc: no credentials, no error (as curl).
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args(["--netrc", "-d", &path_arg(&dir), &server.url("/h.bin")]));
    r.expect_code(0);
    assert_no_header(&server, "authorization");
    server.reset_stats();

    // With one, its entry is used.
    let mut v = volley();
    let dir = out_dir(&v);
    std::fs::write(
        v.sandbox.home().join(".netrc"),
        "machine 127.0.0.1 login homeuser password homepass\n",
    )
    .unwrap();
    let r = run(v.args(["--netrc", "-d", &path_arg(&dir), &server.url("/h.bin")]));
    r.expect_code(0);
    assert_every_request_has(
        &server,
        "/h.bin",
        "authorization",
        &basic("homeuser", "homepass"),
    );
}

#[test]
fn netrc_credentials_do_not_follow_a_redirect_to_another_host() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(5, 8 * KIB);
    b.file("/target.bin", body.clone());
    a.redirect("/start", 302, &b.localhost_url("/target.bin"));
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "machine 127.0.0.1 login alice password s3cret\n",
    );
    let r = run(v.args([
        "--netrc-file",
        &path_arg(&netrc),
        "-d",
        &path_arg(&dir),
        &a.url("/start"),
    ]));
    r.expect_code(0);
    // Named after the URL given, not the redirect's target (see tests/safety.rs).
    assert_file_eq(dir.join("start"), &body);
    assert_every_request_has(&a, "/start", "authorization", &basic("alice", "s3cret"));
    assert_no_header(&b, "authorization");
}

#[test]
fn malformed_netrc_stops_before_any_request() {
    let server = TestServer::start();
    server.file("/x.bin", content(6, KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "machine 127.0.0.1\n  login alice\n  password s3cret\nmachine other login\n",
    );
    let r = run(v.args([
        "--netrc-file",
        &path_arg(&netrc),
        "-d",
        &path_arg(&dir),
        &server.url("/x.bin"),
    ]));
    r.expect_code(2)
        .expect_stderr_contains(&format!("{}:4:", netrc.display()))
        .expect_stderr_contains("'login' without a value");
    assert!(
        !r.stderr.contains("s3cret"),
        "password echoed:\n{}",
        r.stderr
    );
    assert_eq!(server.total_hits(), 0);
    assert!(!dir.join("x.bin").exists());
}

#[test]
fn missing_netrc_file_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/x.bin", content(7, KIB));
    let mut v = volley();
    let missing = v.sandbox.root().join("no-such-netrc");
    let r = run(v.args(["--netrc-file", &path_arg(&missing), &server.url("/x.bin")]));
    r.expect_code(2)
        .expect_stderr_contains(&missing.display().to_string());
    assert_eq!(server.total_hits(), 0);
}

// ---------------------------------------------------------------------------
// --http-user / --http-password
// ---------------------------------------------------------------------------

#[test]
fn http_user_sends_basic_auth_and_wins_over_netrc() {
    let server = TestServer::start();
    let body = content(8, 4 * KIB);
    server.file("/u.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let netrc = sandbox_file(
        &v,
        "netrc",
        "machine 127.0.0.1 login alice password s3cret\n",
    );
    let r = run(v.args([
        "--http-user",
        "u",
        "--http-password",
        "p",
        "--netrc-file",
        &path_arg(&netrc),
        "-d",
        &path_arg(&dir),
        &server.url("/u.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("u.bin"), &body);
    assert_every_request_has(&server, "/u.bin", "authorization", &basic("u", "p"));
}

#[test]
fn http_user_credentials_do_not_follow_a_redirect_to_another_host() {
    let a = TestServer::start();
    let b = TestServer::start();
    let body = content(9, 8 * KIB);
    b.file("/moved.bin", body.clone());
    a.redirect("/go", 301, &b.localhost_url("/moved.bin"));
    let mut v = volley();
    let dir = out_dir(&v);
    let r = run(v.args([
        "--http-user",
        "u",
        "--http-password",
        "p",
        "-d",
        &path_arg(&dir),
        &a.url("/go"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("go"), &body);
    assert_every_request_has(&a, "/go", "authorization", &basic("u", "p"));
    assert_no_header(&b, "authorization");
}

#[test]
fn http_password_without_user_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/x.bin", content(10, KIB));
    let mut v = volley();
    let r = run(v.args(["--http-password", "p", &server.url("/x.bin")]));
    r.expect_code(2).expect_stderr_contains("--http-password");
    assert_eq!(server.total_hits(), 0);
}

// ---------------------------------------------------------------------------
// Cookies
// ---------------------------------------------------------------------------

#[test]
fn loaded_cookies_are_sent_only_where_they_match() {
    let server = TestServer::start();
    let body = content(11, 4 * KIB);
    server.file("/c.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let cookies = sandbox_file(
        &v,
        "cookies.txt",
        "# Netscape HTTP Cookie File\n\
         \n\
         127.0.0.1\tFALSE\t/\tFALSE\t0\tname\tvalue\n\
         127.0.0.1\tFALSE\t/\tFALSE\t1000000000\texpired\tgone\n\
         example.org\tFALSE\t/\tFALSE\t0\telsewhere\tnope\n\
         127.0.0.1\tFALSE\t/\tTRUE\t0\tsecure\thttps-only\n\
         127.0.0.1\tFALSE\t/private\tFALSE\t0\tdeeper\tpath\n",
    );
    let r = run(v.args([
        "--load-cookies",
        &path_arg(&cookies),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("c.bin"), &body);
    assert_every_request_has(&server, "/c.bin", "cookie", "name=value");
}

#[test]
fn loaded_cookies_do_not_follow_a_redirect_to_another_host() {
    let a = TestServer::start();
    let b = TestServer::start();
    b.file("/there.bin", content(12, KIB));
    a.redirect("/here", 302, &b.localhost_url("/there.bin"));
    let mut v = volley();
    let dir = out_dir(&v);
    let cookies = sandbox_file(
        &v,
        "cookies.txt",
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tname\tvalue\n",
    );
    let r = run(v.args([
        "--load-cookies",
        &path_arg(&cookies),
        "-d",
        &path_arg(&dir),
        &a.url("/here"),
    ]));
    r.expect_code(0);
    assert_every_request_has(&a, "/here", "cookie", "name=value");
    assert_no_header(&b, "cookie");
}

/// The Netscape lines of a saved cookie file (comments and blanks dropped).
fn cookie_lines(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: cannot read ({e})", path.display()));
    assert!(
        text.starts_with("# Netscape HTTP Cookie File\n"),
        "no Netscape header:\n{text}"
    );
    text.lines()
        .filter(|l| !l.trim().is_empty() && (!l.starts_with('#') || l.starts_with("#HttpOnly_")))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn cookies_set_by_a_response_are_saved_and_sent_later_in_the_run() {
    let server = TestServer::start();
    let first = content(13, 4 * KIB);
    let second = content(14, 4 * KIB);
    server.route(
        "/login.bin",
        Route::new(first.clone())
            .header("Set-Cookie", "sid=abc; Path=/; Max-Age=3600")
            .header("Set-Cookie", "theme=dark; Path=/; HttpOnly"),
    );
    server.file("/second.bin", second.clone());
    let mut v = volley();
    let dir = out_dir(&v);
    let saved = v.sandbox.root().join("saved.txt");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = run(v.args([
        "--save-cookies",
        &path_arg(&saved),
        "-j",
        "1",
        "-d",
        &path_arg(&dir),
        &server.url("/login.bin"),
        &server.url("/second.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("login.bin"), &first);
    assert_file_eq(dir.join("second.bin"), &second);
    assert!(server
        .requests("/login.bin")
        .iter()
        .all(|req| !req.has_header("cookie")));
    assert_every_request_has(&server, "/second.bin", "cookie", "sid=abc; theme=dark");

    let lines = cookie_lines(&saved);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let sid = &lines[0];
    assert_eq!(
        sid[..4],
        ["127.0.0.1", "FALSE", "/", "FALSE"].map(String::from),
        "{sid:?}"
    );
    let expiry: u64 = sid[4].parse().expect("expiry is a number");
    assert!(
        (before + 3600..=before + 3600 + 60).contains(&expiry),
        "expiry {expiry} is not about an hour after {before}"
    );
    assert_eq!(sid[5..], ["sid", "abc"].map(String::from));
    // A session cookie is saved with expiry 0; HttpOnly keeps curl's prefix.
    assert_eq!(
        lines[1],
        [
            "#HttpOnly_127.0.0.1",
            "FALSE",
            "/",
            "FALSE",
            "0",
            "theme",
            "dark"
        ]
        .map(String::from)
    );
}

#[test]
fn saved_cookies_keep_loaded_ones_and_drop_deleted_ones() {
    let server = TestServer::start();
    server.route(
        "/logout.bin",
        Route::new(content(15, KIB)).header("Set-Cookie", "old=; Path=/; Max-Age=0"),
    );
    let mut v = volley();
    let dir = out_dir(&v);
    let jar = sandbox_file(
        &v,
        "jar.txt",
        "# Netscape HTTP Cookie File\n\
         127.0.0.1\tFALSE\t/\tFALSE\t0\told\tx\n\
         .example.org\tTRUE\t/\tTRUE\t4000000000\tkeep\ty\n",
    );
    let r = run(v.args([
        "--load-cookies",
        &path_arg(&jar),
        "--save-cookies",
        &path_arg(&jar),
        "-d",
        &path_arg(&dir),
        &server.url("/logout.bin"),
    ]));
    r.expect_code(0);
    assert_every_request_has(&server, "/logout.bin", "cookie", "old=x");
    assert_eq!(
        cookie_lines(&jar),
        vec![[
            ".example.org",
            "TRUE",
            "/",
            "TRUE",
            "4000000000",
            "keep",
            "y"
        ]
        .map(String::from)]
    );
}

#[test]
fn malformed_cookie_file_stops_before_any_request() {
    let server = TestServer::start();
    server.file("/x.bin", content(16, KIB));
    let mut v = volley();
    let dir = out_dir(&v);
    let cookies = sandbox_file(
        &v,
        "cookies.txt",
        "# Netscape HTTP Cookie File\n\
         127.0.0.1\tFALSE\t/\tFALSE\t0\tgood\tone\n\
         127.0.0.1 FALSE / FALSE 0 spaces instead-of-tabs\n",
    );
    let r = run(v.args([
        "--load-cookies",
        &path_arg(&cookies),
        "-d",
        &path_arg(&dir),
        &server.url("/x.bin"),
    ]));
    r.expect_code(2)
        .expect_stderr_contains(&format!("{}:3:", cookies.display()))
        .expect_stderr_contains("TAB-separated");
    assert_eq!(server.total_hits(), 0);
    assert!(!dir.join("x.bin").exists());
}

#[test]
fn missing_cookie_file_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/x.bin", content(17, KIB));
    let mut v = volley();
    let missing = v.sandbox.root().join("no-cookies.txt");
    let r = run(v.args(["--load-cookies", &path_arg(&missing), &server.url("/x.bin")]));
    r.expect_code(2)
        .expect_stderr_contains(&missing.display().to_string());
    assert_eq!(server.total_hits(), 0);
}
