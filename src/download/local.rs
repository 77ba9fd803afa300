//! What is on disk for a download, before, during and after its tries:
//! `--on-exists` for the final file, a partial file left by an earlier run
//! (resume), `-N`'s local copy and mtime, free space, and recording what
//! arrived in the state file.

use std::io;
use std::path::{Path, PathBuf};

use reqwest::header::LAST_MODIFIED;
use reqwest::{Response, StatusCode};

use super::state::ResumeState;
use super::writer::{self, PartWriter};
use super::{http, part_path, range, Completed, DownloadError, Downloader, Job, Tries};
use crate::options::OnExists;

impl Downloader {
    /// Before the first try: apply `--on-exists` to the reserved name and pick up
    /// a resumable `.part` left by an earlier run. `Some` means there is nothing to
    /// download.
    pub fn prepare(
        &self,
        job: &Job,
        tries: &mut Tries,
    ) -> Option<Result<Completed, DownloadError>> {
        if self.known_new(job, tries) {
            return None;
        }
        self.look_on_disk(job, tries)
    }

    /// The part of [`Downloader::prepare`] that needs no disk: `true` when the
    /// download has no file, or a name the start-of-run listing knows is new
    /// (no file to settle, nothing to resume, no local copy to compare); its
    /// path is then set.
    pub fn known_new(&self, job: &Job, tries: &mut Tries) -> bool {
        let Some(name) = job.name.as_deref() else {
            return true;
        };
        if !self.listing.is_new(&job.dir, name) {
            return false;
        }
        tries.final_path = Some(job.dir.join(name));
        true
    }

    /// The rest of [`Downloader::prepare`]: the lookups on disk.
    pub fn look_on_disk(
        &self,
        job: &Job,
        tries: &mut Tries,
    ) -> Option<Result<Completed, DownloadError>> {
        let name = job.name.as_deref()?;
        let path = job.dir.join(name);
        match self.settle_existing(job, path, name) {
            Ok(path) => {
                if self.timestamping {
                    tries.local = path
                        .symlink_metadata()
                        .ok()
                        .filter(std::fs::Metadata::is_file)
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                }
                self.pick_up_resume(job, tries, &path);
                tries.final_path = Some(path);
                None
            }
            Err(done) => Some(done),
        }
    }

    /// Apply `--on-exists` to a path; `Ok` is the path to download to.
    pub(super) fn settle_existing(
        &self,
        job: &Job,
        path: PathBuf,
        name: &str,
    ) -> Result<PathBuf, Result<Completed, DownloadError>> {
        if path.symlink_metadata().is_err() {
            return Ok(path);
        }
        // -N asks the server whether it has something newer instead.
        if self.timestamping {
            return Ok(path);
        }
        match self.on_exists {
            OnExists::Skip => Err(Ok(Completed::Skipped {
                path,
                reason: "already complete".into(),
            })),
            OnExists::Fail => Err(Err(DownloadError::Exists(path))),
            OnExists::Overwrite => Ok(path),
            OnExists::Rename => Ok(self.names.reserve(&job.dir, name, true)),
        }
    }

    pub(super) fn pick_up_resume(&self, job: &Job, tries: &mut Tries, path: &Path) -> bool {
        let part = part_path(path);
        let state_path = ResumeState::path_for(&part);
        // The state must describe this URL, and the .part must still hold every
        // byte it records (a deleted or truncated .part is not resumed as zeros).
        let holds = |state: &ResumeState| {
            let end = state.done.last().map_or(0, |[_, e]| *e);
            part.symlink_metadata()
                .is_ok_and(|m| m.is_file() && m.len() >= end)
        };
        match ResumeState::load(&state_path) {
            Some(state)
                if state.describes(&job.spec.url) && state.covered() > 0 && holds(&state) =>
            {
                tries.resume = Some(state);
                tries.state_on_disk = true;
                true
            }
            _ => false,
        }
    }

    /// `-N`: the server has nothing newer than the local file (a 304, or a
    /// Last-Modified no newer and the same size): skip it.
    pub(super) fn not_newer(&self, tries: &mut Tries, response: &Response) -> Option<Completed> {
        let (mtime, size) = tries.local?;
        let path = tries.final_path.clone()?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Some(Completed::Skipped {
                path,
                reason: "not modified on the server".into(),
            });
        }
        let remote = range::header_text(response, LAST_MODIFIED)
            .and_then(|t| httpdate::parse_http_date(&t).ok())?;
        let remote_size = response
            .status()
            .is_success()
            .then(|| http::file_size(response.headers()))
            .flatten()?;
        (remote <= mtime && remote_size == size).then(|| Completed::Skipped {
            path,
            reason: "not newer on the server".into(),
        })
    }

    /// After a download to a file: with `-N`, give it the server's
    /// Last-Modified as its mtime.
    pub async fn stamp(&self, tries: &Tries, path: &Path) {
        if !self.timestamping {
            return;
        }
        let Some(time) = tries
            .last_modified
            .as_deref()
            .and_then(|t| httpdate::parse_http_date(t).ok())
        else {
            return;
        };
        let path = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(time))
        })
        .await;
    }

    /// Fail at once when the filesystem clearly cannot hold the rest of a file.
    pub(super) async fn check_space(
        &self,
        tries: &mut Tries,
        dir: &Path,
        needed: u64,
    ) -> Result<(), DownloadError> {
        if tries.space_checked || needed < writer::BATCH_BYTES as u64 {
            return Ok(());
        }
        tries.space_checked = true;
        let dir = dir.to_path_buf();
        let probe = dir.clone();
        let free = tokio::task::spawn_blocking(move || crate::fs::free_space(&probe))
            .await
            .ok()
            .and_then(Result::ok);
        match free {
            Some(free) if free < needed => Err(DownloadError::NoSpace { dir, needed, free }),
            _ => Ok(()),
        }
    }

    /// Flush what arrived and record it in the state file. `stopping`: the try
    /// ends here, so space reserved beyond the data is given back.
    pub(super) async fn keep_partial(
        &self,
        tries: &mut Tries,
        writer: &mut PartWriter,
        stopping: bool,
    ) -> io::Result<()> {
        let durable = writer.sync(stopping).await?;
        let Some(state) = tries.resume.as_mut() else {
            return Ok(());
        };
        state.set_contiguous(durable);
        let snapshot = state.clone();
        let path = ResumeState::path_for(writer.path());
        tokio::task::spawn_blocking(move || snapshot.save(&path))
            .await
            .map_err(io::Error::other)??;
        tries.state_on_disk = true;
        Ok(())
    }
}
