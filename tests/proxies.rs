//! Proxies as volley uses them, end to end: real proxies in-process
//! ([`TestProxy`] in `tests/common/proxy.rs`: an HTTP proxy with CONNECT and
//! absolute-form requests, a SOCKS5 proxy), the test servers behind them.
//!
//! - Through an HTTP proxy: `http://` URLs as absolute-form requests,
//!   `https://` URLs tunnelled with CONNECT; Basic credentials from the proxy
//!   URL, percent-decoded.
//! - Through a SOCKS5 proxy: `socks5h://` hands the host name to the proxy,
//!   `socks5://` an address resolved here; with and without a user and
//!   password.
//! - Where the proxy comes from: `--proxy`, the `proxy` key, the environment
//!   as curl reads it (`http_proxy`, `HTTPS_PROXY`, `ALL_PROXY`, not
//!   `HTTP_PROXY`); `--noproxy`, the `noproxy` key and `NO_PROXY`;
//!   `--proxy ''` and `--noproxy '*'`.
//! - A proxy volley cannot use stops the run before anything is asked (exit
//!   2), naming the flag, variable or key; never a direct download instead.
//! - Failures on the way through a proxy in plain words, one line each.
//! - Proxy credentials never shown.
//!
//! The sandbox of every run sets `NO_PROXY=127.0.0.1,localhost,::1` (so no
//! proxy of the machine's can catch the loopback test servers): a run that
//! wants its proxy used for them clears `NO_PROXY` and `no_proxy`
//! ([`through_proxy`]), or gives `--noproxy` (which overrides `NO_PROXY`).
//! [`sandbox_no_proxy_sends_loopback_direct_until_overridden`] shows both.
//!
//! Every test owns its servers, proxies and sandbox, checks each file byte
//! for byte, and checks that the proxy saw the connection (or did not).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::proxy::{TestProxy, Via, SOCKS_HOST_UNREACHABLE};
use common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("out")
}

/// Clear the sandbox's `NO_PROXY`/`no_proxy` for this run, so that a proxy
/// applies to the loopback test servers.
fn through_proxy(v: &mut Volley) -> &mut Volley {
    v.env("NO_PROXY", "").env("no_proxy", "");
    v
}

/// A file `name` of `len` bytes on `server`: its URL by address
/// (`127.0.0.1`) or, with `localhost`, by name, and its body.
fn serve(server: &TestServer, name: &str, seed: u64, localhost: bool) -> (String, Vec<u8>) {
    let body = content(seed, 64 * 1024 + seed as usize);
    let path = format!("/{name}");
    server.file(&path, body.clone());
    let url = if localhost {
        server.localhost_url(&path)
    } else {
        server.url(&path)
    };
    (url, body)
}

/// Run volley on `urls` with `args`, into [`out_dir`].
fn download(v: &mut Volley, args: &[&str], urls: &[&str]) -> Run {
    let dir = out_dir(&v.sandbox);
    let mut all: Vec<String> = vec!["-d".into(), path_arg(&dir)];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(urls.iter().map(|s| s.to_string()));
    run(v.args(&all))
}

/// Assert a clean run that wrote every file intact into `dir`, and nothing
/// else.
#[track_caller]
fn assert_downloaded(r: &Run, dir: &Path, files: &[(&str, &[u8])]) {
    r.expect_code(0).expect_empty_stdout();
    for (url, body) in files {
        let name = url.rsplit('/').next().expect("file name");
        assert_file_eq(dir.join(name), body);
    }
    assert_eq!(list_tree(dir).len(), files.len(), "{:?}", list_tree(dir));
}

/// What a proxy saw, for failure messages.
fn account(proxy: &TestProxy) -> String {
    format!(
        "{} connections, {} refused for credentials, seen: {:#?}",
        proxy.connections(),
        proxy.auth_failures(),
        proxy.seen()
    )
}

/// Assert that the proxy saw exactly these targets (each at least once),
/// every one the `via` way and let through.
#[track_caller]
fn assert_proxy_saw(proxy: &TestProxy, via: Via, targets: &[String]) {
    let seen = proxy.seen();
    let got: BTreeSet<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    let want: BTreeSet<&str> = targets.iter().map(String::as_str).collect();
    assert_eq!(got, want, "targets the proxy saw: {}", account(proxy));
    assert!(
        seen.iter().all(|s| s.via == via && s.authorized),
        "not all {via:?} and let through: {}",
        account(proxy)
    );
}

