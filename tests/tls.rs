//! TLS tests: the `volley` binary against the test server over HTTPS
//! ([`TestServer::start_tls`], certificate and CA in `tests/fixtures`) —
//! `--ca-cert` (flag and config key), verification without it, `--insecure`,
//! `https` → `http` redirects with and without `--allow-insecure-redirect`,
//! credentials across such a redirect, and bad `--ca-cert` files.
//!
//! Every test owns its servers and sandbox, so they run in parallel, and each
//! checks the final bytes byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const KIB: usize = 1024;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("out")
}

/// A TLS server with one file route.
fn tls_server_with(path: &str, body: &[u8]) -> TestServer {
    let server = TestServer::start_tls();
    server.route(path, Route::new(body.to_vec()).etag("\"t1\""));
    server
}

/// GET requests on `path`, in arrival order.
fn gets(server: &TestServer, path: &str) -> Vec<RecordedRequest> {
    server
        .requests(path)
        .into_iter()
        .filter(|r| r.method.eq_ignore_ascii_case("GET"))
        .collect()
}

/// Assert `dir` holds nothing but `expected` (sorted relative paths).
#[track_caller]
fn assert_tree(dir: &Path, expected: &[&str]) {
    let got = list_tree(dir);
    let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "unexpected files under {}", dir.display());
}

