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
//!
//! A listing answers for exact names only, so it is used only on filesystems
//! known to compare names byte for byte ([`exact_names`]): on a
//! case-insensitive one (FAT, exFAT, NTFS, SMB, an ext4 or tmpfs directory
//! with casefolding) `File.bin` on disk is the download `file.bin`, and only
//! the real lookup sees it.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::part_name;

/// Fewest downloads into a directory for it to be listed.
pub const MIN_BATCH: usize = 32;

/// Most entries read per download into the directory before its listing is
/// given up.
pub const ENTRIES_PER_DOWNLOAD: usize = 8;

/// The names in each output directory at the start of the run.
#[derive(Debug, Default)]
pub struct Listing(HashMap<PathBuf, HashSet<u64>>);

fn key(name: &OsStr) -> u64 {
    super::hash64(&name)
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
        let part = part_name(OsStr::new(name));
        !names.contains(&key(OsStr::new(name))) && !names.contains(&key(&part))
    }
}

/// The hashed names in `dir`, or `None` when it holds more than `most`
/// entries, cannot be read, or may match names other than byte for byte.
fn names_in(dir: &Path, most: usize) -> Option<HashSet<u64>> {
    if !exact_names(dir) {
        return None;
    }
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

/// Whether `dir` is on a filesystem known to match names byte for byte:
/// tmpfs, ext2/3/4, XFS, Btrfs, F2FS, ZFS or overlayfs, and, where the
/// filesystem can fold case per directory (ext4, F2FS, tmpfs), not folding
/// it in this one. Anything else, or not knowing, is `false`.
#[cfg(target_os = "linux")]
fn exact_names(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    const TMPFS: i64 = 0x0102_1994;
    const EXT: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const F2FS: i64 = 0xF2F5_2010;
    const ZFS: i64 = 0x2FC1_2FC1;
    const OVERLAY: i64 = 0x794C_7630;
    /// `_IOR('f', 1, long)`.
    #[cfg(target_pointer_width = "64")]
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    #[cfg(target_pointer_width = "32")]
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8004_6601;
    const FS_CASEFOLD_FL: libc::c_long = 0x4000_0000;

    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `fs` a writable statfs.
    if unsafe { libc::statfs(path.as_ptr(), &mut fs) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between platforms
    let kind = fs.f_type as i64;
    match kind {
        XFS | BTRFS | ZFS | OVERLAY => true,
        TMPFS | EXT | F2FS => {
            let Ok(d) = std::fs::File::open(dir) else {
                return false;
            };
            let mut flags: libc::c_long = 0;
            // SAFETY: FS_IOC_GETFLAGS writes one long through the pointer.
            let ok = unsafe { libc::ioctl(d.as_raw_fd(), FS_IOC_GETFLAGS as _, &mut flags) } == 0;
            // Not knowing the flags (an old tmpfs answers ENOTTY) means no casefolding
            // was asked for: tmpfs folds case only on a directory that has the flag.
            (ok && flags & FS_CASEFOLD_FL == 0)
                || (!ok
                    && kind == TMPFS
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTTY))
        }
        _ => false,
    }
}

/// Elsewhere a listing is never trusted (case-insensitive filesystems are the
/// default on macOS).
#[cfg(not(target_os = "linux"))]
fn exact_names(_dir: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_absent_with_their_part_are_new() {
        let dir = tempfile::tempdir().unwrap();
        // Where names may match other than byte for byte, nothing is ever new.
        let exact = exact_names(dir.path());
        std::fs::write(dir.path().join("done.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("half.bin.part"), b"x").unwrap();
        let listing = Listing::read([(dir.path(), MIN_BATCH)]);
        assert_eq!(listing.is_new(dir.path(), "fresh.bin"), exact);
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
        let exact = exact_names(dir.path());
        let few = Listing::read([(dir.path(), MIN_BATCH - 1)]);
        assert!(!few.is_new(dir.path(), "fresh.bin"));
        for i in 0..=MIN_BATCH * ENTRIES_PER_DOWNLOAD {
            std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
        }
        let crowded = Listing::read([(dir.path(), MIN_BATCH)]);
        assert!(!crowded.is_new(dir.path(), "fresh.bin"));
        let enough = Listing::read([(dir.path(), MIN_BATCH * 2)]);
        assert_eq!(enough.is_new(dir.path(), "fresh.bin"), exact);
        assert!(!enough.is_new(dir.path(), "f0"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn case_sensitive_linux_filesystems_are_exact_and_unknown_ones_are_not() {
        // The test directory's filesystem here is ext4 or tmpfs without
        // casefolding; /proc is neither, so it is never trusted.
        let dir = tempfile::tempdir().unwrap();
        assert!(
            exact_names(dir.path()),
            "tempdir on an unexpected filesystem"
        );
        assert!(!exact_names(Path::new("/proc")));
        assert!(!exact_names(Path::new("/no/such/dir")));
    }
}
