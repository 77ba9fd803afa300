//! Every decision about output paths, in one place: names from the URL and
//! from `Content-Disposition` ([`disposition`]), sanitised so that a name chosen
//! by a server can never leave the output directory; names the user gives
//! ([`check_given_name`]); the names a download keeps beside its final one
//! (`NAME.part`, its state file and the state file's temporary), which stay
//! within the filesystem's limit however long the final name is; names unique
//! across the batch ([`reserve`], [`plan`]: duplicates and clashes); and what
//! the output directories held at the start ([`listing`]).

pub mod disposition;
pub mod listing;
pub mod plan;
pub mod reserve;

pub use disposition::from_content_disposition;
pub use reserve::Names;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// Name used when neither the server nor the URL gives one.
pub const FALLBACK_NAME: &str = "index.html";
/// Longest file name most filesystems accept, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Room kept below [`MAX_NAME_BYTES`] for `.part.volley` and a `.N` suffix.
const SUFFIX_ROOM: usize = 20;
/// Suffix of the partial file.
pub const PART_SUFFIX: &str = ".part";
/// Appended to the partial file's name to name the state file.
pub const STATE_SUFFIX: &str = ".volley";
/// Appended to the state file's name while a new state is written.
pub const TMP_SUFFIX: &str = ".tmp";
/// The most a download adds to its final name: `.part.volley.tmp`.
const LONGEST_SUFFIX: usize = PART_SUFFIX.len() + STATE_SUFFIX.len() + TMP_SUFFIX.len();
/// Bytes of a hashed partial name's tag: `.` and 16 hex digits.
const HASH_TAG: usize = 17;
/// The ends of names that only volley's own files have; a name the user gives
/// may not end so (it would be another download's partial or state file).
pub const PARTIAL_ENDINGS: [&str; 3] = [".part", ".part.volley", ".part.volley.tmp"];

/// Make any string a safe single path component, or `None` when nothing usable is left.
///
/// Keeps only the part after the last `/` or `\`, drops control characters, trims
/// spaces, refuses names made only of dots, and shortens to fit the filesystem while
/// keeping the extension.
/// A leading `-` becomes `_`, so that a later `rm *` or `tar` in the directory
/// cannot read the name as an option.
pub fn sanitize(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        return None;
    }
    let cleaned = match cleaned.strip_prefix('-') {
        Some(rest) => format!("_{rest}"),
        None => cleaned.to_string(),
    };
    Some(truncate_keeping_extension(
        &cleaned,
        MAX_NAME_BYTES - SUFFIX_ROOM,
    ))
}

/// Check a name the user gives (`-o NAME`, `out=NAME`): a plain file name
/// that is not one of volley's own partial, state or temporary names.
pub fn check_given_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the file name is empty".into());
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "'{name}' must be a plain file name without '/'; use -d or dir= for the directory"
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(format!("'{name}' is not a usable file name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("the file name is longer than 255 bytes".into());
    }
    if is_partial_name(name) {
        return Err(format!(
            "'{name}' ends like volley's own partial files ({}); choose another name",
            PARTIAL_ENDINGS.join(", ")
        ));
    }
    Ok(())
}

