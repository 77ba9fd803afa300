//! A small hand-written HTTP/1.1 server for integration tests.
//!
//! It listens on `127.0.0.1:0`, runs on its own thread with its own tokio
//! runtime (so plain synchronous `#[test]` functions can use it while they run
//! the `volley` binary as a subprocess), and gives the test full control over
//! what goes on the wire, including injected faults.
//!
//! ```ignore
//! let server = TestServer::start();
//! server.file("/a.bin", content(1, 1000));
//! server.route(
//!     "/flaky.bin",
//!     Route::new(content(2, 5000))
//!         .etag("\"v1\"")
//!         .faults([Fault::Status(503), Fault::ResetAfter(100)]),
//! );
//! let url = server.url("/flaky.bin");
//! // ... run volley ...
//! assert_eq!(server.hits("/flaky.bin"), 3);
//! ```
//!
//! Faults in a route's fault plan are consumed one per request, in order, by
//! every request except `HEAD` (so a client that probes with `HEAD` first does
//! not eat the faults meant for its `GET`s). Once the plan is exhausted, the
//! route's `always` fault (if any) applies to every such request; otherwise
//! the route behaves normally.
//!
//! A route can also be followed by another one ([`Route::then`]: a new
//! version of a file after the first request), ignore `If-Range`
//! ([`Route::ignore_if_range`]), and the whole server can simulate overload
//! ([`TestServer::limit_in_flight`]: 429 when too many requests are in flight).
//!
//! For segmented (multi-connection) downloads, a route can keep a second
//! fault plan for *segment requests* only, i.e. requests whose `Range` starts
//! after byte 0 ([`Route::segment_faults`], [`Route::segment_always`]), and
//! throttle only the requests whose `Range` starts at a given offset
//! ([`Route::throttle_range_start`]). Every recorded request carries a live
//! count of the body bytes written for it ([`RecordedRequest::body_bytes_sent`]).
//!
//! [`TestServer::start_tls`] starts the same server over HTTPS, with the
//! certificate and key in `tests/fixtures` (see the README there).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Size of the pieces a body is written in.
const WRITE_CHUNK: usize = 16 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One injected misbehaviour for one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status code and a short body instead of the route.
    Status(u16),
    /// Answer with this status code, these extra headers and a short body.
    StatusWithHeaders(u16, Vec<(&'static str, &'static str)>),
    /// Answer with exactly this status, headers (owned, e.g. built at run
    /// time) and body.
    Custom {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Send the headers (with the full Content-Length), then this many body
    /// bytes, then reset the connection (SO_LINGER 0 → RST).
    ResetAfter(usize),
    /// Send this many body bytes, sleep, then send the rest normally.
    StallAfter(usize, Duration),
    /// Send this many body bytes, sleep, then close the connection (FIN)
    /// without sending the rest.
    StallThenClose(usize, Duration),
    /// Declare the full Content-Length but send only this many body bytes,
    /// then close the connection cleanly (FIN).
    ShortBody(usize),
    /// Send no Content-Length; the body is delimited by closing the
    /// connection.
    NoContentLength,
    /// Answer 200 with the full body even when a Range header was sent.
    IgnoreRange,
    /// Wait this long before sending anything, then answer normally.
    DelayHeaders(Duration),
    /// Read the request and close the connection without any answer.
    CloseWithoutResponse,
}

/// What a path answers. Build with [`Route::new`] (a file) or
/// [`Route::redirect`] and the builder methods.
#[derive(Clone, Debug)]
pub struct Route {
    /// Status of a normal answer (200 for files). Range handling only
    /// applies when this is 200.
    pub status: u16,
    pub body: Arc<Vec<u8>>,
    /// Extra response headers, sent as given.
    pub headers: Vec<(String, String)>,
    pub etag: Option<String>,
    /// HTTP-date string.
    pub last_modified: Option<String>,
    pub content_disposition: Option<String>,
    pub content_type: Option<String>,
    /// `(status, Location)`.
    pub redirect: Option<(u16, String)>,
    /// Per-request faults consumed in order.
    pub faults: VecDeque<Fault>,
    /// Fault applied to every request once `faults` is exhausted.
    pub always: Option<Fault>,
    /// Honour `Range` and send `Accept-Ranges: bytes` (default true).
    pub ranges: bool,
    /// Throttle: after every `.0` body bytes, sleep `.1`.
    pub throttle: Option<(usize, Duration)>,
    /// Honour `If-Range` (default true). When false, a `Range` is served as
    /// 206 whatever `If-Range` says (a server that ignores validators).
    pub if_range: bool,
    /// The route that replaces this one once it has answered one request
    /// (any method but `HEAD`), e.g. a new version of the file.
    pub then: Option<Box<Route>>,
    /// Faults consumed in order by *segment requests*: requests (any method
    /// but `HEAD`) whose `Range` starts after byte 0. While this plan (or
    /// `segment_always`) has a fault for such a request, the general plan
    /// (`faults`/`always`) is not consumed by it.
    pub segment_faults: VecDeque<Fault>,
    /// Fault applied to every segment request once `segment_faults` is
    /// exhausted.
    pub segment_always: Option<Fault>,
    /// Throttles for requests whose `Range` starts exactly at an offset:
    /// `(start, chunk, delay)`; they take precedence over `throttle`.
    pub range_throttles: Vec<(u64, usize, Duration)>,
}

