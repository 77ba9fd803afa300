//! An in-process HTTPS file server that speaks HTTP/2 and HTTP/1.1, for the
//! tests of how volley uses its connections (`tests/networks.rs`): which
//! protocol each transfer goes over, how many TCP connections a run opens,
//! and TLS as real servers do it (ALPN, self-signed and expired
//! certificates, client certificates).
//!
//! [`TestServer`](super::TestServer) is hand-written HTTP/1.1 with fault
//! injection; this one is hyper (`http1` and `http2` server connections)
//! over tokio-rustls, so volley meets a real HTTP/2 implementation. It
//! listens on `127.0.0.1:0`, runs on its own thread with its own runtime, and
//! serves in-memory files: `Content-Length`, `Accept-Ranges: bytes`, a single
//! `Range: bytes=A-B` / `bytes=A-` (206 with `Content-Range`; 416 with
//! `bytes */N` when it starts past the end), `HEAD`; 404 for anything else.
//!
//! It counts accepted TCP connections, connections per negotiated protocol,
//! requests and the most connections open at once, and records every request
//! (path, protocol version, `Range`, which connection carried it, and how many
//! body bytes were handed to the connection for it).
//!
//! ```ignore
//! let server = H2Server::builder().alpn(Alpn::Both).start();
//! server.file("/a.bin", content(1, 1000));
//! // ... run volley with --ca-cert ca.pem on server.url("/a.bin") ...
//! assert!(server.h2_connections() >= 1);
//! ```
//!
//! Certificates come from PEM files (default: `tests/fixtures/server.pem` and
//! `server.key`, signed by `ca.pem`); [`Builder::client_ca`] makes the server
//! require a client certificate signed by a given CA (mutual TLS).

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::fixture_path;

/// Size of the body frames handed to hyper.
const CHUNK: usize = 64 * 1024;

/// Which protocols the server offers in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`, then `http/1.1` (the default).
    Both,
    /// `h2` only.
    H2Only,
    /// `http/1.1` only.
    Http1Only,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct H2Request {
    pub method: String,
    pub path: String,
    /// `HTTP/2` or `HTTP/1.1` as hyper saw it.
    pub version: Version,
    /// The `Range` header as sent.
    pub range: Option<String>,
    /// Which accepted connection carried it (0-based, in accept order).
    pub conn_id: usize,
    /// Body bytes of the answer handed to the connection so far (a live
    /// count, shared with the body being sent).
    pub sent: Arc<AtomicU64>,
    /// Body bytes the answer has in all (its `Content-Length`; 0 for `HEAD`
    /// and errors).
    pub body_len: u64,
}

impl H2Request {
    pub fn is_h2(&self) -> bool {
        self.version == Version::HTTP_2
    }

    /// Body bytes handed to the connection so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Whether the whole body of the answer was handed to the connection.
    pub fn body_complete(&self) -> bool {
        self.body_bytes_sent() == self.body_len
    }
}

