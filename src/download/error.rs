//! Why a try of a download failed, and what that means: whether another try
//! may help, whether the source (a mirror) is to blame, whether the host is
//! pushing back.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use super::http;
use super::tls::chain_text;
use crate::checksum;
use crate::display::human_bytes;

/// Why one try of a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server answered with an error status.
    #[error("HTTP {status}")]
    Http {
        /// The status.
        status: StatusCode,
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// Connect errors, resets, idle timeouts: worth another try.
    #[error("{0}")]
    Network(String),
    /// The body stalled while other transfers from its host received data
    /// (`--stall-timeout`): the try is dropped, the download resumed.
    #[error(
        "no data for {} s while other downloads from {host} received some (--stall-timeout); {}",
        after.as_secs_f64(),
        if *further { "resuming at once, not counted against --retries" } else { "trying again" }
    )]
    Stalled {
        /// The stall time.
        after: Duration,
        /// The host.
        host: String,
        /// Whether this try took the file further than any try before it:
        /// then the next try starts at once and is not counted against
        /// `--retries` (a server that starts over and stalls at the same
        /// place every time still runs out of retries).
        further: bool,
    },
    /// The server's TLS certificate was refused: another try would not help.
    #[error("TLS: {0}")]
    Tls(String),
    /// The proxy refused the user and password (or wants some): another try
    /// would not help.
    #[error("{0}")]
    ProxyAuth(String),
    /// A redirect loop, too many redirects or a refused redirect.
    #[error("{0}")]
    Redirect(String),
    /// The body ended before Content-Length bytes arrived.
    #[error("body ended after {got} of {expected} bytes")]
    ShortBody {
        /// Bytes of the file on disk.
        got: u64,
        /// Bytes promised.
        expected: u64,
    },
    /// A ranged answer that cannot be appended (wrong range, changed file): restart.
    #[error("{0}; starting over")]
    Restart(String),
    /// A partial file of this download from an earlier run was found under the
    /// name the server gave: try again at once to resume it.
    #[error("found partial data of an earlier run at {0}")]
    ResumeFound(PathBuf),
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS reason.
        source: io::Error,
    },
    /// `--on-exists fail` and the file exists.
    #[error("{0} already exists (--on-exists overwrite or rename would replace or keep it)")]
    Exists(PathBuf),
    /// SIGINT/SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The server's file is not the size the Metalink file says.
    #[error("the server's file has {}, the Metalink file says {expected} bytes", got.map_or("an unknown size".to_string(), |g| format!("{g} bytes")))]
    WrongSize {
        /// The size the Metalink file gives.
        expected: u64,
        /// The size the server gives.
        got: Option<u64>,
    },
    /// A mirror of a split download disagrees with the file or cannot serve
    /// it: it is dropped for this file, its connection moves to another source.
    #[error("{0}")]
    MirrorDropped(String),
    /// The filesystem has clearly too little free space for the file.
    #[error("{dir} has {} free, the file needs {} more; free some space or choose another --dir", human_bytes(*free), human_bytes(*needed))]
    NoSpace {
        /// The directory.
        dir: PathBuf,
        /// Bytes still to write.
        needed: u64,
        /// Bytes available.
        free: u64,
    },
    /// The bytes do not hash to the expected digest; the `.part` was deleted.
    /// `again`: the first mismatch, to be fetched once more from scratch.
    #[error("{mismatch}{}", if *again { "; fetching it again from scratch" } else { " (the partial file was deleted)" })]
    Checksum {
        /// Expected and actual digests.
        mismatch: checksum::Mismatch,
        /// Whether one more try from scratch follows.
        again: bool,
    },
}