impl Route {
    /// A normal 200 file route with range support.
    pub fn new(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            body: Arc::new(body.into()),
            headers: Vec::new(),
            etag: None,
            last_modified: None,
            content_disposition: None,
            content_type: Some("application/octet-stream".to_string()),
            redirect: None,
            faults: VecDeque::new(),
            always: None,
            ranges: true,
            throttle: None,
            if_range: true,
            then: None,
            segment_faults: VecDeque::new(),
            segment_always: None,
            range_throttles: Vec::new(),
        }
    }

    /// A redirect (301, 302, 303, 307, 308) to `location`.
    pub fn redirect(status: u16, location: impl Into<String>) -> Route {
        let mut r = Route::new(b"redirecting\n".to_vec());
        r.status = status;
        r.redirect = Some((status, location.into()));
        r.content_type = Some("text/plain".to_string());
        r.ranges = false;
        r
    }

    /// Answer with this status code (the body is sent as is, no ranges).
    pub fn status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Route {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Full ETag value including quotes, e.g. `"\"v1\""`.
    pub fn etag(mut self, etag: impl Into<String>) -> Route {
        self.etag = Some(etag.into());
        self
    }

    pub fn last_modified(mut self, t: SystemTime) -> Route {
        self.last_modified = Some(httpdate::fmt_http_date(t));
        self
    }

    pub fn last_modified_str(mut self, date: impl Into<String>) -> Route {
        self.last_modified = Some(date.into());
        self
    }

    pub fn content_disposition(mut self, value: impl Into<String>) -> Route {
        self.content_disposition = Some(value.into());
        self
    }

    pub fn content_type(mut self, value: impl Into<String>) -> Route {
        self.content_type = Some(value.into());
        self
    }

    pub fn fault(mut self, fault: Fault) -> Route {
        self.faults.push_back(fault);
        self
    }

    pub fn faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Route {
        self.faults.extend(faults);
        self
    }

    pub fn always(mut self, fault: Fault) -> Route {
        self.always = Some(fault);
        self
    }

    /// No `Accept-Ranges`, and `Range` is ignored (always 200 full body).
    pub fn no_ranges(mut self) -> Route {
        self.ranges = false;
        self
    }

    /// Send at most `chunk` bytes, then sleep `delay`, repeatedly.
    pub fn throttle(mut self, chunk: usize, delay: Duration) -> Route {
        self.throttle = Some((chunk.max(1), delay));
        self
    }

    /// Ignore `If-Range`: a `Range` is answered with 206 even when the
    /// validator no longer matches.
    pub fn ignore_if_range(mut self) -> Route {
        self.if_range = false;
        self
    }

    /// After this route has answered one request (any method but `HEAD`),
    /// `next` takes its place under the same path. Chain for a sequence:
    /// `a.then(b.then(c))`.
    pub fn then(mut self, next: Route) -> Route {
        self.then = Some(Box::new(next));
        self
    }

    /// Add a fault for the next *segment request* (a request whose `Range`
    /// starts after byte 0); such faults are consumed in order.
    pub fn segment_fault(mut self, fault: Fault) -> Route {
        self.segment_faults.push_back(fault);
        self
    }

    /// Add several segment-request faults (see [`Route::segment_fault`]).
    pub fn segment_faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Route {
        self.segment_faults.extend(faults);
        self
    }

    /// Apply `fault` to every segment request once the segment plan is
    /// exhausted.
    pub fn segment_always(mut self, fault: Fault) -> Route {
        self.segment_always = Some(fault);
        self
    }

    /// Throttle (like [`Route::throttle`]) only the requests whose `Range`
    /// starts exactly at byte `start` (`bytes=0-` for `start == 0`).
    pub fn throttle_range_start(mut self, start: u64, chunk: usize, delay: Duration) -> Route {
        self.range_throttles.push((start, chunk.max(1), delay));
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Request target as sent (path plus query).
    pub target: String,
    /// Path without the query string.
    pub path: String,
    pub version: String,
    /// Header names lowercased; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// Which accepted connection carried this request (0-based).
    pub conn_id: usize,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The fault applied to this request, if any.
    pub fault: Option<Fault>,
    /// When the server had read the request head.
    pub received_at: Instant,
    /// Body bytes written for this request so far (shared with the server,
    /// so a clone keeps counting while the answer is still being sent).
    pub sent: Arc<AtomicU64>,
    /// When the server was done with this request: the answer was written,
    /// or writing it failed, or the client closed the connection.
    pub finished: Arc<OnceLock<Instant>>,
}

impl RecordedRequest {
    /// Header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// When the server was done with this request (`None` while it is
    /// still being answered).
    pub fn finished_at(&self) -> Option<Instant> {
        self.finished.get().copied()
    }

    /// Body bytes the server has written for this request so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// The `Range` header as `(first, last)` (`last` inclusive, `None` for
    /// an open `bytes=N-`), if it is a single `bytes=` range with a start.
    pub fn range(&self) -> Option<(u64, Option<u64>)> {
        parse_range_header(self.header("range")?)
    }
}

/// `bytes=A-B` → `(A, Some(B))`, `bytes=A-` → `(A, None)`; anything else
/// (suffix ranges, several ranges, junk) → `None`.
pub fn parse_range_header(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let start = a.trim().parse().ok()?;
    let b = b.trim();
    if b.is_empty() {
        Some((start, None))
    } else {
        Some((start, Some(b.parse().ok()?)))
    }
}

#[derive(Default)]
struct Stats {
    requests: Vec<RecordedRequest>,
    body_bytes: HashMap<String, u64>,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    stats: Mutex<Stats>,
    connections: AtomicUsize,
    open_connections: AtomicUsize,
    max_open_connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Answer 429 to a request that would make more than this many requests
    /// in flight at once; 0 = no limit.
    in_flight_limit: AtomicUsize,
    /// 429 answers given because of `in_flight_limit`.
    overload_rejections: AtomicUsize,
    /// TLS handshakes that failed.
    tls_handshake_failures: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not poison the server for others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test server. Dropping it shuts it down.
pub struct TestServer {
    addr: SocketAddr,
    /// Serving HTTPS ([`TestServer::start_tls`]).
    tls: bool,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A plain-HTTP server (`http://127.0.0.1:PORT`).
    pub fn start() -> TestServer {
        TestServer::start_with(None, false)
    }

    /// The same server over HTTPS (`https://127.0.0.1:PORT`), with the
    /// certificate `tests/fixtures/server.pem` (for `localhost` and
    /// `127.0.0.1`) signed by the test CA `tests/fixtures/ca.pem`. Routes,
    /// faults and statistics work as over plain HTTP; a connection whose TLS
    /// handshake fails is counted in [`TestServer::connections`] and
    /// [`TestServer::tls_handshake_failures`] but records no request.
    pub fn start_tls() -> TestServer {
        TestServer::start_with(
            Some(TlsAcceptor::from(Arc::new(tls_server_config()))),
            false,
        )
    }

    /// HTTPS and plain HTTP on one port: a connection that opens with a TLS
    /// handshake gets TLS, any other plain HTTP. [`TestServer::url`] gives
    /// the `https://` URL, [`TestServer::http_url`] the `http://` one, so a
    /// redirect can change nothing but the scheme.
    pub fn start_tls_and_plain() -> TestServer {
        TestServer::start_with(Some(TlsAcceptor::from(Arc::new(tls_server_config()))), true)
    }

    fn start_with(tls: Option<TlsAcceptor>, plain_too: bool) -> TestServer {
        let is_tls = tls.is_some();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("from_std");
                    let mut rx = rx;
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let id = st.connections.fetch_add(1, Ordering::SeqCst);
                                let st = st.clone();
                                let tls = tls.clone();
                                tokio::spawn(async move {
                                    let open = st.open_connections.fetch_add(1, Ordering::SeqCst) + 1;
                                    st.max_open_connections.fetch_max(open, Ordering::SeqCst);
                                    let _ = stream.set_nodelay(true);
                                    // TLS records of a handshake start with 0x16.
                                    let speaks_tls = !plain_too || {
                                        let mut first = [0u8; 1];
                                        matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
                                    };
                                    match tls.filter(|_| speaks_tls) {
                                        None => handle_connection(stream, st.clone(), id).await,
                                        Some(acceptor) => match acceptor.accept(stream).await {
                                            Ok(stream) => handle_connection(stream, st.clone(), id).await,
                                            Err(_) => {
                                                st.tls_handshake_failures.fetch_add(1, Ordering::SeqCst);
                                            }
                                        },
                                    }
                                    st.open_connections.fetch_sub(1, Ordering::SeqCst);
                                });
                            }
                        }
                    }
                });
                // Stalled connections are simply dropped.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn server thread");
        TestServer {
            addr,
            tls: is_tls,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`TestServer::start_tls`]).
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// `http://127.0.0.1:PORT/path` (a leading `/` is added if missing;
    /// `https://` for [`TestServer::start_tls`]).
    pub fn url(&self, path: &str) -> String {
        join_path(&self.base(), path)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://127.0.0.1:PORT/path` whatever the server speaks (for
    /// [`TestServer::start_tls_and_plain`]).
    pub fn http_url(&self, path: &str) -> String {
        join_path(&format!("http://{}", self.addr), path)
    }

    /// `http://localhost:PORT` (`https://` for [`TestServer::start_tls`]).
    pub fn localhost_base(&self) -> String {
        format!("{}://localhost:{}", self.scheme(), self.addr.port())
    }

    /// `http://localhost:PORT/path` (`https://` for [`TestServer::start_tls`]).
    pub fn localhost_url(&self, path: &str) -> String {
        join_path(&self.localhost_base(), path)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Register (or replace) a plain file route.
    pub fn file(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.route(path, Route::new(body));
    }

    /// Register (or replace) a route.
    pub fn route(&self, path: &str, route: Route) {
        lock(&self.state.routes).insert(path.to_string(), route);
    }

    /// Register a redirect from `path` to `location` (absolute URL or path).
    pub fn redirect(&self, path: &str, status: u16, location: &str) {
        self.route(path, Route::redirect(status, location));
    }

    /// Append faults to an existing route's plan.
    pub fn add_faults(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut routes = lock(&self.state.routes);
        let route = routes
            .get_mut(path)
            .unwrap_or_else(|| panic!("add_faults: no route {path}"));
        route.faults.extend(faults);
    }

    /// Set or clear the persistent segment-request fault of an existing
    /// route (see [`Route::segment_always`]).
    pub fn set_segment_always(&self, path: &str, fault: Option<Fault>) {
        let mut routes = lock(&self.state.routes);
        let route = routes
            .get_mut(path)
            .unwrap_or_else(|| panic!("set_segment_always: no route {path}"));
        route.segment_always = fault;
    }

    /// Segment-request faults not yet consumed on a route.
    pub fn pending_segment_faults(&self, path: &str) -> usize {
        lock(&self.state.routes)
            .get(path)
            .map_or(0, |r| r.segment_faults.len())
    }

    /// Set or clear the persistent fault of an existing route.
    pub fn set_always(&self, path: &str, fault: Option<Fault>) {
        let mut routes = lock(&self.state.routes);
        let route = routes
            .get_mut(path)
            .unwrap_or_else(|| panic!("set_always: no route {path}"));
        route.always = fault;
    }

    /// Faults not yet consumed on a route.
    pub fn pending_faults(&self, path: &str) -> usize {
        lock(&self.state.routes)
            .get(path)
            .map_or(0, |r| r.faults.len())
    }

    pub fn remove(&self, path: &str) {
        lock(&self.state.routes).remove(path);
    }

    /// Number of requests (any method) whose path (query stripped) is `path`.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.state.stats)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Number of requests with this method on `path`.
    pub fn hits_with_method(&self, path: &str, method: &str) -> usize {
        lock(&self.state.stats)
            .requests
            .iter()
            .filter(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
            .count()
    }

    /// Number of requests to any path.
    pub fn total_hits(&self) -> usize {
        lock(&self.state.stats).requests.len()
    }

    /// Requests on `path`, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.state.stats)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// All requests, in arrival order.
    pub fn all_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.stats).requests.clone()
    }

    /// Total body bytes written for `path` (all requests).
    pub fn body_bytes_sent(&self, path: &str) -> u64 {
        lock(&self.state.stats)
            .body_bytes
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed (the client refused the certificate, or
    /// spoke plain HTTP to the TLS port). Always 0 for a plain server.
    pub fn tls_handshake_failures(&self) -> usize {
        self.state.tls_handshake_failures.load(Ordering::SeqCst)
    }

    /// Most connections open at the same time.
    pub fn max_open_connections(&self) -> usize {
        self.state.max_open_connections.load(Ordering::SeqCst)
    }

    /// Most requests being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// Overload simulation: from now on, a request that arrives while `limit`
    /// requests (to any path) are already being answered gets `429 Too Many
    /// Requests` (no `Retry-After`) instead of its route; its route's faults
    /// are not consumed. `0` turns the limit off. Rejected requests are
    /// recorded with `fault: Some(Fault::Status(429))`.
    pub fn limit_in_flight(&self, limit: usize) {
        self.state.in_flight_limit.store(limit, Ordering::SeqCst);
    }

    /// 429 answers given because of [`TestServer::limit_in_flight`].
    pub fn overload_rejections(&self) -> usize {
        self.state.overload_rejections.load(Ordering::SeqCst)
    }

    /// Forget recorded requests and byte counts.
    pub fn reset_stats(&self) {
        *lock(&self.state.stats) = Stats::default();
        self.state.max_in_flight.store(0, Ordering::SeqCst);
        self.state.max_open_connections.store(0, Ordering::SeqCst);
        self.state.overload_rejections.store(0, Ordering::SeqCst);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn join_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// `tests/fixtures/NAME`.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// The server side of the test TLS setup: `server.pem` and `server.key`
/// from `tests/fixtures`, HTTP/1.1 only (ALPN), the aws-lc-rs provider (the
/// one reqwest uses, so nothing else is compiled).
fn tls_server_config() -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_path = fixture_path("server.pem");
    let key_path = fixture_path("server.key");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", cert_path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e:?}", cert_path.display()));
    assert!(!certs.is_empty(), "{}: no certificate", cert_path.display());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .unwrap_or_else(|e| panic!("{}: {e:?}", key_path.display()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("test certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A connection the server can answer on: plain TCP or TLS over TCP.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
    /// Whether this is TLS.
    fn is_tls(&self) -> bool;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
    fn is_tls(&self) -> bool {
        false
    }
}

impl Conn for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn is_tls(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// Connection handling
// ---------------------------------------------------------------------------

struct Request {
    method: String,
    target: String,
    path: String,
    version: String,
    headers: BTreeMap<String, String>,
    /// Arrived over TLS.
    tls: bool,
    /// Set when the server is done with the request.
    finished: Arc<OnceLock<Instant>>,
}

enum ReadOutcome {
    Request(Request),
    Closed,
    Bad,
}

async fn read_request<S: Conn>(conn: &mut BufReader<S>) -> ReadOutcome {
    let mut head_len = 0usize;
    let mut line = String::new();
    // Request line (skip stray empty lines between requests).
    let request_line = loop {
        line.clear();
        match conn.read_line(&mut line).await {
            Ok(0) | Err(_) => return ReadOutcome::Closed,
            Ok(n) => head_len += n,
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if !l.is_empty() {
            break l.to_string();
        }
        if head_len > MAX_HEAD {
            return ReadOutcome::Bad;
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ReadOutcome::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return ReadOutcome::Bad;
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        line.clear();
        match conn.read_line(&mut line).await {
            Ok(0) | Err(_) => return ReadOutcome::Closed,
            Ok(n) => head_len += n,
        }
        if head_len > MAX_HEAD {
            return ReadOutcome::Bad;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return ReadOutcome::Bad;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        headers
            .entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    // Discard a request body, if any.
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut take = (&mut *conn).take(len);
        if tokio::io::copy(&mut take, &mut tokio::io::sink())
            .await
            .is_err()
        {
            return ReadOutcome::Closed;
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    // Absolute-form targets (proxies) are reduced to their path.
    let path = match path.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => path,
    };
    ReadOutcome::Request(Request {
        method: method.to_string(),
        target: target.to_string(),
        path,
        version: version.to_string(),
        headers,
        tls: false,
        finished: Arc::new(OnceLock::new()),
    })
}

async fn handle_connection<S: Conn>(stream: S, state: Arc<State>, conn_id: usize) {
    let mut conn = BufReader::new(stream);
    loop {
        let req = match read_request(&mut conn).await {
            ReadOutcome::Request(r) => Request {
                tls: conn.get_ref().is_tls(),
                ..r
            },
            ReadOutcome::Closed => return,
            ReadOutcome::Bad => {
                let _ = conn
                    .get_mut()
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n",
                    )
                    .await;
                return;
            }
        };
        let n = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(n, Ordering::SeqCst);
        let finished = req.finished.clone();
        let keep_open = respond(&mut conn, &state, req, conn_id).await;
        let _ = finished.set(Instant::now());
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep_open {
            let _ = conn.get_mut().shutdown().await;
            return;
        }
    }
}

/// How the body is put on the wire.
#[derive(Clone, Copy)]
enum BodyMode {
    Normal,
    Reset(usize),
    Stall(usize, Duration, bool),
    Short(usize),
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

enum RangeSpec {
    /// No usable Range header (absent, malformed, multi-range): full body.
    None,
    Satisfiable(usize, usize),
    Unsatisfiable,
}

fn parse_range(value: &str, total: usize) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::None;
    };
    if spec.contains(',') {
        return RangeSpec::None;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::None;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: last b bytes.
        let Ok(n) = b.parse::<usize>() else {
            return RangeSpec::None;
        };
        if n == 0 || total == 0 {
            return RangeSpec::Unsatisfiable;
        }
        let n = n.min(total);
        return RangeSpec::Satisfiable(total - n, total - 1);
    }
    let Ok(start) = a.parse::<usize>() else {
        return RangeSpec::None;
    };
    let end = if b.is_empty() {
        usize::MAX
    } else {
        match b.parse::<usize>() {
            Ok(e) if e >= start => e,
            _ => return RangeSpec::None,
        }
    };
    if start >= total {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Satisfiable(start, end.min(total - 1))
}

/// Does an `If-Range` value match the route's current validator?
fn if_range_matches(value: &str, route: &Route) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // Strong comparison: weak tags never match.
        match &route.etag {
            Some(etag) => !value.starts_with("W/") && !etag.starts_with("W/") && value == etag,
            None => false,
        }
    } else {
        match &route.last_modified {
            Some(lm) => value == lm,
            None => false,
        }
    }
}

fn record(state: &State, req: &Request, conn_id: usize, fault: Option<Fault>) -> Arc<AtomicU64> {
    let sent = Arc::new(AtomicU64::new(0));
    let finished = req.finished.clone();
    lock(&state.stats).requests.push(RecordedRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        path: req.path.clone(),
        version: req.version.clone(),
        headers: req.headers.clone(),
        conn_id,
        tls: req.tls,
        fault,
        received_at: Instant::now(),
        sent: sent.clone(),
        finished,
    });
    sent
}

/// Answer one request. Returns whether the connection may be reused.
async fn respond<S: Conn>(
    conn: &mut BufReader<S>,
    state: &State,
    req: Request,
    conn_id: usize,
) -> bool {
    let is_head = req.method.eq_ignore_ascii_case("HEAD");
    let conn_hdr = req
        .headers
        .get("connection")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let mut keep_alive = if req.version == "HTTP/1.0" {
        conn_hdr.contains("keep-alive")
    } else {
        !conn_hdr.contains("close")
    };

    // Overload simulation: too many requests at once → 429.
    let limit = state.in_flight_limit.load(Ordering::SeqCst);
    if limit > 0 && state.in_flight.load(Ordering::SeqCst) > limit {
        state.overload_rejections.fetch_add(1, Ordering::SeqCst);
        let sent = record(state, &req, conn_id, Some(Fault::Status(429)));
        let body = b"too many requests at once\n";
        return send_text(
            conn,
            state,
            &sent,
            &req.path,
            429,
            &[],
            body,
            is_head,
            keep_alive,
        )
        .await;
    }

    // A segment request: a Range that starts after byte 0.
    let range_start = req
        .headers
        .get("range")
        .and_then(|v| parse_range_header(v))
        .map(|(start, _)| start);
    let is_segment = range_start.is_some_and(|s| s > 0);

    // Look the route up and take a fault, under the lock.
    let (route, fault) = {
        let mut routes = lock(&state.routes);
        // Exact target (with query) first, then the bare path.
        let key = if routes.contains_key(&req.target) {
            req.target.clone()
        } else {
            req.path.clone()
        };
        match routes.get_mut(&key) {
            Some(route) => {
                let segment_fault = if is_head || !is_segment {
                    None
                } else {
                    route
                        .segment_faults
                        .pop_front()
                        .or_else(|| route.segment_always.clone())
                };
                let fault = if is_head {
                    None
                } else {
                    segment_fault
                        .or_else(|| route.faults.pop_front())
                        .or_else(|| route.always.clone())
                };
                let answer = route.clone();
                if !is_head {
                    if let Some(next) = route.then.take() {
                        *route = *next;
                    }
                }
                (Some(answer), fault)
            }
            None => (None, None),
        }
    };
    let sent = record(state, &req, conn_id, fault.clone());
    let sent = &*sent;

    let Some(route) = route else {
        let body = format!("404 not found: {}\n", req.path).into_bytes();
        return send_text(
            conn,
            state,
            sent,
            &req.path,
            404,
            &[],
            &body,
            is_head,
            keep_alive,
        )
        .await;
    };

    let mut mode = BodyMode::Normal;
    let mut declare_length = true;
    let mut ignore_range = false;
    match &fault {
        None => {}
        Some(Fault::Status(code)) => {
            let body = format!("injected status {code}\n").into_bytes();
            return send_text(
                conn,
                state,
                sent,
                &req.path,
                *code,
                &[],
                &body,
                is_head,
                keep_alive,
            )
            .await;
        }
        Some(Fault::StatusWithHeaders(code, hdrs)) => {
            let body = format!("injected status {code}\n").into_bytes();
            let extra: Vec<(String, String)> = hdrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return send_text(
                conn, state, sent, &req.path, *code, &extra, &body, is_head, keep_alive,
            )
            .await;
        }
        Some(Fault::Custom {
            status,
            headers,
            body,
        }) => {
            let head = build_head(*status, headers, Some(body.len()), keep_alive);
            return send(
                conn, state, sent, &req.path, head, body, is_head, mode, None, keep_alive,
            )
            .await;
        }
        Some(Fault::CloseWithoutResponse) => return false,
        Some(Fault::DelayHeaders(d)) => tokio::time::sleep(*d).await,
        Some(Fault::ResetAfter(n)) => mode = BodyMode::Reset(*n),
        Some(Fault::StallAfter(n, d)) => mode = BodyMode::Stall(*n, *d, false),
        Some(Fault::StallThenClose(n, d)) => mode = BodyMode::Stall(*n, *d, true),
        Some(Fault::ShortBody(n)) => mode = BodyMode::Short(*n),
        Some(Fault::NoContentLength) => {
            declare_length = false;
            keep_alive = false;
        }
        Some(Fault::IgnoreRange) => ignore_range = true,
    }
    if matches!(
        mode,
        BodyMode::Reset(_) | BodyMode::Short(_) | BodyMode::Stall(_, _, true)
    ) {
        keep_alive = false;
    }

    let total = route.body.len();
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(ct) = &route.content_type {
        headers.push(("Content-Type".into(), ct.clone()));
    }
    if let Some((_, location)) = &route.redirect {
        headers.push(("Location".into(), location.clone()));
    }
    if route.ranges {
        headers.push(("Accept-Ranges".into(), "bytes".into()));
    }
    if let Some(etag) = &route.etag {
        headers.push(("ETag".into(), etag.clone()));
    }
    if let Some(lm) = &route.last_modified {
        headers.push(("Last-Modified".into(), lm.clone()));
    }
    if let Some(cd) = &route.content_disposition {
        headers.push(("Content-Disposition".into(), cd.clone()));
    }
    headers.extend(route.headers.iter().cloned());

    let mut status = route.status;
    let mut slice = 0..total;
    if route.status == 200 && route.ranges && !ignore_range {
        if let Some(range) = req.headers.get("range") {
            let if_range_ok = req
                .headers
                .get("if-range")
                .is_none_or(|v| !route.if_range || if_range_matches(v, &route));
            if if_range_ok {
                match parse_range(range, total) {
                    RangeSpec::None => {}
                    RangeSpec::Satisfiable(a, b) => {
                        status = 206;
                        slice = a..b + 1;
                        headers.push(("Content-Range".into(), format!("bytes {a}-{b}/{total}")));
                    }
                    RangeSpec::Unsatisfiable => {
                        headers.push(("Content-Range".into(), format!("bytes */{total}")));
                        let head = build_head(416, &headers, Some(0), keep_alive);
                        return send(
                            conn,
                            state,
                            sent,
                            &req.path,
                            head,
                            &[],
                            is_head,
                            BodyMode::Normal,
                            None,
                            keep_alive,
                        )
                        .await;
                    }
                }
            }
        }
    }
    let body = &route.body[slice];
    let throttle = range_start
        .and_then(|start| {
            route
                .range_throttles
                .iter()
                .find(|(s, _, _)| *s == start)
                .map(|&(_, chunk, delay)| (chunk, delay))
        })
        .or(route.throttle);
    let head = build_head(
        status,
        &headers,
        declare_length.then_some(body.len()),
        keep_alive,
    );
    send(
        conn, state, sent, &req.path, head, body, is_head, mode, throttle, keep_alive,
    )
    .await
}

fn build_head(
    status: u16,
    headers: &[(String, String)],
    content_length: Option<usize>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    h.push_str(&format!(
        "Date: {}\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    ));
    h.push_str("Server: volley-test-server\r\n");
    if let Some(len) = content_length {
        h.push_str(&format!("Content-Length: {len}\r\n"));
    }
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if keep_alive {
        h.push_str("Connection: keep-alive\r\n");
    } else {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Write head and body according to `mode`. Returns whether the connection
/// may be reused.
/// A short text/plain answer with `status`, `extra` headers and `body`.
#[allow(clippy::too_many_arguments)]
async fn send_text<S: Conn>(
    conn: &mut BufReader<S>,
    state: &State,
    sent: &AtomicU64,
    path: &str,
    status: u16,
    extra: &[(String, String)],
    body: &[u8],
    is_head: bool,
    keep_alive: bool,
) -> bool {
    let mut headers = vec![("Content-Type".to_string(), "text/plain".to_string())];
    headers.extend_from_slice(extra);
    let head = build_head(status, &headers, Some(body.len()), keep_alive);
    send(
        conn,
        state,
        sent,
        path,
        head,
        body,
        is_head,
        BodyMode::Normal,
        None,
        keep_alive,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn send<S: Conn>(
    conn: &mut BufReader<S>,
    state: &State,
    sent: &AtomicU64,
    path: &str,
    head: Vec<u8>,
    body: &[u8],
    is_head: bool,
    mode: BodyMode,
    throttle: Option<(usize, Duration)>,
    keep_alive: bool,
) -> bool {
    let stream = conn.get_mut();
    if stream.write_all(&head).await.is_err() {
        return false;
    }
    if is_head {
        return stream.flush().await.is_ok() && keep_alive;
    }
    let (first, stall, then_close_after_first, reset) = match mode {
        BodyMode::Normal => (body.len(), None, false, false),
        BodyMode::Reset(n) => (n.min(body.len()), None, true, true),
        BodyMode::Short(n) => (n.min(body.len()), None, true, false),
        BodyMode::Stall(n, d, close) => (n.min(body.len()), Some(d), close, false),
    };
    if !write_body(conn, state, sent, path, &body[..first], throttle).await {
        return false;
    }
    let stream = conn.get_mut();
    if stream.flush().await.is_err() {
        return false;
    }
    if let Some(d) = stall {
        tokio::time::sleep(d).await;
    }
    if reset {
        // Give the kernel a moment to put the bytes on the wire before the
        // RST discards anything still queued.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = stream.tcp().set_zero_linger();
        return false;
    }
    if then_close_after_first {
        return false;
    }
    if !write_body(conn, state, sent, path, &body[first..], throttle).await {
        return false;
    }
    conn.get_mut().flush().await.is_ok() && keep_alive
}

async fn write_body<S: Conn>(
    conn: &mut BufReader<S>,
    state: &State,
    sent: &AtomicU64,
    path: &str,
    mut body: &[u8],
    throttle: Option<(usize, Duration)>,
) -> bool {
    let chunk = throttle.map_or(WRITE_CHUNK, |(c, _)| c);
    while !body.is_empty() {
        let n = chunk.min(body.len());
        if conn.get_mut().write_all(&body[..n]).await.is_err() {
            return false;
        }
        *lock(&state.stats)
            .body_bytes
            .entry(path.to_string())
            .or_insert(0) += n as u64;
        sent.fetch_add(n as u64, Ordering::SeqCst);
        body = &body[n..];
        // No pause after the last chunk: the answer is complete, and the
        // request must stop counting as in flight.
        if let Some((_, d)) = throttle.filter(|_| !body.is_empty()) {
            if conn.get_mut().flush().await.is_err() || !pause(conn, d).await {
                return false;
            }
        }
    }
    true
}

/// Sleep `d` between the chunks of a throttled body, watching the
/// connection meanwhile: returns `false` at once if the client closed it
/// (EOF or error), so a request the client abandoned stops counting as in
/// flight now rather than at the next write. Data the client sent (a
/// pipelined request) stays buffered for the next read.
async fn pause<S: Conn>(conn: &mut BufReader<S>, d: Duration) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    let readable = tokio::select! {
        _ = &mut sleep => return true,
        r = conn.fill_buf() => matches!(r, Ok(buf) if !buf.is_empty()),
    };
    if !readable {
        return false;
    }
    sleep.await;
    true
}
