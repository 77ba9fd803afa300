//! Networks as volley meets them: a real HTTP/2 server (hyper over rustls,
//! [`H2Server`] in `tests/common/h2server.rs`) and TLS as servers have it.
//!
//! - Connections: a split download (`-x N`) gets HTTP/1.1 connections of its
//!   own; many small files share HTTP/2; a large body found on the shared
//!   HTTP/2 connection moves to a connection of its own; `--http1.1` never
//!   speaks HTTP/2.
//! - Certificates: a self-signed server certificate given to `--ca-cert`
//!   (host name and dates still checked), an unknown CA, a client certificate
//!   (`--cert`, `--key`, flags and config keys) for a server that wants one.
//! - Every TLS failure is one line in plain words, with no error-chain dump.
//!
//! Every test owns its server and sandbox, and checks each file byte for
//! byte.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::h2server::{Alpn, H2Request, H2Server};
use common::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("out")
}

/// `tests/fixtures/NAME` as an argument.
fn fixture(name: &str) -> String {
    path_arg(&fixture_path(name))
}

/// `n` files `/f{i}.bin` of `len` bytes each on `server`; their URLs and
/// bodies.
fn serve_files(server: &H2Server, n: usize, len: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let path = format!("/f{i}.bin");
            let body = content(seed + i as u64, len);
            server.file(&path, body.clone());
            (server.url(&path), body)
        })
        .collect()
}

/// Run volley on a list of URLs (`-i LIST`) with `args`, into `out_dir`.
fn run_list(v: &mut Volley, urls: &[String], args: &[&str]) -> Run {
    let list = v.sandbox.root().join("urls.txt");
    write_list(&list, urls);
    let dir = out_dir(&v.sandbox);
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "--progress".into(),
        "none".into(),
        "-d".into(),
        path_arg(&dir),
        "-i".into(),
        path_arg(&list),
    ]);
    run(v.args(&all))
}

/// Assert every file arrived intact under `dir` and nothing else is there.
#[track_caller]
fn assert_all_files(dir: &std::path::Path, files: &[(String, Vec<u8>)]) {
    for (url, body) in files {
        let name = url.rsplit('/').next().expect("file name");
        assert_file_eq(dir.join(name), body);
    }
    assert_eq!(list_tree(dir).len(), files.len(), "{:?}", list_tree(dir));
}

/// A short account of the requests a server saw, for failure messages.
fn summary(reqs: &[H2Request]) -> String {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {} {:?} conn {} range {:?} sent {}/{}",
                r.method,
                r.path,
                r.version,
                r.conn_id,
                r.range,
                r.body_bytes_sent(),
                r.body_len
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`one_line_failure`], tried once: another try cannot fix a certificate.
#[track_caller]
fn expect_one_line_failure(v: &mut Volley, url: &str, args: &[&str], needles: &[&str]) -> String {
    let (line, r) = one_line_failure(v, url, args, needles);
    assert!(
        !r.stderr.contains("retry"),
        "a TLS failure was retried:\n{}",
        r.stderr
    );
    line
}

// ---------------------------------------------------------------------------
// Connections: which transfer goes over which protocol and connection
// ---------------------------------------------------------------------------

/// `-x 4` on a server that offers HTTP/2: the four pieces are fetched over
/// four HTTP/1.1 connections of their own, not multiplexed on one.
#[test]
fn split_download_over_http2_server_opens_one_connection_per_piece() {
    let server = H2Server::start();
    let body = content(1, 8 * MIB);
    server.file("/big.bin", body.clone());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "-x",
        "4",
        "--min-split-size",
        "1M",
        "-d",
        &path_arg(&dir),
        &server.url("/big.bin"),
    ]));
    r.expect_code(0).expect_empty_stdout();
    assert_file_eq(dir.join("big.bin"), &body);
    assert_no_part_files(&dir);
    let reqs = server.requests_for("/big.bin");
    let gets: Vec<_> = reqs.iter().filter(|r| r.method == "GET").collect();
    assert!(
        server.connections() >= 4,
        "{} TCP connections for -x 4:\n{}",
        server.connections(),
        summary(&reqs)
    );
    let conns: BTreeSet<usize> = gets.iter().map(|r| r.conn_id).collect();
    assert!(
        conns.len() >= 4,
        "the pieces came over {} connections:\n{}",
        conns.len(),
        summary(&reqs)
    );
    assert!(
        gets.iter().all(|r| !r.is_h2()),
        "a piece came over HTTP/2:\n{}",
        summary(&reqs)
    );
    assert!(
        gets.iter().filter(|r| r.range.is_some()).count() >= 4,
        "fewer than 4 ranged requests:\n{}",
        summary(&reqs)
    );
}