/// Assert that a proxy saw nothing at all.
#[track_caller]
fn assert_proxy_unused(proxy: &TestProxy) {
    assert_eq!(proxy.connections(), 0, "{}", account(proxy));
}

/// `host:port` of a URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").expect("scheme").1;
    rest.split('/').next().expect("authority").to_string()
}

/// [`one_line_failure`]: the line.
#[track_caller]
fn expect_one_line_failure(v: &mut Volley, url: &str, args: &[&str], needles: &[&str]) -> String {
    one_line_failure(v, url, args, needles).0
}

/// Expect a usage error (exit 2) before any download: stderr contains every
/// one of `needles`, nothing on stdout, no file, and `server` was never
/// contacted.
#[track_caller]
fn expect_usage_error(
    v: &mut Volley,
    server: &TestServer,
    url: &str,
    args: &[&str],
    needles: &[&str],
) -> Run {
    let dir = out_dir(&v.sandbox);
    let r = download(v, args, &[url]);
    r.expect_code(2).expect_empty_stdout();
    for needle in needles {
        r.expect_stderr_contains(needle);
    }
    assert_no_chain_dump(&r.stderr);
    assert_eq!(
        server.connections(),
        0,
        "the origin was contacted: {} requests\n--- stderr ---\n{}",
        server.total_hits(),
        r.stderr
    );
    assert!(
        list_tree(&dir).is_empty(),
        "files left: {:?}",
        list_tree(&dir)
    );
    r
}

/// A loopback port where nothing listens.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------
// The sandbox's NO_PROXY
// ---------------------------------------------------------------------------

/// The sandbox's `NO_PROXY=127.0.0.1,localhost,::1` applies to `--proxy`
/// too (as curl's does): the loopback server is fetched direct. Clearing
/// `NO_PROXY`/`no_proxy`, or `--noproxy ''` (which overrides them), sends it
/// through the proxy.
#[test]
fn sandbox_no_proxy_sends_loopback_direct_until_overridden() {
    let server = TestServer::start();
    let (url, body) = serve(&server, "a.bin", 1, false);
    let proxy = TestProxy::http().start();
    let via = proxy.url("http");

    let mut v = volley();
    let r = download(&mut v, &["--proxy", &via], &[&url]);
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_unused(&proxy);

    let mut v = volley();
    through_proxy(&mut v);
    let r = download(&mut v, &["--proxy", &via], &[&url]);
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_saw(&proxy, Via::Absolute, std::slice::from_ref(&url));

    let proxy = TestProxy::http().start();
    let mut v = volley();
    let r = download(
        &mut v,
        &["--proxy", &proxy.url("http"), "--noproxy", ""],
        &[&url],
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_saw(&proxy, Via::Absolute, std::slice::from_ref(&url));
}

// ---------------------------------------------------------------------------
// HTTP proxy
// ---------------------------------------------------------------------------

/// An `http://` URL through an HTTP proxy that wants Basic credentials: the
/// password `p%40ss` in the proxy URL reaches the proxy as `p@ss`; the
/// request is in absolute form; the origin gets no credentials.
#[test]
fn http_url_goes_through_http_proxy_with_percent_decoded_basic_credentials() {
    let server = TestServer::start();
    let (url, body) = serve(&server, "plain.bin", 2, false);
    let proxy = TestProxy::http().user("user", "p@ss").start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &["--proxy", &proxy.url_with_user("http", "user:p%40ss")],
        &[&url],
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_saw(&proxy, Via::Absolute, std::slice::from_ref(&url));
    assert!(
        proxy
            .seen()
            .iter()
            .all(|s| s.credentials == Some(("user".into(), "p@ss".into()))),
        "{}",
        account(&proxy)
    );
    assert_eq!(proxy.auth_failures(), 0, "{}", account(&proxy));
    let reqs = server.requests("/plain.bin");
    assert!(!reqs.is_empty());
    for req in reqs {
        assert!(
            !req.has_header("proxy-authorization") && !req.has_header("authorization"),
            "the origin got credentials: {:?}",
            req.headers
        );
    }
}

/// An `https://` URL through an HTTP proxy: a CONNECT tunnel to
/// `127.0.0.1:PORT` (with the proxy's credentials), TLS end to end with the
/// origin.
#[test]
fn https_url_is_tunnelled_through_http_proxy_with_connect() {
    let server = TestServer::start_tls();
    let (url, body) = serve(&server, "secure.bin", 3, false);
    let proxy = TestProxy::http().user("user", "pw").start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &[
            "--ca-cert",
            &ca_pem(),
            "--proxy",
            &proxy.url_with_user("http", "user:pw"),
        ],
        &[&url],
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_saw(&proxy, Via::Connect, &[authority(&url)]);
    let reqs = server.requests("/secure.bin");
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r.tls));
}

