//! How a progress row fits the terminal: which columns a width allows (and
//! which go first when it is narrow), and the short texts that fill them.

use std::time::Duration;

use indicatif::{ProgressState, ProgressStyle};

use super::super::terminal;
use crate::display::{human_bytes, human_rate};

/// Narrowest name column while other columns are shown.
const NAME_MIN: usize = 8;
/// Widest name column.
const NAME_MAX: usize = 40;
/// Narrowest bar worth drawing.
const BAR_MIN: usize = 6;
/// Widest bar.
const BAR_MAX: usize = 40;
/// Width of a size in a row ([`human_bytes`] never exceeds it).
const SIZE_WIDTH: usize = 8;
/// Width of a speed: a size and `/s`.
const SPEED_WIDTH: usize = SIZE_WIDTH + 2;
/// Width of the time left ([`short_duration`] never exceeds it).
const ETA_WIDTH: usize = 4;
/// Width of the connection count of a split download (` x16`).
const CONNS_WIDTH: usize = 4;
/// Spinner frames for downloads of unknown size, one per [`SPIN_EVERY`].
const SPINNER: [char; 4] = ['-', '\\', '|', '/'];
/// How long each spinner frame shows.
const SPIN_EVERY: Duration = Duration::from_millis(100);
/// ANSI colour of the filled part of a bar (cyan), and the reset.
pub(super) const BAR_COLOUR: (&str, &str) = ("\x1b[36m", "\x1b[0m");

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
        // The numbers matter more than the bar: on a narrow terminal the
        // connection count goes first, then the bar, then the size, the time
        // left and the speed; the bytes so far stay longest.
        let mut gauge = true;
        while NAME_MIN + l.fixed() + if gauge { 1 + BAR_MIN } else { 0 } > width {
            if l.conns {
                l.conns = false;
            } else if gauge {
                gauge = false;
            } else if l.size {
                l.size = false;
            } else if l.eta {
                l.eta = false;
            } else if l.speed {
                l.speed = false;
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
    #[cfg(test)]
    pub fn row_width(&self) -> usize {
        self.name + if self.gauge > 0 { 1 + self.gauge } else { 0 } + self.fixed()
    }

    /// The indicatif style drawing rows in this layout.
    pub fn style(&self, colour: bool) -> ProgressStyle {
        self.style_for(colour, false)
    }

    /// The style of a download waiting to retry: its message (`retry 3s`)
    /// where the speed goes, no connection count.
    pub fn waiting_style(&self, colour: bool) -> ProgressStyle {
        self.style_for(colour, true)
    }

    fn style_for(&self, colour: bool, waiting: bool) -> ProgressStyle {
        let mut template = String::from("{prefix}");
        // A download waiting to retry shows that in its speed column.
        let wait = format!(" {{msg:>{SPEED_WIDTH}}}");
        for (shown, part) in [
            (self.gauge > 0, " {gauge}"),
            (self.done, " {done}"),
            (self.size, "{size}"),
            (self.speed && !waiting, " {rate}"),
            (self.speed && waiting, wait.as_str()),
            (self.eta, " {left}"),
            (self.conns && !waiting, "{msg}"),
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
                let _ = write!(w, "{:>SIZE_WIDTH$}", human_bytes(s.pos()));
            })
            .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = match s.len() {
                    Some(len) => write!(w, "/{:<SIZE_WIDTH$}", human_bytes(len)),
                    None => write!(w, " {:<SIZE_WIDTH$}", ""),
                };
            })
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:>SPEED_WIDTH$}", human_rate(s.per_sec()));
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

/// What the total row says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Total {
    /// Downloads ended, and in all.
    pub files: (usize, usize),
    /// Bytes transferred in this run.
    pub bytes: u64,
    /// Bytes the run will transfer in all, once every size is known.
    pub size: Option<u64>,
    /// The current speed, bytes per second (a short moving window).
    pub rate: f64,
}

/// The total row in at most `width` columns: the most that fits of
/// `total [3/10 files] 12.3 MiB of 45.6 MiB at 1.23 MiB/s, 27s left`.
pub fn total_text(width: usize, t: &Total) -> String {
    let (done, all) = t.files;
    let bytes = match t.size {
        Some(size) => format!("{} of {}", human_bytes(t.bytes), human_bytes(size)),
        None => human_bytes(t.bytes),
    };
    let rate = human_rate(t.rate);
    let left = match t.size {
        Some(size) if t.rate >= 1.0 && size > t.bytes => format!(
            ", {} left",
            short_duration(Duration::from_secs_f64((size - t.bytes) as f64 / t.rate))
        ),
        _ => String::new(),
    };
    let candidates = [
        format!("total [{done}/{all} files] {bytes} at {rate}{left}"),
        format!("total [{done}/{all} files] {bytes} at {rate}"),
        format!("total [{done}/{all} files] {}", human_bytes(t.bytes)),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sizes_fit_their_column() {
        let mut n = 1u64;
        while n < u64::MAX / 3 {
            for m in [n, n + n / 2, n * 3 - 1] {
                let t = human_bytes(m);
                assert!(t.len() <= SIZE_WIDTH, "{m}: {t:?}");
                assert!(human_rate(m as f64).len() <= SPEED_WIDTH, "{m}");
            }
            n = n * 3 / 2 + 1;
        }
        assert!(human_bytes(u64::MAX).len() <= SIZE_WIDTH);
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
            // A column is only shown when every more important one is: the
            // connection count, the bar, the size, the time left, the
            // speed, the bytes so far (the numbers outlast the bar).
            assert!(!l.conns || l.gauge > 0, "{width}: {l:?}");
            assert!(l.gauge == 0 || l.size, "{width}: {l:?}");
            assert!(!l.size || l.eta, "{width}: {l:?}");
            assert!(!l.eta || l.speed, "{width}: {l:?}");
            assert!(!l.speed || l.done, "{width}: {l:?}");
        }
        let at80 = Layout::fit(80 - terminal::RESERVE);
        assert!(
            at80.conns && at80.eta && at80.speed && at80.size,
            "{at80:?}"
        );
        assert!(at80.name >= 20, "{at80:?}");
        // At 40 columns the speed and the time left stay; the bar goes.
        let at40 = Layout::fit(40 - terminal::RESERVE);
        assert!(
            at40.done && at40.speed && at40.eta && at40.gauge == 0,
            "{at40:?}"
        );
    }

    #[test]
    fn the_total_row_fits() {
        let t = Total {
            files: (12, 345),
            bytes: 123_456_789,
            size: Some(987_654_321),
            rate: 12_345_678.0,
        };
        for width in 1..100 {
            let text = total_text(width, &t);
            assert!(terminal::text_width(&text) <= width, "{width}: {text:?}");
        }
        assert_eq!(
            total_text(98, &t),
            "total [12/345 files] 118 MiB of 942 MiB at 11.8 MiB/s, 1m left"
        );
        let unknown = Total {
            files: (1, 2),
            bytes: 2048,
            size: None,
            rate: 1024.0,
        };
        assert_eq!(
            total_text(78, &unknown),
            "total [1/2 files] 2.00 KiB at 1.00 KiB/s"
        );
    }
}
