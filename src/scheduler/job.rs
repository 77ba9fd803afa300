//! One download from start to end: its directory, what is on disk already,
//! then tries until it is done, out of retries, or interrupted; a failed try
//! moves to the next mirror or waits out the backoff. `--dry-run` resolves it
//! instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::Shared;
use crate::display::redact;
use crate::download::{Completed, DownloadError, Job, Slots, Tries};
use crate::events::{Event, Failure};

/// How one download ended, as data.
#[derive(Debug)]
pub(super) enum Outcome {
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

pub(super) async fn run_one(
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
        let plan = dl.probe(job, tries).await;
        host.answered();
        plan
    };
    let (failed, skipped) = (plan.action.fails(), plan.action.skips());
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
    } else if skipped {
        Outcome::Skipped
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
        let since = connection.generation();
        let result = dl.attempt(job, tries, &host, connection).await;
        // Answered or not, the host's first request is over.
        host.answered();
        if let Err(e) = &result {
            // A mirror's error is not this host's.
            if tries.sources.blame.is_none() {
                e.tell(&host, since, policy.max_wait);
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
            // A connection that stalled after taking the file further than
            // any try before: resume at once, outside the retry budget.
            Err(e @ DownloadError::Stalled { further: true, .. }) => {
                dl.retrying(job, tries, e.to_string(), Duration::ZERO);
                continue;
            }
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
        let delay = policy.delay(tries.failed, error.retry_after());
        dl.retrying(job, tries, error.to_string(), delay);
        tokio::select! {
            biased;
            _ = dl.cancel.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
