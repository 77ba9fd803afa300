//! What the output directories held when the run started, read once per
//! directory, so that a batch of new files costs no lookup per file.
//!
//! Before a download starts, volley looks for its final file (`--on-exists`),
//! its `.part` and its state file (resume). For thousands of new files those
//! lookups all miss, and each miss takes the directory's lock against the
//! files being created beside it. A name missing from the listing is known to
//! be new; a name in it (or a directory that could not be read) gets the real
//! lookups. Names are kept as 64-bit hashes: a collision only costs the real
//! lookup.
//!
//! Reading a listing costs a little per entry, a lookup a little more per
//! download, so a directory is listed only for a batch of [`MIN_BATCH`]
//! downloads or more, and given up (real lookups again) when it holds more
//! than [`ENTRIES_PER_DOWNLOAD`] entries per download going there: one file
//! fetched into a directory of 100,000 costs two lookups, not a listing.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::PART_SUFFIX;

/// Fewest downloads into a directory for it to be listed.
pub const MIN_BATCH: usize = 32;

/// Most entries read per download into the directory before its listing is
/// given up.
pub const ENTRIES_PER_DOWNLOAD: usize = 8;

/// The names in each output directory at the start of the run.
#[derive(Debug, Default)]
pub struct Listing(HashMap<PathBuf, HashSet<u64>>);

fn key(name: &OsStr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl Listing {
    /// Read each directory once (blocking), given with the number of
    /// downloads going there. A directory with fewer than [`MIN_BATCH`]
    /// downloads, with more than [`ENTRIES_PER_DOWNLOAD`] entries per
    /// download, or that cannot be read is left out: its files get the real
    /// lookups.
    pub fn read<'a>(dirs: impl IntoIterator<Item = (&'a Path, usize)>) -> Self {
        let listing = dirs
            .into_iter()
            .filter(|&(_, downloads)| downloads >= MIN_BATCH)
            .filter_map(|(dir, downloads)| {
                let most = downloads.saturating_mul(ENTRIES_PER_DOWNLOAD);
                Some((dir.to_path_buf(), names_in(dir, most)?))
            })
            .collect();
        Listing(listing)
    }

    /// Whether neither `dir/name` nor its `.part` existed at the start (and so
    /// neither has a state file worth reading). `false` when not known.
    pub fn is_new(&self, dir: &Path, name: &str) -> bool {
        let Some(names) = self.0.get(dir) else {
            return false;
        };
        let part = format!("{name}{PART_SUFFIX}");
        !names.contains(&key(OsStr::new(name))) && !names.contains(&key(OsStr::new(&part)))
    }
}

/// The hashed names in `dir`, or `None` when it holds more than `most`
/// entries or cannot be read.
fn names_in(dir: &Path, most: usize) -> Option<HashSet<u64>> {
    let mut names = HashSet::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        if names.len() == most {
            return None;
        }
        names.insert(key(&entry.file_name()));
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_absent_with_their_part_are_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("done.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("half.bin.part"), b"x").unwrap();
        let listing = Listing::read([(dir.path(), MIN_BATCH)]);
        assert!(listing.is_new(dir.path(), "fresh.bin"));
        assert!(!listing.is_new(dir.path(), "done.bin"));
        assert!(!listing.is_new(dir.path(), "half.bin"));
        // A directory that was not read is never assumed empty.
        assert!(!listing.is_new(Path::new("/no/such/dir"), "fresh.bin"));
        let unread = Listing::read([(Path::new("/no/such/dir"), MIN_BATCH)]);
        assert!(!unread.is_new(Path::new("/no/such/dir"), "fresh.bin"));
    }

    #[test]
    fn small_batches_and_crowded_directories_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let few = Listing::read([(dir.path(), MIN_BATCH - 1)]);
        assert!(!few.is_new(dir.path(), "fresh.bin"));
        for i in 0..=MIN_BATCH * ENTRIES_PER_DOWNLOAD {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        let crowded = Listing::read([(dir.path(), MIN_BATCH)]);
        assert!(!crowded.is_new(dir.path(), "fresh.bin"));
        let enough = Listing::read([(dir.path(), MIN_BATCH * 2)]);
        assert!(enough.is_new(dir.path(), "fresh.bin"));
        assert!(!enough.is_new(dir.path(), "f0"));
    }
}