// ---------------------------------------------------------------------------
// SOCKS5 proxy
// ---------------------------------------------------------------------------

/// An `http://` and an `https://` URL by name (`localhost`), one file each.
struct TwoServers {
    plain: TestServer,
    tls: TestServer,
    files: Vec<(String, Vec<u8>)>,
}

fn two_servers(seed: u64) -> TwoServers {
    let plain = TestServer::start();
    let tls = TestServer::start_tls();
    let files = vec![
        serve(&plain, "by-http.bin", seed, true),
        serve(&tls, "by-https.bin", seed + 1, true),
    ];
    TwoServers { plain, tls, files }
}

impl TwoServers {
    fn urls(&self) -> Vec<&str> {
        self.files.iter().map(|(u, _)| u.as_str()).collect()
    }

    fn expected(&self) -> Vec<(&str, &[u8])> {
        self.files
            .iter()
            .map(|(u, b)| (u.as_str(), b.as_slice()))
            .collect()
    }

    /// `localhost:PORT` of both servers.
    fn by_name(&self) -> Vec<String> {
        vec![
            format!("localhost:{}", self.plain.port()),
            format!("localhost:{}", self.tls.port()),
        ]
    }

    /// `127.0.0.1:PORT` of both servers.
    fn by_address(&self) -> Vec<String> {
        vec![
            format!("127.0.0.1:{}", self.plain.port()),
            format!("127.0.0.1:{}", self.tls.port()),
        ]
    }
}

/// `socks5h://`: the proxy gets the host name (`localhost`), for http and
/// https URLs alike.
#[test]
fn socks5h_hands_the_host_name_to_the_proxy() {
    let s = two_servers(10);
    let proxy = TestProxy::socks5().start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &["--ca-cert", &ca_pem(), "--proxy", &proxy.url("socks5h")],
        &s.urls(),
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
    assert_proxy_saw(&proxy, Via::SocksDomain, &s.by_name());
}

/// `socks5://`: the host name is resolved here and the proxy gets an IPv4
/// address.
#[test]
fn socks5_hands_a_resolved_address_to_the_proxy() {
    let s = two_servers(20);
    let proxy = TestProxy::socks5().start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &["--ca-cert", &ca_pem(), "--proxy", &proxy.url("socks5")],
        &s.urls(),
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
    assert_proxy_saw(&proxy, Via::SocksIpv4, &s.by_address());
}

/// A SOCKS5 proxy that wants a user and password (RFC 1929) gets them from
/// the proxy URL, percent-decoded, with `socks5h://` and `socks5://`.
#[test]
fn socks5_and_socks5h_give_the_user_and_password() {
    for (scheme, via, seed) in [
        ("socks5h", Via::SocksDomain, 30),
        ("socks5", Via::SocksIpv4, 40),
    ] {
        let s = two_servers(seed);
        let proxy = TestProxy::socks5().user("alice", "open:sesame@1").start();
        let mut v = volley();
        through_proxy(&mut v);
        let r = download(
            &mut v,
            &[
                "--ca-cert",
                &ca_pem(),
                "--proxy",
                &proxy.url_with_user(scheme, "alice:open%3Asesame%401"),
            ],
            &s.urls(),
        );
        assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
        let targets = match via {
            Via::SocksDomain => s.by_name(),
            _ => s.by_address(),
        };
        assert_proxy_saw(&proxy, via, &targets);
        assert_eq!(proxy.auth_failures(), 0, "{scheme}: {}", account(&proxy));
        assert!(
            proxy
                .seen()
                .iter()
                .all(|s| s.credentials == Some(("alice".into(), "open:sesame@1".into()))),
            "{scheme}: {}",
            account(&proxy)
        );
    }
}

