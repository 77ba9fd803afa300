//! Checksums: the algorithms (aria2c's names), expected digests from the user,
//! from checksum files (`sha256sum`, `sha512sum`, `b2sum`, BSD style) and from the
//! server (`Repr-Digest`, RFC 9530, and the older `Digest`), and an incremental
//! hasher fed as the file's contiguous prefix grows. Hex is the `hex` crate's,
//! base64 the `base64` crate's, and `Repr-Digest` is read as the RFC 9651
//! structured field it is by `sfv`.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use sfv::visitor::{DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor};
use sfv::{BareItemFromInput, KeyRef};
use sha2::Digest as _;

/// A hash algorithm volley can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    /// MD5 (only as good as the server that published it).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE2b-512, as `b2sum` prints.
    Blake2b,
    /// BLAKE3.
    Blake3,
}

impl Algo {
    /// aria2c's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha-1",
            Algo::Sha256 => "sha-256",
            Algo::Sha512 => "sha-512",
            Algo::Blake2b => "blake2b",
            Algo::Blake3 => "blake3",
        }
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algo::Md5 => 16,
            Algo::Sha1 => 20,
            Algo::Sha256 | Algo::Blake3 => 32,
            Algo::Sha512 | Algo::Blake2b => 64,
        }
    }

    /// Stronger algorithms first, to pick one of several offered.
    pub fn strength(self) -> u8 {
        match self {
            Algo::Md5 => 0,
            Algo::Sha1 => 1,
            Algo::Sha256 => 3,
            Algo::Blake3 => 4,
            Algo::Sha512 | Algo::Blake2b => 5,
        }
    }
}

impl FromStr for Algo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "md5" => Ok(Algo::Md5),
            "sha1" => Ok(Algo::Sha1),
            "sha256" => Ok(Algo::Sha256),
            "sha512" => Ok(Algo::Sha512),
            "blake2b" | "blake2b512" | "b2" => Ok(Algo::Blake2b),
            "blake3" => Ok(Algo::Blake3),
            _ => Err(format!(
                "unknown checksum algorithm '{s}' (sha-256, sha-512, sha-1, md5, blake2b, blake3)"
            )),
        }
    }
}

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// The algorithm.
    pub algo: Algo,
    /// The digest bytes.
    pub digest: Vec<u8>,
}

impl Checksum {
    /// A checksum from an algorithm and a hex digest of the right length.
    pub fn from_hex(algo: Algo, hex: &str) -> Result<Self, String> {
        let digest = hex::decode(hex.trim()).map_err(|_| format!("'{hex}' is not a hex digest"))?;
        if digest.len() != algo.digest_len() {
            return Err(format!(
                "a {} digest has {} hex digits, '{hex}' has {}",
                algo.name(),
                algo.digest_len() * 2,
                hex.trim().len()
            ));
        }
        Ok(Checksum { algo, digest })
    }
}

/// `ALGO=HEX`, aria2c's `--checksum` spelling.
impl FromStr for Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not of the form ALGO=HEX (e.g. sha-256=9f86...)"))?;
        Checksum::from_hex(algo.trim().parse()?, hex)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.algo.name(), hex::encode(&self.digest))
    }
}

/// The strongest supported digest a server sent in `Repr-Digest`
/// (`sha-256=:BASE64:`) or `Digest` (`SHA-256=BASE64`).
pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Checksum> {
    // Of equally strong digests the last is taken, so `Digest` after `Repr-Digest`.
    repr_digest(headers)
        .into_iter()
        .chain(legacy_digest(headers))
        .max_by_key(|c| c.algo.strength())
}

/// A server's digest, if volley knows the algorithm and the length is right.
fn server_digest(algo: &str, digest: Vec<u8>) -> Option<Checksum> {
    let algo: Algo = algo.trim().parse().ok()?;
    (digest.len() == algo.digest_len()).then_some(Checksum { algo, digest })
}

