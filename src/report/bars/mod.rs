//! Progress bars on stderr (indicatif): one row per active download and a total
//! row. Bars of finished downloads are cleared; retries and failures are
//! printed above the bars.
//!
//! Every row fits the terminal: it is at most the width less
//! [`terminal::RESERVE`] columns, and is laid out again when the width
//! changes. A long name loses its middle; on a narrow terminal the less
//! important columns go first (connections, time left, speed, size, the bar).
//! Drawing goes through [`terminal::Screen`], so a Ctrl-C leaves no stale row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::terminal::{self, Screen};
use super::{plain, show_path, Reporter};
use crate::events::{DownloadId, Event, Progress, RunSummary};

mod layout;

#[cfg(test)]
use layout::BAR_COLOUR;
use layout::{middle_truncate, short_duration, total_text, Layout, Total};

/// The span the total row's speed is measured over: what the run does now,
/// not its average since the start.
const RATE_WINDOW: Duration = Duration::from_secs(3);
/// Most redraws per second.
const REFRESH_HZ: u8 = 10;
/// ANSI bold for the `total` label, and the reset.
const BOLD: (&str, &str) = ("\x1b[1m", "\x1b[0m");

struct Active {
    bar: ProgressBar,
    progress: Arc<Progress>,
    /// The name as shown in full, before truncation.
    name: String,
    /// Bytes the download fetches in this run, when its size is known.
    to_fetch: Option<u64>,
    /// Waiting to retry until then (shown in the row).
    retry_until: Option<Instant>,
}