/// A split download (`-x 4`, HTTP/1.1 connections of its own) goes through
/// the proxy too: every connection the origin accepted came through a
/// tunnel of the proxy.
#[test]
fn split_download_goes_through_the_proxy_connection_by_connection() {
    let server = TestServer::start_tls();
    let body = content(45, 4 * 1024 * 1024);
    server.file("/big.bin", body.clone());
    let url = server.localhost_url("/big.bin");
    let proxy = TestProxy::socks5().start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &[
            "--ca-cert",
            &ca_pem(),
            "--proxy",
            &proxy.url("socks5h"),
            "-x",
            "4",
            "--min-split-size",
            "1M",
        ],
        &[&url],
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    let ranged = server
        .requests("/big.bin")
        .iter()
        .filter(|r| r.range().is_some())
        .count();
    assert!(ranged >= 4, "{ranged} ranged requests");
    assert_proxy_saw(&proxy, Via::SocksDomain, &[authority(&url)]);
    assert_eq!(
        server.connections(),
        proxy.seen().len(),
        "origin connections vs tunnels: {}",
        account(&proxy)
    );
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

/// `ALL_PROXY` (or `all_proxy`) serves http and https URLs.
#[test]
fn all_proxy_from_the_environment_serves_http_and_https() {
    for var in ["ALL_PROXY", "all_proxy"] {
        let s = two_servers(50);
        let proxy = TestProxy::socks5().start();
        let mut v = volley();
        through_proxy(&mut v).env(var, proxy.url("socks5h"));
        let r = download(&mut v, &["--ca-cert", &ca_pem()], &s.urls());
        assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
        assert_proxy_saw(&proxy, Via::SocksDomain, &s.by_name());
    }
}

/// `http_proxy` serves http URLs only, `HTTPS_PROXY` (or `https_proxy`)
/// https URLs only.
#[test]
fn http_proxy_and_https_proxy_each_serve_their_scheme() {
    for https_var in ["HTTPS_PROXY", "https_proxy"] {
        let s = two_servers(60);
        let for_http = TestProxy::http().start();
        let for_https = TestProxy::http().start();
        let mut v = volley();
        through_proxy(&mut v)
            .env("http_proxy", for_http.url("http"))
            .env(https_var, for_https.url("http"));
        let r = download(&mut v, &["--ca-cert", &ca_pem()], &s.urls());
        assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
        assert_proxy_saw(&for_http, Via::Absolute, &[s.files[0].0.clone()]);
        assert_proxy_saw(&for_https, Via::Connect, &[s.by_name()[1].clone()]);
    }
}

/// `HTTP_PROXY` (upper case) is not read for http URLs, as curl: a CGI
/// program gets it from a request's `Proxy:` header.
#[test]
fn upper_case_http_proxy_is_not_used_for_http_urls() {
    let server = TestServer::start();
    let (url, body) = serve(&server, "direct.bin", 70, false);
    let proxy = TestProxy::http().start();
    let mut v = volley();
    through_proxy(&mut v).env("HTTP_PROXY", proxy.url("http"));
    let r = download(&mut v, &[], &[&url]);
    assert_downloaded(&r, &out_dir(&v.sandbox), &[(&url, &body)]);
    assert_proxy_unused(&proxy);
    assert!(server.hits("/direct.bin") >= 1);
}

// ---------------------------------------------------------------------------
// The config file
// ---------------------------------------------------------------------------

/// The `proxy` key of `--config FILE`.
#[test]
fn proxy_config_key_is_used() {
    let s = two_servers(80);
    let proxy = TestProxy::socks5().start();
    let mut v = volley();
    through_proxy(&mut v);
    let cfg = write_config(
        &v.sandbox,
        &format!("proxy = {}\n", toml_str(&proxy.url("socks5h"))),
    );
    let r = download(
        &mut v,
        &["--config", &path_arg(&cfg), "--ca-cert", &ca_pem()],
        &s.urls(),
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
    assert_proxy_saw(&proxy, Via::SocksDomain, &s.by_name());
}

/// The `noproxy` key: its host goes direct, another through the proxy of the
/// `proxy` key.
#[test]
fn noproxy_config_key_sends_its_host_direct() {
    let server = TestServer::start();
    let direct = serve(&server, "direct.bin", 90, true);
    let proxied = serve(&server, "proxied.bin", 91, false);
    let proxy = TestProxy::http().start();
    let mut v = volley();
    let cfg = write_config(
        &v.sandbox,
        &format!(
            "proxy = {}\nnoproxy = \"localhost\"\n",
            toml_str(&proxy.url("http"))
        ),
    );
    let r = download(
        &mut v,
        &["--config", &path_arg(&cfg)],
        &[&direct.0, &proxied.0],
    );
    assert_downloaded(
        &r,
        &out_dir(&v.sandbox),
        &[(&direct.0, &direct.1), (&proxied.0, &proxied.1)],
    );
    assert_proxy_saw(&proxy, Via::Absolute, std::slice::from_ref(&proxied.0));
}

// ---------------------------------------------------------------------------
// What goes direct
// ---------------------------------------------------------------------------

/// `--noproxy localhost`: `localhost` goes direct, `127.0.0.1` through the
/// proxy (whatever `NO_PROXY` says: the flag overrides it).
#[test]
fn noproxy_flag_sends_the_named_host_direct() {
    let server = TestServer::start();
    let direct = serve(&server, "direct.bin", 100, true);
    let proxied = serve(&server, "proxied.bin", 101, false);
    let proxy = TestProxy::http().start();
    let mut v = volley();
    let r = download(
        &mut v,
        &["--proxy", &proxy.url("http"), "--noproxy", "localhost"],
        &[&direct.0, &proxied.0],
    );
    assert_downloaded(
        &r,
        &out_dir(&v.sandbox),
        &[(&direct.0, &direct.1), (&proxied.0, &proxied.1)],
    );
    assert_proxy_saw(&proxy, Via::Absolute, std::slice::from_ref(&proxied.0));
    assert_eq!(
        server.hits("/direct.bin") + server.hits("/proxied.bin"),
        server.total_hits()
    );
}

/// `NO_PROXY` (or `no_proxy`) naming `localhost`: it goes direct,
/// `127.0.0.1` through the proxy.
#[test]
fn no_proxy_variable_sends_the_named_host_direct() {
    for var in ["NO_PROXY", "no_proxy"] {
        let server = TestServer::start();
        let direct = serve(&server, "direct.bin", 110, true);
        let proxied = serve(&server, "proxied.bin", 111, false);
        let proxy = TestProxy::socks5().start();
        let mut v = volley();
        v.env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env(var, "localhost");
        let r = download(
            &mut v,
            &["--proxy", &proxy.url("socks5h")],
            &[&direct.0, &proxied.0],
        );
        assert_downloaded(
            &r,
            &out_dir(&v.sandbox),
            &[(&direct.0, &direct.1), (&proxied.0, &proxied.1)],
        );
        // socks5h hands an address URL's address on as it is.
        assert_proxy_saw(&proxy, Via::SocksIpv4, &[authority(&proxied.0)]);
    }
}

/// `--noproxy '*'`: everything direct.
#[test]
fn noproxy_star_sends_everything_direct() {
    let s = two_servers(120);
    let proxy = TestProxy::http().start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &[
            "--ca-cert",
            &ca_pem(),
            "--proxy",
            &proxy.url("http"),
            "--noproxy",
            "*",
        ],
        &s.urls(),
    );
    assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
    assert_proxy_unused(&proxy);
}

/// `--proxy ''` with `ALL_PROXY` set: no proxy at all.
#[test]
fn empty_proxy_flag_overrides_all_proxy() {
    let s = two_servers(130);
    let proxy = TestProxy::socks5().start();
    let mut v = volley();
    through_proxy(&mut v).env("ALL_PROXY", proxy.url("socks5h"));
    let r = download(&mut v, &["--ca-cert", &ca_pem(), "--proxy", ""], &s.urls());
    assert_downloaded(&r, &out_dir(&v.sandbox), &s.expected());
    assert_proxy_unused(&proxy);
}

// ---------------------------------------------------------------------------
// A proxy volley cannot use: a usage error, never a direct download
// ---------------------------------------------------------------------------

/// `--proxy gopher://...`: exit 2 naming `--proxy` and the scheme; the origin
/// never hears of it (this used to download directly, exit 0).
#[test]
fn unusable_proxy_scheme_is_a_usage_error_not_a_direct_download() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "never.bin", 140, false);
    let mut v = volley();
    through_proxy(&mut v);
    expect_usage_error(
        &mut v,
        &server,
        &url,
        &["--proxy", "gopher://127.0.0.1:1"],
        &["--proxy", "gopher"],
    );
    // The same with the sandbox's NO_PROXY, which would send this URL direct
    // anyway: the proxy is still checked.
    let mut v = volley();
    expect_usage_error(
        &mut v,
        &server,
        &url,
        &["--proxy", "gopher://127.0.0.1:1"],
        &["--proxy", "gopher"],
    );
}

