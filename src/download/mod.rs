//! One download: the request, the name, the body streamed to `NAME.part`, resume
//! state, and the atomic rename at the end. Retrying is the scheduler's business;
//! this module runs one try at a time and says whether another is worth it.

pub mod auth;
pub mod checksum;
pub mod commit;
pub mod cookies;
pub mod http;
pub mod ratelimit;
pub mod retry;
pub mod segmented;
pub mod state;
pub mod writer;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_DISPOSITION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Client, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::events::{DownloadId, Event, EventSender, Progress};
use crate::input::DownloadSpec;
use crate::naming::{self, Names};
use crate::options::OnExists;
use ratelimit::{paced, Limits, RateLimiter};
use retry::RetryPolicy;
use state::ResumeState;
use writer::{PartWriter, StdoutSink};

/// Connection slots to a host (the scheduler's per-host window): every
/// connection of a split download holds one, so all count against
/// `--max-per-host`.
pub trait Slots: Sync {
    /// Held while a connection is open; dropping it frees the slot.
    type Permit: Send;
    /// Wait for a slot.
    fn acquire(&self) -> impl Future<Output = Self::Permit> + Send;
    /// The host pushed back (429, 503, a network error).
    fn congestion(&self, retry_after: Option<Duration>);
    /// A request succeeded.
    fn success(&self);
}

/// How often a long download flushes its data and records it in the state file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

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
    #[error("{dir} has {} free, the file needs {} more; free some space or choose another --dir", crate::units::human_bytes(*free), crate::units::human_bytes(*needed))]
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

    /// Whether the host is pushing back (429, 503, a network error): its
    /// connection window shrinks.
    pub fn is_congestion(&self) -> bool {
        match self {
            DownloadError::Http { status, .. } => matches!(status.as_u16(), 429 | 503),
            DownloadError::Network(_) => true,
            _ => false,
        }
    }

    /// The server's wish for a pause, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DownloadError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn from_reqwest(e: reqwest::Error, idle: Duration) -> Self {
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
        } else if e.is_connect() {
            let text = http::describe(&e);
            if text.to_ascii_lowercase().contains("certificate") {
                DownloadError::Tls(format!(
                    "{text} (--ca-cert FILE trusts a private CA; --insecure skips verification)"
                ))
            } else {
                DownloadError::Network(format!("cannot connect: {text}"))
            }
        } else {
            DownloadError::Network(http::describe(&e))
        }
    }
}

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

/// What a download keeps across its tries.
#[derive(Debug)]
pub struct Tries {
    /// The final path once decided.
    pub final_path: Option<PathBuf>,
    /// Whether the name came from a response (no longer provisional).
    name_settled: bool,
    /// What is on disk, for a resumed request.
    pub resume: Option<ResumeState>,
    /// A state file exists on disk for this download.
    state_on_disk: bool,
    /// The `Started` event went out.
    started: bool,
    /// Bytes already written to stdout (`-o -`).
    stdout_written: u64,
    /// Failed tries charged to the retry budget so far.
    pub failed: u32,
    /// The source whose error ended the last try, when not `source` (a mirror
    /// connection of a split download).
    pub blame: Option<usize>,
    /// Checksum mismatches so far (one more try from scratch after the first).
    checksum_failures: u32,
    /// The hash of what went to stdout (`-o -`), when a checksum is verified.
    stdout_verify: Option<checksum::Verifier>,
    /// `-N`: the existing final file's mtime and size, to ask the server
    /// whether it has anything newer.
    local: Option<(std::time::SystemTime, u64)>,
    /// The server's Last-Modified of the body being saved.
    pub last_modified: Option<String>,
    /// The free-space check was done.
    space_checked: bool,
    /// The source (0: the URL, then its mirrors) the next try uses.
    pub source: usize,
    /// Sources given up on (an error another try would not fix, or a size
    /// that disagrees).
    pub abandoned: Vec<usize>,
    /// Sources that failed since the last retry was spent.
    pub failed_this_round: Vec<usize>,
    /// This download's rate limits, once known.
    limits: Option<Limits>,
    /// Live counters.
    pub progress: Arc<Progress>,
}

