//! The resume state file beside a `.part`: the truth about which bytes are on disk.
//!
//! It is written only after the bytes it records were flushed (fdatasync), and
//! atomically (temp file, fsync, rename), so a kill at any instant leaves either the
//! old or the new state, never a torn one. A `.part` without a state file counts as
//! empty.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Format version written into every state file.
pub const STATE_VERSION: u32 = 1;

/// What is known about a partial download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Format version.
    pub version: u32,
    /// The URL the bytes came from.
    pub url: String,
    /// Size of the whole file, when the server said.
    pub size: Option<u64>,
    /// The server's ETag for these bytes.
    pub etag: Option<String>,
    /// The server's Last-Modified for these bytes.
    pub last_modified: Option<String>,
    /// Byte ranges `[start, end)` known to be on disk, sorted, not overlapping.
    pub done: Vec<[u64; 2]>,
    /// The mirror whose ETag and Last-Modified these are, when not `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl ResumeState {
    /// A state with nothing on disk yet.
    pub fn new(url: &str) -> Self {
        ResumeState {
            version: STATE_VERSION,
            url: url.to_string(),
            size: None,
            etag: None,
            last_modified: None,
            done: Vec::new(),
            source: None,
        }
    }

    /// Whether this state describes a download of `url` (recorded with its
    /// password shown as `***`; earlier versions recorded it whole).
    pub fn describes(&self, url: &reqwest::Url) -> bool {
        self.url == crate::display::redact(url) || self.url == url.as_str()
    }

    /// Whether the validators were issued by `source` (the URL, or the
    /// mirror recorded in `source`).
    pub fn is_from(&self, source: &reqwest::Url) -> bool {
        match &self.source {
            Some(s) => *s == crate::display::redact(source) || s == source.as_str(),
            None => self.describes(source),
        }
    }

    /// Length of the prefix `[0, n)` on disk.
    pub fn contiguous(&self) -> u64 {
        match self.done.first() {
            Some([0, end]) => *end,
            _ => 0,
        }
    }

    /// Record that `[0, n)` is on disk.
    pub fn set_contiguous(&mut self, n: u64) {
        self.done = if n == 0 { Vec::new() } else { vec![[0, n]] };
    }

    /// Record that `[start, end)` is on disk, keeping `done` sorted and merged.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        let mut merged = Vec::with_capacity(self.done.len() + 1);
        let mut placed = false;
        for &[s, e] in &self.done {
            if e < start {
                merged.push([s, e]);
            } else if s > end {
                if !placed {
                    merged.push([start, end]);
                    placed = true;
                }
                merged.push([s, e]);
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        if !placed {
            merged.push([start, end]);
        }
        self.done = merged;
    }

    /// Bytes on disk in all.
    pub fn covered(&self) -> u64 {
        self.done.iter().map(|[s, e]| e - s).sum()
    }

    /// Whether `done` is more than a prefix `[0, n)`: only ranged requests can fill it.
    pub fn has_holes(&self) -> bool {
        !matches!(self.done.as_slice(), [] | [[0, _]])
    }

    /// The ranges `[start, end)` of a file of `size` bytes not on disk.
    pub fn gaps(&self, size: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = 0;
        for &[s, e] in &self.done {
            if s > at {
                gaps.push((at, s.min(size)));
            }
            at = at.max(e);
        }
        if at < size {
            gaps.push((at, size));
        }
        gaps.retain(|(s, e)| s < e);
        gaps
    }

    /// The value for `If-Range`: a strong ETag, else Last-Modified.
    pub fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// The state file that belongs to a `.part` file.
    pub fn path_for(part: &Path) -> PathBuf {
        super::naming::state_path(part)
    }

    /// Read a state file; `None` when missing, unreadable or of another version.
    pub fn load(path: &Path) -> Option<Self> {
        let text = std::fs::read(path).ok()?;
        let state: ResumeState = serde_json::from_slice(&text).ok()?;
        (state.version == STATE_VERSION).then_some(state)
    }

    /// Write atomically and durably: temp file, fsync, rename.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::fs::replace_private(&super::naming::state_tmp_path(path), path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.part.volley");
        let mut s = ResumeState::new("http://h/f");
        s.etag = Some("\"e\"".into());
        s.set_contiguous(42);
        s.save(&path).unwrap();
        let loaded = ResumeState::load(&path).unwrap();
        assert_eq!(loaded, s);
        assert_eq!(loaded.contiguous(), 42);
        assert_eq!(loaded.if_range(), Some("\"e\""));
    }

    #[test]
    fn weak_etag_falls_back_to_last_modified() {
        let mut s = ResumeState::new("u");
        s.etag = Some("W/\"e\"".into());
        assert_eq!(s.if_range(), None);
        s.last_modified = Some("Tue, 24 Nov 2026 10:00:00 GMT".into());
        assert_eq!(s.if_range(), Some("Tue, 24 Nov 2026 10:00:00 GMT"));
    }

    #[test]
    fn ranges_merge_and_gaps_are_their_complement() {
        let mut s = ResumeState::new("u");
        s.add(10, 20);
        s.add(30, 40);
        s.add(0, 5);
        assert_eq!(s.done, vec![[0, 5], [10, 20], [30, 40]]);
        assert!(s.has_holes());
        assert_eq!(s.gaps(50), vec![(5, 10), (20, 30), (40, 50)]);
        s.add(15, 32);
        assert_eq!(s.done, vec![[0, 5], [10, 40]]);
        s.add(5, 10);
        assert_eq!(s.done, vec![[0, 40]]);
        assert!(!s.has_holes());
        assert_eq!(s.contiguous(), 40);
        assert_eq!(s.covered(), 40);
        s.add(40, 50);
        assert_eq!(s.done, vec![[0, 50]]);
        assert!(s.gaps(50).is_empty());
        let mut t = ResumeState::new("u");
        t.add(7, 9);
        assert_eq!(t.contiguous(), 0);
        assert_eq!(t.gaps(9), vec![(0, 7)]);
    }

    #[test]
    fn corrupt_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(ResumeState::load(&path).is_none());
    }
}
