//! The final summary on stderr: counts, bytes, time, and each failure with its reason.

use std::io::Write;

use super::{human_bytes, human_secs, rate, Reporter};
use crate::events::RunSummary;

/// Prints the summary when the run ends; with `quiet`, only the failures.
#[derive(Debug)]
pub struct SummaryReporter {
    quiet: bool,
}

impl SummaryReporter {
    /// A summary printer.
    pub fn new(quiet: bool) -> Self {
        SummaryReporter { quiet }
    }
}

/// The summary text, one line per entry.
pub fn render(summary: &RunSummary, quiet: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if !quiet && summary.dry_run {
        lines.push(format!(
            "volley: dry run: {} resolved, {} skipped, {} failed; nothing was downloaded",
            summary.planned,
            summary.skipped,
            summary.failures.len(),
        ));
    } else if !quiet {
        lines.push(format!(
            "volley: {} succeeded, {} skipped, {} failed; {} in {} ({})",
            summary.succeeded,
            summary.skipped,
            summary.failures.len(),
            human_bytes(summary.bytes),
            human_secs(summary.elapsed),
            rate(summary.bytes, summary.elapsed),
        ));
    }
    // In input order, whatever order they failed in.
    let mut failures: Vec<_> = summary.failures.iter().collect();
    failures.sort_by_key(|f| f.id);
    for f in failures {
        lines.push(format!("  failed: {}: {}", f.url, f.reason));
    }
    if summary.was_interrupted {
        lines.push(format!(
            "volley: interrupted: {} download(s) stopped with partial data kept, {} not started; run the same command again to resume",
            summary.interrupted, summary.not_started
        ));
    }
    lines
}

impl Reporter for SummaryReporter {
    fn event(&mut self, _event: &crate::events::Event) {}

    fn finish(&mut self, summary: &RunSummary) {
        let mut err = std::io::stderr().lock();
        for line in render(summary, self.quiet) {
            let _ = writeln!(err, "{line}");
        }
    }
}
