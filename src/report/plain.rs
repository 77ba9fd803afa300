//! Plain lines on stderr: one when a download finishes, is retried, fails or
//! is skipped (and, with `-v`, when it starts). Used when stderr is not a
//! terminal.

use std::io::Write;

use super::{human_bytes, human_secs, show_path, Reporter};
use crate::events::Event;

/// Writes one line per event to stderr.
#[derive(Debug, Default)]
pub struct PlainReporter {
    /// `-v`: a line when each download starts too.
    verbose: bool,
}

impl PlainReporter {
    /// A reporter writing to stderr; `verbose` adds the start lines.
    pub fn new(verbose: bool) -> Self {
        PlainReporter { verbose }
    }
}

/// The line for an event, if it has one.
pub fn line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Duplicate { url, path, of, .. } => format!(
            "same     {url}: duplicate of download #{} (saved as {})",
            of + 1,
            show_path(path)
        ),
        Event::Planned {
            final_url,
            status,
            size,
            path,
            action,
            ..
        } => format!(
            "plan     {status:>3} {:>10} {} <- {final_url}: {action}",
            size.map(human_bytes).unwrap_or_else(|| "?".into()),
            path.as_deref().map(show_path).unwrap_or_else(|| "-".into()),
        ),
        Event::Started {
            url,
            path,
            size,
            resumed_from,
            ..
        } => {
            let size = size
                .map(|s| format!(" ({})", human_bytes(s)))
                .unwrap_or_default();
            let resumed = if *resumed_from > 0 {
                format!(", resuming at {}", human_bytes(*resumed_from))
            } else {
                String::new()
            };
            format!("start    {}{size}{resumed} from {url}", show_path(path))
        }
        Event::Finished {
            path,
            bytes,
            transferred,
            elapsed,
            checksum,
            ..
        } => format!(
            "done     {} ({}{} in {}{})",
            show_path(path),
            human_bytes(*bytes),
            // After a resume, what this run fetched as well.
            if transferred < bytes {
                format!(", {} fetched", human_bytes(*transferred))
            } else {
                String::new()
            },
            human_secs(*elapsed),
            checksum
                .as_deref()
                .and_then(|c| c.split('=').next())
                .map(|algo| format!(", {algo} verified"))
                .unwrap_or_default()
        ),
        Event::Retrying {
            url,
            attempt,
            max_attempts,
            reason,
            delay,
            ..
        } => format!(
            "retry    {url}: {reason}; try {attempt} of {max_attempts} in {}",
            human_secs(*delay)
        ),
        Event::Skipped { path, reason, .. } => format!("skipped  {}: {reason}", show_path(path)),
        Event::Failed { url, reason, .. } => format!("failed   {url}: {reason}"),
        Event::HostWindow {
            host,
            window,
            paused: Some(wait),
        } => format!(
            "host     {host} asked for a pause of {}; {window} connection(s) at once",
            human_secs(*wait)
        ),
        Event::HostWindow { paused: None, .. } => return None,
        Event::Interrupted { url, path, .. } => match path {
            Some(p) => format!("stopped  {}: interrupted, partial data kept", show_path(p)),
            None => format!("stopped  {url}: interrupted"),
        },
    })
}

impl Reporter for PlainReporter {
    fn event(&mut self, event: &Event) {
        if matches!(event, Event::Started { .. }) && !self.verbose {
            return;
        }
        if let Some(line) = line(event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}
