//! Input: URL arguments and URL lists (aria2c's format) turned into [`DownloadSpec`]s.
//!
//! The whole input is validated before any download starts: every bad line is
//! reported with `FILE:LINE` and the reason, and the run stops with exit code 2.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use std::collections::HashMap;

pub mod metalink;
pub mod shard;
pub mod stream;

use crate::config::{self, parse_header, Settings};
use crate::download::checksum::{self, Checksum};
use crate::options::{ByteSize, OutputName};

/// Option keys a list may set for a download.
pub const LIST_KEYS: &[&str] = &[
    "out",
    "dir",
    "header",
    "connections",
    "limit_rate",
    "checksum",
];

/// One download as the user asked for it.
#[derive(Debug, Clone)]
pub struct DownloadSpec {
    /// The URL to fetch.
    pub url: Url,
    /// File name (`out=` or `-o`); `None` lets the server or URL decide.
    pub out: Option<String>,
    /// Directory (`dir=`), relative to `--dir` unless absolute.
    pub dir: Option<PathBuf>,
    /// The options few lines have, boxed so that a plain URL line stays small
    /// (a list of 100,000 URLs is held in memory until its downloads start).
    extra: Option<Box<Extra>>,
}

/// A download's less common options; read them through [`DownloadSpec`]'s methods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    /// Extra headers for this download only (`header=`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Most connections for this download (`connections=`), overriding `--connections`.
    pub connections: Option<usize>,
    /// Cap of this download in bytes per second (`limit_rate=`), overriding
    /// `--limit-rate-per-download`.
    pub limit_rate: Option<u64>,
    /// The expected digest (`checksum=` or `--checksum`).
    pub checksum: Option<Checksum>,
    /// Other URLs of the same file (mirrors), in the order given.
    pub mirrors: Vec<Url>,
    /// The size the file must have (Metalink `<size>`).
    pub size: Option<u64>,
}

/// Expected digests by file name, from `--checksum-file`.
pub type Sums = HashMap<String, Checksum>;

/// A download as held from the input until it starts: the URL as text and,
/// when the line says more, the rest in one box. A list of 100,000 plain URLs
/// costs their text and a few bytes each, not 100,000 parsed URLs.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The URL as `url` serialises it.
    url: Box<str>,
    /// `out=`, `dir=` and the less common options, when any is given.
    more: Option<Box<More>>,
}

#[derive(Debug, Clone)]
struct More {
    out: Option<String>,
    dir: Option<PathBuf>,
    extra: Option<Box<Extra>>,
}

impl From<DownloadSpec> for Queued {
    fn from(spec: DownloadSpec) -> Self {
        let DownloadSpec {
            url,
            out,
            dir,
            extra,
        } = spec;
        let more = (out.is_some() || dir.is_some() || extra.is_some())
            .then(|| Box::new(More { out, dir, extra }));
        Queued {
            url: String::from(url).into_boxed_str(),
            more,
        }
    }
}

impl Queued {
    /// The URL, serialised.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as shown: a password in it reads `***`.
    pub fn shown_url(&self) -> String {
        match Url::parse(&self.url) {
            Ok(url) => crate::download::redact(&url),
            Err(_) => self.url.to_string(),
        }
    }

    /// `out=`, if given.
    pub fn out(&self) -> Option<&str> {
        self.more.as_ref().and_then(|m| m.out.as_deref())
    }

    /// `dir=`, if given.
    pub fn dir(&self) -> Option<&Path> {
        self.more.as_ref().and_then(|m| m.dir.as_deref())
    }

    /// Change what the input says of this download (`--checksum` or `-o` for
    /// the only URL).
    fn change(&mut self, f: impl FnOnce(&mut DownloadSpec)) {
        let mut spec = self.clone().into_spec();
        f(&mut spec);
        *self = spec.into();
    }

    /// The download in full, for its run.
    pub fn into_spec(self) -> DownloadSpec {
        let url = Url::parse(&self.url).expect("a URL serialised by the url crate parses again");
        match self.more {
            Some(more) => {
                let More { out, dir, extra } = *more;
                DownloadSpec {
                    url,
                    out,
                    dir,
                    extra,
                }
            }
            None => DownloadSpec::new(url),
        }
    }
}

