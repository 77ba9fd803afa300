//! One try of a download that is not split: the request, the checks on the
//! answer (status, range, size, `-N`), the name the answer gives, and the body
//! streamed into `NAME.part` or to stdout. A large file whose server allows
//! ranges is handed to [`super::segmented`] instead.

use std::io;
use std::path::PathBuf;

use reqwest::header::{CONTENT_DISPOSITION, CONTENT_RANGE, ETAG, LAST_MODIFIED};
use reqwest::{Response, StatusCode};

use super::body::{Body, Next};
use super::ratelimit::Limits;
use super::request::Lane;
use super::state::ResumeState;
use super::writer::{PartWriter, StdoutSink};
use super::{
    http, part_path, range, redact, segmented, Completed, DownloadError, Downloader, Job, Slots,
    Tries, CHECKPOINT_INTERVAL,
};
use crate::checksum;
use crate::naming;

/// Whether an answer is a large body (at least `large` bytes to come) on a
/// multiplexed HTTP/2 connection.
fn is_large_on_shared(response: &Response, large: u64) -> bool {
    response.version() == reqwest::Version::HTTP_2
        && response.status().is_success()
        && response.content_length().is_some_and(|n| n >= large)
}

impl Downloader {
    /// One try: request, name, stream the body (over several connections when
    /// the file is large and the server allows ranges), finish.
    pub async fn attempt<S: Slots>(
        &self,
        job: &Job,
        tries: &mut Tries,
        slots: &S,
        permit: S::Permit,
    ) -> Result<Completed, DownloadError> {
        let connections = match job.name {
            Some(_) => job.spec.connections().unwrap_or(self.connections),
            None => 1,
        };
        let limits = self.limits(job, tries);
        let mut range = self.wanted_range(job, tries, connections);
        // A download that may be split is a bulk transfer from the start.
        let lane = if connections > 1 {
            Lane::Bulk
        } else {
            Lane::Shared
        };
        let mut response = self.send(job, tries, range, lane).await?;
        // Its other requests may go now (over the connection that answered,
        // when it is HTTP/2).
        slots.answered();
        if response.status() == StatusCode::RANGE_NOT_SATISFIABLE && range == Some((0, None)) {
            // An empty file has no byte 0 to range over: ask for it plainly.
            range = None;
            response = self.send(job, tries, range, lane).await?;
        }
        if lane == Lane::Shared && is_large_on_shared(&response, self.min_split_size) {
            // A large body on a shared HTTP/2 connection would share its
            // window and the connection's limits with every other download:
            // ask again on a connection of its own (nothing was read yet).
            drop(response);
            response = self.send(job, tries, range, Lane::Bulk).await?;
        }
        let offset = range.map_or(0, |(s, _)| s);
        let status = response.status();
        if let Some(done) = self.not_newer(tries, &response) {
            return Ok(done);
        }
        if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            return self
                .range_not_satisfiable(job, tries, offset, response.headers())
                .await;
        }
        if !status.is_success() {
            return Err(DownloadError::from_status(&response));
        }
        let (offset, size, end) = self.check_range(
            tries,
            &response,
            range.map(|(s, _)| s),
            job.source(tries.sources.current),
        )?;
        if let Some(expected) = job.spec.size().filter(|&e| size.is_some_and(|s| s != e)) {
            return Err(DownloadError::WrongSize {
                expected,
                got: size,
            });
        }
        if job.name.is_none() {
            return self
                .stream_to_stdout(job, tries, response, offset, size, &limits)
                .await;
        }
        if !tries.name_settled {
            if let Some(done) = self.settle_name(job, tries, &response, offset)? {
                return Ok(done);
            }
        }
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        let mut state = ResumeState::new(&job.url());
        if tries.sources.current != 0 {
            state.source = Some(redact(job.source(tries.sources.current)));
        }
        state.size = size;
        state.etag = range::header_text(&response, ETAG);
        state.last_modified = range::header_text(&response, LAST_MODIFIED);
        let holes = status == StatusCode::PARTIAL_CONTENT
            && tries.resume.as_ref().is_some_and(ResumeState::has_holes);
        match tries.resume.as_ref() {
            Some(old) if holes => state.done = old.done.clone(),
            _ => state.set_contiguous(offset),
        }
        tries.last_modified = state.last_modified.clone();
        if let Some(total) = size {
            let dir = crate::fs::parent_dir(&final_path);
            self.check_space(tries, dir, total.saturating_sub(state.covered()))
                .await?;
        }
        if let (StatusCode::PARTIAL_CONTENT, Some(total)) = (status, size) {
            let remaining = total - state.covered();
            let worth_splitting =
                connections > 1 && remaining >= self.min_split_size.max(1).saturating_mul(2);
            if holes || worth_splitting {
                let response_end = end.unwrap_or(total);
                let start = segmented::Start {
                    response,
                    response_end,
                    permit,
                    state,
                    connections,
                    min_split_size: self.min_split_size,
                    limits,
                };
                return self.split(job, tries, slots, start).await;
            }
        }
        let _permit = permit;
        self.stream_to_file(job, tries, response, state, offset, size, &limits)
            .await
    }

    /// The body of a single stream (not split) into `NAME.part` from
    /// `offset`, checkpointed every [`CHECKPOINT_INTERVAL`], renamed to the
    /// final name once whole (and verified).
    #[allow(clippy::too_many_arguments)]
    async fn stream_to_file(
        &self,
        job: &Job,
        tries: &mut Tries,
        response: Response,
        state: ResumeState,
        offset: u64,
        size: Option<u64>,
        limits: &Limits,
    ) -> Result<Completed, DownloadError> {
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        tries.resume = Some(state);
        self.start(job, tries, &final_path, offset, size);
        let part = part_path(&final_path);
        if offset == 0 && tries.state_on_disk {
            // The .part starts over: its old state file must not outlive the
            // bytes it describes (a kill before the next checkpoint would
            // resume zeros).
            let stale = ResumeState::path_for(&part);
            tokio::task::spawn_blocking(move || crate::fs::remove_if_exists(&stale))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(|source| DownloadError::Io {
                    path: part.clone(),
                    source,
                })?;
            tries.state_on_disk = false;
        }
        let verify =
            checksum::Verifier::new(self.expected(job, &final_path, Some(response.headers())));
        let mut writer = PartWriter::new(part.clone(), offset, verify);
        if let Some(total) = size {
            writer = writer.reserving(self.file_allocation, total);
        }
        let io_err = |source| DownloadError::Io {
            path: part.clone(),
            source,
        };
        let _active = tries.progress.connection();
        let flow = self.stalls.flow(&response, true);
        let mut body = Body::new(response, self.idle_timeout).with_flow(flow);
        // Flush and record progress every CHECKPOINT_INTERVAL, also while the
        // server stalls, so a kill loses at most that much of what arrived.
        let checkpoint = tokio::time::sleep(CHECKPOINT_INTERVAL);
        tokio::pin!(checkpoint);
        loop {
            match body.next(&self.cancel, checkpoint.as_mut()).await {
                Ok(Next::Tick) => {
                    if writer.has_unsynced() {
                        self.keep_partial(tries, &mut writer, false)
                            .await
                            .map_err(io_err)?;
                    }
                    checkpoint
                        .as_mut()
                        .reset(tokio::time::Instant::now() + CHECKPOINT_INTERVAL);
                }
                Ok(Next::Chunk(chunk)) => {
                    let n = chunk.len() as u64;
                    if let Err(e) = writer.push(chunk).await {
                        let _ = self.keep_partial(tries, &mut writer, true).await;
                        return Err(io_err(e));
                    }
                    tries.progress.add(n);
                    body.charge(limits, n);
                }
                Ok(Next::End) => break,
                // Interrupted, or the connection failed: keep what arrived.
                Err(e) => {
                    self.keep_partial(tries, &mut writer, true)
                        .await
                        .map_err(io_err)?;
                    return Err(tries.ended_at(e, writer.end()));
                }
            }
        }
        let end = writer.end();
        // The server's size, else the size the Metalink file gives.
        if let Some(expected) = size.or(job.spec.size()).filter(|&s| s != end) {
            self.keep_partial(tries, &mut writer, true)
                .await
                .map_err(io_err)?;
            return Err(tries.ended_at(DownloadError::ShortBody { got: end, expected }, end));
        }
        let stale_state = tries.state_on_disk.then(|| ResumeState::path_for(&part));
        self.finish(tries, writer, final_path, stale_state).await
    }

    /// Verify, flush and rename a whole `.part` to its final name (removing
    /// the state file `stale`); a checksum mismatch deletes it.
    async fn finish(
        &self,
        tries: &mut Tries,
        writer: PartWriter,
        final_path: PathBuf,
        stale: Option<PathBuf>,
    ) -> Result<Completed, DownloadError> {
        let part = writer.path().to_path_buf();
        let (bytes, checksum) = writer
            .finish(final_path.clone(), stale)
            .await
            .map_err(|e| self.mismatch(tries, e, &part))?;
        Ok(Completed::Done {
            path: final_path,
            bytes,
            checksum,
        })
    }

    /// 416 on a resumed request: complete if the server's size is what is on
    /// disk, else start over.
    async fn range_not_satisfiable(
        &self,
        job: &Job,
        tries: &mut Tries,
        offset: u64,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Completed, DownloadError> {
        // Complete only when the 416 gives the file's size as exactly what is
        // on disk (`Content-Range: bytes */N`), and the state agrees.
        let served = headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(http::unsatisfied_size);
        let whole = served == Some(offset)
            && tries
                .resume
                .as_ref()
                .is_some_and(|s| s.size.is_none_or(|size| size == offset) && s.covered() == offset);
        if job.name.is_none() || !whole {
            tries.resume = None;
            tries.stdout.written = 0;
            return Err(DownloadError::Restart(
                "the server refused the range of the partial file".into(),
            ));
        }
        let final_path = tries
            .final_path
            .clone()
            .expect("a file download has a path");
        self.start(job, tries, &final_path, offset, Some(offset));
        let part = part_path(&final_path);
        let verify = checksum::Verifier::new(self.expected(job, &final_path, Some(headers)));
        let stale = Some(ResumeState::path_for(&part));
        let writer = PartWriter::new(part, offset, verify);
        self.finish(tries, writer, final_path, stale).await
    }

    /// Where this response's body starts, the whole file's size and, for a
    /// `206`, where the body ends; a ranged answer that does not continue
    /// exactly what is on disk is refused.
    fn check_range(
        &self,
        tries: &mut Tries,
        response: &Response,
        asked: Option<u64>,
        source: &reqwest::Url,
    ) -> Result<(u64, Option<u64>, Option<u64>), DownloadError> {
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Ok((0, response.content_length(), None));
        }
        let known = tries.resume.as_ref();
        let served = match asked {
            None => Err(range::Problem::NotAsked),
            Some(start) => range::check(
                response,
                &range::Expected {
                    start,
                    size: known.and_then(|k| k.size),
                    validators: known
                        .filter(|k| k.is_from(source))
                        .map(|k| (k.etag.as_deref(), k.last_modified.as_deref())),
                },
            ),
        };
        match served {
            Ok(served) => Ok((served.start, served.total, Some(served.end))),
            // A mirror that answers another range or size is the mirror's
            // problem, not the file's: drop it and keep the data.
            Err(problem) if tries.sources.current != 0 => {
                Err(DownloadError::MirrorDropped(format!(
                    "mirror {}: {problem}; dropped for this file",
                    redact(source)
                )))
            }
            Err(problem) => {
                tries.resume = None;
                tries.stdout.written = 0;
                Err(DownloadError::Restart(problem.to_string()))
            }
        }
    }

    /// Decide the final name from the response (Content-Disposition, final URL)
    /// when `out=` did not fix it.
    fn settle_name(
        &self,
        job: &Job,
        tries: &mut Tries,
        response: &Response,
        offset: u64,
    ) -> Result<Option<Completed>, DownloadError> {
        tries.name_settled = true;
        // A resumed file keeps the name its partial data is under.
        if job.spec.out.is_some() || offset > 0 || tries.resume.is_some() {
            return Ok(None);
        }
        let disposition = response
            .headers()
            .get(CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok());
        // A mirror's own URL does not name the file: the first URL does.
        let last = (self.trust_server_names && tries.sources.current == 0).then(|| response.url());
        let planned = job.name.as_deref().unwrap_or_default();
        let Some(served) = naming::from_answer(disposition, last, &job.spec.url, planned) else {
            return Ok(None);
        };
        let path = self.names.reserve(&job.dir, &served, false);
        let path = match self.settle_existing(job, path, &served) {
            Ok(path) => path,
            Err(Ok(done)) => return Ok(Some(done)),
            Err(Err(e)) => return Err(e),
        };
        tries.final_path = Some(path.clone());
        if self.pick_up_resume(job, tries, &path) {
            return Err(DownloadError::ResumeFound(part_path(&path)));
        }
        Ok(None)
    }

    async fn stream_to_stdout(
        &self,
        job: &Job,
        tries: &mut Tries,
        response: Response,
        offset: u64,
        size: Option<u64>,
        limits: &Limits,
    ) -> Result<Completed, DownloadError> {
        let stdout_path = self.device.clone().unwrap_or_else(|| PathBuf::from("-"));
        let _active = tries.progress.connection();
        self.start(job, tries, &stdout_path, tries.stdout.written, size);
        let io_err = |source| DownloadError::Io {
            path: match &self.device {
                Some(path) => path.clone(),
                None => PathBuf::from("<stdout>"),
            },
            source,
        };
        let skip = tries.stdout.written - offset;
        let mut sink = match &self.device {
            Some(path) => StdoutSink::device(path, skip).await.map_err(io_err)?,
            None => StdoutSink::new(skip),
        };
        if tries.stdout.written == 0 {
            tries.stdout.verify =
                checksum::Verifier::new(self.expected(job, &stdout_path, Some(response.headers())));
        }
        let mut position = offset;
        let flow = self.stalls.flow(&response, true);
        let mut body = Body::new(response, self.idle_timeout).with_flow(flow);
        loop {
            let next = body.next(&self.cancel, std::future::pending()).await;
            let chunk = match next.map_err(|e| tries.ended_at(e, position))? {
                Next::Chunk(chunk) => chunk,
                Next::Tick => continue,
                Next::End => break,
            };
            let n = chunk.len() as u64;
            body.charge(limits, n);
            if let Some(v) = tries.stdout.verify.as_mut() {
                // Only the bytes not written by an earlier try.
                let new_from = tries.stdout.written.saturating_sub(position).min(n);
                v.update(&chunk[new_from as usize..]);
            }
            sink.push(chunk).await.map_err(io_err)?;
            position += n;
            if position > tries.stdout.written {
                tries.progress.add(position - tries.stdout.written);
                tries.stdout.written = position;
            }
        }
        sink.flush().await.map_err(io_err)?;
        if let Some(expected) = size.filter(|&s| s != position) {
            let short = DownloadError::ShortBody {
                got: position,
                expected,
            };
            return Err(tries.ended_at(short, position));
        }
        // The bytes are out already: a mismatch can only fail the download.
        let checksum = match tries.stdout.verify.take().map(checksum::Verifier::finish) {
            Some(Err(mismatch)) => {
                return Err(DownloadError::Checksum {
                    mismatch,
                    again: false,
                })
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        Ok(Completed::Done {
            path: stdout_path,
            bytes: position,
            checksum,
        })
    }
}
