//! The scheduler: names and directories for the batch, downloads started in input
//! order with at most `--jobs` at once and `--max-per-host` per host, and retries
//! with exponential backoff and full jitter.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{OutputName, Settings};
use crate::download::ratelimit::RateLimiter;
use crate::download::retry::RetryPolicy;
use crate::download::{naming, Completed, DownloadError, Downloader, Job, Names, Tries};
use crate::events::{Event, EventSender, Failure, RunSummary};
use crate::input::{DownloadSpec, Input};

pub mod hosts;
use hosts::Hosts;

/// How one download ended, as data.
#[derive(Debug)]
enum Outcome {
    Done {
        transferred: u64,
    },
    Skipped,
    /// Failed for good; bytes fetched on the way still count as transferred.
    Failed(Failure, u64),
    /// Stopped by an interrupt, with the bytes fetched before it.
    Interrupted(u64),
}

/// Shared by every download task.
struct Shared {
    downloader: Downloader,
    hosts: Hosts,
    /// Directories that could not be created, with the reason.
    bad_dirs: HashMap<PathBuf, String>,
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
    let jobs = plan(settings, input.specs, &names, to_stdout);
    let bad_dirs = create_dirs(&jobs).await;
    let shared = Arc::new(Shared {
        downloader: Downloader {
            client,
            on_exists: settings.on_exists,
            idle_timeout: settings.timeout,
            names,
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
        },
        hosts: Hosts::new(settings.max_per_host, events.clone()),
        bad_dirs,
    });

    let slots = Arc::new(Semaphore::new(settings.jobs));
    let mut running = JoinSet::new();
    let mut summary = RunSummary::default();
    let total = jobs.len();
    let mut launched = 0;
    for job in jobs {
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        while let Some(done) = running.try_join_next() {
            record(&mut summary, done);
        }
        launched += 1;
        running.spawn(run_one(shared.clone(), job, permit));
    }
    while let Some(done) = running.join_next().await {
        record(&mut summary, done);
    }
    summary.not_started = total - launched;
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
        Ok(Outcome::Failed(f, transferred)) => {
            summary.failures.push(f);
            summary.bytes += transferred;
        }
        Ok(Outcome::Interrupted(transferred)) => {
            summary.interrupted += 1;
            summary.bytes += transferred;
        }
        Err(e) => summary.failures.push(Failure {
            url: String::from("<internal>"),
            reason: format!("a download task failed: {e}"),
        }),
    }
}

/// Give every download its directory and a name unique in the batch, in input order.
fn plan(settings: &Settings, specs: Vec<DownloadSpec>, names: &Names, to_stdout: bool) -> Vec<Job> {
    specs
        .into_iter()
        .enumerate()
        .map(|(id, mut spec)| {
            let dir = match spec.dir.take() {
                Some(d) => settings.dir.join(d),
                None => settings.dir.clone(),
            };
            let name = (!to_stdout).then(|| {
                let wanted = spec
                    .out
                    .clone()
                    .unwrap_or_else(|| naming::for_url(&spec.url));
                let path = names.reserve(&dir, &wanted, false);
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(wanted)
            });
            Job {
                id,
                spec,
                dir,
                name,
            }
        })
        .collect()
}

/// Create each distinct directory once; a failure fails only its downloads.
async fn create_dirs(jobs: &[Job]) -> HashMap<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = jobs
        .iter()
        .filter(|j| j.name.is_some())
        .map(|j| j.dir.clone())
        .collect();
    dirs.sort();
    dirs.dedup();
    tokio::task::spawn_blocking(move || {
        dirs.into_iter()
            .filter_map(|d| {
                std::fs::create_dir_all(&d).err().map(|e| {
                    (
                        d.clone(),
                        format!("cannot create directory {}: {e}", d.display()),
                    )
                })
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

async fn run_one(shared: Arc<Shared>, job: Job, _slot: OwnedSemaphorePermit) -> Outcome {
    let events = &shared.downloader.events;
    let url = job.url();
    let mut tries = Tries::new();
    let began = Instant::now();
    let result = match shared.bad_dirs.get(&job.dir) {
        Some(reason) => Err(Stop::Failed(reason.clone())),
        None => try_until_done(&shared, &job, &mut tries).await,
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
            Outcome::Failed(Failure { url, reason }, tries.progress.transferred())
        }
    }
}

/// Why a download stopped without completing.
enum Stop {
    Failed(String),
    Interrupted,
}

/// Try until done, out of retries, or interrupted. A split download charges
/// some of its connections' failures to `tries.failed` itself.
async fn try_until_done(shared: &Shared, job: &Job, tries: &mut Tries) -> Result<Completed, Stop> {
    let dl = &shared.downloader;
    if let Some(ready) = dl.prepare(job, tries) {
        return ready.map_err(|e| Stop::Failed(e.to_string()));
    }
    let policy = dl.retry;
    let host = shared.hosts.get(&job.spec.url);
    loop {
        let connection = tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            p = host.acquire() => p,
        };
        let result = dl.attempt(job, tries, &host, connection).await;
        if let Err(e) = &result {
            if e.is_congestion() {
                host.congestion(e.retry_after().map(|d| d.min(policy.max_wait)));
            }
        }
        let error = match result {
            Ok(done) => {
                host.success();
                return Ok(done);
            }
            Err(DownloadError::Interrupted) => return Err(Stop::Interrupted),
            Err(DownloadError::ResumeFound(_)) => continue,
            // A file that failed its checksum is fetched once more from scratch,
            // outside the retry budget.
            Err(e @ DownloadError::Checksum { again: true, .. }) => {
                dl.events.send(Event::Retrying {
                    id: job.id,
                    url: job.url(),
                    attempt: tries.failed + 1,
                    max_attempts: policy.max_attempts(),
                    reason: e.to_string(),
                    delay: Duration::ZERO,
                });
                continue;
            }
            Err(e) => e,
        };
        tries.failed += 1;
        if !error.is_transient() || tries.failed >= policy.max_attempts() {
            let tried = if tries.failed > 1 {
                format!(" (after {} tries)", tries.failed)
            } else {
                String::new()
            };
            return Err(Stop::Failed(format!("{error}{tried}")));
        }
        let delay = policy.delay(tries.failed, error.retry_after(), job.id as u64);
        dl.events.send(Event::Retrying {
            id: job.id,
            url: job.url(),
            attempt: tries.failed + 1,
            max_attempts: policy.max_attempts(),
            reason: error.to_string(),
            delay,
        });
        tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
