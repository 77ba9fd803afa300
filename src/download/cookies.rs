//! The cookie jar: Netscape `cookies.txt` in (`--load-cookies`) and out
//! (`--save-cookies`), and the cookies servers set during the run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reqwest::header::HeaderValue;
use reqwest::Url;

/// Why a cookie file could not be used: a usage error (exit 2) when loading.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The file could not be read or written.
    #[error("cookie file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The run's cookies, shared with the HTTP client.
#[derive(Debug, Default)]
pub struct Jar {
    cookies: Mutex<Vec<String>>, // TODO(helper): real cookie records
}

impl Jar {
    /// A jar with the cookies of a Netscape cookies.txt, or empty.
    pub fn load(path: Option<&Path>) -> Result<Self, CookieError> {
        let _ = path; // TODO(helper)
        Ok(Jar::default())
    }

    /// Write every unexpired cookie to `path` in Netscape format.
    pub fn save(&self, path: &Path) -> Result<(), CookieError> {
        let _ = (path, &self.cookies); // TODO(helper)
        Ok(())
    }
}

impl reqwest::cookie::CookieStore for Jar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        let _ = (cookie_headers, url); // TODO(helper)
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let _ = url; // TODO(helper)
        None
    }
}
