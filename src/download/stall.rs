//! Stalled connections: a body that has sent nothing for `--stall-timeout`
//! while other transfers from the same host keep receiving data is that
//! connection's problem (a lost path, a stuck server worker), not the host's.
//! The try is dropped and the download resumed by range on another request,
//! instead of waiting out the idle timeout.
//!
//! Only bodies that can be resumed are dropped (a 206, or `Accept-Ranges:
//! bytes` with a known length): anything else would start over. A transfer
//! that is alone on its host, or whose whole host went quiet, is left to the
//! idle timeout (`--timeout`): then nothing says the connection is to blame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT_RANGES;
use reqwest::{Response, StatusCode};

use super::DownloadError;

/// How often a silent body looks again at its host once it has been silent
/// for the stall time but the host was quiet too.
pub const RECHECK: Duration = Duration::from_millis(250);
/// How far the host's last-data time may lag behind: far below the stall
/// time, so a verdict moves by at most this.
const GRAIN: Duration = Duration::from_millis(1);

/// The run's record, per host, of when a body last received data.
#[derive(Debug)]
pub struct Stalls {
    /// `--stall-timeout`; `None` when off.
    after: Option<Duration>,
    /// What the recorded times count from.
    epoch: Instant,
    hosts: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Stalls {
    /// A record for a run whose stall time is `after` (`None`: never drop).
    pub fn new(after: Option<Duration>) -> Self {
        Stalls {
            after,
            epoch: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The flow of `response`'s body: it records when data arrives, and
    /// (when `check` and the body can be resumed) watches for a stall.
    /// `None` when stalls are not watched in this run (`--stall-timeout 0`):
    /// then nothing needs recording either.
    pub fn flow(&self, response: &Response, check: bool) -> Option<Flow> {
        let stall = self.after?;
        let url = response.url();
        let key = format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        let last = self
            .hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        Some(Flow {
            last,
            epoch: self.epoch,
            after: (check && resumable(response)).then_some(stall),
            host: url.host_str().unwrap_or_default().to_string(),
        })
    }
}

/// Whether a body cut short can be resumed where it stopped.
fn resumable(response: &Response) -> bool {
    response.status() == StatusCode::PARTIAL_CONTENT
        || (response.status() == StatusCode::OK
            && response.content_length().is_some()
            && response
                .headers()
                .get(ACCEPT_RANGES)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|u| u.trim() == "bytes")))
}

/// One body's side of [`Stalls`].
#[derive(Debug)]
pub struct Flow {
    /// When any body from this host last received data (ns since `epoch`).
    last: Arc<AtomicU64>,
    epoch: Instant,
    /// The stall time, when this body is watched.
    after: Option<Duration>,
    /// The host, for the message.
    host: String,
}

impl Flow {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Data arrived. The host's time is written only when it moves by
    /// [`GRAIN`] (a read of a shared line instead of a write per chunk).
    pub fn received(&self) {
        let now = self.now();
        if now
            >= self
                .last
                .load(Ordering::Relaxed)
                .saturating_add(GRAIN.as_nanos() as u64)
        {
            self.last.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The stall time, when this body is watched.
    pub fn watch(&self) -> Option<Duration> {
        self.after
    }

    /// Whether a body silent since `since` is stalled: silent for the stall
    /// time while another body from its host received data within it.
    pub fn stalled(&self, since: Instant) -> bool {
        let Some(after) = self.after else {
            return false;
        };
        let now = Instant::now();
        if now.duration_since(since) < after {
            return false;
        }
        let others = Duration::from_nanos(self.last.load(Ordering::Relaxed));
        let window_start = now.duration_since(self.epoch).saturating_sub(after);
        others > window_start
    }

    /// The error that drops the try (see [`DownloadError::Stalled`]; whether
    /// it took the file further is for the caller to say).
    pub fn error(&self) -> DownloadError {
        DownloadError::Stalled {
            after: self.after.unwrap_or_default(),
            host: self.host.clone(),
            further: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(after: Option<Duration>, epoch: Instant) -> Flow {
        Flow {
            last: Arc::new(AtomicU64::new(0)),
            epoch,
            after,
            host: "h".into(),
        }
    }

    #[test]
    fn stalled_only_when_silent_long_enough_and_the_host_flowed_within_it() {
        let after = Duration::from_millis(200);
        let epoch = Instant::now() - Duration::from_secs(10);
        let f = flow(Some(after), epoch);
        let since = Instant::now() - Duration::from_millis(300);
        // Nobody received anything: the host is quiet, not this connection.
        assert!(!f.stalled(since));
        // Another body received data 100 ms ago, within the stall time.
        let at = epoch.elapsed() - Duration::from_millis(100);
        f.last.store(at.as_nanos() as u64, Ordering::Relaxed);
        assert!(f.stalled(since));
        // ... but this body has been silent for less than the stall time.
        assert!(!f.stalled(Instant::now() - Duration::from_millis(50)));
        // Data long before the stall time (the body's own last chunk) says nothing.
        let old = epoch.elapsed() - Duration::from_millis(400);
        f.last.store(old.as_nanos() as u64, Ordering::Relaxed);
        assert!(!f.stalled(since));
        // Off: never.
        let off = flow(None, epoch);
        off.last.store(at.as_nanos() as u64, Ordering::Relaxed);
        assert!(!off.stalled(since));
    }

    #[test]
    fn received_only_moves_the_time_forward() {
        let f = flow(Some(Duration::from_secs(1)), Instant::now());
        f.last.store(u64::MAX - 1, Ordering::Relaxed);
        f.received();
        assert_eq!(f.last.load(Ordering::Relaxed), u64::MAX - 1);
    }
}