impl Tries {
    /// State of a download before its first try.
    pub fn new() -> Self {
        Tries {
            final_path: None,
            name_settled: false,
            resume: None,
            state_on_disk: false,
            started: false,
            stdout_written: 0,
            failed: 0,
            blame: None,
            checksum_failures: 0,
            stdout_verify: None,
            local: None,
            last_modified: None,
            space_checked: false,
            source: 0,
            abandoned: Vec::new(),
            failed_this_round: Vec::new(),
            limits: None,
            progress: Progress::new(),
        }
    }
}

impl Default for Tries {
    fn default() -> Self {
        Self::new()
    }
}

/// What `--dry-run` found out about one download.
#[derive(Debug)]
pub struct Plan {
    /// The URL after redirects.
    pub final_url: String,
    /// The answer's status, 0 when there was none.
    pub status: u16,
    /// The size, when the server said.
    pub size: Option<u64>,
    /// Where the file would go.
    pub path: Option<PathBuf>,
    /// `download`, `resume: ...`, `skip: ...` or `fail: ...`.
    pub action: String,
}

pub use crate::naming::part_path;

/// Everything a try needs that is shared by the run.
#[derive(Debug)]
pub struct Downloader {
    /// The shared client.
    pub client: Client,
    /// Policy for existing final files.
    pub on_exists: OnExists,
    /// The idle timeout, for messages.
    pub idle_timeout: Duration,
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
}

impl Downloader {
    /// Before the first try: apply `--on-exists` to the reserved name and pick up
    /// a resumable `.part` left by an earlier run. `Some` means there is nothing to
    /// download.
    pub fn prepare(
        &self,
        job: &Job,
        tries: &mut Tries,
    ) -> Option<Result<Completed, DownloadError>> {
        if self.known_new(job, tries) {
            return None;
        }
        self.look_on_disk(job, tries)
    }

    /// The part of [`Downloader::prepare`] that needs no disk: `true` when the
    /// download has no file, or a name the start-of-run listing knows is new
    /// (no file to settle, nothing to resume, no local copy to compare); its
    /// path is then set.
    pub fn known_new(&self, job: &Job, tries: &mut Tries) -> bool {
        let Some(name) = job.name.as_deref() else {
            return true;
        };
        if !self.listing.is_new(&job.dir, name) {
            return false;
        }
        tries.final_path = Some(job.dir.join(name));
        true
    }

    /// The rest of [`Downloader::prepare`]: the lookups on disk.
    pub fn look_on_disk(
        &self,
        job: &Job,
        tries: &mut Tries,
    ) -> Option<Result<Completed, DownloadError>> {
        let name = job.name.as_deref()?;
        let path = job.dir.join(name);
        match self.settle_existing(job, path, name) {
            Ok(path) => {
                if self.timestamping {
                    tries.local = path
                        .symlink_metadata()
                        .ok()
                        .filter(std::fs::Metadata::is_file)
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                }
                self.pick_up_resume(job, tries, &path);
                tries.final_path = Some(path);
                None
            }
            Err(done) => Some(done),
        }
    }

    /// Apply `--on-exists` to a path; `Ok` is the path to download to.
    fn settle_existing(
        &self,
        job: &Job,
        path: PathBuf,
        name: &str,
    ) -> Result<PathBuf, Result<Completed, DownloadError>> {
        if path.symlink_metadata().is_err() {
            return Ok(path);
        }
        // -N asks the server whether it has something newer instead.
        if self.timestamping {
            return Ok(path);
        }
        match self.on_exists {
            OnExists::Skip => Err(Ok(Completed::Skipped {
                path,
                reason: "already complete".into(),
            })),
            OnExists::Fail => Err(Err(DownloadError::Exists(path))),
            OnExists::Overwrite => Ok(path),
            OnExists::Rename => Ok(self.names.reserve(&job.dir, name, true)),
        }
    }

