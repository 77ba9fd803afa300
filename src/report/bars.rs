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

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::terminal::{self, Screen};
use super::{human_bytes, plain, show_path, Reporter};
use crate::events::{DownloadId, Event, Progress, RunSummary};

/// Narrowest name column while other columns are shown.
const NAME_MIN: usize = 8;
/// Widest name column.
const NAME_MAX: usize = 40;
/// Narrowest bar worth drawing.
const BAR_MIN: usize = 6;
/// Widest bar.
const BAR_MAX: usize = 40;
/// Width of a size in a row ([`compact_bytes`] never exceeds it).
const SIZE_WIDTH: usize = 8;
/// Width of a speed: a size and `/s`.
const SPEED_WIDTH: usize = SIZE_WIDTH + 2;
/// Width of the time left ([`short_duration`] never exceeds it).
const ETA_WIDTH: usize = 4;
/// Width of the connection count of a split download (` x16`).
const CONNS_WIDTH: usize = 4;
/// Most redraws per second.
const REFRESH_HZ: u8 = 10;
/// Spinner frames for downloads of unknown size, one per [`SPIN_EVERY`].
const SPINNER: [char; 4] = ['-', '\\', '|', '/'];
/// How long each spinner frame shows.
const SPIN_EVERY: Duration = Duration::from_millis(100);
/// ANSI colour of the filled part of a bar (cyan), and the reset.
const BAR_COLOUR: (&str, &str) = ("\x1b[36m", "\x1b[0m");
/// ANSI bold for the `total` label, and the reset.
const BOLD: (&str, &str) = ("\x1b[1m", "\x1b[0m");

/// The columns of a download's row at one terminal width:
/// `NAME [BAR] [DONE][/SIZE] [SPEED] [LEFT][ xN]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Columns for the name.
    pub name: usize,
    /// Columns for the bar (a spinner when the size is unknown); 0 for none.
    pub gauge: usize,
    /// Whether the bytes so far are shown.
    pub done: bool,
    /// Whether the file's size is shown (after the bytes so far).
    pub size: bool,
    /// Whether the speed is shown.
    pub speed: bool,
    /// Whether the time left is shown.
    pub eta: bool,
    /// Whether a split download's connection count is shown.
    pub conns: bool,
}

impl Layout {
    /// The fullest layout whose rows are at most `width` columns.
    pub fn fit(width: usize) -> Layout {
        let mut l = Layout {
            name: 0,
            gauge: 0,
            done: true,
            size: true,
            speed: true,
            eta: true,
            conns: true,
        };
        let mut gauge = true;
        while NAME_MIN + l.fixed() + if gauge { 1 + BAR_MIN } else { 0 } > width {
            if l.conns {
                l.conns = false;
            } else if l.eta {
                l.eta = false;
            } else if l.speed {
                l.speed = false;
            } else if l.size {
                l.size = false;
            } else if gauge {
                gauge = false;
            } else if l.done {
                l.done = false;
            } else {
                break;
            }
        }
        let rest = width.saturating_sub(l.fixed());
        if gauge {
            let rest = rest - 1;
            l.name = (rest * 3 / 5).clamp(NAME_MIN, NAME_MAX).min(rest - BAR_MIN);
            l.gauge = (rest - l.name).min(BAR_MAX);
        } else {
            l.name = rest.min(NAME_MAX);
        }
        l
    }

    /// Columns of everything but the name and the bar.
    fn fixed(&self) -> usize {
        let on = |shown: bool, w: usize| if shown { w } else { 0 };
        on(self.done, 1 + SIZE_WIDTH)
            + on(self.size, 1 + SIZE_WIDTH)
            + on(self.speed, 1 + SPEED_WIDTH)
            + on(self.eta, 1 + ETA_WIDTH)
            + on(self.conns, CONNS_WIDTH)
    }

    /// The widest row this layout draws.
    pub fn row_width(&self) -> usize {
        self.name + if self.gauge > 0 { 1 + self.gauge } else { 0 } + self.fixed()
    }

    /// The indicatif style drawing rows in this layout.
    fn style(&self, colour: bool) -> ProgressStyle {
        let mut template = String::from("{prefix}");
        for (shown, part) in [
            (self.gauge > 0, " {gauge}"),
            (self.done, " {done}"),
            (self.size, "{size}"),
            (self.speed, " {rate}"),
            (self.eta, " {left}"),
            (self.conns, "{msg}"),
        ] {
            if shown {
                template.push_str(part);
            }
        }
        let gauge = self.gauge;
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .with_key(
                "gauge",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&gauge_text(s, gauge, colour));
                },
            )
            .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:>SIZE_WIDTH$}", compact_bytes(s.pos()));
            })
            .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match s.len() {
                    Some(len) => write!(w, "/{:<SIZE_WIDTH$}", compact_bytes(len)),
                    None => write!(w, " {:<SIZE_WIDTH$}", ""),
                };
            })
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = format!("{}/s", compact_bytes(s.per_sec().max(0.0) as u64));
                let _ = write!(w, "{rate:>SPEED_WIDTH$}");
            })
            .with_key("left", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:>ETA_WIDTH$}", eta_text(s));
            })
    }
}

