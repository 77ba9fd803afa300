//! Real proxies for the integration tests, counting what they see.
//!
//! Like [`super::TestServer`], each proxy listens on `127.0.0.1:0` and runs
//! on its own thread with its own tokio runtime, so synchronous tests can run
//! the `volley` binary against it.
//!
//! - [`TestProxy::http`]: an HTTP proxy. `CONNECT host:port` opens a tunnel
//!   (what a client does for an `https://` URL); an absolute-form request
//!   (`GET http://host:port/path HTTP/1.1`, for an `http://` URL) is sent on
//!   to the origin in origin form, without the `Proxy-*` headers and with
//!   `Connection: close`, and the answer is relayed back as it comes (one
//!   request per client connection). With [`ProxyBuilder::user`] it wants
//!   `Proxy-Authorization: Basic` with that user and password, and answers
//!   anything else with `407` and `Proxy-Authenticate: Basic`.
//! - [`TestProxy::socks5`]: a SOCKS5 proxy (RFC 1928) with the CONNECT
//!   command and IPv4, domain-name and IPv6 addresses; with
//!   [`ProxyBuilder::user`] it wants RFC 1929 username/password
//!   authentication. [`ProxyBuilder::socks_reply`] makes it answer every
//!   CONNECT with a failure status instead (e.g. [`SOCKS_HOST_UNREACHABLE`]).
//!
//! Each CONNECT target or absolute URL is recorded as a [`Seen`], as the
//! client sent it (a SOCKS target keeps its address type, so `socks5h://`,
//! which sends the host name, can be told from `socks5://`, which sends an
//! address), with the credentials the client gave and whether they were
//! right.
//!
//! ```ignore
//! let proxy = TestProxy::socks5().user("u", "p@ss").start();
//! // volley --proxy socks5h://u:p%40ss@127.0.0.1:PORT http://localhost:...
//! assert_eq!(proxy.seen()[0].via, Via::SocksDomain);
//! ```

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// SOCKS5 reply: general SOCKS server failure.
pub const SOCKS_GENERAL_FAILURE: u8 = 0x01;
/// SOCKS5 reply: network unreachable.
pub const SOCKS_NETWORK_UNREACHABLE: u8 = 0x03;
/// SOCKS5 reply: host unreachable.
pub const SOCKS_HOST_UNREACHABLE: u8 = 0x04;
/// SOCKS5 reply: connection refused.
pub const SOCKS_CONNECTION_REFUSED: u8 = 0x05;

/// Largest request head the HTTP proxy reads.
const MAX_HEAD: usize = 64 * 1024;

/// How a target reached the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `CONNECT host:port` to the HTTP proxy.
    Connect,
    /// An absolute-form request (`GET http://host:port/path`) to the HTTP
    /// proxy.
    Absolute,
    /// A SOCKS5 CONNECT to an IPv4 address.
    SocksIpv4,
    /// A SOCKS5 CONNECT to a domain name (the proxy resolves it).
    SocksDomain,
    /// A SOCKS5 CONNECT to an IPv6 address.
    SocksIpv6,
}

/// One CONNECT (HTTP or SOCKS) or absolute-form request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub via: Via,
    /// `host:port` as sent (`[::1]:port` for IPv6) for a CONNECT, the URL for
    /// an absolute-form request.
    pub target: String,
    /// The user and password the client gave, decoded, if any.
    pub credentials: Option<(String, String)>,
    /// Whether the proxy let it through: the right credentials, or none
    /// wanted.
    pub authorized: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    Socks5,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    connections: AtomicUsize,
    auth_failures: AtomicUsize,
}

impl State {
    fn record(&self, seen: Seen) {
        if !seen.authorized {
            self.auth_failures.fetch_add(1, Ordering::SeqCst);
        }
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
    }
}

/// What a proxy is told before it starts.
#[derive(Clone)]
struct Config {
    kind: Kind,
    /// The user and password wanted, if any.
    user: Option<(String, String)>,
    /// A SOCKS reply status to answer every CONNECT with.
    socks_reply: Option<u8>,
}

/// A proxy to be started ([`TestProxy::http`], [`TestProxy::socks5`]).
pub struct ProxyBuilder {
    config: Config,
}

impl ProxyBuilder {
    /// Want this user and password (HTTP: `Proxy-Authorization: Basic`;
    /// SOCKS5: RFC 1929).
    pub fn user(mut self, user: &str, password: &str) -> ProxyBuilder {
        self.config.user = Some((user.to_string(), password.to_string()));
        self
    }