    fn pick_up_resume(&self, job: &Job, tries: &mut Tries, path: &Path) -> bool {
        let part = part_path(path);
        let state_path = ResumeState::path_for(&part);
        // The state must describe this URL, and the .part must still hold every
        // byte it records (a deleted or truncated .part is not resumed as zeros).
        let holds = |state: &ResumeState| {
            let end = state.done.last().map_or(0, |[_, e]| *e);
            part.symlink_metadata()
                .is_ok_and(|m| m.is_file() && m.len() >= end)
        };
        match ResumeState::load(&state_path) {
            Some(state)
                if state.describes(&job.spec.url) && state.covered() > 0 && holds(&state) =>
            {
                tries.resume = Some(state);
                tries.state_on_disk = true;
                true
            }
            _ => false,
        }
    }

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
        match writer::as_mismatch(&e) {
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
            attempt: tries.failed + 1,
            max_attempts: self.retry.max_attempts(),
            reason,
            delay,
        });
    }

    /// `--dry-run`: what a download would do, from a `HEAD` request (a one-byte
    /// `GET` when `HEAD` is refused). Nothing is written.
    pub async fn probe(&self, job: &Job, tries: &mut Tries) -> Plan {
        let ready = self.prepare(job, tries);
        let mut plan = Plan {
            final_url: job.url(),
            status: 0,
            size: None,
            path: tries.final_path.clone(),
            action: match (&ready, &tries.resume) {
                (Some(Ok(Completed::Skipped { reason, .. })), _) => format!("skip: {reason}"),
                (Some(Err(e)), _) => format!("fail: {e}"),
                (_, Some(state)) => format!(
                    "resume: {} of the file on disk",
                    crate::units::human_bytes(state.covered())
                ),
                _ => "download".to_string(),
            },
        };
        let url = &job.spec.url;
        let mut result = self
            .send_following(job, reqwest::Method::HEAD, url, |r| r)
            .await;
        if let Ok(r) = &result {
            if matches!(r.status().as_u16(), 405 | 501) {
                result = self
                    .send_following(job, reqwest::Method::GET, url, |r| {
                        r.header(RANGE, "bytes=0-0")
                            .header(ACCEPT_ENCODING, "identity")
                    })
                    .await;
            }
        }
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                plan.action = format!("fail: {e}");
                return plan;
            }
        };
        plan.final_url = response.url().to_string();
        plan.status = response.status().as_u16();
        plan.size = http::file_size(response.headers());
        if !response.status().is_success() {
            plan.action = format!("fail: HTTP {}", response.status());
            return plan;
        }
        if job.spec.out.is_none() && job.name.is_some() && tries.resume.is_none() {
            let served = response
                .headers()
                .get(CONTENT_DISPOSITION)
                .and_then(|v| v.to_str().ok())
                .and_then(naming::from_content_disposition)
                .or_else(|| {
                    self.trust_server_names
                        .then(|| naming::for_url(response.url()))
                });
            // Only a name the server gives moves the file (as in a real run);
            // otherwise the planned name stands (`--on-exists rename` included).
            if let Some(served) = served
                .filter(|s| *s != naming::for_url(&job.spec.url) && Some(s) != job.name.as_ref())
            {
                plan.path = Some(job.dir.join(served));
            }
        }
        plan
    }

    /// `-N`: the server has nothing newer than the local file (a 304, or a
    /// Last-Modified no newer and the same size): skip it.
    fn not_newer(&self, tries: &mut Tries, response: &Response) -> Option<Completed> {
        let (mtime, size) = tries.local?;
        let path = tries.final_path.clone()?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Some(Completed::Skipped {
                path,
                reason: "not modified on the server".into(),
            });
        }
        let remote = header_text(response, LAST_MODIFIED)
            .and_then(|t| httpdate::parse_http_date(&t).ok())?;
        let remote_size = response
            .status()
            .is_success()
            .then(|| http::file_size(response.headers()))
            .flatten()?;
        (remote <= mtime && remote_size == size).then(|| Completed::Skipped {
            path,
            reason: "not newer on the server".into(),
        })
    }

    /// After a download to a file: with `-N`, give it the server's
    /// Last-Modified as its mtime.
    pub async fn stamp(&self, tries: &Tries, path: &Path) {
        if !self.timestamping {
            return;
        }
        let Some(time) = tries
            .last_modified
            .as_deref()
            .and_then(|t| httpdate::parse_http_date(t).ok())
        else {
            return;
        };
        let path = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(time))
        })
        .await;
    }

    /// Fail at once when the filesystem clearly cannot hold the rest of a file.
    async fn check_space(
        &self,
        tries: &mut Tries,
        dir: &Path,
        needed: u64,
    ) -> Result<(), DownloadError> {
        if tries.space_checked || needed < writer::BATCH_BYTES as u64 {
            return Ok(());
        }
        tries.space_checked = true;
        let dir = dir.to_path_buf();
        let probe = dir.clone();
        let free = tokio::task::spawn_blocking(move || writer::free_space(&probe))
            .await
            .ok()
            .and_then(Result::ok);
        match free {
            Some(free) if free < needed => Err(DownloadError::NoSpace { dir, needed, free }),
            _ => Ok(()),
        }
    }

    /// One hop of a request of `job` for `given` (its URL or a mirror), at
    /// `hop` (`given` itself, or where a redirect led). What the user gave goes
    /// only to the origin (scheme, host, port) it was given for: `-H` headers,
    /// `header=` options and the user info of `given` only to `given`'s
    /// origin; secrets (`Authorization`, `Cookie`, `--http-user`, the netrc
    /// `default`) only to the download's own URL's. Any other origin gets
    /// only a netrc entry naming its very host.
    pub fn request(
        &self,
        job: &Job,
        method: reqwest::Method,
        hop: &reqwest::Url,
        given: &reqwest::Url,
    ) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, hop.clone());
        if !same_origin(hop, given) {
            if let Some((user, password)) = self.credentials.for_mirror(hop) {
                request = request.basic_auth(user, password);
            }
            return request;
        }
        let home = same_origin(hop, &job.spec.url);
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            if home || !is_secret(k) {
                headers.append(k.clone(), v.clone());
            }
        }
        // A download's own header= replaces a -H header of the same name.
        let mut replaced = Vec::new();
        for (k, v) in job.spec.headers() {
            if home || !is_secret(k) {
                if !replaced.contains(&k) {
                    headers.remove(k);
                    replaced.push(k);
                }
                headers.append(k.clone(), v.clone());
            }
        }
        let own = headers.contains_key(reqwest::header::AUTHORIZATION);
        request = request.headers(headers);
        let credentials = if own || has_userinfo(hop) {
            // reqwest sends a URL's own user info.
            None
        } else if has_userinfo(given) {
            userinfo(given)
        } else if home {
            self.credentials.for_url(hop)
        } else {
            self.credentials.for_mirror(hop)
        };
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, password);
        }
        request
    }

    /// Send a request for `given` and follow its redirects (see
    /// [`http::Redirects`]), each hop built afresh by [`Downloader::request`]
    /// and then `extra` (range and conditional headers, the same on every hop).
    pub async fn send_following(
        &self,
        job: &Job,
        method: reqwest::Method,
        given: &reqwest::Url,
        extra: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, DownloadError> {
        let mut chain: Vec<reqwest::Url> = Vec::new();
        let mut hop = given.clone();
        loop {
            let request = extra(self.request(job, method.clone(), &hop, given));
            let response = request
                .send()
                .await
                .map_err(|e| DownloadError::from_reqwest(e, self.idle_timeout))?;
            chain.push(response.url().clone());
            match self.redirects.next(&chain, &response) {
                None => return Ok(response),
                Some(Err(reason)) => return Err(DownloadError::Redirect(reason)),
                Some(Ok(next)) => {
                    // Read a short body to the end, so its connection is reused.
                    if response.content_length().is_some_and(|n| n <= 16 * 1024) {
                        let _ = response.bytes().await;
                    }
                    hop = next;
                }
            }
        }
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
                    .map(RateLimiter::new),
            })
            .clone()
    }

    /// The range the next request asks for: `(start, end)`, `end` exclusive and
    /// `None` for "to the end of the file".
    fn wanted_range(
        &self,
        job: &Job,
        tries: &Tries,
        connections: usize,
    ) -> Option<(u64, Option<u64>)> {
        if job.name.is_none() {
            return (tries.stdout_written > 0).then_some((tries.stdout_written, None));
        }
        match tries.resume.as_ref() {
            // The size is known from an earlier run: ask for exactly the first
            // piece of what is missing, so only missing bytes travel.
            Some(
                state @ ResumeState {
                    size: Some(size), ..
                },
            ) if state.covered() > 0 && (state.has_holes() || connections > 1) => {
                let gaps = state.gaps(*size);
                match segmented::plan(&gaps, connections, self.min_split_size).first() {
                    Some(&(s, e)) => Some((s, Some(e))),
                    // All on disk: the server's 416 confirms the size.
                    None => Some((*size, None)),
                }
            }
            Some(state) if state.contiguous() > 0 => Some((state.contiguous(), None)),
            // A ranged GET tells the size and range support without a HEAD.
            _ if connections > 1 => Some((0, None)),
            _ => None,
        }
    }

    async fn send(
        &self,
        job: &Job,
        tries: &Tries,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Response, DownloadError> {
        let url = job.source(tries.source);
        // Validators are only comparable on the server that issued them.
        let if_range = tries
            .resume
            .as_ref()
            .filter(|s| s.is_from(url))
            .and_then(ResumeState::if_range);
        let since = match (tries.local, range) {
            (Some((mtime, _)), None | Some((0, _))) => Some(httpdate::fmt_http_date(mtime)),
            _ => None,
        };
        let extra = |mut request: reqwest::RequestBuilder| {
            if let Some(since) = &since {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, since);
            }
            if let Some((start, end)) = range {
                let end = end.map(|e| (e - 1).to_string()).unwrap_or_default();
                request = request
                    .header(RANGE, format!("bytes={start}-{end}"))
                    .header(ACCEPT_ENCODING, "identity");
                if let Some(v) = if_range {
                    request = request.header(IF_RANGE, v);
                }
            }
            request
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(DownloadError::Interrupted),
            r = self.send_following(job, reqwest::Method::GET, url, extra) => r,
        }
    }

    /// One try: request, name, stream the body (over several connections when
    /// the file is large and the server allows ranges), finish.
    pub async fn attempt<S: Slots>(
        &self,
        job: &Job,
        tries: &mut Tries,
        slots: &S,
        permit: S::Permit,
    ) -> Result<Completed, DownloadError> {
        let connections = match job.name {
            Some(_) => job.spec.connections().unwrap_or(self.connections),
            None => 1,
        };
        let limits = self.limits(job, tries);
        let mut range = self.wanted_range(job, tries, connections);
        let mut response = self.send(job, tries, range).await?;
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && range == Some((0, None)) {
            // An empty file has no byte 0 to range over: ask for it plainly.
            range = None;
            response = self.send(job, tries, range).await?;
        }
        let offset = range.map_or(0, |(s, _)| s);
        let status = response.status();
        if let Some(done) = self.not_newer(tries, &response) {
            return Ok(done);
        }
        if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            return self
                .range_not_satisfiable(job, tries, offset, response.headers())
                .await;
        }
        if !status.is_success() {
            return Err(DownloadError::Http {
                status,
                retry_after: http::retry_after(response.headers()),
            });
        }
        let (offset, size) = self.check_range(
            tries,
            &response,
            range.map(|(s, _)| s),
            job.source(tries.source),
        )?;
        if let Some(expected) = job.spec.size().filter(|&e| size.is_some_and(|s| s != e)) {
            return Err(DownloadError::WrongSize {
                expected,
                got: size,
            });
        }
        if job.name.is_none() {
            return self
                .stream_to_stdout(job, tries, response, offset, size, &limits)
                .await;
        }
        if !tries.name_settled {
            if let Some(done) = self.settle_name(job, tries, &response, offset)? {
                return Ok(done);
            }
        }
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        let mut state = ResumeState::new(&job.url());
        if tries.source != 0 {
            state.source = Some(redact(job.source(tries.source)));
        }
        state.size = size;
        state.etag = header_text(&response, ETAG);
        state.last_modified = header_text(&response, LAST_MODIFIED);
        let holes = status == StatusCode::PARTIAL_CONTENT
            && tries.resume.as_ref().is_some_and(ResumeState::has_holes);
        match tries.resume.as_ref() {
            Some(old) if holes => state.done = old.done.clone(),
            _ => state.set_contiguous(offset),
        }
        tries.last_modified = state.last_modified.clone();
        if let Some(total) = size {
            let dir = writer::parent_dir(&final_path);
            self.check_space(tries, dir, total.saturating_sub(state.covered()))
                .await?;
        }
        if let (StatusCode::PARTIAL_CONTENT, Some(total)) = (status, size) {
            let remaining = total - state.covered();
            let worth_splitting =
                connections > 1 && remaining >= self.min_split_size.max(1).saturating_mul(2);
            if holes || worth_splitting {
                let response_end = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(http::parse_content_range)
                    .map_or(total, |(_, last, _)| last + 1);
                let start = segmented::Start {
                    response,
                    response_end,
                    permit,
                    state,
                    connections,
                    min_split_size: self.min_split_size,
                    limits,
                };
                return self.split(job, tries, slots, start).await;
            }
        }
        let _permit = permit;
        tries.resume = Some(state);
        self.start(job, tries, &final_path, offset, size);
        let part = part_path(&final_path);
        if offset == 0 && tries.state_on_disk {
            // The .part starts over: its old state file must not outlive the
            // bytes it describes (a kill before the next checkpoint would
            // resume zeros).
            let stale = ResumeState::path_for(&part);
            tokio::task::spawn_blocking(move || writer::remove_if_exists(&stale))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|source| DownloadError::Io {
                    path: part.clone(),
                    source,
                })?;
            tries.state_on_disk = false;
        }
        let verify =
            checksum::Verifier::new(self.expected(job, &final_path, Some(response.headers())));
        let mut writer = PartWriter::new(part.clone(), offset, verify);
        if let Some(total) = size {
            writer = writer.reserving(self.file_allocation, total);
        }
        let io_err = |source| DownloadError::Io {
            path: part.clone(),
            source,
        };
        let _active = tries.progress.connection();
        let mut stream = response.bytes_stream();
        // Flush and record progress every CHECKPOINT_INTERVAL, also while the
        // server stalls, so a kill loses at most that much of what arrived.
        let checkpoint = tokio::time::sleep(CHECKPOINT_INTERVAL);
        tokio::pin!(checkpoint);
        let mut resume_at = None;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.keep_partial(tries, &mut writer, true).await.map_err(io_err)?;
                    return Err(DownloadError::Interrupted);
                }
                _ = &mut checkpoint => {
                    if writer.has_unsynced() {
                        self.keep_partial(tries, &mut writer, false).await.map_err(io_err)?;
                    }
                    checkpoint.as_mut().reset(tokio::time::Instant::now() + CHECKPOINT_INTERVAL);
                    continue;
                }
                next = paced(&mut stream, resume_at) => next,
            };
            match next {
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    if let Err(e) = writer.push(chunk).await {
                        let _ = self.keep_partial(tries, &mut writer, true).await;
                        return Err(io_err(e));
                    }
                    tries.progress.add(n);
                    resume_at = limits.reserve(n);
                }
                Some(Err(e)) => {
                    self.keep_partial(tries, &mut writer, true)
                        .await
                        .map_err(io_err)?;
                    return Err(DownloadError::from_reqwest(e, self.idle_timeout));
                }
                None => break,
            }
        }
        let end = writer.end();
        // The server's size, else the size the Metalink file gives.
        if let Some(expected) = size.or(job.spec.size()).filter(|&s| s != end) {
            self.keep_partial(tries, &mut writer, true)
                .await
                .map_err(io_err)?;
            return Err(DownloadError::ShortBody { got: end, expected });
        }
        let stale_state = tries.state_on_disk.then(|| ResumeState::path_for(&part));
        let (bytes, checksum) = writer
            .finish(final_path.clone(), stale_state)
            .await
            .map_err(|e| self.mismatch(tries, e, &part))?;
        Ok(Completed::Done {
            path: final_path,
            bytes,
            checksum,
        })
    }

    /// 416 on a resumed request: complete if the server's size is what is on
    /// disk, else start over.
    async fn range_not_satisfiable(
        &self,
        job: &Job,
        tries: &mut Tries,
        offset: u64,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Completed, DownloadError> {
        // Complete only when the 416 gives the file's size as exactly what is
        // on disk (`Content-Range: bytes */N`), and the state agrees.
        let served = headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(http::unsatisfied_size);
        let whole = served == Some(offset)
            && tries
                .resume
                .as_ref()
                .is_some_and(|s| s.size.is_none_or(|size| size == offset) && s.covered() == offset);
        if job.name.is_none() || !whole {
            tries.resume = None;
            tries.stdout_written = 0;
            return Err(DownloadError::Restart(
                "the server refused the range of the partial file".into(),
            ));
        }
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        self.start(job, tries, &final_path, offset, Some(offset));
        let part = part_path(&final_path);
        let verify = checksum::Verifier::new(self.expected(job, &final_path, Some(headers)));
        let writer = PartWriter::new(part.clone(), offset, verify);
        let stale = Some(ResumeState::path_for(&part));
        let (bytes, checksum) = writer
            .finish(final_path.clone(), stale)
            .await
            .map_err(|e| self.mismatch(tries, e, &part))?;
        Ok(Completed::Done {
            path: final_path,
            bytes,
            checksum,
        })
    }

    /// Where this response's body starts and the whole file's size; a ranged
    /// answer that does not continue exactly what is on disk is refused.
    fn check_range(
        &self,
        tries: &mut Tries,
        response: &Response,
        asked: Option<u64>,
        source: &reqwest::Url,
    ) -> Result<(u64, Option<u64>), DownloadError> {
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Ok((0, response.content_length()));
        }
        let range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(http::parse_content_range);
        let known = tries.resume.as_ref();
        let problem = match range {
            _ if asked.is_none() => {
                Some("206 Partial Content to a request without Range".to_string())
            }
            None => Some("206 without a valid Content-Range".to_string()),
            Some((start, _, _)) if Some(start) != asked => Some(format!(
                "asked for bytes from {}, got from {start}",
                asked.unwrap_or_default()
            )),
            Some((_, _, total)) if known.is_some_and(|k| k.size.is_some() && k.size != total) => {
                Some("the file's size changed on the server".to_string())
            }
            Some(_)
                if known.is_some_and(|k| k.is_from(source) && validators_differ(k, response)) =>
            {
                Some("the file changed on the server (ETag/Last-Modified differ)".to_string())
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            // A mirror that answers another range or size is the mirror's
            // problem, not the file's: drop it and keep the data.
            if tries.source != 0 {
                return Err(DownloadError::MirrorDropped(format!(
                    "mirror {}: {problem}; dropped for this file",
                    redact(source)
                )));
            }
            tries.resume = None;
            tries.stdout_written = 0;
            return Err(DownloadError::Restart(problem));
        }
        let (start, _, total) = range.expect("checked above");
        Ok((start, total))
    }

    /// Decide the final name from the response (Content-Disposition, final URL)
    /// when `out=` did not fix it.
    fn settle_name(
        &self,
        job: &Job,
        tries: &mut Tries,
        response: &Response,
        offset: u64,
    ) -> Result<Option<Completed>, DownloadError> {
        tries.name_settled = true;
        // A resumed file keeps the name its partial data is under.
        if job.spec.out.is_some() || offset > 0 || tries.resume.is_some() {
            return Ok(None);
        }
        let provisional = job.name.as_deref().unwrap_or_default();
        let disposition = response
            .headers()
            .get(CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(naming::from_content_disposition);
        // A mirror's own URL does not name the file: the first URL does.
        let served = match disposition {
            Some(name) => name,
            // Not redirected: the URL names the file as planned.
            // The URL given names the file, not where a redirect led (unless
            // --trust-server-names).
            None if !self.trust_server_names
                || tries.source != 0
                || response.url() == &job.spec.url =>
            {
                return Ok(None)
            }
            None => naming::for_url(response.url()),
        };
        if served == naming::for_url(&job.spec.url) || served == provisional {
            return Ok(None);
        }
        let path = self.names.reserve(&job.dir, &served, false);
        let path = match self.settle_existing(job, path, &served) {
            Ok(path) => path,
            Err(Ok(done)) => return Ok(Some(done)),
            Err(Err(e)) => return Err(e),
        };
        tries.final_path = Some(path.clone());
        if self.pick_up_resume(job, tries, &path) {
            return Err(DownloadError::ResumeFound(part_path(&path)));
        }
        Ok(None)
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

    /// Flush what arrived and record it in the state file. `stopping`: the try
    /// ends here, so space reserved beyond the data is given back.
    async fn keep_partial(
        &self,
        tries: &mut Tries,
        writer: &mut PartWriter,
        stopping: bool,
    ) -> io::Result<()> {
        let durable = writer.sync(stopping).await?;
        let Some(state) = tries.resume.as_mut() else {
            return Ok(());
        };
        state.set_contiguous(durable);
        let snapshot = state.clone();
        let path = ResumeState::path_for(writer.path());
        tokio::task::spawn_blocking(move || snapshot.save(&path))
            .await
            .map_err(io::Error::other)??;
        tries.state_on_disk = true;
        Ok(())
    }

    async fn stream_to_stdout(
        &self,
        job: &Job,
        tries: &mut Tries,
        response: Response,
        offset: u64,
        size: Option<u64>,
        limits: &Limits,
    ) -> Result<Completed, DownloadError> {
        let stdout_path = PathBuf::from("-");
        let _active = tries.progress.connection();
        self.start(job, tries, &stdout_path, tries.stdout_written, size);
        let mut sink = StdoutSink::new(tries.stdout_written - offset);
        let io_err = |source| DownloadError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        };
        if tries.stdout_written == 0 {
            tries.stdout_verify =
                checksum::Verifier::new(self.expected(job, &stdout_path, Some(response.headers())));
        }
        let mut position = offset;
        let mut stream = response.bytes_stream();
        let mut resume_at = None;
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(DownloadError::Interrupted),
                next = paced(&mut stream, resume_at) => next,
            };
            match next {
                Some(Ok(chunk)) => {
                    let n = chunk.len() as u64;
                    resume_at = limits.reserve(n);
                    if let Some(v) = tries.stdout_verify.as_mut() {
                        // Only the bytes not written by an earlier try.
                        let new_from = tries.stdout_written.saturating_sub(position).min(n);
                        v.update(&chunk[new_from as usize..]);
                    }
                    sink.push(chunk).await.map_err(io_err)?;
                    position += n;
                    if position > tries.stdout_written {
                        tries.progress.add(position - tries.stdout_written);
                        tries.stdout_written = position;
                    }
                }
                Some(Err(e)) => return Err(DownloadError::from_reqwest(e, self.idle_timeout)),
                None => break,
            }
        }
        sink.flush().await.map_err(io_err)?;
        if let Some(expected) = size.filter(|&s| s != position) {
            return Err(DownloadError::ShortBody {
                got: position,
                expected,
            });
        }
        // The bytes are out already: a mismatch can only fail the download.
        let checksum = match tries.stdout_verify.take().map(checksum::Verifier::finish) {
            Some(Err(mismatch)) => {
                return Err(DownloadError::Checksum {
                    mismatch,
                    again: false,
                })
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        Ok(Completed::Done {
            path: stdout_path,
            bytes: position,
            checksum,
        })
    }
}

/// Headers that carry secrets, sent only to the download's own origin.
pub fn is_secret(name: &reqwest::header::HeaderName) -> bool {
    use reqwest::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION
}

/// Whether a URL carries a user or password.
fn has_userinfo(url: &reqwest::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// A URL's user and password, percent-decoded (as reqwest sends them).
fn userinfo(url: &reqwest::Url) -> Option<(String, Option<String>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    has_userinfo(url).then(|| (decode(url.username()), url.password().map(decode)))
}

/// A URL as volley shows it (events, messages, the summary) and records it
/// (state files): a password in it reads `***`.
pub fn redact(url: &reqwest::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("***"));
    shown.to_string()
}

/// Same scheme, host and port.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn header_text(response: &Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn validators_differ(known: &ResumeState, response: &Response) -> bool {
    let differs = |old: &Option<String>, name| match (old, header_text(response, name)) {
        (Some(a), Some(b)) => *a != b,
        _ => false,
    };
    differs(&known.etag, ETAG) || differs(&known.last_modified, LAST_MODIFIED)
}