/// `Repr-Digest` (RFC 9530): a structured-field Dictionary of algorithm keys
/// and Byte Sequence values, its field lines joined by commas before parsing
/// (RFC 9651 §4.2). A field that does not parse is ignored whole, as RFC 9651
/// asks; so are members of unknown algorithms or of other types.
fn repr_digest(headers: &reqwest::header::HeaderMap) -> Vec<Checksum> {
    let mut field = Vec::new();
    for line in headers
        .get_all("repr-digest")
        .iter()
        .filter(|l| !l.is_empty())
    {
        if !field.is_empty() {
            field.extend_from_slice(b", ");
        }
        field.extend_from_slice(line.as_bytes());
    }
    let Ok(ReprDigest(members)) = sfv::Parser::new(&field).parse_dictionary::<ReprDigest>() else {
        return Vec::new();
    };
    members
        .into_iter()
        .filter_map(|(algo, digest)| server_digest(algo, digest?))
        .collect()
}

/// The members of a `Repr-Digest` dictionary in order: each key, and its value
/// when that is a Byte Sequence.
#[derive(Default)]
struct ReprDigest<'de>(Vec<(&'de str, Option<Vec<u8>>)>);

impl<'de> DictionaryVisitor<'de> for ReprDigest<'de> {
    type Out = Self;
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Infallible> {
        // A repeated key replaces the earlier value, in the earlier place (RFC 9651).
        let at = match self.0.iter().position(|(k, _)| *k == key.as_str()) {
            Some(at) => at,
            None => {
                self.0.push((key.as_str(), None));
                self.0.len() - 1
            }
        };
        Ok(Member(&mut self.0[at].1))
    }

    fn finish(self) -> Result<Self, Infallible> {
        Ok(self)
    }
}

/// One dictionary member's value: kept when it is a Byte Sequence, its
/// parameters ignored.
struct Member<'a>(&'a mut Option<Vec<u8>>);

impl<'de> EntryVisitor<'de> for Member<'_> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(move |item: BareItemFromInput<'de>| {
            *self.0 = match item {
                BareItemFromInput::ByteSequence(bytes) => Some(bytes),
                _ => None,
            };
            Ok::<_, Infallible>(Ignored)
        })
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Infallible> {
        *self.0 = None;
        Ok(Ignored)
    }
}

/// Base64 as servers write it in `Digest`: padding optional, stray low bits
/// allowed (the length check catches a wrong digest).
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// `Digest` (RFC 3230, which RFC 9530 obsoletes): comma-separated
/// `ALGO=BASE64`, the names case-insensitive. It is no structured field
/// (`SHA-256` is no valid key), so it is split by hand; a malformed item is
/// skipped and the others still count. Values in RFC 9530's `:BASE64:` form
/// and in the URL-safe alphabet are read too.
fn legacy_digest(headers: &reqwest::header::HeaderMap) -> impl Iterator<Item = Checksum> + '_ {
    headers
        .get_all("digest")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.split(','))
        .filter_map(|item| {
            let (algo, value) = item.split_once('=')?;
            let value = value.trim().trim_matches(':').trim_end_matches('=');
            let digest = BASE64
                .decode(value)
                .or_else(|_| BASE64_URL.decode(value))
                .ok()?;
            server_digest(algo, digest)
        })
}

/// One line of a checksum file: the name and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumLine {
    /// The file name as written (a path's last component is what is matched).
    pub name: String,
    /// The expected digest.
    pub checksum: Checksum,
}

/// Parse a checksum file: `HEX  NAME` (GNU, `*NAME` for binary mode) or
/// `ALGO (NAME) = HEX` (BSD). For GNU lines the algorithm comes from the digest
/// length, with `b2sum`'s BLAKE2b told from SHA-512 by the file's name (`B2SUMS`,
/// `*.b2`, ...). Returns the entries and the bad lines (1-based, with why).
pub fn parse_sums(file_name: &str, text: &str) -> (Vec<SumLine>, Vec<(usize, String)>) {
    let lower = file_name.to_ascii_lowercase();
    let blake2 = lower.contains("b2") || lower.contains("blake2");
    let mut sums = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sum_line(line, blake2) {
            Ok(s) => sums.push(s),
            Err(e) => bad.push((i + 1, e)),
        }
    }
    (sums, bad)
}

