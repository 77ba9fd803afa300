//! Why a try of a download failed, and what that means: whether another try
//! may help, whether the source (a mirror) is to blame, whether the host is
//! pushing back.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use super::http;
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
    /// The server's TLS certificate was refused: another try would not help.
    #[error("TLS: {0}")]
    Tls(String),
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
                | DownloadError::Tls(_)
                | DownloadError::Redirect(_)
                | DownloadError::ShortBody { .. }
                | DownloadError::WrongSize { .. }
                | DownloadError::MirrorDropped(_)
        )
    }

    /// Whether the host says it is busy (429, 503): its connection window
    /// shrinks.
    pub fn is_busy(&self) -> bool {
        matches!(self, DownloadError::Http { status, .. } if matches!(status.as_u16(), 429 | 503))
    }

    /// Whether one connection failed (refused, reset, stalled, cut short):
    /// the connection's problem, unless it happens to most of the host's
    /// requests.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            DownloadError::Network(_) | DownloadError::ShortBody { .. }
        )
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

    /// Classify a transport error (`idle`: the idle timeout, for the message).
    pub fn from_reqwest(e: reqwest::Error, idle: Duration) -> Self {
        if e.is_redirect() {
            DownloadError::Redirect(
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| http::describe(&e)),
            )
        } else if e.is_timeout() {
            DownloadError::Network(format!(
                "no data for {} s (idle timeout, --timeout)",
                idle.as_secs_f64()
            ))
        } else if let Some(text) = super::tls::explain(&e, &host_of(&e)) {
            DownloadError::Tls(text)
        } else if e.is_connect() {
            DownloadError::Network(format!("cannot connect: {}", http::describe(&e)))
        } else {
            DownloadError::Network(http::describe(&e))
        }
    }
}

/// The host (and port, when not the scheme's) an error is about.
fn host_of(e: &reqwest::Error) -> String {
    e.url()
        .map(|u| match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => u.to_string(),
        })
        .unwrap_or_else(|| "the server".into())
}
