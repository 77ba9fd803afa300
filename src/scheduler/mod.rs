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

use crate::config::{OutputName, Settings};
use crate::download::listing::Listing;
use crate::download::ratelimit::RateLimiter;
use crate::download::retry::RetryPolicy;
use crate::download::{hash64, naming, Completed, DownloadError, Downloader, Job, Names, Tries};
use crate::events::{DownloadId, Event, EventSender, Failure, RunSummary};
use crate::input::{DownloadSpec, Input, Queued};

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
    Interrupted(DownloadId, u64),
}

/// One line of the batch, planned before anything starts: names are reserved
/// for the whole batch in input order, so a name never depends on timing. The
/// spec itself stays in the input until its download starts, so a long list is
/// held once, not twice.
enum Planned {
    /// A download, with the name reserved for it.
    Job(Name),
    /// The same URL and name as an earlier download: reported, not fetched.
    Duplicate(Box<(PathBuf, DownloadId)>),
}

/// The name reserved for a download.
enum Name {
    /// None: the body goes to stdout.
    Stdout,
    /// The name its URL gives ([`naming::for_url`]), the usual case: worked
    /// out again when the download starts rather than kept for every line.
    FromUrl,
    /// Another name: `out=`, or a numbered name after a clash.
    Given(Box<str>),
}

impl Name {
    fn resolve(self, spec: &DownloadSpec) -> Option<String> {
        match self {
            Name::Stdout => None,
            Name::FromUrl => Some(naming::for_url(&spec.url)),
            Name::Given(n) => Some(n.into()),
        }
    }
}

/// Shared by every download task.
struct Shared {
    downloader: Downloader,
    hosts: Hosts,
    /// Directories that could not be created, with the reason.
    bad_dirs: HashMap<PathBuf, String>,
    /// `--dry-run`.
    dry_run: bool,
}

/// Run every download and return what happened.
pub async fn run(
    settings: &Settings,
    input: Input,
    client: reqwest::Client,
    credentials: crate::download::auth::Credentials,
    events: EventSender,
    cancel: CancellationToken,
) -> RunSummary {
    let started = Instant::now();
    let to_stdout = settings.output == Some(OutputName::Stdout);
    let names = Names::default();
    let (planned, dirs) = plan(settings, &input.specs, &names, to_stdout);
    // A dry run writes nothing, directories included.
    let (bad_dirs, listing) = create_dirs(dirs, !settings.dry_run).await;
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
            private_headers: settings
                .headers
                .iter()
                .filter(|(k, _)| crate::download::is_secret(k))
                .cloned()
                .collect(),
            timestamping: settings.timestamping,
            file_allocation: settings.file_allocation,
        },
        hosts: Hosts::new(settings.max_per_host, events.clone()),
        bad_dirs,
        dry_run: settings.dry_run,
    });

    let slots = Arc::new(Semaphore::new(settings.jobs));
    let mut running = JoinSet::new();
    let mut summary = RunSummary::default();
    let mut lines = input.specs.into_iter().zip(planned).enumerate();
    for (id, (queued, planned)) in lines.by_ref() {
        let job = match planned {
            Planned::Job(name) => {
                let mut spec = queued.into_spec();
                Job {
                    id,
                    dir: job_dir(settings, spec.dir.take()),
                    name: name.resolve(&spec),
                    spec,
                }
            }
            Planned::Duplicate(first) => {
                let (path, of) = *first;
                let url = queued.url().to_string();
                events.send(Event::Duplicate { id, url, path, of });
                summary.skipped += 1;
                continue;
            }
        };
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                summary.incomplete.push(job.id);
                summary.not_started += 1;
                break;
            }
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        while let Some(done) = running.try_join_next() {
            record(&mut summary, done);
        }
        running.spawn(run_one(shared.clone(), job, permit));
    }
    for (id, (_, planned)) in lines {
        if let Planned::Job(_) = planned {
            summary.incomplete.push(id);
            summary.not_started += 1;
        }
    }
    while let Some(done) = running.join_next().await {
        record(&mut summary, done);
    }
    summary.incomplete.sort_unstable();
    summary.dry_run = settings.dry_run;
    summary.was_interrupted = cancel.is_cancelled();
    summary.elapsed = started.elapsed();
    summary
}

fn record(summary: &mut RunSummary, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Done { transferred }) => {
            summary.succeeded += 1;
            summary.bytes += transferred;
        }
        Ok(Outcome::Skipped) => summary.skipped += 1,
        Ok(Outcome::Planned) => summary.planned += 1,
        Ok(Outcome::Failed(f, transferred)) => {
            summary.incomplete.push(f.id);
            summary.failures.push(f);
            summary.bytes += transferred;
        }
        Ok(Outcome::Interrupted(id, transferred)) => {
            summary.incomplete.push(id);
            summary.interrupted += 1;
            summary.bytes += transferred;
        }
        Err(e) => summary.failures.push(Failure {
            id: usize::MAX,
            url: String::from("<internal>"),
            reason: format!("a download task failed: {e}"),
        }),
    }
}

/// The directory a download saves into: its `dir=` under `--dir`.
fn job_dir(settings: &Settings, dir: Option<PathBuf>) -> PathBuf {
    match dir {
        Some(d) => settings.dir.join(d),
        None => settings.dir.clone(),
    }
}