impl DownloadError {
    /// Whether another try may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DownloadError::Http { status, .. } => http::is_transient_status(*status),
            DownloadError::Network(_)
            | DownloadError::Stalled { .. }
            | DownloadError::ShortBody { .. }
            | DownloadError::Restart(_)
            | DownloadError::MirrorDropped(_)
            | DownloadError::ResumeFound(_) => true,
            _ => false,
        }
    }

    /// Whether the failure belongs to the server asked (another mirror may do
    /// better), rather than to the file or the local disk.
    pub fn is_source_failure(&self) -> bool {
        matches!(
            self,
            DownloadError::Http { .. }
                | DownloadError::Network(_)
                | DownloadError::Stalled { .. }
                | DownloadError::Tls(_)
                | DownloadError::ProxyAuth(_)
                | DownloadError::Redirect(_)
                | DownloadError::ShortBody { .. }
                | DownloadError::WrongSize { .. }
                | DownloadError::MirrorDropped(_)
        )
    }

    /// Whether the host says it is busy: a 429, or a retryable status with a
    /// `Retry-After` (a 503 that says when to come back). Its connection
    /// window shrinks.
    pub fn is_busy(&self) -> bool {
        match self {
            DownloadError::Http {
                status,
                retry_after,
            } => {
                status.as_u16() == 429
                    || retry_after.is_some() && http::is_transient_status(*status)
            }
            _ => false,
        }
    }

    /// Whether one request failed without the host saying it is busy
    /// (refused, reset, stalled, cut short, or a bare 5xx such as a 503 with
    /// no `Retry-After`, which a flaky proxy or backend answers now and then):
    /// the connection's problem, unless it happens to most of the host's
    /// requests.
    pub fn is_fault(&self) -> bool {
        match self {
            DownloadError::Network(_)
            | DownloadError::Stalled { .. }
            | DownloadError::ShortBody { .. } => true,
            DownloadError::Http { status, .. } => {
                !self.is_busy() && http::is_transient_status(*status)
            }
            _ => false,
        }
    }

    /// Tell the host's window what this failure of a request started in
    /// generation `since` says about the host.
    pub fn tell<S: super::Slots>(&self, slots: &S, since: u64, max_wait: Duration) {
        if self.is_busy() {
            slots.busy(since, self.retry_after().map(|d| d.min(max_wait)));
        } else if self.is_fault() {
            slots.fault(since);
        }
    }

    /// The server's wish for a pause, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DownloadError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// An error status as a failure; a 407 is the proxy's.
    pub fn from_status(response: &reqwest::Response) -> Self {
        let status = response.status();
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            if let Some(shown) = proxy_shown(response.url()) {
                return DownloadError::ProxyAuth(refused_credentials(&shown));
            }
        }
        DownloadError::Http {
            status,
            retry_after: http::retry_after(response.headers()),
        }
    }

    /// Classify a transport error (`idle`: the idle timeout, for the message).
    pub fn from_reqwest(e: reqwest::Error, idle: Duration) -> Self {
        let (host, port) = host_port(&e);
        let at = match port {
            Some(p) => format!("{host} port {p}"),
            None => host.clone(),
        };
        if e.is_redirect() {
            return DownloadError::Redirect(
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| deepest(&e)),
            );
        }
        let before_answer = !e.is_body() && !e.is_decode();
        if let Some(text) = super::tls::explain(&e, &host_with_port(&host, port), before_answer) {
            return DownloadError::Tls(text);
        }
        if e.is_connect() && e.is_timeout() {
            return DownloadError::Network(format!(
                "no connection to {at} within the connect timeout (--connect-timeout)"
            ));
        }
        if e.is_timeout() {
            return DownloadError::Network(format!(
                "no data for {} s (idle timeout, --timeout)",
                idle.as_secs_f64()
            ));
        }
        if let Some(failure) = through_proxy(&e, &host) {
            return failure;
        }
        DownloadError::Network(plain_words(&e, &host, &at))
    }
}

/// The run's proxies, for messages: set once when the clients are built.
static PROXIES: std::sync::OnceLock<crate::config::proxy::Proxies> = std::sync::OnceLock::new();

/// Remember the run's proxies, so that a failure on the way through one is
/// told as the proxy's.
pub fn use_proxies(proxies: &crate::config::proxy::Proxies) {
    let _ = PROXIES.set(proxies.clone());
}

/// A failure on the way through a proxy, in plain words: the proxy refused
/// the connection or the credentials, or could not reach the host.
fn through_proxy(e: &reqwest::Error, host: &str) -> Option<DownloadError> {
    let shown = proxy_shown(e.url()?)?;
    let text = chain_text(e);
    let said = |what: &str| text.contains(what);
    if said("credentials not accepted")
        || said("proxy authorization required")
        || said("does not support user/pass authentication")
    {
        return Some(DownloadError::ProxyAuth(refused_credentials(&shown)));
    }
    through_proxy_network(e, host, &shown, &text).map(DownloadError::Network)
}