/// indicatif bars for a terminal.
pub struct BarsReporter {
    multi: MultiProgress,
    screen: Screen,
    colour: bool,
    /// The line width the layout was made for.
    width: usize,
    layout: Layout,
    style: ProgressStyle,
    total: ProgressBar,
    active: HashMap<DownloadId, Active>,
    /// Downloads that ended (done, skipped, failed, duplicate, planned).
    files_done: usize,
    files: usize,
    /// Bytes transferred by downloads that ended: also what they count for
    /// in the run's total size.
    ended_bytes: u64,
    /// Whether some download that started or ended had no known size.
    size_unknown: bool,
    /// Bytes transferred in all, sampled at each tick over [`RATE_WINDOW`].
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl BarsReporter {
    /// Bars on stderr for a batch of `total` downloads, coloured unless
    /// `NO_COLOR` says otherwise.
    pub fn new(total: usize) -> Self {
        Self::on_screen(
            total,
            Screen::stderr(),
            terminal::stderr_colour(),
            Some(REFRESH_HZ),
        )
    }

    /// Bars on `screen`, redrawn at most `hz` times a second (`None`: at
    /// every change).
    pub fn on_screen(total: usize, screen: Screen, colour: bool, hz: Option<u8>) -> Self {
        let target = match hz {
            Some(hz) => ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), hz),
            None => ProgressDrawTarget::term_like(Box::new(screen.clone())),
        };
        let multi = MultiProgress::with_draw_target(target);
        let total_bar = multi.add(ProgressBar::with_draw_target(
            None,
            ProgressDrawTarget::hidden(),
        ));
        total_bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        let width = screen.line_width();
        let layout = Layout::fit(width);
        BarsReporter {
            multi,
            style: layout.style(colour),
            screen,
            colour,
            width,
            layout,
            total: total_bar,
            active: HashMap::new(),
            files_done: 0,
            files: total,
            ended_bytes: 0,
            size_unknown: false,
            samples: std::collections::VecDeque::new(),
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

    /// Lay the rows out again if the terminal's width changed.
    /// A row for download `id` above the total (bytes already on disk are
    /// not speed: the estimate starts after them).
    fn add_row(
        &mut self,
        id: DownloadId,
        name: String,
        size: Option<u64>,
        progress: Arc<Progress>,
        to_fetch: Option<u64>,
    ) {
        self.fit();
        let bar = ProgressBar::with_draw_target(size, ProgressDrawTarget::hidden());
        bar.set_style(self.style.clone());
        bar.set_prefix(middle_truncate(&name, self.layout.name));
        bar.set_position(progress.bytes());
        bar.reset_eta();
        let bar = self.multi.insert_before(&self.total, bar);
        self.active.insert(
            id,
            Active {
                bar,
                progress,
                name,
                to_fetch,
                retry_until: None,
            },
        );
    }

    fn fit(&mut self) {
        let width = self.screen.line_width();
        if width == self.width {
            return;
        }
        self.width = width;
        self.layout = Layout::fit(width);
        self.style = self.layout.style(self.colour);
        for a in self.active.values() {
            a.bar.set_style(self.style.clone());
            a.bar.set_prefix(middle_truncate(&a.name, self.layout.name));
        }
    }

    fn update_total(&mut self, now: Instant) {
        let mut bytes = self.ended_bytes;
        for a in self.active.values() {
            bytes += a.progress.transferred();
        }
        // The speed now: bytes over the last few seconds, not since the start.
        self.samples.push_back((now, bytes));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let rate = match self.samples.front() {
            Some(&(t, b)) if now > t => {
                (bytes - b.min(bytes)) as f64 / now.duration_since(t).as_secs_f64()
            }
            _ => 0.0,
        };
        // The run's size is known once every download has started with a
        // known size (or ended).
        let started = self.files_done + self.active.len();
        let all_sized = self.active.values().all(|a| a.to_fetch.is_some());
        let size = (!self.size_unknown && all_sized && started >= self.files).then(|| {
            self.ended_bytes
                + self
                    .active
                    .values()
                    .map(|a| a.to_fetch.unwrap_or(0))
                    .sum::<u64>()
        });
        let text = total_text(
            self.width,
            &Total {
                files: (self.files_done, self.files),
                bytes,
                size: size.map(|s| s.max(bytes)),
                rate,
            },
        );
        let text = match (self.colour, text.strip_prefix("total")) {
            (true, Some(rest)) => format!("{}total{}{rest}", BOLD.0, BOLD.1),
            _ => text,
        };
        if self.total.message() != text {
            self.total.set_message(text);
        }
    }

    fn count_done(&mut self) {
        self.files_done += 1;
        self.update_total(Instant::now());
    }
}

impl Reporter for BarsReporter {
    fn event(&mut self, event: &Event) {
        // Downloads read from a stream while the run goes on grow the batch.
        if let Some(id) = event.id() {
            self.files = self.files.max(id + 1);
        }
        match event {
            Event::Started {
                id,
                path,
                size,
                resumed_from,
                progress,
                ..
            } => {
                if size.is_none() {
                    self.size_unknown = true;
                }
                let to_fetch = size.map(|s| s.saturating_sub(*resumed_from));
                if let Some(a) = self.active.get_mut(id) {
                    // Started again (a retry from scratch), or for the first
                    // time after waiting to retry: the same row, now of the
                    // file.
                    a.retry_until = None;
                    a.bar.set_style(self.style.clone());
                    a.progress = progress.clone();
                    a.name = show_path(path);
                    a.to_fetch = to_fetch;
                    a.bar.set_prefix(middle_truncate(&a.name, self.layout.name));
                    if let Some(size) = size {
                        a.bar.set_length(*size);
                    }
                    return;
                }
                self.add_row(*id, show_path(path), *size, progress.clone(), to_fetch);
            }
            Event::Finished { id, .. } => {
                self.end(*id);
                self.count_done();
            }
            Event::Skipped { .. } => self.count_done(),
            Event::Failed { id, .. } => {
                self.end(*id);
                self.count_done();
                self.print_above(event);
            }
            Event::Interrupted { id, .. } => self.end(*id),
            Event::Duplicate { .. } | Event::Planned { .. } => {
                self.count_done();
                self.print_above(event);
            }
            Event::Retrying { id, url, delay, .. } => {
                if !self.active.contains_key(id) {
                    // Failed before its first answer: a row of its own to
                    // show the wait, named after its URL until it starts.
                    let name = url
                        .rsplit('/')
                        .find(|s| !s.is_empty())
                        .unwrap_or(url)
                        .to_string();
                    self.add_row(*id, name, None, Progress::new(), None);
                }
                if let Some(a) = self.active.get_mut(id) {
                    a.retry_until = Some(Instant::now() + *delay);
                }
                self.print_above(event);
            }
            Event::HostWindow { .. } => self.print_above(event),
        }
    }

