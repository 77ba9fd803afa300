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
use crate::download::{naming, Completed, DownloadError, Downloader, Job, Names, Tries};
use crate::events::{Event, EventSender, Failure, RunSummary};
use crate::input::DownloadSpec;

pub mod hosts;
use hosts::Hosts;

/// How one download ended, as data.
#[derive(Debug)]
enum Outcome {
    Done { transferred: u64 },
    Skipped,
    Failed(Failure),
    Interrupted,
}

/// Shared by every download task.
struct Shared {
    downloader: Downloader,
    hosts: Hosts,
    retries: u32,
    retry_wait: Duration,
    max_retry_wait: Duration,
    /// Directories that could not be created, with the reason.
    bad_dirs: HashMap<PathBuf, String>,
}

/// Run every download and return what happened.
pub async fn run(
    settings: &Settings,
    specs: Vec<DownloadSpec>,
    client: reqwest::Client,
    events: EventSender,
    cancel: CancellationToken,
) -> RunSummary {
    let started = Instant::now();
    let to_stdout = settings.output == Some(OutputName::Stdout);
    let names = Names::default();
    let jobs = plan(settings, specs, &names, to_stdout);
    let bad_dirs = create_dirs(&jobs).await;
    let shared = Arc::new(Shared {
        downloader: Downloader {
            client,
            on_exists: settings.on_exists,
            idle_timeout: settings.timeout,
            names,
            events: events.clone(),
            cancel: cancel.clone(),
        },
        hosts: Hosts::new(settings.max_per_host, events.clone()),
        retries: settings.retries,
        retry_wait: settings.retry_wait,
        max_retry_wait: settings.max_retry_wait,
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
        Ok(Outcome::Failed(f)) => summary.failures.push(f),
        Ok(Outcome::Interrupted) => summary.interrupted += 1,
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
        Ok(Completed::Done { path, bytes }) => {
            let transferred = tries.progress.transferred();
            events.send(Event::Finished {
                id: job.id,
                url,
                path,
                bytes,
                transferred,
                elapsed: began.elapsed(),
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
            Outcome::Interrupted
        }
        Err(Stop::Failed(reason)) => {
            events.send(Event::Failed {
                id: job.id,
                url: url.clone(),
                path,
                reason: reason.clone(),
            });
            Outcome::Failed(Failure { url, reason })
        }
    }
}

/// Why a download stopped without completing.
enum Stop {
    Failed(String),
    Interrupted,
}

/// Try until done, out of retries, or interrupted.
async fn try_until_done(shared: &Shared, job: &Job, tries: &mut Tries) -> Result<Completed, Stop> {
    let dl = &shared.downloader;
    if let Some(ready) = dl.prepare(job, tries) {
        return ready.map_err(|e| Stop::Failed(e.to_string()));
    }
    let max_attempts = shared.retries.saturating_add(1);
    let mut attempt = 1;
    let host = shared.hosts.get(&job.spec.url);
    loop {
        let result = {
            let _connection = tokio::select! {
                biased;
                _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
                p = host.acquire() => p,
            };
            dl.attempt(job, tries).await
        };
        if let Err(e) = &result {
            if e.is_congestion() {
                host.congestion(e.retry_after().map(|d| d.min(shared.max_retry_wait)));
            }
        }
        let error = match result {
            Ok(done) => {
                host.success();
                return Ok(done);
            }
            Err(DownloadError::Interrupted) => return Err(Stop::Interrupted),
            Err(DownloadError::ResumeFound(_)) => continue,
            Err(e) => e,
        };
        if !error.is_transient() || attempt >= max_attempts {
            let tried = if attempt > 1 {
                format!(" (after {attempt} tries)")
            } else {
                String::new()
            };
            return Err(Stop::Failed(format!("{error}{tried}")));
        }
        let delay = backoff(
            shared.retry_wait,
            shared.max_retry_wait,
            attempt,
            error.retry_after(),
            job.id as u64,
        );
        attempt += 1;
        dl.events.send(Event::Retrying {
            id: job.id,
            url: job.url(),
            attempt,
            max_attempts,
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

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base·2^(n-1))]`;
/// a server's `Retry-After` is honoured instead, up to the cap.
pub fn backoff(
    base: Duration,
    cap: Duration,
    failed_tries: u32,
    retry_after: Option<Duration>,
    salt: u64,
) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(cap);
    }
    let exp = base.saturating_mul(1u32 << failed_tries.saturating_sub(1).min(20));
    let ceiling = exp.min(cap);
    ceiling.mul_f64(jitter(salt ^ u64::from(failed_tries)))
}

/// A number in `[0, 1)` that differs between calls (xorshift over the clock).
fn jitter(salt: u64) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for n in 1..30 {
            let d = backoff(base, cap, n, None, 7);
            let ceiling = Duration::from_secs(1u64 << (n - 1).min(20)).min(cap);
            assert!(d <= ceiling, "try {n}: {d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let cap = Duration::from_secs(10);
        let b = |ra| backoff(Duration::from_secs(1), cap, 1, Some(ra), 0);
        assert_eq!(b(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(b(Duration::from_secs(100)), cap);
    }

    #[test]
    fn jitter_spreads() {
        let samples: Vec<f64> = (0..100).map(jitter).collect();
        assert!(samples.iter().all(|&x| (0.0..1.0).contains(&x)));
        let distinct = samples
            .iter()
            .map(|x| (x * 1000.0) as u32)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 50);
    }
}