#[test]
fn proxy_without_host_is_a_usage_error() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "never.bin", 141, false);
    for value in ["http://", "socks5h://"] {
        let mut v = volley();
        through_proxy(&mut v);
        expect_usage_error(&mut v, &server, &url, &["--proxy", value], &["--proxy"]);
    }
}

#[test]
fn proxy_with_a_bad_port_is_a_usage_error() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "never.bin", 142, false);
    for value in [
        "http://127.0.0.1:99999",
        "socks5h://127.0.0.1:port",
        "http://127.0.0.1:-1",
    ] {
        let mut v = volley();
        through_proxy(&mut v);
        expect_usage_error(&mut v, &server, &url, &["--proxy", value], &["--proxy"]);
    }
}

/// An unusable proxy in the environment names its variable.
#[test]
fn unusable_proxy_variable_is_a_usage_error_naming_it() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "never.bin", 143, false);
    for (var, value) in [
        ("ALL_PROXY", "ftp://127.0.0.1:21"),
        ("all_proxy", "ftp://127.0.0.1:21"),
        ("http_proxy", "gopher://127.0.0.1:70"),
        ("HTTPS_PROXY", "http://"),
    ] {
        let mut v = volley();
        through_proxy(&mut v).env(var, value);
        expect_usage_error(&mut v, &server, &url, &[], &[&format!("{var}: ")]);
    }
}

