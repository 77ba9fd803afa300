//! The scheduler: names and directories for the batch, downloads started in input
//! order with at most `--jobs` at once and `--max-per-host` per host, and retries
//! with exponential backoff and full jitter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::download::ratelimit::RateLimiter;
use crate::download::retry::RetryPolicy;
use crate::download::{redact, Completed, DownloadError, Downloader, Job, Tries};
use crate::events::{DownloadId, Event, EventSender, Failure, RunSummary};
use crate::input::stream::Streamed;
use crate::input::{Input, Queued};
use crate::naming::listing::Listing;
use crate::naming::plan::{Planned, Planner};
use crate::naming::Names;
use crate::options::OutputName;

pub mod hosts;
use hosts::Hosts;

/// How one download ended, as data.
#[derive(Debug)]
enum Outcome {
    Done {
        transferred: u64,
    },
    Skipped,
    /// `--dry-run`: resolved.
    Planned,
    /// Failed for good; bytes fetched on the way still count as transferred.
    Failed(Failure, u64),
    /// Stopped by an interrupt, with the bytes fetched before it.
    Interrupted(u64),
}

/// Shared by every download task.
struct Shared {
    downloader: Downloader,
    hosts: Hosts,
    /// `--dry-run`.
    dry_run: bool,
}

/// What a run did: the summary, and the downloads that did not complete (for
/// `--save-failed`), in input order.
#[derive(Debug, Default)]
pub struct Ran {
    /// What happened.
    pub summary: RunSummary,
    /// Failed, interrupted and never started downloads, as the input gave
    /// them; kept only when asked for.
    pub unfinished: Vec<Queued>,
}

/// Run every download and return what happened. The downloads known before
/// the run are planned whole first (names reserved in input order); those
/// that arrive on a stream are planned as they come, after them.
/// `keep_unfinished`: hand back the downloads that did not complete.
pub async fn run(
    settings: &Settings,
    mut input: Input,
    client: reqwest::Client,
    credentials: crate::download::auth::Credentials,
    events: EventSender,
    cancel: CancellationToken,
    keep_unfinished: bool,
) -> Ran {
    let started = Instant::now();
    let names = Names::default();
    let mut planner = Planner::new(settings.output == Some(OutputName::Stdout));
    let planned: Vec<Planned> = input
        .specs
        .iter()
        .enumerate()
        .map(|(id, q)| plan(settings, &mut planner, id, q, &names))
        .collect();
    // A dry run writes nothing, directories included.
    let (dirs, listing) = create_dirs(std::mem::take(&mut planner.counts), !settings.dry_run).await;
    let shared = Arc::new(Shared {
        downloader: Downloader {
            client,
            on_exists: settings.on_exists,
            idle_timeout: settings.timeout,
            names,
            listing,
            events: events.clone(),
            cancel: cancel.clone(),
            retry: RetryPolicy {
                retries: settings.retries,
                wait: settings.retry_wait,
                max_wait: settings.max_retry_wait,
            },
            connections: settings.connections,
            min_split_size: settings.min_split_size,
            rate_limit: settings.limit_rate.map(RateLimiter::new),
            rate_limit_per_download: settings.limit_rate_per_download,
            sums: input.sums,
            credentials,
            headers: settings.headers.clone(),
            redirects: crate::download::http::Redirects {
                max: settings.max_redirects,
                allow_insecure: settings.allow_insecure_redirect,
            },
            trust_server_names: settings.trust_server_names,
            timestamping: settings.timestamping,
            file_allocation: settings.file_allocation,
        },
        hosts: Hosts::new(settings.max_per_host, events.clone()),
        dry_run: settings.dry_run,
    });
    let mut batch = Batch {
        settings,
        shared,
        slots: Arc::new(Semaphore::new(settings.jobs)),
        running: JoinSet::new(),
        ran: Ran::default(),
        keep_unfinished,
        in_flight: HashMap::new(),
        dirs,
        stopped: false,
        unfinished: BTreeMap::new(),
    };
    let mut next_id = input.specs.len();
    let mut lines = input.specs.into_iter().zip(planned).enumerate();
    for (id, (queued, planned)) in lines.by_ref() {
        if !batch.start(id, queued, planned).await {
            break;
        }
    }
    for (id, (queued, planned)) in lines {
        if let Planned::Job(_) = planned {
            batch.not_started(id, queued);
        }
    }
    if let Some(mut stream) = input.stream.take().filter(|_| !batch.stopped) {
        loop {
            let id = next_id;
            let item = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                item = stream.next() => item,
            };
            match item {
                None => break,
                Some(Streamed::Bad(line)) => batch.bad_line(id, &line),
                // Another shard's.
                Some(Streamed::Download(q)) if !settings.shard.is_none_or(|s| s.holds(&q)) => {
                    continue
                }
                Some(Streamed::Download(q)) => {
                    let names = &batch.shared.downloader.names;
                    let planned = plan(settings, &mut planner, id, &q, names);
                    if let Planned::Job(_) = planned {
                        batch.make_dir(&q).await;
                    }
                    if !batch.start(id, q, planned).await {
                        break;
                    }
                }
            }
            next_id += 1;
        }
    }
    batch.finish(started).await
}

