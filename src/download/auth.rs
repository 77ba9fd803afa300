//! Credentials: `--http-user`/`--http-password` for every download, and per-host
//! HTTP Basic credentials from a `.netrc` (`--netrc`, `--netrc-file`). They are
//! attached per request to the URL's own host; reqwest drops `Authorization` when
//! a redirect leaves that host, so credentials never follow to another host.

use std::path::{Path, PathBuf};

use reqwest::Url;

/// Why the credentials could not be read: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `.netrc` could not be read.
    #[error("cannot read netrc file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// The `.netrc` is malformed.
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

/// All credentials of the run.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// `--http-user` and `--http-password`, for every host.
    pub everywhere: Option<(String, Option<String>)>,
}

impl Credentials {
    /// Read the netrc file, if given.
    pub fn load(
        everywhere: Option<(String, Option<String>)>,
        netrc: Option<&Path>,
    ) -> Result<Self, AuthError> {
        let _ = netrc; // TODO(helper): parse the netrc file.
        Ok(Credentials { everywhere })
    }

    /// The user and password to send to `url`'s host, if any.
    pub fn for_url(&self, url: &Url) -> Option<(String, Option<String>)> {
        let _ = url;
        self.everywhere.clone()
    }
}
