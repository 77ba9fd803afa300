//! Input: URL arguments and URL lists (aria2c's format) turned into [`DownloadSpec`]s.
//!
//! The whole input is validated before any download starts: every bad line is
//! reported with `FILE:LINE` and the reason, and the run stops with exit code 2.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use std::collections::HashMap;

pub mod list;
pub mod metalink;
pub mod shard;
pub mod stream;

pub use list::{format_entry, parse_list, parse_list_into, parse_url, ListParser, LIST_KEYS};

use crate::checksum::{self, Checksum};
use crate::config::Settings;
use crate::options::OutputName;

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
    /// `--limit-rate-per-download`; 0 is no cap.
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
        crate::display::redact_text(&self.url)
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
    /// A download of `url` with no options.
    pub fn new(url: Url) -> Self {
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
        match output {
            OutputName::File(name) => specs[0].change(|spec| spec.out = Some(name.clone())),
            OutputName::Path(dir, name) => specs[0].change(|spec| {
                spec.out = Some(name.clone());
                spec.dir = Some(dir.clone());
            }),
            OutputName::Stdout | OutputName::Device(_) => {}
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