/// 200 small files with `-j 8`: they share HTTP/2 connections (at most one
/// per job), so no more than 8 TCP connections, and most requests are
/// HTTP/2.
#[test]
fn many_small_files_share_http2_connections() {
    let server = H2Server::start();
    let files = serve_files(&server, 200, 4 * KIB, 100);
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let r = run_list(&mut v, &urls, &["--ca-cert", &ca_pem(), "-j", "8"]);
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    let reqs = server.requests();
    let h2 = reqs.iter().filter(|r| r.is_h2()).count();
    assert!(
        server.connections() <= 8,
        "{} TCP connections for 200 small files with -j 8 ({} over h2, {} over http/1.1)",
        server.connections(),
        server.h2_connections(),
        server.http1_connections()
    );
    assert!(
        h2 * 2 > reqs.len(),
        "only {h2} of {} requests came over HTTP/2",
        reqs.len()
    );
}

/// Four files larger than `--min-split-size` (default 4 MiB) with `-j 4` and
/// no `-x`: each body is found large on the shared HTTP/2 connection and
/// asked again on an HTTP/1.1 connection of its own.
///
/// Measured per request: the server counts the body bytes it hands to the
/// connection for each answer; a connection "carried a large body" when a
/// whole 12 MiB body was handed to it. Four such connections, one body each.
#[test]
fn large_files_get_a_connection_each() {
    let server = H2Server::start();
    let files = serve_files(&server, 4, 12 * MIB, 200);
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let r = run_list(&mut v, &urls, &["--ca-cert", &ca_pem(), "-j", "4"]);
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    let reqs = server.requests();
    let whole: Vec<&H2Request> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.body_len == (12 * MIB) as u64 && r.body_complete())
        .collect();
    let conns: BTreeSet<usize> = whole.iter().map(|r| r.conn_id).collect();
    assert!(
        conns.len() >= 4,
        "whole large bodies went over {} connections:\n{}",
        conns.len(),
        summary(&reqs)
    );
    assert_eq!(
        conns.len(),
        whole.len(),
        "a connection carried two large bodies:\n{}",
        summary(&reqs)
    );
    assert!(
        whole.iter().all(|r| !r.is_h2()),
        "a large body went over HTTP/2:\n{}",
        summary(&reqs)
    );
}

/// `--http1.1`: not one request over HTTP/2, small files or large.
#[test]
fn http1_1_flag_never_speaks_http2() {
    let server = H2Server::start();
    let mut files = serve_files(&server, 20, 8 * KIB, 300);
    let big = content(399, 5 * MIB);
    server.file("/large.bin", big.clone());
    files.push((server.url("/large.bin"), big));
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let r = run_list(&mut v, &urls, &["--ca-cert", &ca_pem(), "--http1.1"]);
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    let reqs = server.requests();
    assert!(reqs.len() >= files.len(), "{}", summary(&reqs));
    assert!(
        reqs.iter().all(|r| !r.is_h2()),
        "requests over HTTP/2 with --http1.1:\n{}",
        summary(&reqs)
    );
    assert_eq!(server.h2_connections(), 0);
}

/// A server that offers only HTTP/1.1: every file arrives over HTTP/1.1.
#[test]
fn server_without_http2_is_spoken_to_over_http1() {
    let server = H2Server::builder().alpn(Alpn::Http1Only).start();
    let files = serve_files(&server, 10, 16 * KIB, 400);
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let r = run_list(&mut v, &urls, &["--ca-cert", &ca_pem()]);
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    // (The server offers only HTTP/1.1: the download working is the test;
    // these say what it was spoken over.)
    assert!(server.http1_connections() >= 1);
    assert!(server.requests().iter().all(|r| !r.is_h2()));
}

// ---------------------------------------------------------------------------
// --ca-cert with a self-signed server certificate
// ---------------------------------------------------------------------------

#[test]
fn ca_cert_trusts_a_self_signed_certificate_by_ip_and_by_name() {
    let server = H2Server::builder().fixture_cert("selfsigned").start();
    let body = content(500, 300 * KIB);
    server.file("/s.bin", body.clone());
    for url in [server.url("/s.bin"), server.localhost_url("/s.bin")] {
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v.args([
            "--ca-cert",
            &fixture("selfsigned.pem"),
            "-d",
            &path_arg(&dir),
            &url,
        ]));
        r.expect_code(0).expect_empty_stdout();
        assert_file_eq(dir.join("s.bin"), &body);
    }
    assert_eq!(server.requests_for("/s.bin").len(), 2);
}

#[test]
fn self_signed_certificate_without_ca_cert_is_refused_as_self_signed() {
    let server = H2Server::builder().fixture_cert("selfsigned").start();
    server.file("/s.bin", content(501, 1000));
    let mut v = volley();
    let line = expect_one_line_failure(&mut v, &server.url("/s.bin"), &[], &["self-signed"]);
    assert!(line.contains("--ca-cert"), "{line}");
    assert_eq!(server.request_count(), 0);
}

/// `--ca-cert` of a self-signed certificate for `example.org` does not make
/// it good for `127.0.0.1`: the host name is still checked.
#[test]
fn ca_cert_still_checks_the_host_name() {
    let server = H2Server::builder().fixture_cert("othername").start();
    server.file("/s.bin", content(502, 1000));
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/s.bin"),
        &["--ca-cert", &fixture("othername.pem")],
        &["example.org"],
    );
    assert_eq!(server.request_count(), 0);
}

