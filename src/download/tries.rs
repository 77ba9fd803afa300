//! What a download keeps across its tries: where it goes, what is on disk,
//! which sources failed, what went to stdout, and the retry budget spent.

use std::path::PathBuf;
use std::sync::Arc;

use super::ratelimit::Limits;
use super::state::ResumeState;
use crate::checksum;
use crate::events::Progress;

/// What a download keeps across its tries.
#[derive(Debug)]
pub struct Tries {
    /// The final path once decided.
    pub final_path: Option<PathBuf>,
    /// Whether the name came from a response (no longer provisional).
    pub name_settled: bool,
    /// What is on disk, for a resumed request.
    pub resume: Option<ResumeState>,
    /// A state file exists on disk for this download.
    pub state_on_disk: bool,
    /// The `Started` event went out.
    pub started: bool,
    /// Failed tries charged to the retry budget so far.
    pub failed: u32,
    /// Checksum mismatches so far (one more try from scratch after the first).
    pub checksum_failures: u32,
    /// The sources of the file and how they fared.
    pub sources: Sources,
    /// What went to stdout (`-o -`).
    pub stdout: Stdout,
    /// `-N`: the existing final file's mtime and size, to ask the server
    /// whether it has anything newer.
    pub local: Option<(std::time::SystemTime, u64)>,
    /// The server's Last-Modified of the body being saved.
    pub last_modified: Option<String>,
    /// The free-space check was done.
    pub space_checked: bool,
    /// This download's rate limits, once known.
    pub limits: Option<Limits>,
    /// Live counters.
    pub progress: Arc<Progress>,
}

/// The URL and its mirrors, as tries use them.
#[derive(Debug, Default)]
pub struct Sources {
    /// The source (0: the URL, then its mirrors) the next try uses.
    pub current: usize,
    /// Sources given up on (an error another try would not fix, or a size
    /// that disagrees).
    pub abandoned: Vec<usize>,
    /// Sources that failed since the last retry was spent.
    pub failed_this_round: Vec<usize>,
    /// The source whose error ended the last try, when not `current` (a
    /// mirror connection of a split download).
    pub blame: Option<usize>,
}

/// A body written to stdout (`-o -`) over several tries.
#[derive(Debug, Default)]
pub struct Stdout {
    /// Bytes already written.
    pub written: u64,
    /// The hash of what was written, when a checksum is verified.
    pub verify: Option<checksum::Verifier>,
}

impl Tries {
    /// State of a download before its first try.
    pub fn new() -> Self {
        Tries {
            final_path: None,
            name_settled: false,
            resume: None,
            state_on_disk: false,
            started: false,
            failed: 0,
            checksum_failures: 0,
            sources: Sources::default(),
            stdout: Stdout::default(),
            local: None,
            last_modified: None,
            space_checked: false,
            limits: None,
            progress: Progress::new(),
        }
    }
}

impl Default for Tries {
    fn default() -> Self {
        Self::new()
    }
}
