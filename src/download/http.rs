//! The HTTP side: one shared client for the run, redirect policy, and how
//! responses and transport errors are classified.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{redirect, Client, Response, StatusCode, Url};

use crate::config::Settings;

pub use super::setup::ClientError;

/// The whole file's size an answer states: the total of its `Content-Range`,
/// else its `Content-Length` (read from the header, so `HEAD` answers count).
pub fn file_size(headers: &HeaderMap) -> Option<u64> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    text(reqwest::header::CONTENT_RANGE)
        .and_then(parse_content_range)
        .and_then(|(_, _, total)| total)
        .or_else(|| text(reqwest::header::CONTENT_LENGTH)?.trim().parse().ok())
}

/// Which redirects are followed. volley follows them itself, one request per
/// hop, so that each hop carries only what was given for its origin (see
/// `Downloader::request`); reqwest's own redirect handling is off.
#[derive(Debug, Clone, Copy)]
pub struct Redirects {
    /// Most redirects followed per request (`--max-redirects`).
    pub max: usize,
    /// Follow `https` → `http` (`--allow-insecure-redirect`).
    pub allow_insecure: bool,
}

impl Redirects {
    /// Where a redirect answer leads, given the URLs asked so far (first to
    /// last, without user info), or why it is not followed. `None`: not a
    /// redirect to follow (another status, or no usable `Location`).
    pub fn next(&self, chain: &[Url], response: &Response) -> Option<Result<Url, String>> {
        if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = response.headers().get(LOCATION)?.to_str().ok()?;
        let next = match response.url().join(location.trim()) {
            Ok(url) => url,
            Err(e) => return Some(Err(format!("redirect to an invalid URL ({e})"))),
        };
        let shown = crate::display::redact(&next);
        if !matches!(next.scheme(), "http" | "https") {
            return Some(Err(format!(
                "refused redirect to {shown} (not http or https)"
            )));
        }
        if chain.iter().any(|u| same_resource(u, &next)) {
            return Some(Err(format!("redirect loop back to {shown}")));
        }
        if chain.len() > self.max {
            return Some(Err(format!(
                "more than {} redirects (raise --max-redirects if this is expected)",
                self.max
            )));
        }
        let downgrade = response.url().scheme() == "https" && next.scheme() == "http";
        if downgrade && !self.allow_insecure {
            return Some(Err(format!(
                "refused redirect from https to {shown} (--allow-insecure-redirect allows it)"
            )));
        }
        Some(Ok(next))
    }
}

/// The same URL but for user info and fragment.
fn same_resource(a: &Url, b: &Url) -> bool {
    let bare = |u: &Url| {
        let mut u = u.clone();
        let _ = u.set_username("");
        let _ = u.set_password(None);
        u.set_fragment(None);
        u
    };
    bare(a) == bare(b)
}

/// The run's HTTP clients. Both share the cookie jar, the TLS settings and
/// the proxy; each keeps its own pool of connections.
#[derive(Debug, Clone)]
pub struct Clients {
    /// Small bodies and first requests: HTTP/2 where the server offers it
    /// (many bodies share one connection), else HTTP/1.1 with keep-alive.
    pub shared: Client,
    /// Bulk transfers (each connection of a split download, each large
    /// body): HTTP/1.1 only, so that every transfer has a TCP connection of
    /// its own, as the per-connection limits of servers and networks want.
    pub bulk: Client,
}