/// Everything the input says: the downloads and the digests to check them by.
#[derive(Debug, Default)]
pub struct Input {
    /// The downloads known before the run, in input order (arguments,
    /// Metalink, a list file), checked whole.
    pub specs: Vec<Queued>,
    /// `--checksum-file`: digests by file name.
    pub sums: Sums,
    /// `-i -` from a pipe: downloads that arrive while the run goes on,
    /// after [`Input::specs`].
    pub stream: Option<stream::Stream>,
}

impl DownloadSpec {
    fn new(url: Url) -> Self {
        DownloadSpec {
            url,
            out: None,
            dir: None,
            extra: None,
        }
    }

    /// The less common options, to set them.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Extra headers for this download only (`header=`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.extra.as_ref().map_or(&[], |e| &e.headers)
    }

    /// Most connections for this download (`connections=`).
    pub fn connections(&self) -> Option<usize> {
        self.extra.as_ref().and_then(|e| e.connections)
    }

    /// Cap of this download in bytes per second (`limit_rate=`).
    pub fn limit_rate(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.limit_rate)
    }

    /// The expected digest (`checksum=` or `--checksum`).
    pub fn checksum(&self) -> Option<&Checksum> {
        self.extra.as_ref().and_then(|e| e.checksum.as_ref())
    }

    /// Other URLs of the same file (mirrors), in the order given.
    pub fn mirrors(&self) -> &[Url] {
        self.extra.as_ref().map_or(&[], |e| &e.mirrors)
    }

    /// The size the file must have (Metalink `<size>`).
    pub fn size(&self) -> Option<u64> {
        self.extra.as_ref().and_then(|e| e.size)
    }
}

/// One bad line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The list file as given (`-` shows as `<stdin>`), or `argument`.
    pub source: String,
    /// 1-based line (or argument position).
    pub line: usize,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.source, self.line, self.reason)
    }
}

/// Why the input cannot be used. Always exit code 2, before any download.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The list file could not be read.
    #[error("cannot read URL list {path}: {source}")]
    Read {
        /// The list.
        path: PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// Some lines are invalid; all of them are listed.
    #[error("{}\n{} invalid input line(s); nothing was downloaded", lines(.0), .0.len())]
    Invalid(Vec<LineError>),
    /// Nothing to download.
    #[error("no URLs given: pass URLs as arguments or a list with -i FILE (see --help)")]
    Empty,
    /// `-o` with other than one URL.
    #[error("--output takes exactly one URL, but {0} were given; name each file with out= in a list (-i) instead")]
    OutputNeedsOneUrl(usize),
    /// `--checksum` with other than one URL.
    #[error("--checksum takes exactly one URL, but {0} were given; give each download its own checksum= in a list (-i), or use --checksum-file")]
    ChecksumNeedsOneUrl(usize),
}