/// An unusable `proxy` key names the key and its file.
#[test]
fn unusable_proxy_config_key_is_a_usage_error_naming_the_file() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "never.bin", 144, false);
    let mut v = volley();
    through_proxy(&mut v);
    let cfg = write_config(&v.sandbox, "proxy = \"gopher://127.0.0.1:1\"\n");
    let said = format!("proxy in {}", cfg.display());
    expect_usage_error(
        &mut v,
        &server,
        &url,
        &["--config", &path_arg(&cfg)],
        &[&said, "gopher"],
    );
}

// ---------------------------------------------------------------------------
// Failures through a proxy, in plain words
// ---------------------------------------------------------------------------

/// A SOCKS5 proxy refusing the user and password (RFC 1929 status 1), or
/// wanting them when none were given: said so, in one line.
#[test]
fn wrong_socks_credentials_are_said_to_be_refused() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "secret.bin", 150, true);
    let proxy = TestProxy::socks5().user("alice", "right").start();
    for given in [
        proxy.url_with_user("socks5h", "alice:wrong"),
        proxy.url("socks5h"),
    ] {
        let mut v = volley();
        through_proxy(&mut v);
        expect_one_line_failure(
            &mut v,
            &url,
            &["--proxy", &given],
            &["refused the user and password"],
        );
    }
    // One try per run: another with the same user and password cannot help.
    assert_eq!(proxy.auth_failures(), 2, "{}", account(&proxy));
    assert!(proxy.seen().is_empty(), "{}", account(&proxy));
    assert_eq!(server.connections(), 0);
}