/// Build the run's clients. Headers from `-H` and credentials are not
/// defaults of the clients: each request gets them for its own origin only.
pub fn build_clients(
    s: &Settings,
    jar: Option<Arc<super::cookies::Jar>>,
) -> Result<Clients, ClientError> {
    let tls = super::tls::TlsOptions {
        insecure: s.insecure,
        ca_cert: s.ca_cert.clone(),
        cert: s.cert.clone(),
        key: s.key.clone(),
    };
    let h1: &[&[u8]] = &[b"http/1.1"];
    let shared_alpn: &[&[u8]] = if s.http1_only {
        h1
    } else {
        &[b"h2", b"http/1.1"]
    };
    // One configuration (one verifier: the system roots are read and parsed
    // once) offered with two ALPN lists.
    let shared_tls = super::tls::client_config(&tls, shared_alpn)?;
    let mut bulk_tls = shared_tls.clone();
    bulk_tls.alpn_protocols = h1.iter().map(|p| p.to_vec()).collect();
    let shared = build_one(s, jar.clone(), shared_tls, !s.http1_only)?;
    let bulk = build_one(s, jar, bulk_tls, false)?;
    Ok(Clients { shared, bulk })
}

fn build_one(
    s: &Settings,
    jar: Option<Arc<super::cookies::Jar>>,
    tls: rustls::ClientConfig,
    http2: bool,
) -> Result<Client, ClientError> {
    let mut builder = Client::builder()
        .user_agent(s.user_agent.clone())
        .redirect(redirect::Policy::none())
        .referer(false)
        .connect_timeout(s.connect_timeout)
        .read_timeout(s.timeout)
        .pool_max_idle_per_host(s.max_per_host.max(s.jobs))
        .tcp_nodelay(true)
        .tls_backend_preconfigured(tls);
    builder = if http2 {
        // A flow-control window caps a connection at window / round-trip
        // time; hyper's adaptive window grows it to the bandwidth-delay
        // product it measures, so a long round trip does not cap HTTP/2.
        builder.http2_adaptive_window(true)
    } else {
        builder.http1_only()
    };
    if let Some(jar) = jar {
        builder = builder.cookie_provider(jar);
    }
    // The environment was read into the settings: reqwest reads none.
    builder = builder.no_proxy().dns_resolver(Arc::new(SystemResolver));
    let no_proxy = s
        .proxies
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    let (http, https) = (&s.proxies.http, &s.proxies.https);
    let mut proxies = Vec::new();
    if http == https {
        if let Some(p) = http {
            proxies.push((p, reqwest::Proxy::all(p.url.as_str())));
        }
    } else {
        if let Some(p) = http {
            proxies.push((p, reqwest::Proxy::http(p.url.as_str())));
        }
        if let Some(p) = https {
            proxies.push((p, reqwest::Proxy::https(p.url.as_str())));
        }
    }
    for (given, proxy) in proxies {
        let proxy = proxy.map_err(|e| ClientError::Proxy {
            url: format!("{} {}", given.from, crate::display::redact(&given.url)),
            reason: describe(&e),
        })?;
        builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
    }
    builder
        .build()
        .map_err(|e| ClientError::Build(describe(&e)))
}

/// Statuses worth another try.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` as a wait: delta-seconds or an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A transport error with its causes, in one line.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `Content-Range: bytes START-END/TOTAL` → (start, end inclusive, total).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end, total))
}

/// The size a 416 answer gives: `Content-Range: bytes */N`.
pub fn unsatisfied_size(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

/// Host names looked up by the system (getaddrinfo on the blocking pool, as
/// reqwest's own resolver does); an address literal is taken as it is. reqwest
/// hands an IPv6 target of a socks5:// proxy (which resolves locally) over as
/// `[::1]`, brackets and all, which getaddrinfo does not take.
struct SystemResolver;

impl reqwest::dns::Resolve for SystemResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![std::net::SocketAddr::new(ip, 0)],
                Err(_) => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(unsatisfied_size("bytes */100000"), Some(100_000));
        assert_eq!(unsatisfied_size("bytes 0-1/2"), None);
        assert_eq!(unsatisfied_size("bytes */*"), None);
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(s).unwrap()));
        }
        for s in [400, 401, 403, 404, 410, 501] {
            assert!(!is_transient_status(StatusCode::from_u16(s).unwrap()));
        }
    }
}