/// Trusting `othername.pem` does not make another self-signed certificate
/// (`selfsigned.pem`, valid for 127.0.0.1, so only trust can refuse it)
/// trusted.
#[test]
fn ca_cert_of_one_self_signed_certificate_does_not_trust_another() {
    let server = H2Server::builder().fixture_cert("selfsigned").start();
    server.file("/s.bin", content(503, 1000));
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/s.bin"),
        &["--ca-cert", &fixture("othername.pem")],
        &["is self-signed", "--ca-cert"],
    );
    assert_eq!(server.request_count(), 0);
}

#[test]
fn ca_cert_still_checks_the_dates() {
    let server = H2Server::builder().fixture_cert("expired").start();
    server.file("/s.bin", content(504, 1000));
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/s.bin"),
        &["--ca-cert", &fixture("expired.pem")],
        &["expired"],
    );
    assert_eq!(server.request_count(), 0);
}

#[test]
fn unknown_ca_is_refused_naming_ca_cert() {
    let server = H2Server::start();
    server.file("/s.bin", content(505, 1000));
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/s.bin"),
        &[],
        &["is not signed by a trusted authority", "--ca-cert"],
    );
    assert_eq!(server.request_count(), 0);
}

// ---------------------------------------------------------------------------
// Mutual TLS
// ---------------------------------------------------------------------------

/// A server that wants a client certificate from `client-ca.pem`, with a
/// small file (shared HTTP/2 connection) and a large one (a connection of its
/// own): both clients must present the certificate.
fn mtls_server() -> (H2Server, Vec<(String, Vec<u8>)>) {
    let server = H2Server::builder()
        .client_ca(fixture_path("client-ca.pem"))
        .start();
    let small = content(600, 20 * KIB);
    let large = content(601, 6 * MIB);
    server.file("/small.bin", small.clone());
    server.file("/large.bin", large.clone());
    let files = vec![
        (server.url("/small.bin"), small),
        (server.url("/large.bin"), large),
    ];
    (server, files)
}

#[test]
fn client_certificate_is_presented_with_cert_and_key() {
    let (server, files) = mtls_server();
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let r = run_list(
        &mut v,
        &urls,
        &[
            "--ca-cert",
            &ca_pem(),
            "--cert",
            &fixture("client.pem"),
            "--key",
            &fixture("client.key"),
        ],
    );
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    assert_eq!(server.tls_handshake_failures(), 0);
}

#[test]
fn client_certificate_from_config_keys() {
    let (server, files) = mtls_server();
    let urls: Vec<String> = files.iter().map(|(u, _)| u.clone()).collect();
    let mut v = volley();
    let cfg = write_config(
        &v.sandbox,
        &format!(
            "ca_cert = {}\ncert = {}\nkey = {}\n",
            toml_str(&ca_pem()),
            toml_str(&fixture("client.pem")),
            toml_str(&fixture("client.key"))
        ),
    );
    let r = run_list(&mut v, &urls, &["--config", &path_arg(&cfg)]);
    r.expect_code(0).expect_empty_stdout();
    assert_all_files(&out_dir(&v.sandbox), &files);
    assert_eq!(server.tls_handshake_failures(), 0);
}

/// Without `--cert`, a server that wants a client certificate refuses the
/// handshake: one line naming `--cert`. By default the first request goes
/// over the shared client, which offers HTTP/2.
#[test]
fn server_wanting_a_client_certificate_fails_naming_cert() {
    let (server, _files) = mtls_server();
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/small.bin"),
        &["--ca-cert", &ca_pem()],
        &["--cert"],
    );
    assert_eq!(server.request_count(), 0);
    wait_until(Duration::from_secs(5), || {
        server.tls_handshake_failures() >= 1
    });
    assert!(server.tls_handshake_failures() >= 1);
}

/// The same over HTTP/1.1 only (`--http1.1`).
#[test]
fn server_wanting_a_client_certificate_fails_naming_cert_over_http1_1() {
    let (server, _files) = mtls_server();
    let mut v = volley();
    expect_one_line_failure(
        &mut v,
        &server.url("/small.bin"),
        &["--ca-cert", &ca_pem(), "--http1.1"],
        &["--cert"],
    );
    assert_eq!(server.request_count(), 0);
    wait_until(Duration::from_secs(5), || {
        server.tls_handshake_failures() >= 1
    });
    assert!(server.tls_handshake_failures() >= 1);
}

#[test]
fn key_without_cert_is_a_usage_error() {
    let server = H2Server::start();
    server.file("/s.bin", content(700, 1000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args([
        "--ca-cert",
        &ca_pem(),
        "--key",
        &fixture("client.key"),
        "-d",
        &path_arg(&dir),
        &server.url("/s.bin"),
    ]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains("--key");
    assert_eq!(server.connections(), 0);
    assert!(list_tree(&dir).is_empty(), "{:?}", list_tree(&dir));
}