    /// SOCKS5: answer every CONNECT with this reply status (non-zero: a
    /// failure, such as [`SOCKS_HOST_UNREACHABLE`]) without connecting.
    pub fn socks_reply(mut self, status: u8) -> ProxyBuilder {
        self.config.socks_reply = Some(status);
        self
    }

    pub fn start(self) -> TestProxy {
        TestProxy::start_with(self.config)
    }
}

/// A running proxy. Dropping it shuts it down.
pub struct TestProxy {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// An HTTP proxy (CONNECT and absolute-form requests).
    pub fn http() -> ProxyBuilder {
        ProxyBuilder {
            config: Config {
                kind: Kind::Http,
                user: None,
                socks_reply: None,
            },
        }
    }

    /// A SOCKS5 proxy.
    pub fn socks5() -> ProxyBuilder {
        ProxyBuilder {
            config: Config {
                kind: Kind::Socks5,
                user: None,
                socks_reply: None,
            },
        }
    }

    fn start_with(config: Config) -> TestProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("from_std");
                    let mut rx = rx;
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                st.connections.fetch_add(1, Ordering::SeqCst);
                                let _ = stream.set_nodelay(true);
                                let (st, config) = (st.clone(), config.clone());
                                tokio::spawn(async move {
                                    match config.kind {
                                        Kind::Http => http_connection(stream, &st, &config).await,
                                        Kind::Socks5 => socks_connection(stream, &st, &config).await,
                                    }
                                });
                            }
                        }
                    }
                });
                // Open tunnels are simply dropped.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn proxy thread");
        TestProxy {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `SCHEME://127.0.0.1:PORT`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// `SCHEME://USERINFO@127.0.0.1:PORT` (`userinfo` as written in a URL,
    /// percent-encoded).
    pub fn url_with_user(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}@{}", self.addr)
    }

    /// Every CONNECT and absolute-form request so far, in arrival order
    /// (SOCKS clients refused at authentication send no target: see
    /// [`TestProxy::auth_failures`]).
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The targets of [`TestProxy::seen`].
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests or SOCKS handshakes refused for missing or wrong credentials.
    pub fn auth_failures(&self) -> usize {
        self.state.auth_failures.load(Ordering::SeqCst)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP proxy
// ---------------------------------------------------------------------------

/// A request head: request line parts and headers (names as sent).
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_head(conn: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut line = String::new();
    let mut len = 0;
    let mut lines = Vec::new();
    loop {
        line.clear();
        let n = conn.read_line(&mut line).await.ok()?;
        len += n;
        if n == 0 || len > MAX_HEAD {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        lines.push(l.to_string());
    }
    let mut parts = lines.first()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    })
}