fn parse_sum_line(line: &str, blake2: bool) -> Result<SumLine, String> {
    // BSD: "SHA256 (name) = hex"
    if let Some((head, hex)) = line.rsplit_once(") = ") {
        if let Some((algo, name)) = head.split_once(" (") {
            let algo: Algo = algo.trim().parse()?;
            return Ok(SumLine {
                name: name.to_string(),
                checksum: Checksum::from_hex(algo, hex)?,
            });
        }
    }
    let (hex, name) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("'{line}' is not 'HEX  NAME' nor 'ALGO (NAME) = HEX'"))?;
    let name = name.trim_start_matches([' ', '\t']);
    let name = name.strip_prefix('*').unwrap_or(name);
    if name.is_empty() {
        return Err(format!("'{line}' has no file name"));
    }
    let algo = match hex.len() {
        32 => Algo::Md5,
        40 => Algo::Sha1,
        64 => Algo::Sha256,
        128 if blake2 => Algo::Blake2b,
        128 => Algo::Sha512,
        n => return Err(format!("a digest of {n} hex digits matches no algorithm")),
    };
    Ok(SumLine {
        name: name.to_string(),
        checksum: Checksum::from_hex(algo, hex)?,
    })
}

/// An incremental hash of one of the algorithms.
pub enum Hasher {
    /// MD5.
    Md5(md5::Md5),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// BLAKE2b-512.
    Blake2b(blake2::Blake2b512),
    /// BLAKE3.
    Blake3(Box<blake3::Hasher>),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algo: Algo) -> Self {
        match algo {
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algo::Blake2b => Hasher::Blake2b(blake2::Blake2b512::new()),
            Algo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
            Hasher::Blake2b(h) => h.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The digest.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Blake2b(h) => h.finalize().to_vec(),
            Hasher::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

/// A verified file's digest did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checksum mismatch: expected {expected}, got {actual}")]
pub struct Mismatch {
    /// What the user or the server said.
    pub expected: Checksum,
    /// What the bytes hash to.
    pub actual: Checksum,
}

/// Hashes a file's bytes in order and checks them against every expected digest.
#[derive(Debug)]
pub struct Verifier {
    checks: Vec<(Checksum, Hasher)>,
}

impl Verifier {
    /// A verifier for these digests; `None` when there is nothing to verify.
    pub fn new(expected: Vec<Checksum>) -> Option<Self> {
        (!expected.is_empty()).then(|| Verifier {
            checks: expected
                .into_iter()
                .map(|c| {
                    let h = Hasher::new(c.algo);
                    (c, h)
                })
                .collect(),
        })
    }

    /// Feed the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        for (_, h) in &mut self.checks {
            h.update(bytes);
        }
    }

    /// Feed `[from, to)` of `file`, read back (from the page cache, usually).
    pub fn update_from(&mut self, file: &std::fs::File, from: u64, to: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; (to - from).min(1 << 20) as usize];
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], at)?;
            self.update(&buf[..n]);
            at += n as u64;
        }
        Ok(())
    }

    /// Check every digest; the strongest one verified, or the first mismatch.
    pub fn finish(self) -> Result<Checksum, Mismatch> {
        let mut best: Option<Checksum> = None;
        for (expected, h) in self.checks {
            let actual = Checksum {
                algo: expected.algo,
                digest: h.finish(),
            };
            if actual != expected {
                return Err(Mismatch { expected, actual });
            }
            if best
                .as_ref()
                .is_none_or(|b| actual.algo.strength() > b.algo.strength())
            {
                best = Some(actual);
            }
        }
        Ok(best.expect("a verifier has at least one digest"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algo: Algo, data: &[u8]) -> String {
        let mut h = Hasher::new(algo);
        h.update(data);
        hex::encode(h.finish())
    }

    #[test]
    fn known_digests() {
        assert_eq!(
            digest(Algo::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            digest(Algo::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            digest(Algo::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(digest(Algo::Sha512, b"abc").starts_with("ddaf35a193617aba"));
        assert!(digest(Algo::Blake2b, b"abc").starts_with("ba80a53f981c4d0d"));
        assert_eq!(
            digest(Algo::Blake3, b"abc"),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn checksum_flags_use_aria2c_names() {
        let c: Checksum =
            "sha-256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .parse()
                .unwrap();
        assert_eq!(c.algo, Algo::Sha256);
        assert!(
            "SHA256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .parse::<Checksum>()
                .is_ok()
        );
        assert!("sha-256=abcd"
            .parse::<Checksum>()
            .unwrap_err()
            .contains("64 hex digits"));
        assert!("crc32=abcd"
            .parse::<Checksum>()
            .unwrap_err()
            .contains("crc32"));
        assert!("nohex".parse::<Checksum>().is_err());
    }

    #[test]
    fn sums_files_gnu_and_bsd() {
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let text =
            format!("{sha}  a.bin\n{sha} *b.bin\n# note\n\nSHA256 (c d.bin) = {sha}\nbogus\n");
        let (sums, bad) = parse_sums("SHA256SUMS", &text);
        let names: Vec<&str> = sums.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.bin", "b.bin", "c d.bin"]);
        assert!(sums.iter().all(|s| s.checksum.algo == Algo::Sha256));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 6);
        let long = "0".repeat(128);
        let (sums, _) = parse_sums("B2SUMS", &format!("{long}  x\n"));
        assert_eq!(sums[0].checksum.algo, Algo::Blake2b);
        let (sums, _) = parse_sums("SHA512SUMS", &format!("{long}  x\n"));
        assert_eq!(sums[0].checksum.algo, Algo::Sha512);
    }

    #[test]
    fn verifier_checks_every_digest() {
        let sha: Checksum =
            "sha-256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                .parse()
                .unwrap();
        let md5: Checksum = "md5=900150983cd24fb0d6963f7d28e17f72".parse().unwrap();
        let mut v = Verifier::new(vec![md5.clone(), sha.clone()]).unwrap();
        v.update(b"a");
        v.update(b"bc");
        assert_eq!(v.finish().unwrap(), sha, "the strongest is reported");
        let mut v = Verifier::new(vec![sha.clone()]).unwrap();
        v.update(b"abd");
        let m = v.finish().unwrap_err();
        assert_eq!(m.expected, sha);
        assert!(m.to_string().contains(&sha.to_string()), "{m}");
        assert!(Verifier::new(Vec::new()).is_none());
    }

    #[test]
    fn digest_headers() {
        use reqwest::header::{HeaderMap, HeaderValue};
        // sha-256 of "abc", base64.
        let b64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
        let mut h = HeaderMap::new();
        h.insert(
            "repr-digest",
            HeaderValue::from_str(&format!("md5=:kAFQmDzST7DWlj99KOF/cg==:, sha-256=:{b64}:"))
                .unwrap(),
        );
        let c = from_headers(&h).unwrap();
        assert_eq!(c.algo, Algo::Sha256);
        assert_eq!(
            hex::encode(&c.digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "digest",
            HeaderValue::from_static("MD5=kAFQmDzST7DWlj99KOF/cg=="),
        );
        assert_eq!(from_headers(&h).unwrap().algo, Algo::Md5);
        let mut h = HeaderMap::new();
        h.insert(
            "digest",
            HeaderValue::from_static("crc32c=abc, sha-256=:tooshort:"),
        );
        assert!(from_headers(&h).is_none());
    }

    /// sha-256 and md5 of "abc" in base64, and the headers made of `lines`.
    const SHA_B64: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    const MD5_B64: &str = "kAFQmDzST7DWlj99KOF/cg==";
    const SHA_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn headers(lines: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        for (name, value) in lines {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn repr_digest_is_a_structured_dictionary() {
        // Field lines are one dictionary; parameters are ignored.
        let h = headers(&[
            ("repr-digest", &format!("md5=:{MD5_B64}:")),
            ("repr-digest", ""),
            ("repr-digest", &format!("sha-256=:{SHA_B64}:;x=1")),
        ]);
        assert_eq!(
            from_headers(&h).unwrap().to_string(),
            format!("sha-256={SHA_HEX}")
        );
        // A repeated key: the last value counts.
        let h = headers(&[(
            "repr-digest",
            &format!("sha-256=:{MD5_B64}:, sha-256=:{SHA_B64}:"),
        )]);
        assert_eq!(hex::encode(from_headers(&h).unwrap().digest), SHA_HEX);
        let h = headers(&[(
            "repr-digest",
            &format!("sha-256=:{SHA_B64}:, sha-256=:{MD5_B64}:"),
        )]);
        assert!(from_headers(&h).is_none());
        // Padding may be left out; values of other types are no digest.
        let h = headers(&[(
            "repr-digest",
            &format!(
                "md5=:{}:, sha-256=abc, sha-512=(:{SHA_B64}:)",
                MD5_B64.trim_end_matches('=')
            ),
        )]);
        assert_eq!(from_headers(&h).unwrap().algo, Algo::Md5);
    }

    #[test]
    fn malformed_repr_digest_is_ignored_whole() {
        for bad in [
            format!("sha-256=:{SHA_B64}:, md5=:not base64:"),
            format!("sha-256=:{SHA_B64}"),
            format!("SHA-256=:{SHA_B64}:"),
            format!("sha-256=:{}:", SHA_B64.replace('+', "-")),
        ] {
            let h = headers(&[("repr-digest", &bad)]);
            assert!(from_headers(&h).is_none(), "{bad}");
            // The legacy header beside it still counts.
            let h = headers(&[("repr-digest", &bad), ("digest", &format!("md5={MD5_B64}"))]);
            assert_eq!(from_headers(&h).unwrap().algo, Algo::Md5, "{bad}");
        }
    }

    #[test]
    fn legacy_digest_is_read_leniently() {
        // Names in any case, padding optional, URL-safe alphabet, RFC 9530's
        // colons; a bad item does not spoil the others.
        for value in [
            format!("SHA-256={SHA_B64}"),
            format!("sha256={}", SHA_B64.trim_end_matches('=')),
            format!("Sha-256={}", SHA_B64.replace('+', "-").replace('/', "_")),
            format!("sha-256=:{SHA_B64}:"),
            format!("md5=%%%, sha-256={SHA_B64}, unixsum=30637"),
        ] {
            let h = headers(&[("digest", &value)]);
            let c = from_headers(&h).unwrap_or_else(|| panic!("{value}"));
            assert_eq!(hex::encode(&c.digest), SHA_HEX, "{value}");
        }
    }

    #[test]
    fn hex_digests_in_either_case() {
        let c = Checksum::from_hex(Algo::Sha256, &SHA_HEX.to_ascii_uppercase()).unwrap();
        assert_eq!(
            c.to_string(),
            format!("sha-256={SHA_HEX}"),
            "printed lower-case"
        );
        let odd = &SHA_HEX[1..];
        assert!(Checksum::from_hex(Algo::Sha256, odd).is_err());
        let not_hex = SHA_HEX.replace('a', "g");
        let e = Checksum::from_hex(Algo::Sha256, &not_hex).unwrap_err();
        assert!(e.contains("is not a hex digest"), "{e}");
    }
}
