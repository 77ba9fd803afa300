//! One validator for ranged answers: a resumed single stream and every
//! connection of a split download ask for a range of a file they know, and a
//! `206` must carry exactly that range of that same file (start, size, and the
//! validators of the server that issued them). Anything else would mix bytes
//! of two versions.

use std::fmt;

use reqwest::header::{HeaderName, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use reqwest::Response;

use super::http;

/// What a ranged answer must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The first byte asked for.
    pub start: u64,
    /// The file's size, when known.
    pub size: Option<u64>,
    /// The ETag and Last-Modified recorded for the file, to compare when the
    /// answer comes from the server that issued them (`None` otherwise).
    pub validators: Option<(Option<&'a str>, Option<&'a str>)>,
}

/// The range a `206` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// First byte.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
}

/// Why a `206` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `206` to a request that asked for no range.
    NotAsked,
    /// No `Content-Range`, or one that does not parse.
    NoContentRange,
    /// Another first byte than the one asked for.
    WrongStart {
        /// Asked for.
        asked: u64,
        /// Got.
        got: u64,
    },
    /// Another size than the file's.
    OtherSize {
        /// The file's.
        expected: u64,
        /// The answer's.
        got: Option<u64>,
    },
    /// Other validators than the file's: it changed.
    Changed,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotAsked => f.write_str("206 Partial Content to a request without Range"),
            Problem::NoContentRange => f.write_str("206 without a valid Content-Range"),
            Problem::WrongStart { asked, got } => {
                write!(f, "asked for bytes from {asked}, got from {got}")
            }
            Problem::OtherSize { expected, got } => write!(
                f,
                "the file's size changed on the server ({} bytes, not {expected})",
                got.map_or("unknown".into(), |g| g.to_string())
            ),
            Problem::Changed => {
                f.write_str("the file changed on the server (ETag/Last-Modified differ)")
            }
        }
    }
}

/// Check a `206` against what was asked for.
pub fn check(response: &Response, expected: &Expected<'_>) -> Result<Served, Problem> {
    let (start, last, total) = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(http::parse_content_range)
        .ok_or(Problem::NoContentRange)?;
    if start != expected.start {
        return Err(Problem::WrongStart {
            asked: expected.start,
            got: start,
        });
    }
    if let Some(size) = expected.size.filter(|&s| Some(s) != total) {
        return Err(Problem::OtherSize {
            expected: size,
            got: total,
        });
    }
    if let Some((etag, last_modified)) = expected.validators {
        let differs = |known: Option<&str>, name| match (known, header_text(response, name)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        };
        if differs(etag, ETAG) || differs(last_modified, LAST_MODIFIED) {
            return Err(Problem::Changed);
        }
    }
    Ok(Served {
        start,
        end: last + 1,
        total,
    })
}

/// A response header as text, when it is text.
pub fn header_text(response: &Response, name: HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
