//! `--dry-run`: what a download would do, found out with a `HEAD` request (a
//! one-byte `GET` where `HEAD` is refused), writing nothing.

use std::fmt;
use std::path::PathBuf;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_DISPOSITION, RANGE};

use super::request::Lane;
use super::{http, Completed, DownloadError, Downloader, Job, Tries};
use crate::display::human_bytes;
use crate::naming;

/// What `--dry-run` found out about one download.
#[derive(Debug)]
pub struct Plan {
    /// The URL after redirects.
    pub final_url: String,
    /// The answer's status, 0 when there was none.
    pub status: u16,
    /// The size, when the server said.
    pub size: Option<u64>,
    /// Where the file would go.
    pub path: Option<PathBuf>,
    /// What it would do.
    pub action: Action,
}

/// What a download would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Download the file.
    Download,
    /// Resume it: this many bytes are on disk.
    Resume(u64),
    /// Nothing to do, for this reason.
    Skip(String),
    /// It would fail, for this reason.
    Fail(String),
}

impl Action {
    /// Whether the download would fail.
    pub fn fails(&self) -> bool {
        matches!(self, Action::Fail(_))
    }

    /// Whether there is nothing to do.
    pub fn skips(&self) -> bool {
        matches!(self, Action::Skip(_))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Download => f.write_str("download"),
            Action::Resume(bytes) => {
                write!(f, "resume: {} of the file on disk", human_bytes(*bytes))
            }
            Action::Skip(reason) => write!(f, "skip: {reason}"),
            Action::Fail(reason) => write!(f, "fail: {reason}"),
        }
    }
}

impl Downloader {
    /// `--dry-run`: what a download would do, from a `HEAD` request (a one-byte
    /// `GET` when `HEAD` is refused). Nothing is written.
    pub async fn probe(&self, job: &Job, tries: &mut Tries) -> Plan {
        let ready = self.prepare(job, tries);
        if let Some(Ok(Completed::Skipped { path, reason })) = ready {
            // Already complete: nothing to ask the server.
            return Plan {
                final_url: job.url(),
                status: 0,
                size: None,
                path: Some(path),
                action: Action::Skip(reason),
            };
        }
        let mut plan = Plan {
            final_url: job.url(),
            status: 0,
            size: None,
            path: tries.final_path.clone(),
            action: match (&ready, &tries.resume) {
                (Some(Ok(Completed::Skipped { reason, .. })), _) => Action::Skip(reason.clone()),
                (Some(Err(e)), _) => Action::Fail(e.to_string()),
                (_, Some(state)) => Action::Resume(state.covered()),
                _ => Action::Download,
            },
        };
        let url = &job.spec.url;
        let mut result = self
            .send_following(job, reqwest::Method::HEAD, url, Lane::Shared, |r| r)
            .await;
        if let Ok(r) = &result {
            if matches!(r.status().as_u16(), 405 | 501) {
                result = self
                    .send_following(job, reqwest::Method::GET, url, Lane::Shared, |r| {
                        r.header(RANGE, "bytes=0-0")
                            .header(ACCEPT_ENCODING, "identity")
                    })
                    .await;
            }
        }
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                plan.action = Action::Fail(e.to_string());
                return plan;
            }
        };
        plan.final_url = response.url().to_string();
        plan.status = response.status().as_u16();
        if !response.status().is_success() {
            // An error page's size is not the file's.
            plan.action = Action::Fail(DownloadError::from_status(&response).to_string());
            return plan;
        }
        plan.size = http::file_size(response.headers());
        if let (None, Some(planned), None) = (&job.spec.out, &job.name, &tries.resume) {
            let disposition = response
                .headers()
                .get(CONTENT_DISPOSITION)
                .and_then(|v| v.to_str().ok());
            let last = self.trust_server_names.then(|| response.url());
            // Only a name the server gives moves the file (as in a real run);
            // otherwise the planned name stands (`--on-exists rename` included).
            if let Some(served) = naming::from_answer(disposition, last, &job.spec.url, planned) {
                plan.path = Some(job.dir.join(served));
            }
        }
        plan
    }
}