/// An HTTP proxy answering an http URL's request with `407`: said as the
/// proxy's refusal, not as the origin's status, and not tried again.
#[test]
fn wrong_http_proxy_credentials_for_http_url_are_said_to_be_refused() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "secret.bin", 153, true);
    let proxy = TestProxy::http().user("alice", "right").start();
    let mut v = volley();
    through_proxy(&mut v);
    let line = expect_one_line_failure(
        &mut v,
        &url,
        &["--proxy", &proxy.url_with_user("http", "alice:wrong")],
        &["refused the user and password"],
    );
    assert!(!line.contains("407"), "{line}");
    assert_eq!(proxy.auth_failures(), 1, "{}", account(&proxy));
    assert_eq!(server.connections(), 0);
}

/// An HTTP proxy answering a CONNECT (an https URL) with `407`: the proxy
/// refused the user and password.
#[test]
fn wrong_http_proxy_credentials_for_https_url_are_said_to_be_refused() {
    let server = TestServer::start_tls();
    let (url, _) = serve(&server, "secret.bin", 151, false);
    let proxy = TestProxy::http().user("alice", "right").start();
    let mut v = volley();
    through_proxy(&mut v);
    expect_one_line_failure(
        &mut v,
        &url,
        &[
            "--ca-cert",
            &ca_pem(),
            "--proxy",
            &proxy.url_with_user("http", "alice:wrong"),
        ],
        &["refused the user and password"],
    );
    assert_eq!(proxy.auth_failures(), 1, "{}", account(&proxy));
    assert!(
        proxy
            .seen()
            .iter()
            .all(|s| s.via == Via::Connect
                && s.credentials == Some(("alice".into(), "wrong".into()))),
        "{}",
        account(&proxy)
    );
    assert_eq!(server.connections(), 0);
}

/// A SOCKS5 proxy answering `host unreachable` (0x04): the proxy could not
/// reach the host. Also for an IPv6 address URL with `socks5h://`, which
/// hands the address on as one.
#[test]
fn socks_proxy_that_cannot_reach_the_host_is_said_so() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "far.bin", 152, true);
    let proxy = TestProxy::socks5()
        .socks_reply(SOCKS_HOST_UNREACHABLE)
        .start();
    let mut v = volley();
    through_proxy(&mut v);
    expect_one_line_failure(
        &mut v,
        &url,
        &["--proxy", &proxy.url("socks5h")],
        &["could not reach localhost", "host unreachable"],
    );
    assert_proxy_saw(&proxy, Via::SocksDomain, &[authority(&url)]);

    let v6 = TestProxy::socks5()
        .socks_reply(SOCKS_HOST_UNREACHABLE)
        .start();
    let url = format!("http://[::1]:{}/far.bin", server.port());
    let mut v = volley();
    through_proxy(&mut v);
    expect_one_line_failure(
        &mut v,
        &url,
        &["--proxy", &v6.url("socks5h")],
        &["could not reach [::1]", "host unreachable"],
    );
    assert_proxy_saw(&v6, Via::SocksIpv6, &[authority(&url)]);
    assert_eq!(server.connections(), 0);
}

/// `socks5://` with an IPv6 address URL (`http://[::1]:PORT/`): there is
/// nothing to resolve, the proxy gets the address (IPv6 address type). The
/// proxy here answers `host unreachable`, which is what volley must say.
#[test]
fn socks5_hands_an_ipv6_address_url_to_the_proxy() {
    let server = TestServer::start();
    let proxy = TestProxy::socks5()
        .socks_reply(SOCKS_HOST_UNREACHABLE)
        .start();
    let url = format!("http://[::1]:{}/far.bin", server.port());
    let mut v = volley();
    through_proxy(&mut v);
    expect_one_line_failure(
        &mut v,
        &url,
        &["--proxy", &proxy.url("socks5")],
        &["could not reach [::1]", "host unreachable"],
    );
    assert_proxy_saw(&proxy, Via::SocksIpv6, &[authority(&url)]);
}

