//! Events the core emits and the counters it shares with the reporters.
//!
//! Events are rare (a handful per download); byte counts are not events but
//! [`Progress`] counters that a reporter samples on its own clock, so the hot
//! path does one atomic add per chunk and sends no message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Index of a download in input order.
pub type DownloadId = usize;

/// Live byte counters of one download, shared between the core and the reporters.
#[derive(Debug)]
pub struct Progress {
    /// Bytes of the file on disk or written so far (includes resumed bytes).
    bytes: AtomicU64,
    /// Expected size, or `u64::MAX` when unknown.
    total: AtomicU64,
    /// Bytes already present when this run started (resumed), not counted as transferred.
    resumed: AtomicU64,
    /// Connections transferring data for this download right now.
    connections: AtomicU64,
}

impl Progress {
    /// A counter with an unknown size.
    pub fn new() -> Arc<Self> {
        Arc::new(Progress {
            bytes: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
            resumed: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    /// Connections transferring data right now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Count a connection as transferring until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// Bytes of the file so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes transferred in this run.
    pub fn transferred(&self) -> u64 {
        self.bytes()
            .saturating_sub(self.resumed.load(Ordering::Relaxed))
    }

    /// Expected size, if known.
    pub fn total(&self) -> Option<u64> {
        match self.total.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// Count bytes that arrived.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Start a (new) try at `offset` bytes of a file of `total` bytes.
    pub fn reset(&self, offset: u64, total: Option<u64>) {
        self.bytes.store(offset, Ordering::Relaxed);
        self.total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Record bytes found on disk from an earlier run.
    pub fn set_resumed(&self, n: u64) {
        self.resumed.store(n, Ordering::Relaxed);
    }
}

/// A connection counted in [`Progress::connections`]; dropping it uncounts it.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Progress>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Something that happened to one download, or to the run.
#[derive(Debug, Clone)]
pub enum Event {
    /// The response arrived and the body is being written.
    Started {
        /// Download index.
        id: DownloadId,
        /// The URL as given.
        url: String,
        /// Where the file will be (or `-` for stdout).
        path: PathBuf,
        /// Expected size, if known.
        size: Option<u64>,
        /// Bytes already on disk that this try continues from.
        resumed_from: u64,
        /// Live counters.
        progress: Arc<Progress>,
    },
    /// A try failed and another follows after `delay`.
    Retrying {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// The try that comes next (2 is the first retry).
        attempt: u32,
        /// Most tries in all.
        max_attempts: u32,
        /// Why the try failed.
        reason: String,
        /// Wait before the next try.
        delay: Duration,
    },
    /// The file is complete under its final name.
    Finished {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// The final path.
        path: PathBuf,
        /// Size of the file.
        bytes: u64,
        /// Bytes transferred in this run.
        transferred: u64,
        /// Time from the first request.
        elapsed: Duration,
        /// The verified digest as `ALGO=HEX`, if a checksum was verified.
        checksum: Option<String>,
    },
    /// Nothing to do: the file is already complete.
    Skipped {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// The existing file.
        path: PathBuf,
        /// Why it was skipped.
        reason: String,
    },
    /// The download failed for good.
    Failed {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// The path it was going to, if known.
        path: Option<PathBuf>,
        /// Why.
        reason: String,
    },
    /// A host's connection window changed (AIMD), or the host asked for a pause.
    HostWindow {
        /// `scheme://host[:port]`.
        host: String,
        /// Connections now allowed at once.
        window: usize,
        /// New requests to the host wait this long (Retry-After).
        paused: Option<Duration>,
    },
    /// The same URL (with the same name) came earlier in the batch: it is
    /// downloaded once, by download `of`.
    Duplicate {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// Where the earlier download saves it.
        path: PathBuf,
        /// The earlier download.
        of: DownloadId,
    },
    /// `--dry-run`: what a download would do.
    Planned {
        /// Download index.
        id: DownloadId,
        /// The URL as given.
        url: String,
        /// The URL after redirects.
        final_url: String,
        /// The status of the answer (0 when there was none).
        status: u16,
        /// The size, when the server said.
        size: Option<u64>,
        /// Where the file would go (`None` for stdout).
        path: Option<PathBuf>,
        /// `download`, `resume`, `skip` or `fail`, with a reason after a colon.
        action: String,
    },
    /// The download was stopped by an interrupt; its partial data is kept.
    Interrupted {
        /// Download index.
        id: DownloadId,
        /// The URL.
        url: String,
        /// The path it was going to, if known.
        path: Option<PathBuf>,
    },
}

impl Event {
    /// The download the event is about (none for a host's window).
    pub fn id(&self) -> Option<DownloadId> {
        match self {
            Event::Started { id, .. }
            | Event::Retrying { id, .. }
            | Event::Finished { id, .. }
            | Event::Skipped { id, .. }
            | Event::Failed { id, .. }
            | Event::Duplicate { id, .. }
            | Event::Planned { id, .. }
            | Event::Interrupted { id, .. } => Some(*id),
            Event::HostWindow { .. } => None,
        }
    }
}

/// Where the core sends events. Cloned into every task; sending never blocks.
#[derive(Debug, Clone)]
pub struct EventSender(std::sync::mpsc::Sender<Event>);

/// The receiving end, owned by the reporter thread.
pub type EventReceiver = std::sync::mpsc::Receiver<Event>;

impl EventSender {
    /// A connected sender and receiver.
    pub fn channel() -> (EventSender, EventReceiver) {
        let (tx, rx) = std::sync::mpsc::channel();
        (EventSender(tx), rx)
    }

    /// Send one event; a reporter that has gone away is not an error.
    pub fn send(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

/// One failure, kept for the summary.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The download.
    pub id: DownloadId,
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// What the run did, as data: the final summary and the exit code come from it.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Downloads complete under their final names in this run.
    pub succeeded: usize,
    /// Downloads that were already complete.
    pub skipped: usize,
    /// Failed downloads, in the order they failed.
    pub failures: Vec<Failure>,
    /// Downloads stopped by an interrupt (partial data kept).
    pub interrupted: usize,
    /// Downloads never started because of an interrupt.
    pub not_started: usize,
    /// Bytes transferred in this run.
    pub bytes: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Whether SIGINT/SIGTERM stopped the run.
    pub was_interrupted: bool,
    /// Downloads that did not complete (failed, interrupted, not started), in
    /// input order: what `--save-failed` writes.
    pub incomplete: Vec<DownloadId>,
    /// `--dry-run`: downloads resolved.
    pub planned: usize,
    /// Whether this was a `--dry-run`.
    pub dry_run: bool,
}
