//! One download: the request, the name, the body streamed to `NAME.part`, resume
//! state, and the atomic rename at the end. Retrying is the scheduler's business;
//! this module runs one try at a time and says whether another is worth it.

pub mod auth;
pub mod body;
pub mod commit;
pub mod cookies;
pub mod error;
pub mod http;
pub mod local;
pub mod probe;
pub mod range;
pub mod ratelimit;
pub mod request;
pub mod retry;
pub mod segmented;
pub mod setup;
pub mod single;
pub mod stall;
pub mod state;
pub mod tls;
pub mod tries;
pub mod writer;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::checksum;
use crate::display::redact;
use crate::events::{DownloadId, Event, EventSender};
use crate::input::DownloadSpec;
use crate::naming::{self, Names};
use crate::options::OnExists;
pub use error::DownloadError;
use ratelimit::{Limits, RateLimiter};
pub use request::is_secret;
use retry::RetryPolicy;
pub use tries::Tries;

/// Connection slots to a host (the scheduler's per-host window): every
/// connection of a split download holds one, so all count against
/// `--max-per-host`.
pub trait Slots: Sync {
    /// Held while a connection is open; dropping it frees the slot.
    type Permit: Send;
    /// Wait for a slot.
    fn acquire(&self) -> impl Future<Output = Self::Permit> + Send;
    /// The window generation a slot was taken in: what [`Slots::busy`] and
    /// [`Slots::fault`] weigh a failure by.
    fn generation(permit: &Self::Permit) -> u64;
    /// The host said it is busy (429, or a Retry-After) to a request started in
    /// generation `since`.
    fn busy(&self, since: u64, retry_after: Option<Duration>);
    /// A request started in generation `since` failed on its connection (a
    /// reset, a stall, a short body).
    fn fault(&self, since: u64);
    /// A request succeeded.
    fn success(&self);
    /// The host answered (or a request to it ended without an answer).
    fn answered(&self);
}