fn lines(errors: &[LineError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Read every URL argument, the `-i` list and the `--checksum-file`, validating all
/// of them.
///
/// `-i -` from a pipe or a terminal is the exception: its lines are read as
/// they arrive, while the downloads before them run ([`stream`]); a bad line
/// there fails as a download instead of stopping the run. `-o` and
/// `--checksum`, which need to know there is one URL, read it whole.
pub fn load(settings: &Settings) -> Result<Input, InputError> {
    let mut specs = Vec::new();
    let mut stream = None;
    let mut errors = Vec::new();
    for (i, arg) in settings.urls.iter().enumerate() {
        match parse_url(arg) {
            Ok(url) => specs.push(Queued::from(DownloadSpec::new(url))),
            Err(reason) => errors.push(LineError {
                source: "argument".into(),
                line: i + 1,
                reason,
            }),
        }
    }
    if let Some(path) = &settings.metalink {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
            path: path.clone(),
            source,
        })?;
        match metalink::parse(&path.display().to_string(), &text) {
            Ok(found) => specs.extend(found.into_iter().map(Queued::from)),
            Err(bad) => errors.extend(bad),
        }
    }
    if let Some(path) = &settings.input_file {
        let read_err = |source| InputError::Read {
            path: path.clone(),
            source,
        };
        if is_metalink(path) {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            match metalink::parse(&path.display().to_string(), &text) {
                Ok(found) => specs.extend(found.into_iter().map(Queued::from)),
                Err(bad) => errors.extend(bad),
            }
        } else if path == Path::new("-")
            && stream::stdin_is_live()
            && settings.output.is_none()
            && settings.checksum.is_none()
        {
            stream = Some(stream::Stream::start("<stdin>", std::io::stdin()));
        } else if path == Path::new("-") {
            let stdin = std::io::stdin();
            parse_list_into(
                "<stdin>",
                stdin.lock(),
                &mut |s| specs.push(s.into()),
                &mut errors,
            )
            .map_err(read_err)?;
        } else {
            let file = std::fs::File::open(path).map_err(read_err)?;
            let reader = std::io::BufReader::with_capacity(1 << 16, file);
            let source = path.display().to_string();
            parse_list_into(&source, reader, &mut |s| specs.push(s.into()), &mut errors)
                .map_err(read_err)?;
        }
    }
    let mut sums = Sums::new();
    if let Some(path) = &settings.checksum_file {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
            path: path.clone(),
            source,
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (lines, bad) = checksum::parse_sums(&file_name, &text);
        for (line, reason) in bad {
            errors.push(LineError {
                source: path.display().to_string(),
                line,
                reason,
            });
        }
        for l in lines {
            // A path in the file is matched by its last component.
            let name = l.name.rsplit('/').next().unwrap_or(&l.name).to_string();
            sums.entry(name).or_insert(l.checksum);
        }
    }
    if !errors.is_empty() {
        return Err(InputError::Invalid(errors));
    }
    // Nothing to do unless the stream brings something.
    if specs.is_empty() && !stream.as_mut().is_some_and(stream::Stream::wait_first) {
        return Err(InputError::Empty);
    }
    if let Some(sum) = &settings.checksum {
        if specs.len() != 1 {
            return Err(InputError::ChecksumNeedsOneUrl(specs.len()));
        }
        specs[0].change(|spec| spec.extra_mut().checksum = Some(sum.clone()));
    }
    if let Some(output) = &settings.output {
        if specs.len() != 1 {
            return Err(InputError::OutputNeedsOneUrl(specs.len()));
        }
        if let OutputName::File(name) = output {
            specs[0].change(|spec| spec.out = Some(name.clone()));
        }
    }
    Ok(Input {
        specs: shard::keep(settings.shard, specs),
        sums,
        stream,
    })
}

/// Whether a `-i` file is a Metalink file, by its name.
fn is_metalink(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".meta4") || name.ends_with(".metalink")
}

/// Parse a list in aria2c's format, appending specs and errors.
pub fn parse_list(
    source: &str,
    reader: impl BufRead,
    specs: &mut Vec<DownloadSpec>,
    errors: &mut Vec<LineError>,
) -> std::io::Result<()> {
    parse_list_into(source, reader, &mut |s| specs.push(s), errors)
}

/// Parse a list in aria2c's format, handing each download to `push` once its
/// option lines are read, and appending errors.
pub fn parse_list_into(
    source: &str,
    mut reader: impl BufRead,
    push: &mut dyn FnMut(DownloadSpec),
    errors: &mut Vec<LineError>,
) -> std::io::Result<()> {
    let mut parser = ListParser::new(source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            parser.hand_over(push);
            return Ok(());
        }
        parser.line(&buf, push, &mut |e| errors.push(e));
    }
}

/// aria2c's list format, a line at a time: a download is handed over once
/// the line after its option lines arrives (or, from a pipe, once no line
/// came for a while: [`ListParser::hand_over`]).
#[derive(Debug)]
pub struct ListParser {
    /// The list as named in messages.
    source: String,
    /// Lines read so far.
    line_no: usize,
    /// The download whose option lines may follow.
    current: Option<DownloadSpec>,
    /// The last URL line was bad: its option lines are not blamed on the
    /// download before it.
    after_bad_url: bool,
    /// The last URL's download was handed over before another line came.
    handed_early: bool,
}

