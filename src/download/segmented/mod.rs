//! Split downloads: one file fetched over several connections, each writing its
//! ranges into the one pre-sized `NAME.part` at their offsets.
//!
//! - The plan: the missing ranges of the file are cut into at most `connections`
//!   pieces of at least `--min-split-size`. The first connection keeps streaming
//!   the response that revealed the size (its piece is a prefix of it); the others
//!   ask for closed ranges with `If-Range`, and every answer must carry the first
//!   answer's size and validators, or the file starts over.
//! - Work stealing: a connection that finishes its piece takes a piece nobody is
//!   fetching, or else the second half of the largest range still being fetched,
//!   as long as both halves are at least [`plan::steal_min`] long. At the very end, an
//!   idle connection takes over the whole rest of a range whose connection has
//!   received nothing for [`plan::TAKEOVER_IDLE`] (a stalled or paced server).
//! - Durability: connections only write. Shortly before each
//!   [`CHECKPOINT_INTERVAL`] they are asked to write out what they hold; then the
//!   ranges whose writes completed are flushed (one fdatasync covers every
//!   connection) and only then recorded in the state file, on the blocking pool
//!   while the connections go on. A kill at any instant resumes from exactly what
//!   is on disk, losing at most about a second of data.
//! - Failures: a connection that fails flushes what it received, hands the rest of
//!   its range back and reconnects after the backoff, while the others go on. The
//!   failure costs one retry of the download's budget only if the download received
//!   nothing since its previous failure; once the budget is spent, or on an error
//!   another try would not fix, every connection stops and the try fails.

use std::fs::File;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use reqwest::Response;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ratelimit::Limits;
use super::state::ResumeState;
use super::writer::Ordered;
use super::{
    part_path, Completed, DownloadError, Downloader, Job, Slots, Tries, CHECKPOINT_INTERVAL,
};
use crate::checksum::Verifier;
use crate::events::Progress;

mod conn;
mod plan;

pub use plan::plan;
use plan::{steal_min, Rounds, Table};

/// How often a connection with nothing to do looks for a range to take over.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How long before a checkpoint the connections write out what they hold.
const FLUSH_LEAD: Duration = Duration::from_millis(100);

/// A state file being written: the state it records, once on disk.
type SaveJob = JoinHandle<io::Result<ResumeState>>;

/// A connection's future, as the coordinator holds it.
type ConnFuture<'a> = Pin<Box<dyn Future<Output = (usize, Ended)> + Send + 'a>>;

/// How a connection ended.
pub(super) struct Ended {
    /// The source it asked last.
    source: usize,
    /// The window generation of its host slot.
    since: u64,
    result: Result<(), DownloadError>,
}

/// One split download in progress.
pub(super) struct Split<'a, S: Slots> {
    dl: &'a Downloader,
    job: &'a Job,
    slots: &'a S,
    file: Arc<File>,
    part: PathBuf,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    if_range: Option<String>,
    limits: Limits,
    progress: Arc<Progress>,
    steal_min: u64,
    table: Mutex<Table>,
    /// The in-order hash, when a checksum is verified.
    hash: Option<Arc<Mutex<Ordered>>>,
    /// The file's URL and its mirrors; connections are spread over the live ones.
    sources: Vec<reqwest::Url>,
    /// The source whose validators the state holds (the first answer's).
    home: usize,
    /// Sources given up on (before or during this try).
    dropped: Mutex<Vec<usize>>,
    /// Tells every connection to flush, hand back its range and return.
    stop: CancellationToken,
    /// Bumped after each checkpoint: every connection writes out what it holds,
    /// so the next checkpoint records it (also while its server stalls).
    flush: tokio::sync::watch::Sender<u64>,
}

/// What the caller hands over to split a download.
pub(super) struct Start<P> {
    /// The response that revealed the size (a 206), for the first piece.
    pub response: Response,
    /// Its range end (exclusive).
    pub response_end: u64,
    /// The first connection's host slot.
    pub permit: P,
    /// The state with the size, validators and the ranges already on disk.
    pub state: ResumeState,
    /// Most connections.
    pub connections: usize,
    /// `--min-split-size`.
    pub min_split_size: u64,
    /// Rate limits of this download.
    pub limits: Limits,
}

/// Create or reuse the `.part`, sized to the whole file. A fresh start removes a
/// stale state file first, so it can never describe the new bytes.
async fn open_part(
    part: PathBuf,
    fresh: bool,
    size: u64,
    mode: crate::options::FileAllocation,
) -> io::Result<File> {
    tokio::task::spawn_blocking(move || {
        if fresh {
            crate::fs::remove_if_exists(&ResumeState::path_for(&part))?;
        }
        let file = crate::fs::create_nofollow(&part, fresh)?;
        crate::fs::reserve_space(&file, mode, 0, size)?;
        Ok(file)
    })
    .await
    .map_err(io::Error::other)?
}