/// The downloads of a run as they are started and end.
struct Batch<'a> {
    settings: &'a Settings,
    shared: Arc<Shared>,
    /// `--jobs`.
    slots: Arc<Semaphore>,
    running: JoinSet<(DownloadId, Outcome)>,
    ran: Ran,
    keep_unfinished: bool,
    /// The input of each running download, while unfinished ones are kept.
    in_flight: HashMap<DownloadId, Queued>,
    /// Each output directory known so far, with why it cannot be used.
    dirs: HashMap<PathBuf, Option<String>>,
    /// Interrupted: nothing more starts.
    stopped: bool,
    /// Downloads that did not complete, by id, while they are kept.
    unfinished: BTreeMap<DownloadId, Queued>,
}

impl Batch<'_> {
    /// Start a planned download once a `--jobs` slot is free; `false` when
    /// the run was interrupted first (the download counts as not started).
    async fn start(&mut self, id: DownloadId, queued: Queued, planned: Planned) -> bool {
        let name = match planned {
            Planned::Job(name) => name,
            Planned::Duplicate(first) => {
                let (path, of) = *first;
                let url = queued.shown_url();
                self.shared
                    .downloader
                    .events
                    .send(Event::Duplicate { id, url, path, of });
                self.ran.summary.skipped += 1;
                return true;
            }
        };
        let cancel = self.shared.downloader.cancel.clone();
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                self.stopped = true;
                self.not_started(id, queued);
                return false;
            }
            p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        while let Some(done) = self.running.try_join_next() {
            self.record(done);
        }
        if self.keep_unfinished {
            self.in_flight.insert(id, queued.clone());
        }
        let mut spec = queued.into_spec();
        let job = Job {
            id,
            dir: job_dir(self.settings, spec.dir.take()),
            name: name.resolve(&spec.url),
            spec,
        };
        let dir_error = self.dirs.get(&job.dir).cloned().flatten();
        let shared = self.shared.clone();
        self.running
            .spawn(async move { (id, run_one(shared, job, permit, dir_error).await) });
        true
    }

    /// A download that was never started.
    fn not_started(&mut self, id: DownloadId, queued: Queued) {
        self.ran.summary.incomplete.push(id);
        self.ran.summary.not_started += 1;
        if self.keep_unfinished {
            self.unfinished.insert(id, queued);
        }
    }

    /// A line of a stream that is not a download: it fails as one.
    fn bad_line(&mut self, id: DownloadId, line: &crate::input::LineError) {
        let failure = Failure {
            id,
            url: format!("{}:{}", line.source, line.line),
            reason: line.reason.clone(),
        };
        self.shared.downloader.events.send(Event::Failed {
            id,
            url: failure.url.clone(),
            path: None,
            reason: failure.reason.clone(),
        });
        self.ran.summary.incomplete.push(id);
        self.ran.summary.failures.push(failure);
    }

    /// Create the directory of a download that arrived on a stream, the first
    /// time it is named (not in a dry run, which writes nothing).
    async fn make_dir(&mut self, queued: &Queued) {
        let dir = job_dir(self.settings, queued.dir().map(Path::to_path_buf));
        if self.dirs.contains_key(&dir) {
            return;
        }
        let error = if self.settings.dry_run {
            None
        } else {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || create_dir(&d))
                .await
                .unwrap_or_else(|e| Some(e.to_string()))
        };
        self.dirs.insert(dir, error);
    }

    fn record(&mut self, done: Result<(DownloadId, Outcome), tokio::task::JoinError>) {
        let summary = &mut self.ran.summary;
        let (id, outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                summary.failures.push(Failure {
                    id: usize::MAX,
                    url: String::from("<internal>"),
                    reason: format!("a download task failed: {e}"),
                });
                return;
            }
        };
        let queued = self.in_flight.remove(&id);
        match outcome {
            Outcome::Done { transferred } => {
                summary.succeeded += 1;
                summary.bytes += transferred;
                return;
            }
            Outcome::Skipped => {
                summary.skipped += 1;
                return;
            }
            Outcome::Planned => {
                summary.planned += 1;
                return;
            }
            Outcome::Failed(f, transferred) => {
                summary.incomplete.push(f.id);
                summary.failures.push(f);
                summary.bytes += transferred;
            }
            Outcome::Interrupted(transferred) => {
                summary.incomplete.push(id);
                summary.interrupted += 1;
                summary.bytes += transferred;
            }
        }
        if let Some(q) = queued {
            self.unfinished.insert(id, q);
        }
    }

    /// Wait for every running download and sum up.
    async fn finish(mut self, started: Instant) -> Ran {
        while let Some(done) = self.running.join_next().await {
            self.record(done);
        }
        let summary = &mut self.ran.summary;
        summary.incomplete.sort_unstable();
        summary.dry_run = self.settings.dry_run;
        summary.was_interrupted = self.shared.downloader.cancel.is_cancelled();
        summary.elapsed = started.elapsed();
        self.ran.unfinished = self.unfinished.into_values().collect();
        self.ran
    }
}

