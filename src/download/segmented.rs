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
//!   as long as both halves are at least [`steal_min`] long. At the very end, an
//!   idle connection takes over the whole rest of a range whose connection has
//!   received nothing for [`TAKEOVER_IDLE`] (a stalled or paced server).
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

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT_ENCODING, IF_RANGE, RANGE};
use reqwest::{Response, StatusCode};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{Body, Next};
use super::checksum::Verifier;
use super::ratelimit::{pause, Limits};
use super::state::ResumeState;
use super::writer::{Ordered, SegmentWriter};
use super::{
    http, part_path, range, Completed, DownloadError, Downloader, Job, Slots, Tries,
    CHECKPOINT_INTERVAL,
};
use crate::events::Progress;

/// Largest smallest-half a connection steals: with a large `--min-split-size`,
/// connections still take over halves down to this size at the end of a file.
pub const STEAL_MIN_CAP: u64 = 1024 * 1024;
/// A range whose connection received nothing for this long is taken over whole by
/// an idle connection once nothing is left to split.
pub const TAKEOVER_IDLE: Duration = Duration::from_millis(100);
/// How often a connection with nothing to do looks for a range to take over.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// How long before a checkpoint the connections write out what they hold.
const FLUSH_LEAD: Duration = Duration::from_millis(100);

/// The smallest half worth a new request when stealing.
pub fn steal_min(min_split_size: u64) -> u64 {
    min_split_size.clamp(1, STEAL_MIN_CAP)
}

/// Cut the missing ranges of a file into pieces for up to `connections`
/// connections, each piece at least `min_split_size` long where the ranges allow.
pub fn plan(gaps: &[(u64, u64)], connections: usize, min_split_size: u64) -> Vec<(u64, u64)> {
    let remaining: u64 = gaps.iter().map(|(s, e)| e - s).sum();
    let target = (remaining / min_split_size.max(1)).clamp(1, connections.max(1) as u64);
    let piece = remaining.div_ceil(target).max(1);
    let mut pieces = Vec::new();
    for &(start, end) in gaps {
        let len = end - start;
        let k = len.div_ceil(piece).min(len / min_split_size.max(1)).max(1);
        for i in 0..k {
            let a = start + len * i / k;
            let b = start + len * (i + 1) / k;
            if a < b {
                pieces.push((a, b));
            }
        }
    }
    pieces
}

/// One connection's current range.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Where this range started (bytes from here to `written` are written).
    run_start: u64,
    /// Bytes before this offset have been written.
    written: u64,
    /// Bytes before this offset have been received.
    pos: u64,
    /// End of the range (exclusive); a stealer may lower it, never below `pos`.
    end: u64,
    /// When data last arrived (or the range was assigned), or when a pause of
    /// our own rate limit ends.
    last_data: Instant,
    /// Another connection took over the rest of this range: whatever this
    /// connection still receives is dropped.
    taken_over: bool,
}

/// Who fetches what, shared by the connections of one download.
#[derive(Debug, Default)]
struct Table {
    /// Ranges nobody is fetching, sorted by start.
    pending: Vec<(u64, u64)>,
    /// Ranges being fetched, by connection.
    slots: HashMap<usize, Slot>,
    /// Written ranges no longer in a slot, not yet recorded.
    written: Vec<(u64, u64)>,
    /// Bytes received in this try (only grows).
    received: u64,
    /// The connection that stays, idle, for the end game.
    waiter: Option<usize>,
}

impl Table {
    fn assign(&mut self, conn: usize, (start, end): (u64, u64)) {
        if self.waiter == Some(conn) {
            self.waiter = None;
        }
        self.slots.insert(
            conn,
            Slot {
                run_start: start,
                written: start,
                pos: start,
                end,
                last_data: Instant::now(),
                taken_over: false,
            },
        );
    }

    /// The next range for `conn`: a pending one, half of the largest one, or
    /// the whole rest of a stalled one.
    fn take_work(&mut self, conn: usize, steal_min: u64) -> Option<(u64, u64)> {
        if !self.pending.is_empty() {
            let work = self.pending.remove(0);
            self.assign(conn, work);
            return Some(work);
        }
        let (&victim, rest) = self
            .slots
            .iter()
            .map(|(id, s)| (id, s.end - s.pos))
            .max_by_key(|&(_, rest)| rest)?;
        let slot = self.slots.get_mut(&victim).expect("just found");
        let from = if rest >= 2 * steal_min {
            slot.pos + rest / 2
        } else {
            // Only a range that received data and then stopped: one whose
            // request is still unanswered is the timeouts' business (taking it
            // over would only start another wait for an answer).
            let stalled = self.slots.iter().find(|(_, s)| {
                s.pos < s.end
                    && s.pos > s.run_start
                    && Instant::now().saturating_duration_since(s.last_data) >= TAKEOVER_IDLE
            });
            let (&victim, _) = stalled?;
            let slot = self.slots.get_mut(&victim).expect("just found");
            let from = slot.pos;
            let work = (from, slot.end);
            slot.end = from;
            slot.taken_over = true;
            self.assign(conn, work);
            return Some(work);
        };
        let work = (from, slot.end);
        slot.end = from;
        self.assign(conn, work);
        Some(work)
    }