/// The bar (or the spinner, for an unknown size) in exactly `width` columns.
fn gauge_text(s: &ProgressState, width: usize, colour: bool) -> String {
    let (on, off) = if colour { BAR_COLOUR } else { ("", "") };
    match s.len() {
        Some(len) => {
            let filled = if len == 0 {
                width
            } else {
                ((u128::from(s.pos().min(len)) * width as u128) / u128::from(len)) as usize
            };
            if filled >= width {
                format!("{on}{}{off}", "=".repeat(width))
            } else {
                format!(
                    "{on}{}>{off}{}",
                    "=".repeat(filled),
                    " ".repeat(width - filled - 1)
                )
            }
        }
        None => {
            let frame = (s.elapsed().as_millis() / SPIN_EVERY.as_millis()) as usize;
            format!(
                "{}{}",
                SPINNER[frame % SPINNER.len()],
                " ".repeat(width.saturating_sub(1))
            )
        }
    }
}

/// Time left at the current speed, or nothing when it cannot be told.
fn eta_text(s: &ProgressState) -> String {
    let rate = s.per_sec();
    match s.len() {
        Some(len) if rate >= 1.0 && s.pos() < len => {
            short_duration(Duration::from_secs_f64((len - s.pos()) as f64 / rate))
        }
        _ => String::new(),
    }
}

/// A size in at most [`SIZE_WIDTH`] columns with binary units and three or
/// four significant digits: `999 B`, `9.99 KiB`, `99.9 MiB`, `1023 GiB`.
pub fn compact_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // 1023.5 KiB would print as 1024 KiB: that is 1.00 MiB.
    while value >= 1023.5 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let unit = UNITS[unit];
    if value < 9.995 {
        format!("{value:.2} {unit}")
    } else if value < 99.95 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A duration in at most [`ETA_WIDTH`] columns, in its largest whole unit:
/// `42s`, `12m`, `3h`, `5d`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", (s / 86_400).min(999)),
    }
}

/// The total row in at most `width` columns: the most that fits of
/// `total [3/10 files] 12.34 MiB at 1.23 MiB/s`.
pub fn total_text(width: usize, files: (usize, usize), bytes: u64, rate: &str) -> String {
    let (done, all) = files;
    let candidates = [
        format!(
            "total [{done}/{all} files] {} at {rate}",
            human_bytes(bytes)
        ),
        format!("total [{done}/{all} files] {}", human_bytes(bytes)),
        format!("total [{done}/{all} files]"),
        format!("[{done}/{all}]"),
    ];
    let last = candidates[candidates.len() - 1].clone();
    candidates
        .into_iter()
        .find(|c| terminal::text_width(c) <= width)
        .unwrap_or_else(|| last.chars().take(width).collect())
}

/// Shorten a name to `width` terminal columns by cutting out its middle, or
/// pad it to `width`.
pub fn middle_truncate(name: &str, width: usize) -> String {
    let full = terminal::text_width(name);
    if full <= width {
        return format!("{name}{}", " ".repeat(width - full));
    }
    if width == 0 {
        return String::new();
    }
    let char_width = |c: char| terminal::text_width(c.encode_utf8(&mut [0; 4]));
    let keep = width - 1;
    let (head_budget, tail_budget) = (keep / 2, keep - keep / 2);
    let mut head = String::new();
    let mut used = 0;
    for c in name.chars() {
        let w = char_width(c);
        if used + w > head_budget {
            break;
        }
        used += w;
        head.push(c);
    }
    let mut tail = Vec::new();
    let mut tail_used = 0;
    for c in name.chars().rev() {
        let w = char_width(c);
        if tail_used + w > tail_budget {
            break;
        }
        tail_used += w;
        tail.push(c);
    }
    let tail: String = tail.into_iter().rev().collect();
    // Wide characters may leave a column unused: pad it.
    let pad = keep - used - tail_used;
    format!("{head}…{tail}{}", " ".repeat(pad))
}

struct Active {
    bar: ProgressBar,
    progress: Arc<Progress>,
    /// The name as shown in full, before truncation.
    name: String,
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
    /// Bytes transferred by downloads that ended.
    ended_bytes: u64,
    started: Instant,
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

    /// Lay the rows out again if the terminal's width changed.
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