impl Downloader {
    /// Fetch the rest of a file over up to `start.connections` connections.
    pub(super) async fn split<S: Slots>(
        &self,
        job: &Job,
        tries: &mut Tries,
        slots: &S,
        start: Start<S::Permit>,
    ) -> Result<Completed, DownloadError> {
        let mut state = start.state;
        let size = state.size.expect("a split download knows its size");
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        let part = part_path(&final_path);
        let io_err = |source| DownloadError::Io {
            path: part.clone(),
            source,
        };
        let file = open_part(
            part.clone(),
            state.done.is_empty(),
            size,
            self.file_allocation,
        )
        .await
        .map_err(io_err)?;
        let pieces = plan(&state.gaps(size), start.connections, start.min_split_size);
        self.start(job, tries, &final_path, state.covered(), Some(size));
        let expected = self.expected(job, &final_path, Some(start.response.headers()));
        let split = Split {
            dl: self,
            job,
            slots,
            file: Arc::new(file),
            part: part.clone(),
            size,
            etag: state.etag.clone(),
            last_modified: state.last_modified.clone(),
            if_range: state.if_range().map(str::to_string),
            limits: start.limits,
            progress: tries.progress.clone(),
            steal_min: steal_min(start.min_split_size),
            table: Mutex::new(Table::default()),
            hash: Verifier::new(expected).map(Ordered::new),
            sources: job.sources().cloned().collect(),
            home: tries.sources.current,
            dropped: Mutex::new(tries.sources.abandoned.clone()),
            stop: CancellationToken::new(),
            flush: tokio::sync::watch::Sender::new(0),
        };
        let launch = pieces.len().min(start.connections);
        {
            let mut table = split.lock();
            table.assign(0, pieces[0]);
            table.pending = pieces[1..].to_vec();
        }
        let mut conns: FuturesUnordered<ConnFuture<'_>> = FuturesUnordered::new();
        let first = (start.response, start.response_end);
        conns.push(Box::pin(split.connection(
            0,
            Some(first),
            Some(start.permit),
            Duration::ZERO,
        )));
        for conn in 1..launch {
            conns.push(Box::pin(split.connection(conn, None, None, Duration::ZERO)));
        }
        let mut saving = None;
        let outcome = split
            .coordinate(tries, &mut conns, &mut state, &mut saving)
            .await;
        // Every connection flushes and hands back its range, and a state file
        // being written lands, before anything else is recorded or renamed.
        split.stop.cancel();
        while conns.next().await.is_some() {}
        drop(conns);
        // Mirrors dropped here stay dropped for the next tries.
        for &s in split
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            if s != split.home && !tries.sources.abandoned.contains(&s) {
                tries.sources.abandoned.push(s);
            }
        }
        if let Some(job) = saving.take() {
            state = job
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(io_err)?;
            tries.state_on_disk = true;
        }
        if let Err(e @ DownloadError::Restart(_)) = outcome {
            tries.resume = None;
            tries.state_on_disk = false;
            let stale = ResumeState::path_for(&part);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(stale)).await;
            return Err(e);
        }
        if split.record(&mut state).await.map_err(io_err)? {
            tries.state_on_disk = true;
        }
        match outcome {
            Ok(()) if state.covered() == size => {
                let file = split.file.clone();
                let hash = split.hash.clone();
                let (p, f) = (part.clone(), final_path.clone());
                let stale = ResumeState::path_for(&part);
                let checksum = tokio::task::spawn_blocking(move || {
                    let verified = match &hash {
                        Some(h) => Some(
                            Ordered::finish(h, &file, size)?
                                .map_err(|m| super::commit::discard(&p, Some(&stale), m))?,
                        ),
                        None => None,
                    };
                    super::commit::complete(&file, &p, &f, Some(&stale))?;
                    Ok(verified)
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|e| self.mismatch(tries, e, &part))?;
                Ok(Completed::Done {
                    path: final_path,
                    bytes: size,
                    checksum,
                })
            }
            outcome => {
                let got = state.covered();
                tries.resume = Some(state);
                Err(outcome.err().unwrap_or(DownloadError::ShortBody {
                    got,
                    expected: size,
                }))
            }
        }
    }
}

