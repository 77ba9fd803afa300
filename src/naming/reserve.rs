//! Names taken in this run, so two downloads never share one, nor a file:
//! reserving a name reserves every path its download may create.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{family, hash64, numbered};

/// File names taken in this run, so two downloads never share one.
#[derive(Debug, Default)]
pub struct Names(Mutex<NameTable>);

#[derive(Debug, Default)]
struct NameTable {
    /// Hashes of the paths taken, four per name (the file, its partial file,
    /// state file and temporary): a few dozen bytes per name, so a list of
    /// millions stays small. Two paths sharing a hash (about one chance in
    /// 10^9 for a million names) would only give the second a numbered name.
    taken: HashSet<u64>,
    /// Per wanted path (by hash) asked for more than once, the number to try
    /// next, so that many downloads wanting one name cost one probe each.
    next: HashMap<u64, usize>,
}

/// The hash a path is known by in [`NameTable`].
fn path_key(path: &Path) -> u64 {
    hash64(&path)
}

impl Names {
    /// Reserve `dir/name`, or the first free `dir/name.N.ext`. A name is free
    /// when none of the paths its download may create ([`family`]:
    /// the file, its `.part`, state file and temporary) is one another
    /// download of the batch may create. With `avoid_existing`, names of files
    /// already on disk are passed over too.
    pub fn reserve(&self, dir: &Path, name: &str, avoid_existing: bool) -> PathBuf {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = dir.join(name);
        let wanted_key = path_key(&wanted);
        let mut n = table.next.get(&wanted_key).copied().unwrap_or(0);
        let candidate = |n: usize| match n {
            0 => wanted.clone(),
            n => dir.join(numbered(name, n)),
        };
        let mut path = candidate(n);
        while table.clashes(&path) || avoid_existing && path.symlink_metadata().is_ok() {
            n += 1;
            path = candidate(n);
        }
        if n > 0 {
            table.next.insert(wanted_key, n + 1);
        }
        for p in family(&path) {
            table.taken.insert(path_key(&p));
        }
        path
    }
}

impl NameTable {
    /// Whether a download to `path` would create a path another one may.
    fn clashes(&self, path: &Path) -> bool {
        family(path)
            .iter()
            .any(|p| self.taken.contains(&path_key(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_in_order_and_stay_cheap() {
        let names = Names::default();
        let dir = Path::new("d");
        assert_eq!(names.reserve(dir, "f.bin", false), dir.join("f.bin"));
        assert_eq!(names.reserve(dir, "f.bin", false), dir.join("f.1.bin"));
        assert_eq!(names.reserve(dir, "f.1.bin", false), dir.join("f.1.1.bin"));
        assert_eq!(names.reserve(dir, "f.bin", false), dir.join("f.2.bin"));
        assert_eq!(
            names.reserve(Path::new("e"), "f.bin", false),
            Path::new("e/f.bin")
        );
        // A name that is another download's partial or state file, or whose
        // partial file is another download's name, is numbered.
        assert_eq!(
            names.reserve(dir, "f.bin.part", false),
            dir.join("f.bin.1.part")
        );
        assert_eq!(
            names.reserve(dir, "f.bin.part.volley", false),
            dir.join("f.bin.part.1.volley")
        );
        assert_eq!(names.reserve(dir, "g.part", false), dir.join("g.part"));
        assert_eq!(names.reserve(dir, "g", false), dir.join("g.1"));
        // 100,000 downloads wanting one name: linear, not quadratic.
        for _ in 0..100_000 {
            names.reserve(dir, "index.html", false);
        }
        assert_eq!(
            names.reserve(dir, "index.html", false),
            dir.join("index.100000.html")
        );
    }
}
