//! The scheduler: names and directories for the batch, downloads started in input
//! order with at most `--jobs` at once and `--max-per-host` per host, and retries
//! with exponential backoff and full jitter.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::download::ratelimit::RateLimiter;
use crate::download::retry::RetryPolicy;
use crate::download::{Downloader, Job};
use crate::events::{DownloadId, Event, EventSender, Failure, RunSummary};
use crate::input::stream::Streamed;
use crate::input::{Input, Queued};
use crate::naming::listing::Listing;
use crate::naming::plan::{Planned, Planner};
use crate::naming::Names;
use crate::options::OutputName;

pub mod hosts;
mod job;

use hosts::Hosts;
use job::{run_one, Outcome};

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
/// `unfinished`: where the downloads that did not complete are kept (for
/// `--save-failed`), when they are.
pub async fn run(
    settings: &Settings,
    mut input: Input,
    clients: crate::download::http::Clients,
    credentials: crate::download::auth::Credentials,
    events: EventSender,
    cancel: CancellationToken,
    unfinished: Option<Arc<Unfinished>>,
) -> Ran {
    let started = Instant::now();
    let names = Names::default();
    let mut planner = Planner::new(settings.output.as_ref().is_some_and(OutputName::is_unnamed));
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
            clients,
            on_exists: settings.on_exists,
            idle_timeout: settings.timeout,
            stalls: crate::download::stall::Stalls::new(settings.stall_timeout),
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
            device: match &settings.output {
                Some(OutputName::Device(path)) => Some(path.clone()),
                _ => None,
            },
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
        unfinished,
        dirs,
        stopped: false,
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

/// The downloads of a run that did not complete (for `--save-failed`), kept
/// where the signal handler can reach them too: however the run ends, a
/// second Ctrl-C included, the list is written.
#[derive(Debug, Default)]
pub struct Unfinished(std::sync::Mutex<UnfinishedTable>);

#[derive(Debug, Default)]
struct UnfinishedTable {
    /// Downloads running now.
    running: HashMap<DownloadId, Queued>,
    /// Downloads that failed, were interrupted or never started.
    ended: BTreeMap<DownloadId, Queued>,
}

impl Unfinished {
    fn lock(&self) -> std::sync::MutexGuard<'_, UnfinishedTable> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every download not complete now (running ones included), in input
    /// order.
    pub fn list(&self) -> Vec<Queued> {
        let table = self.lock();
        let mut all: BTreeMap<DownloadId, &Queued> =
            table.ended.iter().map(|(&i, q)| (i, q)).collect();
        all.extend(table.running.iter().map(|(&i, q)| (i, q)));
        all.into_values().cloned().collect()
    }
}

/// The downloads of a run as they are started and end.
struct Batch<'a> {
    settings: &'a Settings,
    shared: Arc<Shared>,
    /// `--jobs`.
    slots: Arc<Semaphore>,
    running: JoinSet<(DownloadId, Outcome)>,
    ran: Ran,
    /// The downloads running and those that did not complete, when kept.
    unfinished: Option<Arc<Unfinished>>,
    /// Each output directory known so far, with why it cannot be used.
    dirs: HashMap<PathBuf, Option<String>>,
    /// Interrupted: nothing more starts.
    stopped: bool,
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
        if let Some(u) = &self.unfinished {
            u.lock().running.insert(id, queued.clone());
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
        if let Some(u) = &self.unfinished {
            u.lock().ended.insert(id, queued);
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
        let queued = self
            .unfinished
            .as_ref()
            .and_then(|u| u.lock().running.remove(&id));
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
        if let (Some(q), Some(u)) = (queued, &self.unfinished) {
            u.lock().ended.insert(id, q);
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
        if let Some(u) = &self.unfinished {
            self.ran.unfinished = u.list();
        }
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