/// Give every download a name unique in the batch, in input order, and list
/// the directories to create. A URL that comes again with the same `out=` and
/// `dir=` (or none) is a duplicate of the first: downloaded once.
fn plan(
    settings: &Settings,
    specs: &[Queued],
    names: &Names,
    to_stdout: bool,
) -> (Vec<Planned>, BTreeMap<PathBuf, usize>) {
    let dir_of = |spec: &Queued| job_dir(settings, spec.dir().map(Path::to_path_buf));
    // Earlier downloads by a hash of (URL, out=, dir): a few bytes per line,
    // so a list of 100,000 URLs does not keep a second copy of every URL.
    // A hash match is compared exactly before it counts.
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(specs.len());
    let mut planned: Vec<Planned> = Vec::with_capacity(specs.len());
    // Downloads per directory.
    let mut dirs = BTreeMap::new();
    for (id, spec) in specs.iter().enumerate() {
        let dir = dir_of(spec);
        let key = hash64(&(spec.url(), spec.out(), &dir));
        let earlier = seen.get(&key).and_then(|&i| {
            let first = &specs[i];
            let same =
                first.url() == spec.url() && first.out() == spec.out() && dir_of(first) == dir;
            match &planned[i] {
                Planned::Job(name) if same => Some((i, name)),
                _ => None,
            }
        });
        if let Some((of, name)) = earlier {
            let path = match name {
                Name::Stdout => PathBuf::from("-"),
                Name::FromUrl => dir.join(naming::for_url_text(spec.url())),
                Name::Given(n) => dir.join(&**n),
            };
            planned.push(Planned::Duplicate(Box::new((path, of))));
            continue;
        }
        let name = if to_stdout {
            Name::Stdout
        } else {
            let (wanted, from_url) = match spec.out() {
                Some(out) => (out.to_string(), false),
                None => (naming::for_url_text(spec.url()), true),
            };
            let path = names.reserve(&dir, &wanted, false);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| wanted.clone());
            if from_url && name == wanted {
                Name::FromUrl
            } else {
                Name::Given(name.into_boxed_str())
            }
        };
        if !matches!(name, Name::Stdout) {
            *dirs.entry(dir).or_insert(0) += 1;
        }
        seen.entry(key).or_insert(id);
        planned.push(Planned::Job(name));
    }
    (planned, dirs)
}

/// Create each distinct directory once (unless `create` is false: a dry run
/// writes nothing) and list what each holds; a directory that cannot be
/// created fails only its downloads.
async fn create_dirs(
    dirs: BTreeMap<PathBuf, usize>,
    create: bool,
) -> (HashMap<PathBuf, String>, Listing) {
    tokio::task::spawn_blocking(move || {
        let bad = dirs
            .keys()
            .filter(|_| create)
            .filter_map(|d| {
                std::fs::create_dir_all(d).err().map(|e| {
                    (
                        d.clone(),
                        format!("cannot create directory {}: {e}", d.display()),
                    )
                })
            })
            .collect();
        (
            bad,
            Listing::read(dirs.iter().map(|(d, &n)| (d.as_path(), n))),
        )
    })
    .await
    .unwrap_or_default()
}

async fn run_one(shared: Arc<Shared>, mut job: Job, _slot: OwnedSemaphorePermit) -> Outcome {
    let events = &shared.downloader.events;
    let url = job.url();
    let mut tries = Tries::new();
    let began = Instant::now();
    if shared.dry_run {
        return dry_run(&shared, &job, &mut tries).await;
    }
    let result = match shared.bad_dirs.get(&job.dir) {
        Some(reason) => Err(Stop::Failed(reason.clone())),
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
            Outcome::Interrupted(job.id, tries.progress.transferred())
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
            _ = dl.cancel.cancelled() => return Outcome::Interrupted(job.id, 0),
            p = host.acquire() => p,
        };
        dl.probe(job, tries).await
    };
    let failed = plan.action.starts_with("fail");
    dl.events.send(Event::Planned {
        id: job.id,
        url: job.url(),
        final_url: plan.final_url,
        status: plan.status,
        size: plan.size,
        path: plan.path,
        action: plan.action.clone(),
    });
    if failed {
        Outcome::Failed(
            Failure {
                id: job.id,
                url: job.url(),
                reason: plan.action,
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
    let blamed = tries.blame.take();
    let current = blamed.unwrap_or(tries.source);
    if blamed.is_some() && !tries.failed_this_round.contains(&tries.source) {
        tries.failed_this_round.push(tries.source);
    }
    if !transient && !tries.abandoned.contains(&current) {
        tries.abandoned.push(current);
    }
    if !tries.failed_this_round.contains(&current) {
        tries.failed_this_round.push(current);
    }
    let live = |i: &usize| !tries.abandoned.contains(i);
    if let Some(next) = (1..n)
        .map(|k| (current + k) % n)
        .filter(live)
        .find(|i| !tries.failed_this_round.contains(i))
    {
        return Some(Switch::Now(next));
    }
    tries.failed_this_round.clear();
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
        let host = shared.hosts.get(job.source(tries.source));
        let connection = tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            p = host.acquire() => p,
        };
        let result = dl.attempt(job, tries, &host, connection).await;
        if let Err(e) = &result {
            // A mirror's error is not this host's.
            if e.is_congestion() && tries.blame.is_none() {
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
                if let Some(first) = (0..n).find(|i| !tries.abandoned.contains(i)) {
                    tries.source = first;
                    tries.abandoned = (0..n).filter(|&i| i != first).collect();
                }
                dl.retrying(job, tries, e.to_string(), Duration::ZERO);
                continue;
            }
            Err(e) => e,
        };
        let mut transient = error.is_transient();
        if job.spec.mirrors().is_empty() || !error.is_source_failure() {
            tries.blame = None;
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
                            job.source(tries.source),
                            job.source(next)
                        ),
                        Duration::ZERO,
                    );
                    tries.source = next;
                    continue;
                }
                // Every live source failed once: a retry of them all.
                Some(Switch::AfterRetry(next)) => {
                    tries.source = next;
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