/// An HTTP proxy's port where nothing listens: connection refused by the
/// proxy, for http and https URLs.
#[test]
fn http_proxy_where_nothing_listens_is_connection_refused_by_the_proxy() {
    let plain = TestServer::start();
    let tls = TestServer::start_tls();
    let port = dead_port();
    for (url, _) in [
        serve(&plain, "a.bin", 160, false),
        serve(&tls, "b.bin", 161, false),
    ] {
        let mut v = volley();
        through_proxy(&mut v);
        expect_one_line_failure(
            &mut v,
            &url,
            &[
                "--ca-cert",
                &ca_pem(),
                "--proxy",
                &format!("http://127.0.0.1:{port}"),
            ],
            &["connection refused by the proxy"],
        );
    }
    assert_eq!(plain.connections() + tls.connections(), 0);
}

/// A SOCKS5 proxy's port where nothing listens: connection refused by the
/// proxy.
#[test]
fn socks_proxy_where_nothing_listens_is_connection_refused_by_the_proxy() {
    let server = TestServer::start();
    let (url, _) = serve(&server, "a.bin", 170, true);
    let port = dead_port();
    for scheme in ["socks5h", "socks5"] {
        let mut v = volley();
        through_proxy(&mut v);
        expect_one_line_failure(
            &mut v,
            &url,
            &["--proxy", &format!("{scheme}://127.0.0.1:{port}")],
            &["connection refused by the proxy"],
        );
    }
    assert_eq!(server.connections(), 0);
}

// ---------------------------------------------------------------------------
// Credentials are never shown
// ---------------------------------------------------------------------------

/// The proxy's password (as given, percent-encoded, and decoded) appears in
/// no event, log line or message: in a run that succeeds (`--json -v`), one
/// that fails through the proxy, and a usage error; `***` stands for it.
#[test]
fn proxy_credentials_never_appear_in_stderr_or_json() {
    const GIVEN: &str = "Hush%40Hush";
    const DECODED: &str = "Hush@Hush";
    let leaks = |what: &str, text: &str| {
        for secret in [GIVEN, DECODED, "Hush"] {
            assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
        }
    };
    let server = TestServer::start();
    let (url, body) = serve(&server, "quiet.bin", 180, true);
    let userinfo = format!("bob:{GIVEN}");

    // Success, through a SOCKS5 and an HTTP proxy.
    for (proxy, scheme) in [
        (TestProxy::socks5().user("bob", DECODED).start(), "socks5h"),
        (TestProxy::http().user("bob", DECODED).start(), "http"),
    ] {
        let given = proxy.url_with_user(scheme, &userinfo);
        let mut v = volley();
        through_proxy(&mut v);
        let dir = out_dir(&v.sandbox);
        let r = download(&mut v, &["--json", "-v", "--proxy", &given], &[&url]);
        r.expect_code(0);
        assert_file_eq(dir.join("quiet.bin"), &body);
        assert!(!proxy.seen().is_empty(), "{}", account(&proxy));
        leaks("stderr", &r.stderr);
        leaks("--json", &r.stdout_str());
        parse_json_lines(&r.stdout);
    }

    // Failure through the proxy (wrong credentials), with --json.
    let proxy = TestProxy::socks5().user("bob", "other").start();
    let mut v = volley();
    through_proxy(&mut v);
    let r = download(
        &mut v,
        &[
            "--json",
            "-v",
            "--retries",
            "1",
            "--retry-wait",
            "0.01",
            "--proxy",
            &proxy.url_with_user("socks5h", &userinfo),
        ],
        &[&url],
    );
    r.expect_code(1);
    leaks("stderr", &r.stderr);
    leaks("--json", &r.stdout_str());
    // The proxy is named, its password as `***`.
    r.expect_stderr_contains("bob:***@");
    let events = parse_json_lines(&r.stdout);
    let failed = events
        .iter()
        .find(|e| e["event"] == "failed")
        .unwrap_or_else(|| panic!("no failed event: {}", r.stdout_str()));
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("bob:***@"), "{reason}");

    // A usage error naming the proxy.
    let mut v = volley();
    let r = download(
        &mut v,
        &["--proxy", &format!("gopher://{userinfo}@127.0.0.1:1")],
        &[&url],
    );
    r.expect_code(2);
    leaks("stderr", &r.stderr);
    r.expect_stderr_contains("***");
}