    fn tick(&mut self, now: Instant) {
        self.fit();
        let (layout, colour) = (self.layout, self.colour);
        for a in self.active.values_mut() {
            // A download waiting to retry (no connection open) says so, with
            // the time left, where its speed goes.
            let waiting = a
                .retry_until
                .filter(|&until| until > now && a.progress.connections() == 0);
            if let Some(until) = waiting {
                a.bar.set_style(layout.waiting_style(colour));
                a.bar.set_message(format!(
                    "retry {}",
                    short_duration(until.duration_since(now) + Duration::from_millis(999))
                ));
                continue;
            }
            if a.retry_until.take().is_some() {
                a.bar.set_style(layout.style(colour));
            }
            if let Some(total) = a.progress.total() {
                if a.bar.length() != Some(total) {
                    a.bar.set_length(total);
                }
            }
            a.bar.set_position(a.progress.bytes());
            // A split download shows how many connections feed its bar.
            let conns = a.progress.connections();
            let msg = if conns > 1 && self.layout.conns {
                format!(" x{}", conns.min(99))
            } else {
                String::new()
            };
            if a.bar.message() != msg {
                a.bar.set_message(msg);
            }
        }
        self.update_total(now);
    }

    fn finish(&mut self, _summary: &RunSummary) {
        for (_, a) in self.active.drain() {
            a.bar.finish_and_clear();
            self.multi.remove(&a.bar);
        }
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::terminal::testing::Tty;
    use std::io::Write;

    fn started(id: DownloadId, name: &str, size: u64, progress: &Arc<Progress>) -> Event {
        progress.reset(0, Some(size));
        Event::Started {
            id,
            url: format!("http://127.0.0.1/{name}"),
            path: format!("out/{name}").into(),
            size: Some(size),
            resumed_from: 0,
            progress: progress.clone(),
        }
    }

    /// Two bars drawn on a `cols`-wide terminal, half done.
    fn two_bars(cols: u16, colour: bool) -> (Tty, BarsReporter, [Arc<Progress>; 2]) {
        let tty = Tty::default();
        let screen = Screen::new(Box::new(tty.clone()), Arc::new(move || (24, cols)));
        let mut r = BarsReporter::on_screen(2, screen, colour, None);
        let p = [Progress::new(), Progress::new()];
        r.event(&started(
            0,
            "a-rather-long-file-name-for-the-test-of-volley.bin",
            4 << 20,
            &p[0],
        ));
        r.event(&started(1, "b.bin", 4 << 20, &p[1]));
        p[0].add(2 << 20);
        p[1].add(1 << 20);
        r.tick(Instant::now());
        (tty, r, p)
    }

    fn interrupt(r: &mut BarsReporter) {
        for id in 0..2 {
            r.event(&Event::Interrupted {
                id,
                url: String::new(),
                path: None,
            });
        }
        r.finish(&RunSummary::default());
    }

    #[test]
    fn ctrl_c_echo_leaves_no_stale_bar_row() {
        for cols in [80, 40, 20] {
            let (tty, mut r, _p) = two_bars(cols, false);
            let drawn = tty.screen(cols).screen().contents();
            assert!(
                drawn.contains("b.bin") && drawn.contains("total"),
                "{drawn}"
            );
            let parser = tty.screen(cols);
            for (i, row) in parser.screen().rows(0, cols).enumerate() {
                assert!(
                    !parser.screen().row_wrapped(i as u16)
                        && terminal::text_width(row.trim_end())
                            <= usize::from(cols) - terminal::RESERVE,
                    "row {i} too wide for {cols} columns:\n{drawn}"
                );
            }
            // The terminal echoes Ctrl-C where the cursor is.
            tty.clone().write_all(b"^C").unwrap();
            interrupt(&mut r);
            let end = tty.screen(cols).screen().contents();
            assert_eq!(end.trim(), "", "left on a {cols}-column screen:\n{end}");
        }
    }

    #[test]
    fn lines_printed_above_stay_and_bars_go() {
        let (tty, mut r, p) = two_bars(40, false);
        // A split download shows its connections where the width allows.
        let _conns = [p[1].connection(), p[1].connection()];
        r.tick(Instant::now());
        let unknown = Progress::new();
        r.event(&Event::Started {
            id: 2,
            url: "http://127.0.0.1/stream".into(),
            path: "out/stream".into(),
            size: None,
            resumed_from: 0,
            progress: unknown.clone(),
        });
        unknown.add(5000);
        let reason = "connection reset by peer while reading the body of a rather long URL";
        r.event(&Event::Retrying {
            id: 0,
            url: "http://127.0.0.1/a-rather-long-file-name-for-the-test-of-volley.bin".into(),
            attempt: 2,
            max_attempts: 6,
            reason: reason.into(),
            delay: Duration::from_millis(1500),
        });
        r.tick(Instant::now());
        let parser = tty.screen(40);
        let drawn = parser.screen().contents();
        let at = drawn.find("out/").expect("bars below the retry line");
        let (above, bars) = drawn.split_at(at);
        assert!(
            above.starts_with("retry    http://") && above.contains("try 2 of 6"),
            "{drawn}"
        );
        assert!(
            bars.contains("out/stream") && bars.contains("4.88 KiB"),
            "{drawn}"
        );
        // Row widths: the retry line may wrap (it is printed once), bars may not.
        let rows: Vec<String> = parser.screen().rows(0, 40).collect();
        let first_bar = rows.iter().position(|r| r.starts_with("out/")).unwrap();
        for (i, row) in rows.iter().enumerate().skip(first_bar) {
            assert!(!parser.screen().row_wrapped(i as u16), "row {i}:\n{drawn}");
            assert!(
                terminal::text_width(row.trim_end()) <= 38,
                "row {i}:\n{drawn}"
            );
        }
        r.finish(&RunSummary::default());
        let end = tty.screen(40).screen().contents();
        assert!(end.trim_end().ends_with("in 1.50 s"), "{end}");
        assert!(!end.contains("out/") && !end.contains("total"), "{end}");
        // At 80 columns a split download shows how many connections feed it.
        let (tty, mut r, p) = two_bars(80, false);
        let _conns = [p[1].connection(), p[1].connection()];
        r.tick(Instant::now());
        let drawn = tty.screen(80).screen().contents();
        let row = drawn.lines().find(|l| l.starts_with("out/b.bin")).unwrap();
        assert!(row.trim_end().ends_with(" x2"), "{drawn}");
        interrupt(&mut r);
    }

    #[test]
    fn colour_only_when_wanted() {
        let (tty, mut r, _p) = two_bars(80, false);
        interrupt(&mut r);
        let plain = String::from_utf8(tty.bytes()).unwrap();
        assert!(
            !plain.contains("\x1b[3") && !plain.contains("\x1b[1m"),
            "{plain:?}"
        );
        let (tty, mut r, _p) = two_bars(80, true);
        interrupt(&mut r);
        let coloured = String::from_utf8(tty.bytes()).unwrap();
        assert!(coloured.contains(BAR_COLOUR.0), "{coloured:?}");
    }
}
