//! A small HTTPS file server with HTTP/2, for `bench/smoke.py` on machines
//! without nginx (CI): hyper's HTTP/2 and HTTP/1.1 servers behind rustls,
//! chosen by ALPN (h2 first).
//!
//!     cargo build --release --features h2serve --manifest-path bench/relay/Cargo.toml
//!     h2serve --listen 127.0.0.1:0 --root DIR --cert server.pem --key server.key
//!
//! GET and HEAD of the files under --root, with Content-Length and one
//! `Range: bytes=` range (206, or 416). Prints one line when listening; at
//! SIGINT or SIGTERM prints how many connections and requests each protocol
//! had (`h2serve: h2 3 connections 300 requests, http/1.1 0 connections 0
//! requests`) and exits. Not a benchmark server: it reads each file whole.

mod common;

use bytes::Bytes;
use common::{die, local_path, parse_range, RangeAnswer};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{rustls, TlsAcceptor};

const USAGE: &str = "\
h2serve --listen ADDR --root DIR --cert PEM --key PEM

  --listen ADDR   where to accept, e.g. 127.0.0.1:0 (port 0: any free port, printed)
  --root DIR      the directory to serve
  --cert PEM      the server's certificate (chain), PEM
  --key PEM       its private key, PEM

Prints one line when listening; at SIGINT or SIGTERM, the connections and requests per protocol.
";

/// Connections and requests over h2, then over http/1.1.
static COUNTS: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

fn main() {
    let (mut listen, mut root, mut cert, mut key) = (None, None, None, None);
    for (name, v) in common::args(USAGE, &[]) {
        match name.as_str() {
            "listen" => {
                listen = Some(
                    v.parse::<SocketAddr>()
                        .unwrap_or_else(|_| die(USAGE, &format!("bad --listen {v:?}"))),
                )
            }
            "root" => root = Some(PathBuf::from(v)),
            "cert" => cert = Some(PathBuf::from(v)),
            "key" => key = Some(PathBuf::from(v)),
            _ => die(USAGE, &format!("unknown option --{name}")),
        }
    }
    fn need<T>(o: Option<T>, n: &str) -> T {
        o.unwrap_or_else(|| die(USAGE, &format!("--{n} is required")))
    }
    let (listen, root, cert, key) = (
        need(listen, "listen"),
        need(root, "root"),
        need(cert, "cert"),
        need(key, "key"),
    );
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("h2serve: {what}: {e}");
        std::process::exit(1)
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect())
        .unwrap_or_else(|e| fail(&format!("cannot read {}", cert.display()), &e));
    let key = PrivateKeyDer::from_pem_file(&key)
        .unwrap_or_else(|e| fail(&format!("cannot read {}", key.display()), &e));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .unwrap_or_else(|e| fail("TLS configuration", &e));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let root = Arc::new(root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}"), &e));
        println!(
            "h2serve: listening on {}, root {}",
            listener.local_addr().unwrap(),
            root.display()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::spawn(async move {
            common::terminated().await;
            let c = |i: usize| COUNTS[i].load(Relaxed);
            println!(
                "h2serve: h2 {} connections {} requests, http/1.1 {} connections {} requests",
                c(0),
                c(1),
                c(2),
                c(3)
            );
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        });
        loop {
            let tcp = common::accept(&listener, "h2serve").await;
            let _ = tcp.set_nodelay(true);
            let (acceptor, root) = (acceptor.clone(), root.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let i = if h2 { 0 } else { 2 };
                COUNTS[i].fetch_add(1, Relaxed);
                let svc = hyper::service::service_fn(move |req| {
                    COUNTS[i + 1].fetch_add(1, Relaxed);
                    serve(root.clone(), req)
                });
                let io = TokioIo::new(tls);
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await
                };
            });
        }
    });
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r
}

async fn serve(
    root: Arc<PathBuf>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(b"GET or HEAD\n"),
        ));
    }
    let data = match local_path(&root, req.uri().path()) {
        Some(p) => tokio::fs::read(&p).await.ok(),
        None => None,
    };
    let Some(data) = data else {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"not found\n"),
        ));
    };
    let size = data.len() as u64;
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, body, content_range) = match range {
        None | Some(RangeAnswer::Ignore) => (StatusCode::OK, Bytes::from(data), None),
        Some(RangeAnswer::Part(a, b)) => {
            let body = Bytes::from(data).slice(a as usize..=b as usize);
            (
                StatusCode::PARTIAL_CONTENT,
                body,
                Some(format!("bytes {a}-{b}/{size}")),
            )
        }
        Some(RangeAnswer::Unsatisfiable) => {
            let mut r = answer(StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new());
            r.headers_mut().insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).unwrap(),
            );
            return Ok(r);
        }
    };
    let len = body.len();
    let mut r = answer(status, if head { Bytes::new() } else { body });
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(cr) = content_range {
        h.insert(CONTENT_RANGE, HeaderValue::from_str(&cr).unwrap());
    }
    Ok(r)
}
