//! Names for a batch, planned a download at a time in input order, before
//! each starts: a name unique in the batch for each download, and which
//! downloads are duplicates of an earlier one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use reqwest::Url;

use super::{for_url, for_url_text, Names};
use crate::events::DownloadId;

/// One line of the batch, planned before anything starts: names are reserved
/// for the whole batch in input order, so a name never depends on timing. The
/// spec itself stays in the input until its download starts, so a long list is
/// held once, not twice.
pub enum Planned {
    /// A download, with the name reserved for it.
    Job(Name),
    /// The same URL and name as an earlier download: reported, not fetched.
    Duplicate(Box<(PathBuf, DownloadId)>),
}

/// The name reserved for a download.
pub enum Name {
    /// None: the body goes to stdout.
    Stdout,
    /// The name its URL gives ([`for_url`]), the usual case: worked
    /// out again when the download starts rather than kept for every line.
    FromUrl,
    /// Another name: `out=`, or a numbered name after a clash.
    Given(Box<str>),
}

impl Name {
    /// The name, for the download of `url`; `None` for stdout.
    pub fn resolve(self, url: &Url) -> Option<String> {
        match self {
            Name::Stdout => None,
            Name::FromUrl => Some(for_url(url)),
            Name::Given(n) => Some(n.into()),
        }
    }
}

/// Names for the batch, a download at a time in input order: a name unique
/// in the batch for each, and the directories to create. A URL that comes
/// again with the same `out=` and `dir=` (or none) is a duplicate of the
/// first: downloaded once.
pub struct Planner {
    unnamed: bool,
    /// Keys of the hash earlier downloads are known by, random per run so
    /// that no list can make two downloads look alike.
    keys: [std::hash::RandomState; 2],
    /// Earlier downloads by a 128-bit hash of (URL, `out=`, directory): a
    /// few bytes per line, so a list of 100,000 URLs, or a stream of
    /// millions, does not keep a second copy of every URL.
    seen: HashMap<u128, DownloadId>,
    /// The names of earlier downloads that are not the name their URL gives.
    given: HashMap<DownloadId, Box<str>>,
    /// Downloads per directory, for the listing.
    pub counts: BTreeMap<PathBuf, usize>,
}

impl Planner {
    /// A planner for a batch; `unnamed`: the body goes to stdout or a device
    /// (`-o -`, `-o /dev/null`), no name is needed.
    pub fn new(unnamed: bool) -> Self {
        Planner {
            unnamed,
            keys: Default::default(),
            seen: HashMap::new(),
            given: HashMap::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Plan download `id` of `url` (serialised), with the name `out` the
    /// user gave, if any, into `dir`.
    pub fn plan(
        &mut self,
        id: DownloadId,
        url: &str,
        out: Option<&str>,
        dir: PathBuf,
        names: &Names,
    ) -> Planned {
        use std::hash::BuildHasher;
        let what = (url, out, &dir);
        let key = (u128::from(self.keys[0].hash_one(what)) << 64)
            | u128::from(self.keys[1].hash_one(what));
        if let Some(&of) = self.seen.get(&key) {
            let path = match self.given.get(&of) {
                _ if self.unnamed => PathBuf::from("-"),
                Some(name) => dir.join(&**name),
                None => dir.join(for_url_text(url)),
            };
            return Planned::Duplicate(Box::new((path, of)));
        }
        self.seen.insert(key, id);
        if self.unnamed {
            return Planned::Job(Name::Stdout);
        }
        let (wanted, from_url) = match out {
            Some(out) => (out.to_string(), false),
            None => (for_url_text(url), true),
        };
        let path = names.reserve(&dir, &wanted, false);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| wanted.clone());
        *self.counts.entry(dir).or_insert(0) += 1;
        if from_url && name == wanted {
            return Planned::Job(Name::FromUrl);
        }
        let name: Box<str> = name.into_boxed_str();
        self.given.insert(id, name.clone());
        Planned::Job(Name::Given(name))
    }
}