    fn update_total(&self, now: Instant) {
        let mut bytes = self.ended_bytes;
        for a in self.active.values() {
            bytes += a.progress.transferred();
        }
        let elapsed = now
            .duration_since(self.started)
            .max(Duration::from_millis(1));
        let text = total_text(
            self.width,
            (self.files_done, self.files),
            bytes,
            &super::rate(bytes, elapsed),
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
                progress,
                ..
            } => {
                self.fit();
                let bar = ProgressBar::with_draw_target(*size, ProgressDrawTarget::hidden());
                bar.set_style(self.style.clone());
                let name = show_path(path);
                bar.set_prefix(middle_truncate(&name, self.layout.name));
                bar.set_position(progress.bytes());
                // Bytes found on disk are not speed: start the estimate after them.
                bar.reset_eta();
                let bar = self.multi.insert_before(&self.total, bar);
                self.active.insert(
                    *id,
                    Active {
                        bar,
                        progress: progress.clone(),
                        name,
                    },
                );
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
            Event::Retrying { .. } | Event::HostWindow { .. } => self.print_above(event),
        }
    }

    fn tick(&mut self, now: Instant) {
        self.fit();
        for a in self.active.values() {
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

    #[test]
    fn long_names_lose_their_middle() {
        assert_eq!(middle_truncate("short", 8), "short   ");
        let t = middle_truncate("a-very-long-file-name.tar.gz", 11);
        assert_eq!(t.chars().count(), 11);
        assert!(t.starts_with("a-ver") && t.ends_with("ar.gz"), "{t}");
        assert_eq!(middle_truncate("abcdef", 1), "…");
        assert_eq!(middle_truncate("abcdef", 0), "");
    }

    #[test]
    fn wide_characters_count_as_two_columns() {
        let name = "日本語のとても長いファイル名.txt";
        for width in 1..30 {
            let t = middle_truncate(name, width);
            assert_eq!(terminal::text_width(&t), width, "{t:?} for width {width}");
        }
    }

    #[test]
    fn compact_sizes_fit_their_column() {
        assert_eq!(compact_bytes(0), "0 B");
        assert_eq!(compact_bytes(1023), "1023 B");
        assert_eq!(compact_bytes(1024), "1.00 KiB");
        assert_eq!(compact_bytes(10 * 1024 - 1), "10.0 KiB");
        assert_eq!(compact_bytes(256 * 1024), "256 KiB");
        assert_eq!(compact_bytes(1024 * 1024 - 1), "1.00 MiB");
        assert_eq!(compact_bytes(4 * 1024 * 1024 + 100 * 1024), "4.10 MiB");
        let mut n = 1u64;
        while n < u64::MAX / 3 {
            for m in [n, n + n / 2, n * 3 - 1] {
                let t = compact_bytes(m);
                assert!(t.len() <= SIZE_WIDTH, "{m}: {t:?}");
            }
            n = n * 3 / 2 + 1;
        }
        assert!(compact_bytes(u64::MAX).len() <= SIZE_WIDTH);
    }

    #[test]
    fn short_durations_fit_their_column() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (7200, "2h"),
        ] {
            assert_eq!(short_duration(Duration::from_secs(secs)), text);
        }
        assert_eq!(short_duration(Duration::from_secs(u64::MAX)), "999d");
    }

    #[test]
    fn layouts_fit_every_width_and_drop_columns_in_order() {
        for width in 1..300 {
            let l = Layout::fit(width);
            assert!(l.row_width() <= width, "{width}: {l:?}");
            assert!(l.name >= 1, "{width}: {l:?}");
            assert!(l.gauge == 0 || l.gauge >= BAR_MIN, "{width}: {l:?}");
            // A column is only shown when every more important one is.
            assert!(!l.conns || l.eta, "{width}: {l:?}");
            assert!(!l.eta || l.speed, "{width}: {l:?}");
            assert!(!l.speed || l.size, "{width}: {l:?}");
            assert!(!l.size || l.gauge > 0, "{width}: {l:?}");
            assert!(l.gauge == 0 || l.done, "{width}: {l:?}");
        }
        let at80 = Layout::fit(80 - terminal::RESERVE);
        assert!(
            at80.conns && at80.eta && at80.speed && at80.size,
            "{at80:?}"
        );
        assert!(at80.name >= 20, "{at80:?}");
        let at40 = Layout::fit(40 - terminal::RESERVE);
        assert!(at40.gauge > 0 && at40.done && !at40.eta, "{at40:?}");
    }

    #[test]
    fn the_total_row_fits() {
        for width in 1..80 {
            let t = total_text(width, (12, 345), 123_456_789, "12.34 MiB/s");
            assert!(terminal::text_width(&t) <= width, "{width}: {t:?}");
        }
        assert_eq!(
            total_text(78, (1, 2), 2048, "1.00 KiB/s"),
            "total [1/2 files] 2.00 KiB at 1.00 KiB/s"
        );
    }
}
