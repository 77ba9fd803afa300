//! Exit codes, in one place. Documented in README.md and `--help`.

use crate::events::RunSummary;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every download succeeded or was already complete.
    Success = 0,
    /// At least one download failed.
    Failure = 1,
    /// Usage, input or config error; nothing was downloaded.
    Usage = 2,
    /// Interrupted by SIGINT/SIGTERM; partial data kept.
    Interrupted = 130,
}

impl ExitStatus {
    /// The status a finished run maps to.
    pub fn from_summary(summary: &RunSummary) -> Self {
        if summary.was_interrupted {
            ExitStatus::Interrupted
        } else if !summary.failures.is_empty() {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }

    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}