impl<'a, S: Slots> Split<'a, S> {
    /// A write to the `.part` failed.
    fn io_err(&self, source: std::io::Error) -> DownloadError {
        DownloadError::Io {
            path: self.part.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run the connections until the file is complete, or until a failure or an
    /// interrupt ends the try. Checkpoints every second meanwhile.
    async fn coordinate(
        &'a self,
        tries: &mut Tries,
        conns: &mut FuturesUnordered<ConnFuture<'a>>,
        state: &mut ResumeState,
        saving: &mut Option<SaveJob>,
    ) -> Result<(), DownloadError> {
        let dl = self.dl;
        let policy = dl.retry;
        let mut rounds = Rounds::default();
        let io_err = |e| self.io_err(e);
        // Two beats per checkpoint: ask the connections to write out what they
        // hold, then record what was written.
        let mut flush_asked = false;
        let tick = tokio::time::sleep(CHECKPOINT_INTERVAL - FLUSH_LEAD);
        tokio::pin!(tick);
        loop {
            let (conn, ended) = tokio::select! {
                biased;
                _ = dl.cancel.cancelled() => return Err(DownloadError::Interrupted),
                saved = async { saving.as_mut().expect("guarded").await }, if saving.is_some() => {
                    *saving = None;
                    *state = saved.map_err(io::Error::other).and_then(|r| r).map_err(io_err)?;
                    tries.state_on_disk = true;
                    continue;
                }
                _ = &mut tick => {
                    let next = if flush_asked {
                        if saving.is_none() {
                            *saving = self.save(state.clone());
                        }
                        CHECKPOINT_INTERVAL - FLUSH_LEAD
                    } else {
                        self.flush.send_modify(|n| *n += 1);
                        FLUSH_LEAD
                    };
                    flush_asked = !flush_asked;
                    tick.as_mut().reset(Instant::now() + next);
                    continue;
                }
                next = conns.next() => match next {
                    Some(done) => done,
                    None => return Ok(()),
                },
            };
            let error = match ended.result {
                Ok(()) if self.lock().is_complete() => return Ok(()),
                Ok(()) => continue,
                Err(e) => e,
            };
            let source = ended.source;
            let mirror = source != self.home;
            // A mirror never ends the try: it is dropped, and its connection
            // moves on at once without spending a retry.
            let error = match error {
                e @ DownloadError::MirrorDropped(_) => e,
                e if mirror && !e.is_transient() => self.drop_source(source, &e.to_string()),
                e => e,
            };
            if let DownloadError::MirrorDropped(why) = &error {
                dl.retrying(
                    self.job,
                    tries,
                    format!("connection {}: {why}", conn + 1),
                    Duration::ZERO,
                );
                conns.push(Box::pin(self.connection(conn, None, None, Duration::ZERO)));
                continue;
            }
            // The error that ends the try is the scheduler's to weigh (host
            // window, budget); the others are handled here.
            if !error.is_transient() || matches!(error, DownloadError::Restart(_)) {
                tries.sources.blame = mirror.then_some(source);
                return Err(error);
            }
            let received = self.lock().received;
            if rounds.charge(conn, received) {
                if tries.failed + 1 >= policy.max_attempts() {
                    tries.sources.blame = mirror.then_some(source);
                    return Err(error);
                }
                tries.failed += 1;
                rounds.next_round();
            }
            // The host window is the first URL's host's.
            if !mirror {
                error.tell(self.slots, ended.since, policy.max_wait);
            }
            rounds.restart(conn);
            let delay = policy.delay(tries.failed.max(1), error.retry_after());
            dl.retrying(
                self.job,
                tries,
                format!("connection {}: {error}", conn + 1),
                delay,
            );
            conns.push(Box::pin(self.connection(conn, None, None, delay)));
        }
    }

    /// Start recording every range written so far: flush the file, then write
    /// the state file, on the blocking pool. `None` when nothing new was written.
    fn save(&self, mut state: ResumeState) -> Option<SaveJob> {
        let ranges = self.lock().written_ranges();
        if ranges.is_empty() {
            return None;
        }
        let file = self.file.clone();
        let path = ResumeState::path_for(&self.part);
        let hash = self.hash.clone();
        Some(tokio::task::spawn_blocking(move || {
            file.sync_data()?;
            for (s, e) in ranges {
                state.add(s, e);
            }
            state.save(&path)?;
            // Hash what became contiguous while it is still in the page cache.
            if let Some(h) = &hash {
                Ordered::catch_up(h, &file, state.contiguous())?;
            }
            Ok(state)
        }))
    }

    /// Record every range written so far and wait until it is on disk; `true`
    /// when the state file was written.
    async fn record(&self, state: &mut ResumeState) -> io::Result<bool> {
        let Some(job) = self.save(state.clone()) else {
            return Ok(false);
        };
        *state = job.await.map_err(io::Error::other)??;
        Ok(true)
    }
}
