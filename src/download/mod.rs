//! One download: the request, the name, the body streamed to `NAME.part`, resume
//! state, and the atomic rename at the end. Retrying is the scheduler's business;
//! this module runs one try at a time and says whether another is worth it.

pub mod auth;
pub mod body;
pub mod checksum;
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
pub mod state;
pub mod tries;
pub mod writer;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use reqwest::{Client, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::events::{DownloadId, Event, EventSender};
use crate::input::DownloadSpec;
use crate::naming::{self, Names};
use crate::options::OnExists;
use body::{Body, Next};
pub use error::DownloadError;
use ratelimit::{Limits, RateLimiter};
pub use request::{is_secret, redact};
use retry::RetryPolicy;
use state::ResumeState;
pub use tries::Tries;
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
            attempt: tries.failed + 1,
            max_attempts: self.retry.max_attempts(),
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
                    .map(RateLimiter::new),
            })
            .clone()
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
            job.source(tries.sources.current),
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
        if tries.sources.current != 0 {
            state.source = Some(redact(job.source(tries.sources.current)));
        }
        state.size = size;
        state.etag = range::header_text(&response, ETAG);
        state.last_modified = range::header_text(&response, LAST_MODIFIED);
        let holes = status == StatusCode::PARTIAL_CONTENT
            && tries.resume.as_ref().is_some_and(ResumeState::has_holes);
        match tries.resume.as_ref() {
            Some(old) if holes => state.done = old.done.clone(),
            _ => state.set_contiguous(offset),
        }
        tries.last_modified = state.last_modified.clone();
        if let Some(total) = size {
            let dir = crate::fs::parent_dir(&final_path);
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
            tokio::task::spawn_blocking(move || crate::fs::remove_if_exists(&stale))
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
        let mut body = Body::new(response, self.idle_timeout);
        // Flush and record progress every CHECKPOINT_INTERVAL, also while the
        // server stalls, so a kill loses at most that much of what arrived.
        let checkpoint = tokio::time::sleep(CHECKPOINT_INTERVAL);
        tokio::pin!(checkpoint);
        loop {
            match body.next(&self.cancel, checkpoint.as_mut()).await {
                Ok(Next::Tick) => {
                    if writer.has_unsynced() {
                        self.keep_partial(tries, &mut writer, false)
                            .await
                            .map_err(io_err)?;
                    }
                    checkpoint
                        .as_mut()
                        .reset(tokio::time::Instant::now() + CHECKPOINT_INTERVAL);
                }
                Ok(Next::Chunk(chunk)) => {
                    let n = chunk.len() as u64;
                    if let Err(e) = writer.push(chunk).await {
                        let _ = self.keep_partial(tries, &mut writer, true).await;
                        return Err(io_err(e));
                    }
                    tries.progress.add(n);
                    body.charge(&limits, n);
                }
                Ok(Next::End) => break,
                // Interrupted, or the connection failed: keep what arrived.
                Err(e) => {
                    self.keep_partial(tries, &mut writer, true)
                        .await
                        .map_err(io_err)?;
                    return Err(e);
                }
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
            tries.stdout.written = 0;
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
        let known = tries.resume.as_ref();
        let served = match asked {
            None => Err(range::Problem::NotAsked),
            Some(start) => range::check(
                response,
                &range::Expected {
                    start,
                    size: known.and_then(|k| k.size),
                    validators: known
                        .filter(|k| k.is_from(source))
                        .map(|k| (k.etag.as_deref(), k.last_modified.as_deref())),
                },
            ),
        };
        match served {
            Ok(served) => Ok((served.start, served.total)),
            // A mirror that answers another range or size is the mirror's
            // problem, not the file's: drop it and keep the data.
            Err(problem) if tries.sources.current != 0 => {
                Err(DownloadError::MirrorDropped(format!(
                    "mirror {}: {problem}; dropped for this file",
                    redact(source)
                )))
            }
            Err(problem) => {
                tries.resume = None;
                tries.stdout.written = 0;
                Err(DownloadError::Restart(problem.to_string()))
            }
        }
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
                || tries.sources.current != 0
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
        self.start(job, tries, &stdout_path, tries.stdout.written, size);
        let mut sink = StdoutSink::new(tries.stdout.written - offset);
        let io_err = |source| DownloadError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        };
        if tries.stdout.written == 0 {
            tries.stdout.verify =
                checksum::Verifier::new(self.expected(job, &stdout_path, Some(response.headers())));
        }
        let mut position = offset;
        let mut body = Body::new(response, self.idle_timeout);
        loop {
            let chunk = match body.next(&self.cancel, std::future::pending()).await? {
                Next::Chunk(chunk) => chunk,
                Next::Tick => continue,
                Next::End => break,
            };
            let n = chunk.len() as u64;
            body.charge(limits, n);
            if let Some(v) = tries.stdout.verify.as_mut() {
                // Only the bytes not written by an earlier try.
                let new_from = tries.stdout.written.saturating_sub(position).min(n);
                v.update(&chunk[new_from as usize..]);
            }
            sink.push(chunk).await.map_err(io_err)?;
            position += n;
            if position > tries.stdout.written {
                tries.progress.add(position - tries.stdout.written);
                tries.stdout.written = position;
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
        let checksum = match tries.stdout.verify.take().map(checksum::Verifier::finish) {
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