    /// Whether some range is still being fetched.
    fn unfinished(&self) -> bool {
        self.slots.values().any(|s| s.pos < s.end)
    }

    /// Whether `conn`, with nothing to do, should stay to take over a range
    /// that stalls: only while ranges are unfinished, and only one connection.
    fn wait_for_end_game(&mut self, conn: usize) -> bool {
        if !self.unfinished() {
            if self.waiter == Some(conn) {
                self.waiter = None;
            }
            return false;
        }
        match self.waiter {
            Some(w) if w != conn => false,
            _ => {
                self.waiter = Some(conn);
                true
            }
        }
    }

    /// Take up to `n` bytes of a chunk for `conn`'s range; returns how many,
    /// and whether the range is now complete.
    fn accept(&mut self, conn: usize, n: u64) -> (u64, bool) {
        let slot = self
            .slots
            .get_mut(&conn)
            .expect("a fetching connection has a slot");
        let take = n.min(slot.end - slot.pos);
        slot.pos += take;
        slot.last_data = Instant::now();
        self.received += take;
        (take, slot.pos >= slot.end)
    }

    /// `conn` will not read before `until` (rate limit): not a stall.
    fn quiet_until(&mut self, conn: usize, until: Instant) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.last_data = slot.last_data.max(until);
        }
    }

    fn slot(&self, conn: usize) -> Slot {
        *self
            .slots
            .get(&conn)
            .expect("a fetching connection has a slot")
    }

    fn wrote(&mut self, conn: usize, upto: u64) {
        if let Some(slot) = self.slots.get_mut(&conn) {
            slot.written = slot.written.max(upto);
        }
    }

    /// `conn` stops fetching: what it wrote waits to be recorded, the rest of its
    /// range goes back to the pending list.
    fn release(&mut self, conn: usize) {
        let Some(slot) = self.slots.remove(&conn) else {
            return;
        };
        if slot.written > slot.run_start {
            self.written.push((slot.run_start, slot.written));
        }
        if slot.end > slot.written {
            let at = self.pending.partition_point(|&(s, _)| s < slot.written);
            self.pending.insert(at, (slot.written, slot.end));
        }
    }

    /// Nothing pending and nobody fetching, except connections whose range was
    /// taken over (they may wait long for a chunk they would drop; what they
    /// hold is written when they stop).
    fn is_complete(&self) -> bool {
        self.pending.is_empty() && self.slots.values().all(|s| s.taken_over)
    }

    /// Every range written so far and not yet recorded.
    fn written_ranges(&mut self) -> Vec<(u64, u64)> {
        let mut ranges = std::mem::take(&mut self.written);
        ranges.extend(
            self.slots
                .values()
                .filter(|s| s.written > s.run_start)
                .map(|s| (s.run_start, s.written)),
        );
        ranges
    }
}

/// Which connection failures cost a retry of the download's budget: one with no
/// data received since the previous failure, and at most one per round of
/// reconnections, so that the connections an outage resets together cost one
/// retry, not one each.
#[derive(Debug, Default)]
struct Rounds {
    received_at_failure: u64,
    round: u64,
    started_in: HashMap<usize, u64>,
}

impl Rounds {
    /// Connection `conn` failed with `received` bytes received by the download
    /// so far: is this failure charged?
    fn charge(&mut self, conn: usize, received: u64) -> bool {
        let same_round = self.started_in.get(&conn).copied().unwrap_or(0) == self.round;
        let charged = received == self.received_at_failure && same_round;
        self.received_at_failure = received;
        charged
    }

    /// A failure was charged: reconnections from now on are a new round.
    fn next_round(&mut self) {
        self.round += 1;
    }

    /// `conn` reconnects in the current round.
    fn restart(&mut self, conn: usize) {
        self.started_in.insert(conn, self.round);
    }
}

/// A state file being written: the state it records, once on disk.
type SaveJob = JoinHandle<io::Result<ResumeState>>;