/// Plan one download of the input (see [`Planner`]).
fn plan(
    settings: &Settings,
    planner: &mut Planner,
    id: DownloadId,
    queued: &Queued,
    names: &Names,
) -> Planned {
    let dir = job_dir(settings, queued.dir().map(Path::to_path_buf));
    planner.plan(id, queued.url(), queued.out(), dir, names)
}

/// Create a directory; `Some` says why it cannot be used.
fn create_dir(dir: &Path) -> Option<String> {
    std::fs::create_dir_all(dir)
        .err()
        .map(|e| format!("cannot create directory {}: {e}", dir.display()))
}
/// The directory a download saves into: its `dir=` under `--dir`.
fn job_dir(settings: &Settings, dir: Option<PathBuf>) -> PathBuf {
    match dir {
        Some(d) => settings.dir.join(d),
        None => settings.dir.clone(),
    }
}

/// Create each distinct directory once (unless `create` is false: a dry run
/// writes nothing) and list what each holds; a directory that cannot be
/// created fails only its downloads.
async fn create_dirs(
    dirs: BTreeMap<PathBuf, usize>,
    create: bool,
) -> (HashMap<PathBuf, Option<String>>, Listing) {
    tokio::task::spawn_blocking(move || {
        let made = dirs
            .keys()
            .map(|d| (d.clone(), create.then(|| create_dir(d)).flatten()))
            .collect();
        (
            made,
            Listing::read(dirs.iter().map(|(d, &n)| (d.as_path(), n))),
        )
    })
    .await
    .unwrap_or_default()
}