impl ListParser {
    /// A parser for the list named `source` in messages.
    pub fn new(source: &str) -> Self {
        ListParser {
            source: source.to_string(),
            line_no: 0,
            current: None,
            after_bad_url: false,
            handed_early: false,
        }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> usize {
        self.line_no
    }

    /// Whether a download waits for its option lines.
    pub fn holds_download(&self) -> bool {
        self.current.is_some()
    }

    /// Hand over the download whose option lines may still follow.
    pub fn hand_over(&mut self, push: &mut dyn FnMut(DownloadSpec)) {
        if let Some(spec) = self.current.take() {
            self.handed_early = true;
            push(spec);
        }
    }

    /// One line, with or without its line end.
    pub fn line(
        &mut self,
        bytes: &[u8],
        push: &mut dyn FnMut(DownloadSpec),
        errors: &mut dyn FnMut(LineError),
    ) {
        self.line_no += 1;
        let line = self.line_no;
        let source = &self.source;
        let mut err = |reason: String| {
            errors(LineError {
                source: source.clone(),
                line,
                reason,
            })
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            err("not valid UTF-8".into());
            return;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() || text.starts_with('#') {
            return;
        }
        if text.starts_with([' ', '\t']) {
            match self.current.as_mut() {
                Some(spec) => {
                    if let Err(reason) = apply_option(spec, text.trim()) {
                        err(reason);
                    }
                }
                None if self.after_bad_url => {}
                None if self.handed_early => err(format!(
                    "option line '{}' came after its URL's download had started; \
                     write a URL's option lines right after it",
                    text.trim()
                )),
                None => err(format!(
                    "option line '{}' has no URL line before it",
                    text.trim()
                )),
            }
            return;
        }
        if let Some(spec) = self.current.take() {
            push(spec);
        }
        self.handed_early = false;
        // Several URLs on one line are mirrors of one file, as in aria2c.
        let urls: Result<Vec<Url>, String> = text.split_whitespace().map(parse_url).collect();
        match urls {
            Ok(mut urls) => {
                let mut spec = DownloadSpec::new(urls.remove(0));
                urls.dedup();
                if !urls.is_empty() {
                    spec.extra_mut().mirrors = urls;
                }
                self.current = Some(spec);
                self.after_bad_url = false;
            }
            Err(reason) => {
                err(reason);
                self.after_bad_url = true;
            }
        }
    }
}

/// One download in the list format, with the options it was given: what
/// `--save-failed` writes, so that `volley -i FILE` retries exactly it.
pub fn format_entry(spec: &DownloadSpec) -> String {
    let mut text = spec.url.to_string();
    for m in spec.mirrors() {
        text.push('\t');
        text.push_str(m.as_str());
    }
    text.push('\n');
    if let Some(out) = &spec.out {
        text.push_str(&format!("  out={out}\n"));
    }
    if let Some(dir) = &spec.dir {
        text.push_str(&format!("  dir={}\n", dir.display()));
    }
    for (k, v) in spec.headers() {
        text.push_str(&format!(
            "  header={k}: {}\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    if let Some(n) = spec.connections() {
        text.push_str(&format!("  connections={n}\n"));
    }
    if let Some(rate) = spec.limit_rate() {
        text.push_str(&format!("  limit_rate={rate}\n"));
    }
    if let Some(sum) = spec.checksum() {
        text.push_str(&format!("  checksum={sum}\n"));
    }
    text
}

/// Parse and check one URL: http or https with a host.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL '{text}': {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "unsupported scheme '{other}' in '{text}': volley downloads http and https URLs"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL '{text}' has no host"));
    }
    Ok(url)
}

fn apply_option(spec: &mut DownloadSpec, option: &str) -> Result<(), String> {
    let Some((key, value)) = option.split_once('=') else {
        return Err(format!(
            "option '{option}' is not of the form key=value (known keys: {})",
            LIST_KEYS.join(", ")
        ));
    };
    let (key, value) = (key.trim(), value.trim());
    match key {
        "out" => {
            crate::naming::check_given_name(value).map_err(|m| format!("out={value}: {m}"))?;
            spec.out = Some(value.to_string());
        }
        "dir" => {
            if value.is_empty() {
                return Err("dir= needs a directory".into());
            }
            spec.dir = Some(PathBuf::from(value));
        }
        "header" => spec.extra_mut().headers.push(parse_header(value)?),
        "connections" => {
            let n = value
                .parse()
                .map_err(|_| format!("connections={value}: not a whole number"))?;
            let n = config::connections("connections", n).map_err(|e| e.to_string())?;
            spec.extra_mut().connections = Some(n);
        }
        "checksum" => {
            let sum = value
                .parse()
                .map_err(|m| format!("checksum={value}: {m}"))?;
            spec.extra_mut().checksum = Some(sum);
        }
        "limit_rate" => {
            let rate: ByteSize = value
                .parse()
                .map_err(|m| format!("limit_rate={value}: {m}"))?;
            let rate = config::positive_size("limit_rate", rate).map_err(|e| e.to_string())?;
            spec.extra_mut().limit_rate = Some(rate);
        }
        _ => {
            return Err(format!(
                "unknown option '{key}' (known keys: {})",
                LIST_KEYS.join(", ")
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<DownloadSpec>, Vec<LineError>) {
        let (mut specs, mut errors) = (Vec::new(), Vec::new());
        parse_list("l.txt", text.as_bytes(), &mut specs, &mut errors).unwrap();
        (specs, errors)
    }

    #[test]
    fn options_attach_to_the_url_above() {
        let (specs, errors) =
            parse("# c\n\nhttp://a/x\n  out=y.bin\n\tdir=sub\n header=X-A: 1\nhttps://b/z\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].out.as_deref(), Some("y.bin"));
        assert_eq!(specs[0].dir.as_deref(), Some(Path::new("sub")));
        assert_eq!(specs[0].headers().len(), 1);
        assert!(specs[1].out.is_none());
    }

    #[test]
    fn every_bad_line_is_reported_with_its_line() {
        let (_, errors) =
            parse("http://ok/a\nnot a url\nftp://x/y\nhttp://ok/b\n  bogus=1\n  out=a/b\n");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6], "{errors:?}");
        assert!(errors[1].reason.contains("ftp"));
        assert!(errors[2].reason.contains("bogus"));
        assert!(errors[0].to_string().starts_with("l.txt:2: "));
    }

    #[test]
    fn options_after_a_bad_url_are_not_blamed_twice() {
        let (specs, errors) = parse("http://a/1\nhttp//bad\n  out=x\n");
        assert_eq!(errors.len(), 1);
        assert!(specs[0].out.is_none());
    }

    #[test]
    fn connections_and_limit_rate_options() {
        let (specs, errors) =
            parse("http://a/1\n  connections=4\n  limit_rate=512K\nhttp://a/2\n  connections=0\n  limit_rate=fast\n");
        assert_eq!(specs[0].connections(), Some(4));
        assert_eq!(specs[0].limit_rate(), Some(512 * 1024));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![5, 6], "{errors:?}");
        assert!(errors[0].reason.contains("connections"), "{errors:?}");
    }

    #[test]
    fn saved_entries_parse_back_to_the_same_options() {
        let text = "http://a/1\n  out=x.bin\n  dir=sub\n  header=X-A: 1\n  connections=4\n  limit_rate=512K\n  checksum=md5=900150983cd24fb0d6963f7d28e17f72\n";
        let (specs, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let saved = format_entry(&specs[0]);
        let (again, errors) = parse(&saved);
        assert!(errors.is_empty(), "{saved}: {errors:?}");
        let a = &again[0];
        assert_eq!(a.url, specs[0].url);
        assert_eq!(a.out, specs[0].out);
        assert_eq!(a.dir, specs[0].dir);
        assert_eq!(a.headers(), specs[0].headers());
        assert_eq!(a.connections(), Some(4));
        assert_eq!(a.limit_rate(), Some(512 * 1024));
        assert_eq!(a.checksum(), specs[0].checksum());
    }

    #[test]
    fn several_urls_on_a_line_are_mirrors() {
        let (specs, errors) = parse(
            "http://a/f.iso\thttp://b/f.iso http://c/f.iso\n  out=x.iso\nhttp://a/1 nota-url\n",
        );
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].mirrors().len(), 2);
        assert_eq!(specs[0].mirrors()[1].as_str(), "http://c/f.iso");
        assert_eq!(specs[0].out.as_deref(), Some("x.iso"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        let saved = format_entry(&specs[0]);
        let (again, _) = parse(&saved);
        assert_eq!(again[0].mirrors(), specs[0].mirrors());
    }

    #[test]
    fn crlf_lists_parse() {
        let (specs, errors) = parse("http://a/1\r\n  out=x\r\n");
        assert!(errors.is_empty());
        assert_eq!(specs[0].out.as_deref(), Some("x"));
    }
}
