//! Progress bars on stderr (indicatif): one bar per active download and an
//! aggregate line. Bars of finished downloads are cleared; retries and failures are
//! printed above the bars.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{human_bytes, plain, show_path, Reporter};
use crate::events::{DownloadId, Event, Progress, RunSummary};

/// Widest name shown in a bar, in characters.
const NAME_WIDTH: usize = 32;

struct Active {
    bar: ProgressBar,
    progress: Arc<Progress>,
}

/// indicatif bars for a terminal.
pub struct BarsReporter {
    multi: MultiProgress,
    total: ProgressBar,
    active: HashMap<DownloadId, Active>,
    /// Bytes transferred by downloads that ended.
    ended_bytes: u64,
    started: Instant,
}

impl BarsReporter {
    /// Bars for a batch of `total` downloads.
    pub fn new(total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let total_bar = multi.add(ProgressBar::with_draw_target(
            Some(total as u64),
            ProgressDrawTarget::hidden(),
        ));
        total_bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{pos}/{len} files] {msg}")
                .expect("valid template"),
        );
        total_bar.set_prefix("total");
        BarsReporter {
            multi,
            total: total_bar,
            active: HashMap::new(),
            ended_bytes: 0,
            started: Instant::now(),
        }
    }

    fn end(&mut self, id: DownloadId) {
        if let Some(a) = self.active.remove(&id) {
            self.ended_bytes += a.progress.transferred();
            a.bar.finish_and_clear();
            self.multi.remove(&a.bar);
        }
    }

    fn print_above(&self, event: &Event) {
        if let Some(line) = plain::line(event) {
            let _ = self.multi.println(line);
        }
    }
}

/// Shorten a name to `width` characters by cutting out its middle.
pub fn middle_truncate(name: &str, width: usize) -> String {
    let count = name.chars().count();
    if count <= width {
        return format!("{name:<width$}");
    }
    let keep = width.saturating_sub(1);
    let head = keep / 2;
    let tail = keep - head;
    let start: String = name.chars().take(head).collect();
    let end: String = name.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

impl Reporter for BarsReporter {
    fn event(&mut self, event: &Event) {
        match event {
            Event::Started {
                id,
                path,
                size,
                progress,
                ..
            } => {
                let bar = match size {
                    Some(n) => {
                        let bar =
                            ProgressBar::with_draw_target(Some(*n), ProgressDrawTarget::hidden());
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix} {bar:24.cyan/blue} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4} {msg}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        bar
                    }
                    None => {
                        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix} {spinner} {bytes:>10} {bytes_per_sec:>12}",
                            )
                            .expect("valid template"),
                        );
                        bar
                    }
                };
                bar.set_prefix(middle_truncate(&show_path(path), NAME_WIDTH));
                bar.set_position(progress.bytes());
                // Bytes found on disk are not speed: start the estimate after them.
                bar.reset_eta();
                let bar = self.multi.insert_before(&self.total, bar);
                self.active.insert(
                    *id,
                    Active {
                        bar,
                        progress: progress.clone(),
                    },
                );
            }
            Event::Finished { id, .. } => {
                self.end(*id);
                self.total.inc(1);
            }
            Event::Skipped { .. } => self.total.inc(1),
            Event::Failed { id, .. } => {
                self.end(*id);
                self.total.inc(1);
                self.print_above(event);
            }
            Event::Interrupted { id, .. } => self.end(*id),
            Event::Duplicate { .. } => {
                self.total.inc(1);
                self.print_above(event);
            }
            Event::Planned { .. } => {
                self.total.inc(1);
                self.print_above(event);
            }
            Event::Retrying { .. } | Event::HostWindow { .. } => self.print_above(event),
        }
    }

    fn tick(&mut self, now: Instant) {
        let mut bytes = self.ended_bytes;
        for a in self.active.values() {
            a.bar.set_position(a.progress.bytes());
            // A split download shows how many connections feed its bar.
            let conns = a.progress.connections();
            let msg = if conns > 1 {
                format!("x{conns}")
            } else {
                String::new()
            };
            if a.bar.message() != msg {
                a.bar.set_message(msg);
            }
            if let Some(total) = a.progress.total() {
                if a.bar.length() != Some(total) {
                    a.bar.set_length(total);
                }
            }
            bytes += a.progress.transferred();
        }
        let elapsed = now
            .duration_since(self.started)
            .max(Duration::from_millis(1));
        self.total.set_message(format!(
            "{} at {}",
            human_bytes(bytes),
            super::rate(bytes, elapsed)
        ));
    }

    fn finish(&mut self, _summary: &RunSummary) {
        for (_, a) in self.active.drain() {
            a.bar.finish_and_clear();
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_lose_their_middle() {
        assert_eq!(middle_truncate("short", 8), "short   ");
        let t = middle_truncate("a-very-long-file-name.tar.gz", 11);
        assert_eq!(t.chars().count(), 11);
        assert!(t.starts_with("a-ver") && t.ends_with("ar.gz"), "{t}");
    }
}