async fn run_one(
    shared: Arc<Shared>,
    mut job: Job,
    _slot: OwnedSemaphorePermit,
    dir_error: Option<String>,
) -> Outcome {
    let events = &shared.downloader.events;
    let url = job.url();
    let mut tries = Tries::new();
    let began = Instant::now();
    if shared.dry_run {
        return dry_run(&shared, &job, &mut tries).await;
    }
    let result = match dir_error {
        Some(reason) => Err(Stop::Failed(reason)),
        None => {
            let ready;
            (job, ready) = prepare(&shared, job, &mut tries).await;
            match ready {
                Some(ready) => ready.map_err(|e| Stop::Failed(e.to_string())),
                None => try_until_done(&shared, &job, &mut tries).await,
            }
        }
    };
    let path = tries.final_path.clone();
    match result {
        Ok(Completed::Done {
            path,
            bytes,
            checksum,
        }) => {
            let transferred = tries.progress.transferred();
            events.send(Event::Finished {
                id: job.id,
                url,
                path,
                bytes,
                transferred,
                elapsed: began.elapsed(),
                checksum: checksum.map(|c| c.to_string()),
            });
            Outcome::Done { transferred }
        }
        Ok(Completed::Skipped { path, reason }) => {
            events.send(Event::Skipped {
                id: job.id,
                url,
                path,
                reason,
            });
            Outcome::Skipped
        }
        Err(Stop::Interrupted) => {
            events.send(Event::Interrupted {
                id: job.id,
                url,
                path,
            });
            Outcome::Interrupted(tries.progress.transferred())
        }
        Err(Stop::Failed(reason)) => {
            events.send(Event::Failed {
                id: job.id,
                url: url.clone(),
                path,
                reason: reason.clone(),
            });
            Outcome::Failed(
                Failure {
                    id: job.id,
                    url,
                    reason,
                },
                tries.progress.transferred(),
            )
        }
    }
}

/// `--dry-run`: resolve one download and report what it would do.
async fn dry_run(shared: &Shared, job: &Job, tries: &mut Tries) -> Outcome {
    let dl = &shared.downloader;
    let host = shared.hosts.get(&job.spec.url);
    let plan = {
        let _connection = tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Outcome::Interrupted(0),
            p = host.acquire() => p,
        };
        dl.probe(job, tries).await
    };
    let failed = plan.action.fails();
    dl.events.send(Event::Planned {
        id: job.id,
        url: job.url(),
        final_url: plan.final_url,
        status: plan.status,
        size: plan.size,
        path: plan.path,
        action: plan.action.to_string(),
    });
    if failed {
        Outcome::Failed(
            Failure {
                id: job.id,
                url: job.url(),
                reason: plan.action.to_string(),
            },
            0,
        )
    } else {
        Outcome::Planned
    }
}

/// Where a download with mirrors goes after a source failed.
enum Switch {
    /// To another source at once, without spending a retry.
    Now(usize),
    /// Every live source failed since the last retry: spend one, from this one.
    AfterRetry(usize),
}

/// Mark the current source failed (abandoned for good when another try would
/// not help) and pick the next: a live source not yet failed in this round, or,
/// when all have, the first live one after a retry. `None` when none is left.
fn next_source(job: &Job, tries: &mut Tries, transient: bool) -> Option<Switch> {
    let n = job.sources().count();
    // A mirror connection of a split download may be the one that failed; the
    // try used the current source too, so both count as failed this round
    // (otherwise the next try would start at once, without a retry spent).
    let blamed = tries.sources.blame.take();
    let current = blamed.unwrap_or(tries.sources.current);
    if blamed.is_some()
        && !tries
            .sources
            .failed_this_round
            .contains(&tries.sources.current)
    {
        tries.sources.failed_this_round.push(tries.sources.current);
    }
    if !transient && !tries.sources.abandoned.contains(&current) {
        tries.sources.abandoned.push(current);
    }
    if !tries.sources.failed_this_round.contains(&current) {
        tries.sources.failed_this_round.push(current);
    }
    let live = |i: &usize| !tries.sources.abandoned.contains(i);
    if let Some(next) = (1..n)
        .map(|k| (current + k) % n)
        .filter(live)
        .find(|i| !tries.sources.failed_this_round.contains(i))
    {
        return Some(Switch::Now(next));
    }
    tries.sources.failed_this_round.clear();
    (0..n)
        .map(|k| (current + k) % n)
        .find(live)
        .map(Switch::AfterRetry)
}