/// The user and password of a `Basic` credential.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn http_connection(stream: TcpStream, state: &State, config: &Config) {
    let mut conn = BufReader::new(stream);
    let Some(head) = read_head(&mut conn).await else {
        return;
    };
    let credentials = head
        .header("proxy-authorization")
        .and_then(basic_credentials);
    let authorized = config.user.is_none() || credentials == config.user;
    let connect = head.method.eq_ignore_ascii_case("CONNECT");
    let (via, authority, path) = if connect {
        (Via::Connect, head.target.clone(), String::new())
    } else {
        let Some(rest) = head.target.strip_prefix("http://") else {
            let _ = conn
                .get_mut()
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        (Via::Absolute, authority.to_string(), path.to_string())
    };
    state.record(Seen {
        via,
        target: head.target.clone(),
        credentials,
        authorized,
    });
    if !authorized {
        let _ = conn
            .get_mut()
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"volley tests\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(authority.as_str()).await else {
        let _ = conn
            .get_mut()
            .write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    let _ = upstream.set_nodelay(true);
    if connect {
        if conn
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        // Bytes the client sent early, already in the reader's buffer.
        let early = conn.buffer().to_vec();
        if upstream.write_all(&early).await.is_err() {
            return;
        }
        let mut client = conn.into_inner();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // Absolute form: the request in origin form, one request per connection.
    let mut out = format!("{} {} {}\r\n", head.method, path, head.version);
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if !matches!(
            lower.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection" | "keep-alive"
        ) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    if let Some(len) = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut body = (&mut conn).take(len);
        if tokio::io::copy(&mut body, &mut upstream).await.is_err() {
            return;
        }
    }
    // The origin closes after its answer (Connection: close), which then
    // says Connection: close to the client too.
    let mut client = conn.into_inner();
    let _ = tokio::io::copy(&mut upstream, &mut client).await;
    let _ = client.shutdown().await;
}

// ---------------------------------------------------------------------------
// SOCKS5 proxy
// ---------------------------------------------------------------------------

/// A SOCKS5 reply with this status and an IPv4 bound address.
fn socks_reply(status: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let (ip, port) = match bound {
        Some(SocketAddr::V4(a)) => (a.ip().octets(), a.port()),
        _ => ([0; 4], 0),
    };
    let mut reply = vec![5, status, 0, 1];
    reply.extend_from_slice(&ip);
    reply.extend_from_slice(&port.to_be_bytes());
    reply
}

async fn read_string(conn: &mut TcpStream) -> Option<String> {
    let len = conn.read_u8().await.ok()?;
    let mut bytes = vec![0; usize::from(len)];
    conn.read_exact(&mut bytes).await.ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

async fn socks_connection(mut conn: TcpStream, state: &State, config: &Config) {
    // Greeting: VER NMETHODS METHODS.
    let mut hello = [0u8; 2];
    if conn.read_exact(&mut hello).await.is_err() || hello[0] != 5 {
        return;
    }
    let mut methods = vec![0u8; usize::from(hello[1])];
    if conn.read_exact(&mut methods).await.is_err() {
        return;
    }
    const NO_AUTH: u8 = 0x00;
    const USER_PASS: u8 = 0x02;
    let method = if config.user.is_none() && methods.contains(&NO_AUTH) {
        NO_AUTH
    } else if methods.contains(&USER_PASS) {
        USER_PASS
    } else {
        // No acceptable method: counted as a refusal of credentials.
        state.auth_failures.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_all(&[5, 0xff]).await;
        return;
    };
    if conn.write_all(&[5, method]).await.is_err() {
        return;
    }
    let mut credentials = None;
    if method == USER_PASS {
        // RFC 1929: VER ULEN UNAME PLEN PASSWD.
        if conn.read_u8().await.ok() != Some(1) {
            return;
        }
        let (Some(user), Some(password)) =
            (read_string(&mut conn).await, read_string(&mut conn).await)
        else {
            return;
        };
        credentials = Some((user, password));
        let right = config.user.is_none() || credentials == config.user;
        if !right {
            state.auth_failures.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(&[1, 1]).await;
            return;
        }
        if conn.write_all(&[1, 0]).await.is_err() {
            return;
        }
    }
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    let mut request = [0u8; 4];
    if conn.read_exact(&mut request).await.is_err() || request[0] != 5 {
        return;
    }
    let (via, host) = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            if conn.read_exact(&mut ip).await.is_err() {
                return;
            }
            (Via::SocksIpv4, std::net::Ipv4Addr::from(ip).to_string())
        }
        3 => {
            let Some(name) = read_string(&mut conn).await else {
                return;
            };
            (Via::SocksDomain, name)
        }
        4 => {
            let mut ip = [0u8; 16];
            if conn.read_exact(&mut ip).await.is_err() {
                return;
            }
            (
                Via::SocksIpv6,
                format!("[{}]", std::net::Ipv6Addr::from(ip)),
            )
        }
        _ => {
            // Address type not supported.
            let _ = conn.write_all(&socks_reply(0x08, None)).await;
            return;
        }
    };
    let Ok(port) = conn.read_u16().await else {
        return;
    };
    let target = format!("{host}:{port}");
    state.record(Seen {
        via,
        target: target.clone(),
        credentials,
        authorized: true,
    });
    if request[1] != 1 {
        // Only CONNECT: command not supported.
        let _ = conn.write_all(&socks_reply(0x07, None)).await;
        return;
    }
    if let Some(status) = config.socks_reply.filter(|&s| s != 0) {
        let _ = conn.write_all(&socks_reply(status, None)).await;
        return;
    }
    let mut upstream = match TcpStream::connect(target.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            let status = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => SOCKS_CONNECTION_REFUSED,
                _ => SOCKS_HOST_UNREACHABLE,
            };
            let _ = conn.write_all(&socks_reply(status, None)).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let bound = upstream.local_addr().ok();
    if conn.write_all(&socks_reply(0, bound)).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
}
