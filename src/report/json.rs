//! JSON Lines on stdout: one object per event, `progress` at most twice a second
//! per download, and a final `summary`. The schema is documented in README.md.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::Reporter;
use crate::events::{DownloadId, Event, Progress, RunSummary};

/// Least time between two `progress` lines of one download.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

struct Active {
    url: String,
    path: String,
    progress: Arc<Progress>,
    last_bytes: u64,
    last_at: Instant,
}

/// Writes events as JSON Lines to stdout.
pub struct JsonReporter {
    out: std::io::BufWriter<std::io::Stdout>,
    active: HashMap<DownloadId, Active>,
    last_progress: Instant,
}

impl Default for JsonReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonReporter {
    /// A reporter on stdout.
    pub fn new() -> Self {
        JsonReporter {
            out: std::io::BufWriter::new(std::io::stdout()),
            active: HashMap::new(),
            last_progress: Instant::now(),
        }
    }

    fn emit(&mut self, mut value: Value) {
        value["ts"] = json!(timestamp());
        // A closed pipe is not an error of the run.
        let _ = serde_json::to_writer(&mut self.out, &value);
        let _ = self.out.write_all(b"\n");
    }
}

fn timestamp() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

/// The JSON object for an event (without `ts`).
pub fn to_json(event: &Event) -> Value {
    match event {
        Event::Started {
            id,
            url,
            path,
            size,
            resumed_from,
            ..
        } => json!({"event": "start", "id": id, "url": url, "path": super::show_path(path),
                    "size": size, "resumed_from": resumed_from}),
        Event::Retrying {
            id,
            url,
            attempt,
            max_attempts,
            reason,
            delay,
        } => json!({"event": "retry", "id": id, "url": url, "attempt": attempt,
                    "max_attempts": max_attempts, "reason": reason, "delay_secs": delay.as_secs_f64()}),
        Event::Finished {
            id,
            url,
            path,
            bytes,
            transferred,
            elapsed,
            checksum,
        } => json!({"event": "done", "id": id, "url": url, "path": super::show_path(path),
                    "bytes": bytes, "transferred": transferred, "elapsed": elapsed.as_secs_f64(),
                    "checksum": checksum}),
        Event::Skipped {
            id,
            url,
            path,
            reason,
        } => json!({"event": "skipped", "id": id, "url": url, "path": super::show_path(path),
                    "reason": reason}),
        Event::Failed {
            id,
            url,
            path,
            reason,
        } => json!({"event": "failed", "id": id, "url": url,
                    "path": path.as_deref().map(super::show_path), "reason": reason}),
        Event::HostWindow {
            host,
            window,
            paused,
        } => json!({"event": "host", "host": host, "window": window,
                    "paused_secs": paused.map(|d| d.as_secs_f64())}),
        Event::Duplicate { id, url, path, of } => {
            json!({"event": "duplicate", "id": id, "url": url,
                    "path": super::show_path(path), "of": of})
        }
        Event::Planned {
            id,
            url,
            final_url,
            status,
            size,
            path,
            action,
        } => json!({"event": "plan", "id": id, "url": url, "final_url": final_url,
                    "status": status, "size": size,
                    "path": path.as_deref().map(super::show_path), "action": action}),
        Event::Interrupted { id, url, path } => {
            json!({"event": "interrupted", "id": id, "url": url,
                    "path": path.as_deref().map(super::show_path)})
        }
    }
}

impl Reporter for JsonReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started {
                id,
                url,
                path,
                progress,
                ..
            } => {
                self.active.insert(
                    *id,
                    Active {
                        url: url.clone(),
                        path: super::show_path(path),
                        progress: progress.clone(),
                        last_bytes: progress.bytes(),
                        last_at: Instant::now(),
                    },
                );
            }
            Event::Finished { id, .. }
            | Event::Failed { id, .. }
            | Event::Interrupted { id, .. } => {
                self.active.remove(id);
            }
            _ => {}
        }
        self.emit(to_json(event));
    }

    fn tick(&mut self, now: Instant) {
        if now.duration_since(self.last_progress) >= PROGRESS_EVERY {
            self.last_progress = now;
            let mut lines = Vec::new();
            for (id, a) in &mut self.active {
                let bytes = a.progress.bytes();
                if bytes == a.last_bytes {
                    continue;
                }
                let secs = now.duration_since(a.last_at).as_secs_f64().max(1e-3);
                let speed = ((bytes - a.last_bytes.min(bytes)) as f64 / secs) as u64;
                a.last_bytes = bytes;
                a.last_at = now;
                lines.push(
                    json!({"event": "progress", "id": id, "url": a.url, "path": a.path,
                                  "bytes": bytes, "size": a.progress.total(), "speed": speed,
                                  "connections": a.progress.connections()}),
                );
            }
            for line in lines {
                self.emit(line);
            }
        }
        let _ = self.out.flush();
    }

    fn finish(&mut self, s: &RunSummary) {
        self.emit(
            json!({"event": "summary", "succeeded": s.succeeded, "skipped": s.skipped,
                         "failed": s.failures.len(), "interrupted": s.was_interrupted,
                         "not_started": s.not_started, "bytes": s.bytes,
                         "elapsed": s.elapsed.as_secs_f64(), "dry_run": s.dry_run,
                         "planned": s.planned}),
        );
        let _ = self.out.flush();
    }
}
