//! The values options take, shared by the command line ([`crate::cli`], parsed
//! by clap) and the config file ([`crate::config`], read by serde): each type
//! parses itself once for both, and its variants are what shell completion
//! offers.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use serde::Deserialize;

/// `FromStr` for a [`ValueEnum`]: `'x' is not one of a, b, c`.
fn from_value_enum<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        format!("'{s}' is not one of {}", names.join(", "))
    })
}

/// What to do when the final file already exists before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnExists {
    /// Report "already complete" and make no request.
    #[default]
    Skip,
    /// Replace the existing file.
    Overwrite,
    /// Keep the existing file; save as NAME.1.EXT, NAME.2.EXT, ...
    Rename,
    /// Fail that download.
    Fail,
}

impl FromStr for OnExists {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_value_enum(s)
    }
}

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Progress bars.
    Bars,
    /// One line per start, finish, retry and failure.
    Plain,
    /// Nothing but the summary.
    None,
}

impl FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_value_enum(s)
    }
}

/// A number of bytes as users write it: `1048576`, `512K`, `1.5M`, `2G`. A bare
/// `K`, `M` or `G` (as curl, wget and aria2c read it) and `KiB`, `MiB`, `GiB`
/// are powers of 1024; `KB`, `MB`, `GB` are powers of 1000, as the SI says
/// (`10MB` is 10,000,000 bytes, `10MiB` 10,485,760). Case does not matter,
/// and a trailing `/s` is allowed (for rates). Used for sizes and, per
/// second, for rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "'{s}' is not a size: use bytes, or K, M, G (KiB, MiB, GiB) or KB, MB, GB \
                 (powers of 1000), e.g. 512K, 10M"
            )
        };
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix("/s").unwrap_or(&unit).trim_end();
        let power = |exp: u32, binary: bool| {
            if binary {
                1u64 << (10 * exp)
            } else {
                1000u64.pow(exp)
            }
        };
        let factor = match unit {
            "" | "b" => 1,
            _ => {
                let exp = match unit.as_bytes()[0] {
                    b'k' => 1,
                    b'm' => 2,
                    b'g' => 3,
                    b't' => 4,
                    _ => return Err(bad()),
                };
                match &unit[1..] {
                    "" | "i" | "ib" => power(exp, true),
                    "b" => power(exp, false),
                    _ => return Err(bad()),
                }
            }
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("'{s}' is too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// How disk space is reserved for a file of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FileAllocation {
    /// Nothing reserved: the file grows as bytes arrive (sparse when split).
    None,
    /// Sized up front with `ftruncate` (sparse); the free-space check still runs.
    Prealloc,
    /// Blocks reserved with `posix_fallocate` where the filesystem supports it.
    #[default]
    Falloc,
}

impl FromStr for FileAllocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        from_value_enum(s)
    }
}

/// What `--print-paths` / `-0` print between paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintPaths {
    /// One path per line.
    Lines,
    /// NUL after each path.
    Nul,
}

/// Where a download's body goes when `-o` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputName {
    /// `-o -`: the body goes to stdout.
    Stdout,
    /// `-o NAME`: the file name inside the directory.
    File(String),
    /// `-o DIR/NAME`: a name in another directory (relative to `--dir`
    /// unless absolute).
    Path(std::path::PathBuf, String),
    /// `-o /dev/null` and the like: an existing file that is not a regular
    /// one, written into as it is (no partial file, no rename).
    Device(std::path::PathBuf),
}

impl OutputName {
    /// Whether no file is named after the download (`-o -`, `-o /dev/null`):
    /// nothing is created in the directory.
    pub fn is_unnamed(&self) -> bool {
        matches!(self, OutputName::Stdout | OutputName::Device(_))
    }
}

/// One shard of a run: keep the downloads whose URL hashes to `index` modulo
/// `count`. Always `index < count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// Shard `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u64, count: u64) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// K: which shard, from 0.
    pub fn index(self) -> u64 {
        self.index
    }

    /// N: how many shards.
    pub fn count(self) -> u64 {
        self.count
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `--shard` (or the `shard` key) as written: a shard, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// `auto`: from the scheduler's environment.
    Auto,
    /// `K/N`.
    Fixed(Shard),
}

/// A `--shard` value (or `shard` key) that is not `K/N` with `0 <= K < N`,
/// nor `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a shard: {reason}; write K/N with 0 <= K < N (e.g. 0/4 for the first of four), or auto")]
pub struct BadShard {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for ShardArg {
    type Err = BadShard;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = |reason: String| BadShard {
            value: s.to_string(),
            reason,
        };
        let text = s.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(ShardArg::Auto);
        }
        let Some((k, n)) = text.split_once('/') else {
            return Err(malformed("expected K/N or auto".into()));
        };
        let number = |part: &str, name: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| malformed(format!("{name} '{}' is not a whole number", part.trim())))
        };
        let (index, count) = (number(k, "K")?, number(n, "N")?);
        if count == 0 {
            return Err(malformed(
                "N is 0, and there must be at least one shard".into(),
            ));
        }
        Shard::new(index, count)
            .map(ShardArg::Fixed)
            .ok_or_else(|| {
                malformed(format!(
                    "K = {index} is not below N = {count} (shards are numbered 0 to {})",
                    count - 1
                ))
            })
    }
}

impl fmt::Display for ShardArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardArg::Auto => f.write_str("auto"),
            ShardArg::Fixed(shard) => shard.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for ShardArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_unless_si_units_say_otherwise() {
        let b = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(b("1048576"), Ok(1 << 20));
        assert_eq!(b("512K"), Ok(512 << 10));
        assert_eq!(b("512k"), Ok(512 << 10));
        assert_eq!(b("1.5M"), Ok(3 << 19));
        assert_eq!(b("2GiB"), Ok(2 << 30));
        assert_eq!(b("10MiB"), Ok(10_485_760));
        assert_eq!(b("10MB"), Ok(10_000_000));
        assert_eq!(b("10 MB"), Ok(10_000_000));
        assert_eq!(b("2kb"), Ok(2_000));
        assert_eq!(b("1M/s"), Ok(1 << 20));
        assert_eq!(b("1 MB/s"), Ok(1_000_000));
        assert_eq!(b("100B"), Ok(100));
        assert_eq!(b("1T"), Ok(1 << 40));
        assert!(b("abc").unwrap_err().contains("'abc'"));
        for bad in ["10X", "", "1Mx", "1MiBs", "M"] {
            assert!(b(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_k_of_n_and_auto() {
        assert_eq!("auto".parse(), Ok(ShardArg::Auto));
        assert_eq!(
            "2/7".parse(),
            Ok(ShardArg::Fixed(Shard::new(2, 7).unwrap()))
        );
        assert_eq!(
            ShardArg::Fixed(Shard::new(0, 1).unwrap()).to_string(),
            "0/1"
        );
        for bad in ["", "3", "7/7", "8/7", "0/0", "-1/3", "a/3", "1/b", "1/2/3"] {
            let e = bad.parse::<ShardArg>().unwrap_err();
            assert_eq!(e.value, bad, "{e:?}");
            assert!(e.to_string().contains("K/N"), "{e}");
        }
        let e = "7/7".parse::<ShardArg>().unwrap_err().to_string();
        assert!(e.contains("0 to 6"), "{e}");
    }
}