/// A 64-bit hash of `value`, the same for equal values throughout a run: what
/// tables that keep hashes instead of names store (taken names, the directory
/// listing).
pub fn hash64(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Whether a name ends like volley's own partial, state or temporary files.
pub fn is_partial_name(name: &str) -> bool {
    PARTIAL_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// The partial file's name for a final name: `NAME.part`, or, when `NAME` is
/// so long that its state file's temporary would not fit in a file name,
/// the first bytes of `NAME`, a hash of all of it and `.part` (the same for
/// the same final name on every run, so a rerun finds it).
pub fn part_name(final_name: &OsStr) -> OsString {
    let bytes = final_name.as_bytes();
    let mut name = if bytes.len() + LONGEST_SUFFIX <= MAX_NAME_BYTES {
        bytes.to_vec()
    } else {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        let mut keep = MAX_NAME_BYTES - LONGEST_SUFFIX - HASH_TAG;
        // Cut on a character boundary where the name is UTF-8.
        if let Ok(text) = std::str::from_utf8(bytes) {
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
        }
        let mut short = bytes[..keep].to_vec();
        short.push(b'.');
        short.extend_from_slice(hex::encode(&digest[..8]).as_bytes());
        short
    };
    name.extend_from_slice(PART_SUFFIX.as_bytes());
    OsString::from_vec(name)
}

/// `dir/PART` for `dir/NAME` (see [`part_name`]).
pub fn part_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().unwrap_or(final_path.as_os_str());
    final_path.with_file_name(part_name(name))
}

/// The state file beside a partial file: `PART.volley`.
pub fn state_path(part: &Path) -> PathBuf {
    with_suffix(part, STATE_SUFFIX)
}

/// The temporary a new state is written to before it replaces `state`.
pub fn state_tmp_path(state: &Path) -> PathBuf {
    with_suffix(state, TMP_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Every path a download to `final_path` may create: the final file, the
/// partial file, its state file and the state file's temporary. Two downloads
/// of a batch never share one.
pub fn family(final_path: &Path) -> [PathBuf; 4] {
    let part = part_path(final_path);
    let state = state_path(&part);
    let tmp = state_tmp_path(&state);
    [final_path.to_path_buf(), part, state, tmp]
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() < max / 2 { ext } else { "" };
    let mut cut = max - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// `name.tar.gz` → (`name.tar`, `.gz`); `.bashrc` → (`.bashrc`, ``).
pub fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    }
}

/// The `n`th alternative of a name: `file.bin` → `file.1.bin`, shortened
/// (keeping the number and extension) where it would not fit in a file name.
pub fn numbered(name: &str, n: usize) -> String {
    let (stem, ext) = split_extension(name);
    let tag = format!(".{n}{ext}");
    let mut keep = stem.len().min(MAX_NAME_BYTES.saturating_sub(tag.len()));
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tag}", &stem[..keep])
}

/// [`for_url`] for an http(s) URL already serialised by the `url` crate, without
/// parsing it again (a list of 100,000 URLs is held as text): in that form the
/// path starts at the first `/` after `://` and ends at `?` or `#`; the name
/// is its last non-empty segment, percent-decoded and sanitised.
pub fn for_url_text(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let path = after_scheme
        .find(['/', '?', '#'])
        .map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.strip_prefix('/')
        .and_then(|p| p.rsplit('/').find(|s| !s.is_empty()))
        .and_then(|segment| sanitize(&percent_decode_str(segment).decode_utf8_lossy()))
        .unwrap_or_else(|| FALLBACK_NAME.to_string())
}

/// The name an answer gives a download, when it is not the name planned for
/// it: the `Content-Disposition` header's, else, only when `last` is given
/// (`--trust-server-names`, the file's own URL), the last URL's after
/// redirects. `None` keeps the planned name: a redirect does not choose it.
pub fn from_answer(
    disposition: Option<&str>,
    last: Option<&Url>,
    asked: &Url,
    planned: &str,
) -> Option<String> {
    disposition
        .and_then(from_content_disposition)
        .or_else(|| last.filter(|l| *l != asked).map(for_url))
        .filter(|served| *served != for_url(asked) && served != planned)
}

/// The name a download gets without `out=` or a server-given name: the URL's
/// last segment, else [`FALLBACK_NAME`].
pub fn for_url(url: &Url) -> String {
    for_url_text(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_last_path_segment_of_the_serialised_url() {
        for (raw, name) in [
            ("http://h/", "index.html"),
            ("http://h", "index.html"),
            ("http://h/a/b/file.bin", "file.bin"),
            ("https://h:8443/dir/", "dir"),
            ("http://u:p@h/x/y.tar.gz?q=1/2#frag/z", "y.tar.gz"),
            ("http://h/a?x", "a"),
            ("http://h/a#b", "a"),
            ("http://[::1]:8080/v6/f.iso", "f.iso"),
            ("http://h/caf%C3%A9%20menu.pdf", "café menu.pdf"),
            ("http://h/a/%2E%2E/b", "b"),
            ("http://h/../../etc/passwd", "passwd"),
            ("http://h/a%2Fb", "b"),
            ("http://h//double//", "double"),
            ("http://h/...", "index.html"),
            ("http://h/a/b%20c.iso?x=1", "b c.iso"),
            ("http://h/%2e%2e", "index.html"),
            ("http://h/a%2F..%2Fevil", "evil"),
        ] {
            let url = Url::parse(raw).unwrap();
            assert_eq!(for_url(&url), name, "{raw}");
            assert_eq!(for_url_text(url.as_str()), name, "{raw}");
        }
    }

    #[test]
    fn traversal_and_control_characters_are_removed() {
        assert_eq!(sanitize("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(sanitize("..\\..\\win.ini").as_deref(), Some("win.ini"));
        assert_eq!(sanitize("a\u{0}b\nc").as_deref(), Some("abc"));
        assert_eq!(sanitize(".."), None);
        assert_eq!(sanitize("dir/"), None);
        assert_eq!(sanitize("  "), None);
        assert_eq!(sanitize(".hidden").as_deref(), Some(".hidden"));
    }

    #[test]
    fn long_names_keep_their_extension_and_fit() {
        let long = format!("{}.tar.gz", "é".repeat(300));
        let s = sanitize(&long).unwrap();
        assert!(s.len() <= MAX_NAME_BYTES - SUFFIX_ROOM);
        assert!(s.ends_with(".gz"));
    }

    #[test]
    fn an_answer_names_a_download_only_by_its_disposition_or_when_trusted() {
        let u = |s: &str| Url::parse(s).unwrap();
        let asked = u("http://h/dl/good.iso");
        let moved = u("http://h/.bashrc");
        let cd = Some("attachment; filename=\"report.pdf\"");
        assert_eq!(from_answer(None, None, &asked, "good.iso"), None);
        // A redirect names nothing unless trusted.
        assert_eq!(from_answer(None, None, &asked, "good.iso"), None);
        assert_eq!(
            from_answer(None, Some(&moved), &asked, "good.iso").as_deref(),
            Some(".bashrc")
        );
        assert_eq!(from_answer(None, Some(&asked), &asked, "good.iso"), None);
        assert_eq!(
            from_answer(cd, None, &asked, "good.iso").as_deref(),
            Some("report.pdf")
        );
        // The planned name (a numbered one included) stands when it is the same.
        assert_eq!(from_answer(cd, None, &asked, "report.pdf"), None);
    }

    #[test]
    fn a_leading_dash_is_not_kept() {
        assert_eq!(sanitize("-rf").as_deref(), Some("_rf"));
        assert_eq!(
            sanitize("--checkpoint=1.bin").as_deref(),
            Some("_-checkpoint=1.bin")
        );
        assert_eq!(sanitize("a/-x").as_deref(), Some("_x"));
        assert_eq!(sanitize(" -x ").as_deref(), Some("_x"));
        assert_eq!(sanitize("a-b").as_deref(), Some("a-b"));
    }

    #[test]
    fn partial_names_fit_however_long_the_final_name() {
        assert_eq!(part_name(OsStr::new("f.bin")), "f.bin.part");
        assert!(is_partial_name("x.part") && is_partial_name("x.part.volley.tmp"));
        assert!(!is_partial_name("x.partial") && !is_partial_name("x.volley"));
        for len in [238, 239, 240, 250, 255] {
            let name = format!("{}.bin", "n".repeat(len - 4));
            let family = family(&Path::new("d").join(&name));
            assert_eq!(family[0].file_name().unwrap().len(), len);
            for p in &family[1..] {
                assert!(p.file_name().unwrap().len() <= MAX_NAME_BYTES, "{p:?}");
                assert!(p.starts_with("d"));
            }
            assert!(family[1].to_str().unwrap().ends_with(".part"));
            // The same name always gets the same partial name; another does not.
            assert_eq!(part_path(&family[0]), family[1]);
            let other = format!("{}.bim", "n".repeat(len - 4));
            assert_ne!(
                part_name(OsStr::new(&other)),
                family[1].file_name().unwrap()
            );
        }
        // Multi-byte characters are not cut in half.
        let wide = "é".repeat(127);
        assert!(part_name(OsStr::new(&wide)).to_str().is_some());
    }

    #[test]
    fn numbering_keeps_extension() {
        assert_eq!(numbered("file.bin", 1), "file.1.bin");
        assert_eq!(numbered("README", 2), "README.2");
        assert_eq!(numbered(".bashrc", 1), ".bashrc.1");
        let long = format!("{}.bin", "n".repeat(251));
        let n = numbered(&long, 12);
        assert_eq!(n.len(), MAX_NAME_BYTES);
        assert!(n.ends_with(".12.bin"), "{n}");
    }
}
