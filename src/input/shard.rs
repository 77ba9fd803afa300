//! Sharding (`--shard K/N`, `--shard auto`): keep only the downloads whose URL
//! hashes to shard K of N, so that N independent processes given the same input
//! split it with no overlap and no gap. (Which shard this run is, from the flags
//! or a batch scheduler's environment, is [`crate::config::shard`]'s business.)
//!
//! The hash is FNV-1a, 64 bits, over the bytes of the URL exactly as the `url`
//! crate serialises it after parsing (`Url::as_str`), and the shard is
//! `hash % N`. It is written out here, not taken from a crate, because it is a
//! promise: the same URL lands in the same shard on every run, version and
//! platform, and the tests pin literal values. The same URL given twice lands
//! in one shard, so duplicate detection still works inside that shard.

use reqwest::Url;

use super::{DownloadSpec, Queued};
pub use crate::options::Shard;

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard (of `count`) that `url` belongs to: FNV-1a 64 of its serialised
/// form, modulo `count`. `count` must be at least 1.
pub fn shard_of(url: &Url, count: u64) -> u64 {
    shard_of_text(url.as_str(), count)
}

/// [`shard_of`] for a URL already serialised by the `url` crate.
pub fn shard_of_text(url: &str, count: u64) -> u64 {
    fnv1a64(url.as_bytes()) % count
}

/// What a shard is chosen by: the download's first URL, serialised.
pub trait ShardKey {
    /// The URL as the `url` crate serialises it.
    fn shard_url(&self) -> &str;
}

impl ShardKey for DownloadSpec {
    fn shard_url(&self) -> &str {
        self.url.as_str()
    }
}

impl ShardKey for Queued {
    fn shard_url(&self) -> &str {
        self.url()
    }
}

impl Shard {
    /// Whether the download of `url` belongs to this shard.
    pub fn contains(self, url: &Url) -> bool {
        shard_of(url, self.count()) == self.index()
    }

    /// The specs of this shard, in input order. A spec is placed by its first
    /// URL (mirrors do not move it).
    pub fn select<T: ShardKey>(self, specs: Vec<T>) -> Vec<T> {
        specs.into_iter().filter(|spec| self.holds(spec)).collect()
    }

    /// Whether a spec belongs to this shard (by its first URL).
    pub fn holds<T: ShardKey>(self, spec: &T) -> bool {
        shard_of_text(spec.shard_url(), self.count()) == self.index()
    }
}

/// The specs to run: all of them without a shard, else the shard's.
pub fn keep<T: ShardKey>(shard: Option<Shard>, specs: Vec<T>) -> Vec<T> {
    match shard {
        Some(shard) => shard.select(specs),
        None => specs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn urls_are_hashed_as_serialised() {
        // Parsing normalises: the scheme and host are lower-cased and an empty
        // path becomes '/', so these are one URL and one shard.
        let a = url("HTTP://Example.ORG");
        let b = url("http://example.org/");
        assert_eq!(a.as_str(), "http://example.org/");
        assert_eq!(shard_of(&a, 1000), shard_of(&b, 1000));
        assert_eq!(fnv1a64(a.as_str().as_bytes()), 0x7e1d_aa65_3c6c_e8b4);
    }

    #[test]
    fn every_url_is_in_exactly_one_shard() {
        let n = 5;
        for i in 0..500 {
            let u = url(&format!("https://h{}.example/f/{i}.bin", i % 7));
            let owners = (0..n)
                .filter(|&k| Shard::new(k, n).unwrap().contains(&u))
                .count();
            assert_eq!(owners, 1, "{u}");
        }
    }
}