/// Panic unless stderr contains `needle`, ignoring ASCII case.
#[track_caller]
fn expect_stderr_contains_nocase(r: &Run, needle: &str) {
    if !r
        .stderr
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
    {
        panic!(
            "expected stderr to contain {needle:?} (any case)\n--- stderr ---\n{}",
            r.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// a. --ca-cert makes the test CA trusted
// ---------------------------------------------------------------------------

#[test]
fn https_download_with_ca_cert_is_byte_identical() {
    let body = content(1, 300 * KIB + 17);
    let server = tls_server_with("/s.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let url = server.url("/s.bin");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let r = run(v.args(["--ca-cert", &ca_pem(), "-d", &path_arg(&dir), &url]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("s.bin"), &body);
    assert_tree(&dir, &["s.bin"]);
    let reqs = gets(&server, "/s.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert!(reqs[0].tls, "request did not come over TLS: {:#?}", reqs[0]);
    assert_eq!(server.tls_handshake_failures(), 0);
}

#[test]
fn https_by_host_name_localhost_with_ca_cert() {
    let body = content(2, 64 * KIB);
    let server = tls_server_with("/l.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let url = server.localhost_url("/l.bin");
    assert!(url.starts_with("https://localhost:"), "{url}");
    let r = run(v.args(["--ca-cert", &ca_pem(), "-d", &path_arg(&dir), &url]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("l.bin"), &body);
    assert_tree(&dir, &["l.bin"]);
    assert_eq!(gets(&server, "/l.bin").len(), 1);
}

/// The test server's fault injection works over TLS too: a reset mid-body is
/// resumed with a Range request on a new TLS connection.
#[test]
fn reset_over_https_is_resumed() {
    let len = 512 * KIB;
    let body = content(3, len);
    let server = TestServer::start_tls();
    server.route(
        "/r.bin",
        Route::new(body.clone())
            .etag("\"r1\"")
            .fault(Fault::ResetAfter(len / 2)),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--retry-wait",
        "0.01",
        "-d",
        &path_arg(&dir),
        &server.url("/r.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("r.bin"), &body);
    assert_tree(&dir, &["r.bin"]);
    let reqs = gets(&server, "/r.bin");
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let range = reqs[1].header("range").unwrap_or_default();
    assert!(
        range.starts_with("bytes=") && range != "bytes=0-",
        "second request did not resume: {:#?}",
        reqs[1]
    );
    assert_eq!(reqs[1].header("if-range"), Some("\"r1\""));
    let sent = server.body_bytes_sent("/r.bin");
    assert!(
        sent < (len + len / 4) as u64,
        "server sent {sent} bytes for a {len}-byte file"
    );
}

// ---------------------------------------------------------------------------
// b. without --ca-cert the certificate is not trusted
// ---------------------------------------------------------------------------

#[test]
fn https_without_ca_cert_fails_on_the_certificate() {
    let body = content(4, 10 * KIB);
    let server = tls_server_with("/s.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retry-wait",
        "0.01",
        "--max-retry-wait",
        "0.05",
        "-d",
        &path_arg(&dir),
        &server.url("/s.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    expect_stderr_contains_nocase(&r, "certificate");
    r.expect_stderr_contains(&server.url("/s.bin"));
    assert!(!dir.join("s.bin").exists(), "{:?}", list_tree(&dir));
    assert_no_part_files(&dir);
    // No HTTP request ever reached the server over the untrusted connection.
    assert_eq!(server.total_hits(), 0, "{:#?}", server.all_requests());
    // The server counts the failed handshake when it notices the client has
    // gone, which may be just after volley exits.
    wait_until(Duration::from_secs(5), || {
        server.tls_handshake_failures() >= 1
    });
    assert!(
        server.tls_handshake_failures() >= 1,
        "no failed handshake seen ({} connections)",
        server.connections()
    );
    // A refused certificate is not retried: another try cannot succeed.
    assert_eq!(
        server.connections(),
        1,
        "the untrusted certificate was tried more than once"
    );
    assert!(!r.stderr.contains("retry"), "{}", r.stderr);
}

#[test]
fn https_localhost_without_ca_cert_fails_on_the_certificate() {
    let server = tls_server_with("/s.bin", &content(5, 1000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.localhost_url("/s.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    expect_stderr_contains_nocase(&r, "certificate");
    assert!(!dir.join("s.bin").exists(), "{:?}", list_tree(&dir));
    assert_no_part_files(&dir);
    assert_eq!(server.total_hits(), 0);
}

// ---------------------------------------------------------------------------
// c. --insecure
// ---------------------------------------------------------------------------

#[test]
fn insecure_accepts_the_untrusted_certificate() {
    let body = content(6, 200 * KIB);
    let server = tls_server_with("/i.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(["--insecure", "-d", &path_arg(&dir), &server.url("/i.bin")]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("i.bin"), &body);
    assert_tree(&dir, &["i.bin"]);
    assert_eq!(gets(&server, "/i.bin").len(), 1);
}

// ---------------------------------------------------------------------------
// d. https → http redirects
// ---------------------------------------------------------------------------

/// A TLS server whose `/go` answers 302 to `/plain.bin` on a plain server.
fn downgrade_pair(body: &[u8]) -> (TestServer, TestServer) {
    let tls = TestServer::start_tls();
    let plain = TestServer::start();
    plain.file("/plain.bin", body.to_vec());
    tls.redirect("/go", 302, &plain.url("/plain.bin"));
    (tls, plain)
}

#[test]
fn https_to_http_redirect_is_refused_by_default() {
    let body = content(7, 50 * KIB);
    let (tls, plain) = downgrade_pair(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--retry-wait",
        "0.01",
        "-o",
        "got.bin",
        "-d",
        &path_arg(&dir),
        &tls.url("/go"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    r.expect_stderr_contains("--allow-insecure-redirect");
    assert_eq!(
        plain.total_hits(),
        0,
        "the plain server was asked: {:#?}",
        plain.all_requests()
    );
    assert_eq!(plain.connections(), 0, "the plain server was connected to");
    // README: redirect errors fail at once (no retry).
    assert_eq!(gets(&tls, "/go").len(), 1, "{:#?}", tls.all_requests());
    assert!(!dir.join("got.bin").exists(), "{:?}", list_tree(&dir));
    assert_no_part_files(&dir);
}

#[test]
fn https_to_http_redirect_with_flag_arrives() {
    let body = content(8, 150 * KIB + 3);
    let (tls, plain) = downgrade_pair(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--allow-insecure-redirect",
        "-o",
        "got.bin",
        "-d",
        &path_arg(&dir),
        &tls.url("/go"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("got.bin"), &body);
    assert_tree(&dir, &["got.bin"]);
    assert_eq!(gets(&tls, "/go").len(), 1);
    let reqs = gets(&plain, "/plain.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert!(!reqs[0].tls);
}

#[test]
fn allow_insecure_redirect_from_config_file() {
    let body = content(9, 20 * KIB);
    let (tls, plain) = downgrade_pair(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg = write_config(
        &v.sandbox,
        &format!(
            "ca_cert = {}\nallow_insecure_redirect = true\n",
            toml_str(&ca_pem())
        ),
    );
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-o",
        "got.bin",
        "-d",
        &path_arg(&dir),
        &tls.url("/go"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("got.bin"), &body);
    assert_eq!(gets(&plain, "/plain.bin").len(), 1);
}

// ---------------------------------------------------------------------------
// e. credentials never follow an https → http redirect
// ---------------------------------------------------------------------------

#[test]
fn credentials_are_not_sent_on_https_to_http_redirect() {
    let body = content(10, 30 * KIB);
    let (tls, plain) = downgrade_pair(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--allow-insecure-redirect",
        "-H",
        "Authorization: Bearer x",
        "-H",
        "Cookie: session=s3cret",
        "-o",
        "got.bin",
        "-d",
        &path_arg(&dir),
        &tls.url("/go"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("got.bin"), &body);
    // Sanity: the https hop did carry them.
    let first = gets(&tls, "/go");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].header("authorization"), Some("Bearer x"));
    assert_eq!(first[0].header("cookie"), Some("session=s3cret"));
    let reqs = gets(&plain, "/plain.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    for req in &reqs {
        assert!(
            !req.has_header("authorization"),
            "Authorization sent over http: {req:#?}"
        );
        assert!(!req.has_header("cookie"), "Cookie sent over http: {req:#?}");
    }
}

/// Same host, same port, only the scheme changes: the credentials still stay
/// behind, and the second hop really is plain HTTP.
#[test]
fn credentials_are_not_sent_when_only_the_scheme_changes() {
    let body = content(11, 30 * KIB);
    let server = TestServer::start_tls_and_plain();
    server.file("/plain.bin", body.clone());
    server.redirect("/go", 302, &server.http_url("/plain.bin"));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--allow-insecure-redirect",
        "-H",
        "Authorization: Bearer x",
        "-o",
        "got.bin",
        "-d",
        &path_arg(&dir),
        &format!("https://user:pw@{}/go", server.addr()),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("got.bin"), &body);
    let first = gets(&server, "/go");
    assert_eq!(first.len(), 1, "{first:#?}");
    assert!(first[0].tls, "{:#?}", first[0]);
    assert!(
        first[0].has_header("authorization"),
        "the https hop carried no Authorization: {:#?}",
        first[0]
    );
    let reqs = gets(&server, "/plain.bin");
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert!(!reqs[0].tls, "second hop came over TLS: {:#?}", reqs[0]);
    assert!(
        !reqs[0].has_header("authorization"),
        "Authorization sent over http: {:#?}",
        reqs[0]
    );
}

// ---------------------------------------------------------------------------
// f. bad --ca-cert files are usage errors
// ---------------------------------------------------------------------------

/// Run with `--ca-cert PATH` against a TLS server and expect a usage error
/// naming the flag and the path, before any connection.
#[track_caller]
fn expect_ca_cert_usage_error(v: &mut Volley, ca: &Path) {
    let server = tls_server_with("/s.bin", &content(12, 1000));
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &path_arg(ca),
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        &server.url("/s.bin"),
    ]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains("--ca-cert");
    r.expect_stderr_contains(&path_arg(ca));
    assert_eq!(server.total_hits(), 0, "{:#?}", server.all_requests());
    assert_eq!(server.connections(), 0, "volley connected to the server");
    assert!(list_tree(&dir).is_empty(), "{:?}", list_tree(&dir));
}

#[test]
fn ca_cert_missing_file_is_a_usage_error() {
    let mut v = volley();
    let ca = v.sandbox.root().join("no-such-ca.pem");
    expect_ca_cert_usage_error(&mut v, &ca);
}

#[test]
fn ca_cert_not_pem_is_a_usage_error() {
    let mut v = volley();
    let ca = v.sandbox.root().join("not-a-cert.pem");
    std::fs::write(&ca, "this is not a certificate\njust some text\n").unwrap();
    expect_ca_cert_usage_error(&mut v, &ca);
}

#[test]
fn ca_cert_with_broken_pem_body_is_a_usage_error() {
    let mut v = volley();
    let ca = v.sandbox.root().join("broken.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    expect_ca_cert_usage_error(&mut v, &ca);
}

#[test]
fn ca_cert_pem_without_a_certificate_is_a_usage_error() {
    // PEM, but only a private key: there is no root certificate to add.
    let mut v = volley();
    let ca = v.sandbox.root().join("key-only.pem");
    std::fs::copy(fixture_path("server.key"), &ca).unwrap();
    expect_ca_cert_usage_error(&mut v, &ca);
}

#[test]
fn ca_cert_directory_is_a_usage_error() {
    let mut v = volley();
    let ca = v.sandbox.root().join("a-directory");
    std::fs::create_dir_all(&ca).unwrap();
    expect_ca_cert_usage_error(&mut v, &ca);
}

// ---------------------------------------------------------------------------
// g. the config key ca_cert
// ---------------------------------------------------------------------------

#[test]
fn config_ca_cert_works_like_the_flag() {
    let body = content(13, 100 * KIB);
    let server = tls_server_with("/c.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg = write_config(&v.sandbox, &format!("ca_cert = {}\n", toml_str(&ca_pem())));
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("c.bin"), &body);
    assert_tree(&dir, &["c.bin"]);
}

#[test]
fn default_config_file_ca_cert_is_used() {
    let body = content(14, 10 * KIB);
    let server = tls_server_with("/c.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg_dir = v.sandbox.config_home().join("volley");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.toml"),
        format!("ca_cert = {}\n", toml_str(&ca_pem())),
    )
    .unwrap();
    let r = run(v.args(["-d", &path_arg(&dir), &server.localhost_url("/c.bin")]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("c.bin"), &body);
}

#[test]
fn config_ca_cert_missing_file_is_a_usage_error() {
    let server = tls_server_with("/c.bin", &content(15, 1000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let missing = path_arg(&v.sandbox.root().join("missing-ca.pem"));
    let cfg = write_config(&v.sandbox, &format!("ca_cert = {}\n", toml_str(&missing)));
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains(&missing);
    assert_eq!(server.connections(), 0);
    assert!(list_tree(&dir).is_empty(), "{:?}", list_tree(&dir));
}

#[test]
fn config_insecure_true_accepts_the_untrusted_certificate() {
    let body = content(16, 10 * KIB);
    let server = tls_server_with("/c.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let cfg = write_config(&v.sandbox, "insecure = true\n");
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("c.bin"), &body);
}

/// The flag wins over a config key pointing at a file that does not exist.
#[test]
fn ca_cert_flag_overrides_config() {
    let body = content(17, 10 * KIB);
    let server = tls_server_with("/c.bin", &body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let missing = path_arg(&v.sandbox.root().join("missing-ca.pem"));
    let cfg = write_config(&v.sandbox, &format!("ca_cert = {}\n", toml_str(&missing)));
    let r = run(v.args([
        "--config",
        &path_arg(&cfg),
        "--ca-cert",
        &ca_pem(),
        "-d",
        &path_arg(&dir),
        &server.url("/c.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("c.bin"), &body);
}