/// A connection's future, as the coordinator holds it.
type ConnFuture<'a> = Pin<Box<dyn Future<Output = (usize, Result<(), DownloadError>)> + Send + 'a>>;

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
    /// The source each connection asked last.
    asked: Mutex<HashMap<usize, usize>>,
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
            asked: Mutex::new(HashMap::new()),
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
        let io_err = |source| DownloadError::Io {
            path: self.part.clone(),
            source,
        };
        // Two beats per checkpoint: ask the connections to write out what they
        // hold, then record what was written.
        let mut flush_asked = false;
        let tick = tokio::time::sleep(CHECKPOINT_INTERVAL - FLUSH_LEAD);
        tokio::pin!(tick);
        loop {
            let (conn, result) = tokio::select! {
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
            let error = match result {
                Ok(()) if self.lock().is_complete() => return Ok(()),
                Ok(()) => continue,
                Err(e) => e,
            };
            let source = self
                .asked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&conn)
                .copied()
                .unwrap_or(self.home);
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
            if error.is_congestion() && !mirror {
                self.slots
                    .congestion(error.retry_after().map(|d| d.min(policy.max_wait)));
            }
            rounds.restart(conn);
            let delay = policy.delay(
                tries.failed.max(1),
                error.retry_after(),
                (self.job.id as u64) << 8 | conn as u64,
            );
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

    /// One connection: wait `delay` and for a host slot, then fetch ranges until
    /// there is nothing left worth taking.
    async fn connection(
        &'a self,
        conn: usize,
        mut first: Option<(Response, u64)>,
        permit: Option<S::Permit>,
        delay: Duration,
    ) -> (usize, Result<(), DownloadError>) {
        let run = async {
            if !delay.is_zero() {
                tokio::select! {
                    _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            let _permit = match permit {
                Some(p) => p,
                None => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                    p = self.slots.acquire() => p,
                },
            };
            loop {
                let work = match &first {
                    Some(_) => {
                        let s = self.lock().slot(conn);
                        Some((s.pos, s.end))
                    }
                    None => self.lock().take_work(conn, self.steal_min),
                };
                let Some((start, end)) = work else {
                    // One connection stays for the end game (a range may stall
                    // and be taken over); the others free their host slots.
                    if !self.lock().wait_for_end_game(conn) {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    continue;
                };
                let result = self.fetch(conn, first.take(), start, end).await;
                self.lock().release(conn);
                result?;
                self.slots.success();
            }
        };
        (conn, run.await)
    }

    /// Fetch `[start, end)` (or what remains of it after stealing) into the file.
    async fn fetch(
        &self,
        conn: usize,
        first: Option<(Response, u64)>,
        start: u64,
        end: u64,
    ) -> Result<(), DownloadError> {
        let (response, response_end) = match first {
            Some(r) => r,
            None => {
                let source = self.source_for(conn);
                self.asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(conn, source);
                let response = self.request(source, start, end).await?;
                let response_end = self.check(&response, start, source)?;
                (response, response_end)
            }
        };
        let _active = self.progress.connection();
        let mut writer = SegmentWriter::new(self.file.clone(), start, self.hash.clone());
        let streamed = self.stream(conn, response, response_end, &mut writer).await;
        // What arrived is good even if the stream failed: write it all.
        let flushed = writer.flush().await;
        if let Ok(upto) = flushed {
            self.lock().wrote(conn, upto);
        }
        flushed.map_err(|source| DownloadError::Io {
            path: self.part.clone(),
            source,
        })?;
        streamed
    }

    /// The source connection `conn` asks: the live sources in turn, from the
    /// one that answered first.
    fn source_for(&self, conn: usize) -> usize {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.sources.len();
        let live: Vec<usize> = (0..n)
            .map(|k| (self.home + k) % n)
            .filter(|i| *i == self.home || !dropped.contains(i))
            .collect();
        live[conn % live.len()]
    }

    /// Give up on a mirror that disagrees with the file; its connection moves on.
    fn drop_source(&self, source: usize, why: &str) -> DownloadError {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if !dropped.contains(&source) {
            dropped.push(source);
        }
        DownloadError::MirrorDropped(format!(
            "mirror {}: {why}; dropped for this file",
            super::redact(&self.sources[source])
        ))
    }

    async fn request(
        &self,
        source: usize,
        start: u64,
        end: u64,
    ) -> Result<Response, DownloadError> {
        let url = &self.sources[source];
        // Validators are only comparable on the server that issued them.
        let if_range = self.if_range.as_ref().filter(|_| source == self.home);
        let extra = |request: reqwest::RequestBuilder| {
            let request = request
                .header(RANGE, format!("bytes={start}-{}", end - 1))
                .header(ACCEPT_ENCODING, "identity");
            match if_range {
                Some(v) => request.header(IF_RANGE, v),
                None => request,
            }
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(DownloadError::Interrupted),
            r = self.dl.send_following(self.job, reqwest::Method::GET, url, extra) => r,
        }
    }

    /// A ranged answer must be exactly the asked-for range of the same file.
    /// Returns the end (exclusive) of the range it carries.
    fn check(&self, response: &Response, start: u64, source: usize) -> Result<u64, DownloadError> {
        let status = response.status();
        let mirror = source != self.home;
        if status == StatusCode::OK && mirror {
            return Err(self.drop_source(source, "does not serve ranges"));
        }
        // A mirror that cannot serve the range (404, 416, ...) is dropped; one
        // that is busy (503, ...) is asked again like any connection.
        if mirror && status != StatusCode::PARTIAL_CONTENT && !http::is_transient_status(status) {
            return Err(self.drop_source(source, &format!("answered {status}")));
        }
        if status == StatusCode::OK {
            return Err(DownloadError::Restart(
                "the server sent the whole file to a range request (it changed, or stopped serving ranges)"
                    .into(),
            ));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(DownloadError::Http {
                status,
                retry_after: http::retry_after(response.headers()),
            });
        }
        let expected = range::Expected {
            start,
            size: Some(self.size),
            // Validators are only comparable on the server that issued them.
            validators: (!mirror).then(|| (self.etag.as_deref(), self.last_modified.as_deref())),
        };
        match range::check(response, &expected) {
            Ok(served) => Ok(served.end),
            Err(problem) if mirror => Err(self.drop_source(source, &problem.to_string())),
            Err(problem) => Err(DownloadError::Restart(problem.to_string())),
        }
    }

    /// Stream a response into the writer until this connection's range is done.
    async fn stream(
        &self,
        conn: usize,
        response: Response,
        response_end: u64,
        writer: &mut SegmentWriter,
    ) -> Result<(), DownloadError> {
        let mut body = Body::new(response, self.dl.idle_timeout);
        let mut flush = self.flush.subscribe();
        let io_err = |source| DownloadError::Io {
            path: self.part.clone(),
            source,
        };
        loop {
            let tick = async {
                let _ = flush.changed().await;
            };
            match body.next(&self.stop, tick).await? {
                Next::Tick => {
                    let upto = writer.flush().await.map_err(io_err)?;
                    self.lock().wrote(conn, upto);
                }
                Next::Chunk(chunk) => {
                    let (take, range_done) = self.lock().accept(conn, chunk.len() as u64);
                    if take > 0 {
                        self.progress.add(take);
                        if let Some(until) = body.charge(&self.limits, take) {
                            // Paused by our own rate limit, not stalled.
                            self.lock().quiet_until(conn, until);
                        }
                        let written = writer
                            .push(chunk.slice(..take as usize))
                            .await
                            .map_err(io_err)?;
                        if let Some(upto) = written {
                            self.lock().wrote(conn, upto);
                        }
                    }
                    // Done with the range; a response that goes on is dropped,
                    // one that ends here is read to its end so the connection
                    // can be reused.
                    if range_done && self.lock().slot(conn).pos < response_end {
                        // The last bytes count against the rate limit too.
                        tokio::select! {
                            _ = self.stop.cancelled() => {}
                            _ = pause(body.resume_at()) => {}
                        }
                        return Ok(());
                    }
                }
                Next::End => {
                    let slot = self.lock().slot(conn);
                    return if slot.pos >= slot.end {
                        Ok(())
                    } else {
                        Err(DownloadError::ShortBody {
                            got: slot.pos,
                            expected: slot.end,
                        })
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_cuts_equal_pieces_no_smaller_than_the_minimum() {
        let mib = 1024 * 1024;
        assert_eq!(plan(&[(0, 16 * mib)], 4, 4 * mib).len(), 4);
        assert_eq!(plan(&[(0, 16 * mib)], 16, 4 * mib).len(), 4);
        assert_eq!(plan(&[(0, 7 * mib)], 16, 4 * mib), vec![(0, 7 * mib)]);
        let p = plan(&[(0, 256 * mib)], 16, 4 * mib);
        assert_eq!(p.len(), 16);
        assert!(p.iter().all(|(s, e)| e - s == 16 * mib));
        // Gaps of a resumed file: each cut on its own, covering exactly the gaps.
        let gaps = [(10, 20), (100, 1000)];
        let p = plan(&gaps, 4, 100);
        let covered: u64 = p.iter().map(|(s, e)| e - s).sum();
        assert_eq!(covered, 10 + 900);
        assert_eq!(p[0], (10, 20));
        assert!(p.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn stealing_takes_the_second_half_of_the_largest_range() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.assign(1, (100, 400));
        assert_eq!(t.accept(1, 100), (100, false));
        // Connection 0 finished; 1 has 200 left: 0 takes [300, 400).
        assert_eq!(t.accept(0, 100), (100, true));
        t.wrote(0, 100);
        t.release(0);
        assert!(t.pending.is_empty());
        assert_eq!(t.take_work(0, 10), Some((300, 400)));
        // 1 can only take up to its new end.
        assert_eq!(t.accept(1, 500), (100, true));
        assert_eq!(t.slot(1).end, 300);
        // Connection 0 has 100 left: halves of 50 are worth a request at a
        // minimum of 50, not at 60.
        assert_eq!(t.take_work(2, 60), None);
        assert_eq!(t.take_work(2, 50), Some((350, 400)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_range_is_taken_over_whole_at_the_end() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.accept(0, 90);
        // 10 bytes left: too small to split, and the connection is not stalled.
        assert_eq!(t.take_work(1, 50), None);
        assert!(t.unfinished());
        // Paused by the rate limit for a while: not a stall.
        t.quiet_until(0, Instant::now() + 3 * TAKEOVER_IDLE);
        tokio::time::advance(2 * TAKEOVER_IDLE).await;
        assert_eq!(t.take_work(1, 50), None);
        tokio::time::advance(2 * TAKEOVER_IDLE).await;
        assert_eq!(t.take_work(1, 50), Some((90, 100)));
        assert_eq!(t.slot(0).end, 90);
        // The stalled connection would drop whatever it still gets.
        assert_eq!(t.accept(0, 5), (0, true));
        assert!(!t.is_complete());
        t.accept(1, 10);
        assert!(!t.is_complete(), "connection 1 has not finished");
        t.wrote(1, 100);
        t.release(1);
        // Complete, though connection 0 has not returned.
        assert!(t.is_complete());
    }

    #[test]
    fn an_outage_that_resets_every_connection_costs_one_retry_per_round() {
        // As the coordinator does: a charge starts the next round.
        fn fail(r: &mut Rounds, conn: usize, received: u64) -> bool {
            let charged = r.charge(conn, received);
            if charged {
                r.next_round();
            }
            r.restart(conn);
            charged
        }
        let mut r = Rounds::default();
        // Data flowed, then all 8 connections fail at once: one charge.
        let charged = (0..8).filter(|&c| fail(&mut r, c, 1000)).count();
        assert_eq!(charged, 1);
        // The server is still down: every reconnection fails, one charge again.
        let charged = (0..8).filter(|&c| fail(&mut r, c, 1000)).count();
        assert_eq!(charged, 1);
        // One flaky connection while the others deliver: never charged.
        assert!(!fail(&mut r, 3, 2000));
        assert!(!fail(&mut r, 3, 3000));
        // Nothing flows any more and it fails again: charged.
        assert!(fail(&mut r, 3, 3000));
    }

    #[test]
    fn one_idle_connection_waits_for_the_end_game() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        assert!(t.wait_for_end_game(1));
        assert!(!t.wait_for_end_game(2), "a second idle connection leaves");
        assert!(t.wait_for_end_game(1));
        t.accept(0, 100);
        assert!(!t.wait_for_end_game(1), "nothing unfinished: leave");
    }

    #[test]
    fn pieces_are_never_smaller_than_the_minimum() {
        // A gap just over one piece is not cut in two halves below the minimum.
        let p = plan(&[(0, 100), (200, 335)], 4, 60);
        assert!(p.iter().all(|(s, e)| e - s >= 60), "{p:?}");
        assert_eq!(p.iter().map(|(s, e)| e - s).sum::<u64>(), 235);
    }

    #[test]
    fn a_failed_connection_hands_back_what_it_did_not_write() {
        let mut t = Table::default();
        t.assign(0, (0, 100));
        t.accept(0, 60);
        t.wrote(0, 50);
        t.release(0);
        assert_eq!(t.pending, vec![(50, 100)]);
        assert_eq!(t.written_ranges(), vec![(0, 50)]);
        assert!(!t.is_complete());
        assert_eq!(t.take_work(1, 10), Some((50, 100)));
    }
}
