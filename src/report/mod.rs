//! Reporting: renderers fed by the core's events on a thread of their own, so
//! nothing on the download path waits for a terminal or a pipe.
//!
//! Each renderer implements [`Reporter`]: progress bars, plain lines, JSON Lines
//! and the final summary.

pub mod bars;
pub mod json;
pub mod paths;
pub mod plain;
pub mod summary;
pub mod terminal;

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::events::{Event, EventReceiver, RunSummary};
use crate::options::ProgressMode;

/// How often reporters sample the live counters.
pub const TICK: Duration = Duration::from_millis(100);

/// One way of showing what happens.
pub trait Reporter: Send {
    /// Something happened.
    fn event(&mut self, event: &Event);
    /// Time passed: sample the counters of active downloads.
    fn tick(&mut self, _now: Instant) {}
    /// The run ended.
    fn finish(&mut self, _summary: &RunSummary) {}
}

/// The reporters the settings ask for. `total` is the number of downloads.
pub fn for_settings(settings: &Settings, total: usize) -> Vec<Box<dyn Reporter>> {
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if settings.json {
        reporters.push(Box::new(json::JsonReporter::new()));
    }
    if let Some(mode) = settings.print_paths {
        reporters.push(Box::new(paths::PathsReporter::new(mode)));
    }
    let mode = progress_mode(
        settings.progress,
        settings.quiet,
        settings.json,
        terminal::stderr_can_draw(),
    );
    match mode {
        ProgressMode::Bars => reporters.push(Box::new(bars::BarsReporter::new(total))),
        ProgressMode::Plain => {
            reporters.push(Box::new(plain::PlainReporter::new(settings.verbose)))
        }
        ProgressMode::None | ProgressMode::Auto => {}
    }
    reporters.push(Box::new(summary::SummaryReporter::new(settings.quiet)));
    reporters
}

/// How progress is shown, given what was asked for (`--progress`, `--quiet`,
/// `--json`) and whether stderr is a terminal that can draw bars (see
/// [`terminal::stderr_can_draw`]). Bars are only ever drawn where they can be:
/// elsewhere (a file, a pipe, `TERM=dumb`) even `--progress bars` gets plain
/// lines, never escape codes.
pub fn progress_mode(asked: ProgressMode, quiet: bool, json: bool, can_draw: bool) -> ProgressMode {
    match asked {
        _ if quiet => ProgressMode::None,
        // --json on stdout and a terminal on stderr: bars there, as usual.
        ProgressMode::Auto if json && !can_draw => ProgressMode::None,
        ProgressMode::Auto | ProgressMode::Bars if can_draw => ProgressMode::Bars,
        ProgressMode::Auto | ProgressMode::Bars => ProgressMode::Plain,
        mode => mode,
    }
}

/// How often the reporter thread takes the events sent since its last look.
pub const DRAIN: Duration = Duration::from_millis(20);

/// Run the reporters on their own thread until every sender is gone; the thread
/// hands them back for [`Reporter::finish`].
///
/// The thread does not block on the channel: it takes what arrived every
/// [`DRAIN`] (or when unparked at the end of the run), so sending an event never
/// wakes a thread, however many downloads finish per second.
pub fn spawn(
    mut reporters: Vec<Box<dyn Reporter>>,
    rx: EventReceiver,
) -> JoinHandle<Vec<Box<dyn Reporter>>> {
    std::thread::spawn(move || {
        let mut next_tick = Instant::now() + TICK;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(event) => reporters.iter_mut().for_each(|r| r.event(&event)),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return reporters,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                reporters.iter_mut().for_each(|r| r.tick(now));
                next_tick = now + TICK;
            }
            std::thread::park_timeout(DRAIN.min(next_tick.saturating_duration_since(now)));
        }
    })
}

/// A path as users see it.
pub fn show_path(path: &Path) -> String {
    let text = path.display().to_string();
    text.strip_prefix("./").map(str::to_string).unwrap_or(text)
}

pub use crate::display::{human_bytes, human_duration as human_secs};

/// Bytes per second over `elapsed`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".into();
    }
    crate::display::human_rate(bytes as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_where_they_can_be_drawn() {
        use ProgressMode::*;
        // (asked, quiet, json, can_draw) -> shown
        for (asked, quiet, json, can_draw, shown) in [
            (Auto, false, false, true, Bars),
            (Auto, false, false, false, Plain),
            (Bars, false, false, false, Plain),
            (Bars, false, true, true, Bars),
            (Auto, false, true, true, Bars),
            (Auto, false, true, false, None),
            (Plain, false, false, true, Plain),
            (None, false, false, true, None),
            (Bars, true, false, true, None),
        ] {
            assert_eq!(
                progress_mode(asked, quiet, json, can_draw),
                shown,
                "{asked:?} quiet={quiet} json={json} can_draw={can_draw}"
            );
        }
    }

    #[test]
    fn sizes_and_speeds_read_as_binary_units() {
        assert_eq!(human_bytes(256 * 1024), "256 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
        assert_eq!(rate(2 * 1024 * 1024, Duration::from_secs(2)), "1.00 MiB/s");
        assert_eq!(rate(1, Duration::ZERO), "-");
    }
}