/// How often a long download flushes its data and records it in the state file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// A finished try that needs no other.
#[derive(Debug)]
pub enum Completed {
    /// The file is complete under `path`.
    Done {
        /// The final path (`-` for stdout).
        path: PathBuf,
        /// Size of the file.
        bytes: u64,
        /// The digest that was verified, if any.
        checksum: Option<checksum::Checksum>,
    },
    /// Nothing to do.
    Skipped {
        /// The existing file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// One download with its place in the batch.
#[derive(Debug)]
pub struct Job {
    /// Index in input order.
    pub id: DownloadId,
    /// What the user asked for.
    pub spec: DownloadSpec,
    /// The directory to save into.
    pub dir: PathBuf,
    /// The name reserved before the run (unique in the batch); `None` for stdout.
    pub name: Option<String>,
}

impl Job {
    /// The URL and its mirrors, in order: the sources of the file.
    pub fn sources(&self) -> impl Iterator<Item = &reqwest::Url> {
        std::iter::once(&self.spec.url).chain(self.spec.mirrors())
    }

    /// Source `i` (0 is the URL itself).
    pub fn source(&self, i: usize) -> &reqwest::Url {
        self.sources().nth(i).unwrap_or(&self.spec.url)
    }

    /// The URL as shown and recorded: a password in it reads `***`.
    pub fn url(&self) -> String {
        redact(&self.spec.url)
    }
}

pub use crate::naming::part_path;

/// Everything a try needs that is shared by the run.
#[derive(Debug)]
pub struct Downloader {
    /// The shared client.
    pub clients: http::Clients,
    /// Policy for existing final files.
    pub on_exists: OnExists,
    /// The idle timeout, for messages.
    pub idle_timeout: Duration,
    /// When each host's transfers last received data, for `--stall-timeout`.
    pub stalls: stall::Stalls,
    /// Names taken in this run.
    pub names: Names,
    /// What the output directories held at the start.
    pub listing: crate::naming::listing::Listing,
    /// Where events go.
    pub events: EventSender,
    /// Fires on SIGINT/SIGTERM.
    pub cancel: CancellationToken,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// Most connections per download (`--connections`).
    pub connections: usize,
    /// Smallest piece of a split file (`--min-split-size`).
    pub min_split_size: u64,
    /// `--limit-rate`, shared by the run.
    pub rate_limit: Option<Arc<RateLimiter>>,
    /// `--limit-rate-per-download`, bytes per second.
    pub rate_limit_per_download: Option<u64>,
    /// `--checksum-file`: digests by file name.
    pub sums: crate::input::Sums,
    /// HTTP Basic credentials (`--http-user`, `--netrc`).
    pub credentials: auth::Credentials,
    /// `-H` headers (config file first, then flags): sent per request to the
    /// origin of the URL they were given for, never as client defaults; those
    /// that carry secrets only to the download's own URL's origin.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    /// Which redirects are followed.
    pub redirects: http::Redirects,
    /// `--trust-server-names`: a redirect's last URL names the file.
    pub trust_server_names: bool,
    /// `-N`: mtimes from Last-Modified, conditional requests for existing files.
    pub timestamping: bool,
    /// How space is reserved for files of known size.
    pub file_allocation: crate::options::FileAllocation,
    /// `-o /dev/null` and the like: the body goes into this existing
    /// non-regular file, as it would go to stdout.
    pub device: Option<PathBuf>,
}

impl Downloader {
    /// The digests a download must match: its own (`checksum=`, `--checksum`)
    /// or the `--checksum-file` entry for its final name, and the server's
    /// `Repr-Digest`/`Digest`.
    fn expected(
        &self,
        job: &Job,
        final_path: &Path,
        headers: Option<&reqwest::header::HeaderMap>,
    ) -> Vec<checksum::Checksum> {
        let mut expected = Vec::new();
        // The final name, else the name asked for (`--on-exists rename` saves
        // `NAME.1.EXT` but it is still the file the checksum file lists).
        let by_name = || {
            let name = final_path.file_name()?.to_str()?;
            self.sums
                .get(name)
                .or_else(|| self.sums.get(job.name.as_deref()?))
                .cloned()
        };
        if let Some(c) = job.spec.checksum().cloned().or_else(by_name) {
            expected.push(c);
        }
        if let Some(c) = headers.and_then(checksum::from_headers) {
            if !expected.contains(&c) {
                expected.push(c);
            }
        }
        expected
    }

    /// A finished file that failed its checksum (its `.part` and state are
    /// already deleted): once more from scratch the first time, then fail.
    fn mismatch(&self, tries: &mut Tries, e: io::Error, part: &Path) -> DownloadError {
        match commit::as_mismatch(&e) {
            Some(m) => {
                tries.resume = None;
                tries.state_on_disk = false;
                tries.checksum_failures += 1;
                DownloadError::Checksum {
                    mismatch: m.clone(),
                    again: tries.checksum_failures == 1,
                }
            }
            None => DownloadError::Io {
                path: part.to_path_buf(),
                source: e,
            },
        }
    }

    /// Tell the reporters that `job` tries again after `delay`: the next try's
    /// number counts the failures charged so far.
    pub fn retrying(&self, job: &Job, tries: &Tries, reason: String, delay: Duration) {
        self.events.send(Event::Retrying {
            id: job.id,
            url: job.url(),
            // One count for every retry: the tries charged to the budget so
            // far, plus a checksum's extra try from scratch, and the one
            // about to be made (a switch to a mirror is free: it keeps the
            // count).
            attempt: tries.failed + tries.checksum_failures + 1,
            max_attempts: self.retry.max_attempts() + tries.checksum_failures,
            reason,
            delay,
        });
    }

    /// The rate limits of a download, made on its first try.
    fn limits(&self, job: &Job, tries: &mut Tries) -> Limits {
        tries
            .limits
            .get_or_insert_with(|| Limits {
                run: self.rate_limit.clone(),
                download: job
                    .spec
                    .limit_rate()
                    .or(self.rate_limit_per_download)
                    .filter(|&rate| rate > 0)
                    .map(RateLimiter::new),
            })
            .clone()
    }

    fn start(&self, job: &Job, tries: &mut Tries, path: &Path, offset: u64, size: Option<u64>) {
        tries.progress.reset(offset, size);
        if tries.started {
            return;
        }
        tries.started = true;
        tries.progress.set_resumed(offset);
        self.events.send(Event::Started {
            id: job.id,
            url: job.url(),
            path: path.to_path_buf(),
            size,
            resumed_from: offset,
            progress: tries.progress.clone(),
        });
    }
}
