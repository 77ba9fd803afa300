//! What a download keeps across its tries: where it goes, what is on disk,
//! which sources failed, what went to stdout, and the retry budget spent.

use std::path::PathBuf;
use std::sync::Arc;

use super::ratelimit::Limits;
use super::state::ResumeState;
use super::DownloadError;
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
    /// The furthest byte of the file any try reached: a stalled try is free
    /// only when it got past it.
    pub furthest: u64,
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
    /// A try ended at byte `end` of the file with `e`: a stall is free
    /// ([`DownloadError::Stalled`]'s `further`) when `end` is past every
    /// earlier try's end.
    pub fn ended_at(&mut self, e: DownloadError, end: u64) -> DownloadError {
        match e {
            DownloadError::Stalled { after, host, .. } => {
                let further = end > self.furthest;
                self.furthest = self.furthest.max(end);
                DownloadError::Stalled {
                    after,
                    host,
                    further,
                }
            }
            e => {
                self.furthest = self.furthest.max(end);
                e
            }
        }
    }

    /// State of a download before its first try.
    pub fn new() -> Self {
        Tries {
            final_path: None,
            name_settled: false,
            resume: None,
            state_on_disk: false,
            started: false,
            failed: 0,
            furthest: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled() -> DownloadError {
        DownloadError::Stalled {
            after: std::time::Duration::from_secs(3),
            host: "h".into(),
            further: false,
        }
    }

    fn further(e: &DownloadError) -> bool {
        matches!(e, DownloadError::Stalled { further: true, .. })
    }

    #[test]
    fn a_stall_is_free_only_past_every_earlier_end() {
        let mut t = Tries::new();
        assert!(further(&t.ended_at(stalled(), 100)));
        // Started over and stalled at the same place, or before it.
        assert!(!further(&t.ended_at(stalled(), 100)));
        assert!(!further(&t.ended_at(stalled(), 50)));
        // Another failure that got further moves the mark too.
        t.ended_at(DownloadError::Network("reset".into()), 300);
        assert!(!further(&t.ended_at(stalled(), 250)));
        assert!(further(&t.ended_at(stalled(), 301)));
        let text = t.ended_at(stalled(), 400).to_string();
        assert!(text.contains("not counted"), "{text}");
        assert!(t
            .ended_at(stalled(), 10)
            .to_string()
            .ends_with("trying again"));
    }
}