#[derive(Default)]
struct State {
    files: Mutex<HashMap<String, Bytes>>,
    requests: Mutex<Vec<H2Request>>,
    connections: AtomicUsize,
    h2_connections: AtomicUsize,
    http1_connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    tls_handshake_failures: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How to start an [`H2Server`].
#[derive(Clone, Debug)]
pub struct Builder {
    alpn: Alpn,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Builder {
    /// Which protocols to offer (default [`Alpn::Both`]).
    pub fn alpn(mut self, alpn: Alpn) -> Builder {
        self.alpn = alpn;
        self
    }

    /// The certificate chain and key (PEM files) to present.
    pub fn cert(mut self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Builder {
        self.cert = chain.as_ref().to_path_buf();
        self.key = key.as_ref().to_path_buf();
        self
    }

    /// The certificate and key `tests/fixtures/NAME.pem`, `NAME.key`.
    pub fn fixture_cert(self, name: &str) -> Builder {
        self.cert(
            fixture_path(&format!("{name}.pem")),
            fixture_path(&format!("{name}.key")),
        )
    }

    /// Require a client certificate signed by the CA(s) in this PEM file.
    pub fn client_ca(mut self, ca: impl AsRef<Path>) -> Builder {
        self.client_ca = Some(ca.as_ref().to_path_buf());
        self
    }

    pub fn start(self) -> H2Server {
        H2Server::start_with(self)
    }
}

/// The server. Dropping it shuts it down.
pub struct H2Server {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl H2Server {
    /// `h2` and `http/1.1`, `server.pem`, no client certificate.
    pub fn start() -> H2Server {
        H2Server::builder().start()
    }

    pub fn builder() -> Builder {
        Builder {
            alpn: Alpn::Both,
            cert: fixture_path("server.pem"),
            key: fixture_path("server.key"),
            client_ca: None,
        }
    }

    fn start_with(b: Builder) -> H2Server {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&b)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("h2-server-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("from_std");
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                let id = st.connections.fetch_add(1, Ordering::SeqCst);
                                let open = st.open.fetch_add(1, Ordering::SeqCst) + 1;
                                st.max_open.fetch_max(open, Ordering::SeqCst);
                                let st = st.clone();
                                let acceptor = acceptor.clone();
                                tokio::spawn(async move {
                                    let _ = tcp.set_nodelay(true);
                                    serve(acceptor, tcp, st.clone(), id).await;
                                    st.open.fetch_sub(1, Ordering::SeqCst);
                                });
                            }
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn server thread");
        H2Server {
            addr,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, slash(path))
    }

    /// `https://localhost:PORT/path`.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.addr.port(), slash(path))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `body` at `path` (replacing what was there).
    pub fn file(&self, path: &str, body: impl Into<Vec<u8>>) {
        lock(&self.state.files).insert(slash(path), Bytes::from(body.into()));
    }

    /// TCP connections accepted (including those whose handshake failed).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections that negotiated `h2`.
    pub fn h2_connections(&self) -> usize {
        self.state.h2_connections.load(Ordering::SeqCst)
    }

    /// Connections that negotiated `http/1.1` (or no ALPN at all).
    pub fn http1_connections(&self) -> usize {
        self.state.http1_connections.load(Ordering::SeqCst)
    }

    /// Most TCP connections open at the same time.
    pub fn max_open_connections(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed.
    pub fn tls_handshake_failures(&self) -> usize {
        self.state.tls_handshake_failures.load(Ordering::SeqCst)
    }

    /// Requests received, all paths.
    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// All requests, in arrival order.
    pub fn requests(&self) -> Vec<H2Request> {
        lock(&self.state.requests).clone()
    }

    /// Requests on `path`, in arrival order.
    pub fn requests_for(&self, path: &str) -> Vec<H2Request> {
        let path = slash(path);
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// One connection: TLS handshake, then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve(acceptor: TlsAcceptor, tcp: tokio::net::TcpStream, st: Arc<State>, id: usize) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(_) => {
            st.tls_handshake_failures.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let counter = if h2 {
        &st.h2_connections
    } else {
        &st.http1_connections
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let io = TokioIo::new(tls);
    let svc_state = st.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let st = svc_state.clone();
        async move { Ok::<_, Infallible>(answer(&st, id, req)) }
    });
    // A connection the client drops mid-answer is an error here: ignored.
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }
}

/// The answer to one request, recorded.
fn answer(st: &State, conn_id: usize, req: Request<Incoming>) -> Response<FileBody> {
    let path = req.uri().path().to_string();
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let sent = Arc::new(AtomicU64::new(0));
    let file = lock(&st.files).get(&path).cloned();
    let head = req.method() == Method::HEAD;
    let (status, headers, body) = match file {
        None => (StatusCode::NOT_FOUND, Vec::new(), Bytes::new()),
        Some(_) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
            (StatusCode::METHOD_NOT_ALLOWED, Vec::new(), Bytes::new())
        }
        Some(file) => {
            let len = file.len() as u64;
            match range.as_deref().and_then(parse_range) {
                Some((start, _)) if start >= len => (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    vec![(CONTENT_RANGE, format!("bytes */{len}"))],
                    Bytes::new(),
                ),
                Some((start, end)) => {
                    let last = end.map_or(len - 1, |e| e.min(len - 1));
                    (
                        StatusCode::PARTIAL_CONTENT,
                        vec![(CONTENT_RANGE, format!("bytes {start}-{last}/{len}"))],
                        file.slice(start as usize..=last as usize),
                    )
                }
                None => (StatusCode::OK, Vec::new(), file),
            }
        }
    };
    let body_len = if head { 0 } else { body.len() as u64 };
    lock(&st.requests).push(H2Request {
        method: req.method().to_string(),
        path,
        version: req.version(),
        range,
        conn_id,
        sent: sent.clone(),
        body_len,
    });
    let mut response = Response::new(FileBody {
        data: if head { Bytes::new() } else { body.clone() },
        sent,
    });
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in headers {
        h.insert(name, HeaderValue::from_str(&value).expect("header value"));
    }
    response
}

/// `bytes=A-B` → `(A, Some(B))`, `bytes=A-` → `(A, None)`; anything else
/// (several ranges, suffix ranges, `B < A`, junk) is ignored → `None`.
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    match b.trim() {
        "" => Some((start, None)),
        b => {
            let end: u64 = b.parse().ok()?;
            (end >= start).then_some((start, Some(end)))
        }
    }
}

/// A body handed to hyper in [`CHUNK`]-sized frames, counting what it
/// hands over.
struct FileBody {
    data: Bytes,
    sent: Arc<AtomicU64>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(CHUNK);
        let chunk = self.data.split_to(n);
        self.sent.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

/// The rustls configuration of a [`Builder`].
fn server_config(b: &Builder) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = |path: &Path| -> Vec<CertificateDer<'static>> {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(!certs.is_empty(), "{}: no certificate", path.display());
        certs
    };
    let key = PrivateKeyDer::from_pem_file(&b.key)
        .unwrap_or_else(|e| panic!("{}: {e:?}", b.key.display()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions");
    let builder = match &b.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca) {
                roots.add(c).expect("client CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client certificate verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs(&b.cert), key)
        .unwrap_or_else(|e| panic!("{} and {}: {e}", b.cert.display(), b.key.display()));
    config.alpn_protocols = match b.alpn {
        Alpn::Both => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::H2Only => vec![b"h2".to_vec()],
        Alpn::Http1Only => vec![b"http/1.1".to_vec()],
    };
    config
}
