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

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::PART_SUFFIX;

/// The names in each output directory at the start of the run.
#[derive(Debug, Default)]
pub struct Listing(HashMap<PathBuf, HashSet<u64>>);

fn key(name: &OsStr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl Listing {
    /// Read each directory once (blocking); one that cannot be read is left
    /// out, so its files get the real lookups.
    pub fn read<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut listing = HashMap::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let names: Result<HashSet<u64>, _> =
                entries.map(|e| e.map(|e| key(&e.file_name()))).collect();
            if let Ok(names) = names {
                listing.insert(dir.to_path_buf(), names);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_absent_with_their_part_are_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("done.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("half.bin.part"), b"x").unwrap();
        let listing = Listing::read([dir.path()]);
        assert!(listing.is_new(dir.path(), "fresh.bin"));
        assert!(!listing.is_new(dir.path(), "done.bin"));
        assert!(!listing.is_new(dir.path(), "half.bin"));
        // A directory that was not read is never assumed empty.
        assert!(!listing.is_new(Path::new("/no/such/dir"), "fresh.bin"));
        let unread = Listing::read([Path::new("/no/such/dir")]);
        assert!(!unread.is_new(Path::new("/no/such/dir"), "fresh.bin"));
    }
}