/// Why a download stopped without completing.
enum Stop {
    Failed(String),
    Interrupted,
}

/// Before the first try ([`Downloader::prepare`]): `--on-exists`, `-N` and
/// resume look at the disk. Unless the directory listing already knows the
/// name is new, the lookups run on the blocking pool: on a network filesystem
/// each one waits for a round trip, which on the network thread would hold up
/// every download.
async fn prepare(
    shared: &Arc<Shared>,
    job: Job,
    tries: &mut Tries,
) -> (Job, Option<Result<Completed, DownloadError>>) {
    if shared.downloader.known_new(&job, tries) {
        return (job, None);
    }
    let shared = shared.clone();
    let mut moved = std::mem::take(tries);
    let looked = tokio::task::spawn_blocking(move || {
        let ready = shared.downloader.look_on_disk(&job, &mut moved);
        (job, moved, ready)
    })
    .await;
    match looked {
        Ok((job, moved, ready)) => {
            *tries = moved;
            (job, ready)
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Try until done, out of retries, or interrupted. A split download charges
/// some of its connections' failures to `tries.failed` itself.
async fn try_until_done(shared: &Shared, job: &Job, tries: &mut Tries) -> Result<Completed, Stop> {
    let dl = &shared.downloader;
    let policy = dl.retry;
    loop {
        let host = shared.hosts.get(job.source(tries.sources.current));
        let connection = tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            p = host.acquire() => p,
        };
        let result = dl.attempt(job, tries, &host, connection).await;
        if let Err(e) = &result {
            // A mirror's error is not this host's.
            if e.is_congestion() && tries.sources.blame.is_none() {
                host.congestion(e.retry_after().map(|d| d.min(policy.max_wait)));
            }
        }
        let error = match result {
            Ok(done) => {
                host.success();
                if let Completed::Done { path, .. } = &done {
                    if job.name.is_some() {
                        dl.stamp(tries, path).await;
                    }
                }
                return Ok(done);
            }
            Err(DownloadError::Interrupted) => return Err(Stop::Interrupted),
            Err(DownloadError::ResumeFound(_)) => continue,
            // A file that failed its checksum is fetched once more from scratch,
            // outside the retry budget.
            Err(e @ DownloadError::Checksum { again: true, .. }) => {
                // Bytes from a bad mirror may be the cause: the one try from
                // scratch uses the first live source alone.
                let n = job.sources().count();
                if let Some(first) = (0..n).find(|i| !tries.sources.abandoned.contains(i)) {
                    tries.sources.current = first;
                    tries.sources.abandoned = (0..n).filter(|&i| i != first).collect();
                }
                dl.retrying(job, tries, e.to_string(), Duration::ZERO);
                continue;
            }
            Err(e) => e,
        };
        let mut transient = error.is_transient();
        if job.spec.mirrors().is_empty() || !error.is_source_failure() {
            tries.sources.blame = None;
        }
        if !job.spec.mirrors().is_empty() && error.is_source_failure() {
            // A mirror that disagrees with the file is given up on.
            let keep = transient && !matches!(error, DownloadError::MirrorDropped(_));
            match next_source(job, tries, keep) {
                Some(Switch::Now(next)) => {
                    dl.retrying(
                        job,
                        tries,
                        format!(
                            "{} from {}; trying {}",
                            error,
                            redact(job.source(tries.sources.current)),
                            redact(job.source(next))
                        ),
                        Duration::ZERO,
                    );
                    tries.sources.current = next;
                    continue;
                }
                // Every live source failed once: a retry of them all.
                Some(Switch::AfterRetry(next)) => {
                    tries.sources.current = next;
                    transient = true;
                }
                None => {}
            }
        }
        tries.failed += 1;
        if !transient || tries.failed >= policy.max_attempts() {
            let tried = if tries.failed > 1 {
                format!(" (after {} tries)", tries.failed)
            } else {
                String::new()
            };
            return Err(Stop::Failed(format!("{error}{tried}")));
        }
        let delay = policy.delay(tries.failed, error.retry_after(), job.id as u64);
        dl.retrying(job, tries, error.to_string(), delay);
        tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