/// The proxy a request to `url` goes through, as messages name it.
fn proxy_shown(url: &reqwest::Url) -> Option<String> {
    let proxy = PROXIES.get()?.for_url(url)?;
    Some(format!(
        "the proxy {} ({})",
        crate::display::redact(&proxy.url).trim_end_matches('/'),
        proxy.from
    ))
}

fn refused_credentials(shown: &str) -> String {
    format!(
        "{shown} refused the user and password, or wants one (give them in the proxy URL: scheme://user:password@host:port)"
    )
}

/// A connection through the proxy that failed, in plain words.
fn through_proxy_network(
    e: &reqwest::Error,
    host: &str,
    shown: &str,
    text: &str,
) -> Option<String> {
    let said = |what: &str| text.contains(what);
    for status in [
        "host unreachable",
        "network unreachable",
        "connection refused",
        "connection not allowed",
        "ttl expired",
        "general server failure",
    ] {
        if said(&format!("SOCKS error: {status}")) {
            return Some(format!("{shown} could not reach {host} ({status})"));
        }
    }
    if said("unsuccessful") && said("tunnel") || text.ends_with(": unsuccessful") {
        return Some(format!("{shown} would not connect to {host}"));
    }
    let io = find_io(e).map(std::io::Error::kind).or_else(|| {
        // hyper-util's SOCKS error keeps the failed connection to the proxy
        // without giving it as its source; its Debug form still names the kind.
        let hidden = format!("{:?}", deepest_error(e));
        [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::TimedOut,
        ]
        .into_iter()
        .find(|kind| hidden.contains(&format!("kind: {kind:?}")))
    });
    match io {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            Some(format!("connection refused by {shown}"))
        }
        Some(std::io::ErrorKind::TimedOut) => Some(format!("no answer from {shown}")),
        _ if e.is_connect() && (said("dns error") || said("failed to lookup address")) => {
            Some(format!("cannot resolve the host name of {shown}"))
        }
        _ if e.is_connect() => Some(format!("cannot connect through {shown} ({})", deepest(e))),
        _ => None,
    }
}

/// A transport failure as a person would say it: what happened and to which
/// host, without the URL again or the library's chain of wrappers.
fn plain_words(e: &reqwest::Error, host: &str, at: &str) -> String {
    if let Some(io) = find_io(e) {
        use std::io::ErrorKind::*;
        let said = match io.kind() {
            ConnectionRefused => Some(format!("connection refused by {at}")),
            ConnectionReset => Some(format!("connection reset by {host}")),
            ConnectionAborted => Some(format!("connection to {host} aborted")),
            TimedOut => Some(format!("connection to {at} timed out")),
            UnexpectedEof => Some(format!("{host} closed the connection early")),
            BrokenPipe => Some(format!("{host} closed the connection")),
            HostUnreachable | NetworkUnreachable => Some(format!("{at} is unreachable ({io})")),
            AddrNotAvailable => Some(format!("cannot connect to {at} ({io})")),
            _ => None,
        };
        if let Some(said) = said {
            return said;
        }
    }
    let deepest = deepest(e);
    let chain = chain_text(e).to_ascii_lowercase();
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        return format!("cannot resolve host name {host} ({deepest})");
    }
    if e.is_connect() {
        return format!("cannot connect to {at} ({deepest})");
    }
    if e.is_body() || e.is_decode() {
        return format!("the connection to {host} broke during the body ({deepest})");
    }
    format!("{deepest} ({host})")
}

/// The I/O error in an error's chain, if any (looking inside I/O errors,
/// whose `source` skips the error they wrap).
fn find_io<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut found = None;
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            found = Some(io);
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        next = err.source();
    }
    found
}

/// The innermost cause's text.
fn deepest(e: &(dyn std::error::Error + 'static)) -> String {
    deepest_error(e).to_string()
}

fn deepest_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last
}

fn host_with_port(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The host an error is about, and its port when not the scheme's.
fn host_port(e: &reqwest::Error) -> (String, Option<u16>) {
    match e.url() {
        Some(u) => (u.host_str().unwrap_or("the server").to_string(), u.port()),
        None => ("the server".to_string(), None),
    }
}
