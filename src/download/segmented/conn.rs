//! The I/O half of a split download: each connection waits for a host slot,
//! takes ranges from the table, asks its source for them, checks each answer
//! ([`crate::download::range`]) and streams it into the shared file
//! ([`crate::download::body`]).

use reqwest::header::{ACCEPT_ENCODING, IF_RANGE, RANGE};
use std::time::Duration;

use reqwest::{Response, StatusCode};

use super::{Ended, Split, IDLE_POLL};
use crate::display::redact;
use crate::download::body::{Body, Next};
use crate::download::ratelimit::pause;
use crate::download::request::Lane;
use crate::download::writer::SegmentWriter;
use crate::download::{http, range, DownloadError, Slots};

impl<'a, S: Slots> Split<'a, S> {
    /// One connection: wait `delay` and for a host slot, then fetch ranges until
    /// there is nothing left worth taking.
    pub(super) async fn connection(
        &'a self,
        conn: usize,
        mut first: Option<(Response, u64)>,
        permit: Option<S::Permit>,
        delay: Duration,
    ) -> (usize, Ended) {
        // What the coordinator weighs a failure by: the source last asked
        // (the first answer is the URL's) and the window generation of the
        // host slot.
        let mut source = self.home;
        let mut since = 0;
        let run = async {
            if !delay.is_zero() {
                tokio::select! {
                    _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            let _permit = match permit {
                Some(p) => p,
                None => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                    p = self.slots.acquire() => p,
                },
            };
            since = S::generation(&_permit);
            loop {
                let work = match &first {
                    Some(_) => {
                        let s = self.lock().slot(conn);
                        Some((s.pos, s.end))
                    }
                    None => self.lock().take_work(conn, self.steal_min),
                };
                let Some((start, end)) = work else {
                    // One connection stays for the end game (a range may stall
                    // and be taken over); the others free their host slots.
                    if !self.lock().wait_for_end_game(conn) {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(DownloadError::Interrupted),
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    continue;
                };
                let ask = match first.take() {
                    Some(r) => Ok(r),
                    None => {
                        source = self.source_for(conn);
                        Err(source)
                    }
                };
                let result = self.fetch(conn, ask, start, end).await;
                self.lock().release(conn);
                result?;
                self.slots.success();
            }
        };
        let result = run.await;
        (
            conn,
            Ended {
                source,
                since,
                result,
            },
        )
    }

    /// Fetch `[start, end)` (or what remains of it after stealing) into the
    /// file: from the first answer (and where it ends), or by asking `source`.
    async fn fetch(
        &self,
        conn: usize,
        ask: Result<(Response, u64), usize>,
        start: u64,
        end: u64,
    ) -> Result<(), DownloadError> {
        let (response, response_end) = match ask {
            Ok(r) => r,
            Err(source) => {
                let response = self.request(source, start, end).await?;
                let response_end = self.check(&response, start, source)?;
                (response, response_end)
            }
        };
        let _active = self.progress.connection();
        let mut writer = SegmentWriter::new(self.file.clone(), start, self.hash.clone());
        let streamed = self.stream(conn, response, response_end, &mut writer).await;
        // What arrived is good even if the stream failed: write it all.
        let flushed = writer.flush().await;
        if let Ok(upto) = flushed {
            self.lock().wrote(conn, upto);
        }
        flushed.map_err(|e| self.io_err(e))?;
        streamed
    }

    /// The source connection `conn` asks: the live sources in turn, from the
    /// one that answered first.
    fn source_for(&self, conn: usize) -> usize {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.sources.len();
        let live: Vec<usize> = (0..n)
            .map(|k| (self.home + k) % n)
            .filter(|i| *i == self.home || !dropped.contains(i))
            .collect();
        live[conn % live.len()]
    }

    /// Give up on a mirror that disagrees with the file; its connection moves on.
    pub(super) fn drop_source(&self, source: usize, why: &str) -> DownloadError {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if !dropped.contains(&source) {
            dropped.push(source);
        }
        DownloadError::MirrorDropped(format!(
            "mirror {}: {why}; dropped for this file",
            redact(&self.sources[source])
        ))
    }

    async fn request(
        &self,
        source: usize,
        start: u64,
        end: u64,
    ) -> Result<Response, DownloadError> {
        let url = &self.sources[source];
        // Validators are only comparable on the server that issued them.
        let if_range = self.if_range.as_ref().filter(|_| source == self.home);
        let extra = |request: reqwest::RequestBuilder| {
            let request = request
                .header(RANGE, format!("bytes={start}-{}", end - 1))
                .header(ACCEPT_ENCODING, "identity");
            match if_range {
                Some(v) => request.header(IF_RANGE, v),
                None => request,
            }
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(DownloadError::Interrupted),
            r = self.dl.send_following(self.job, reqwest::Method::GET, url, Lane::Bulk, extra) => r,
        }
    }

    /// A ranged answer must be exactly the asked-for range of the same file.
    /// Returns the end (exclusive) of the range it carries.
    fn check(&self, response: &Response, start: u64, source: usize) -> Result<u64, DownloadError> {
        let status = response.status();
        let mirror = source != self.home;
        if status == StatusCode::OK && mirror {
            return Err(self.drop_source(source, "does not serve ranges"));
        }
        // A mirror that cannot serve the range (404, 416, ...) is dropped; one
        // that is busy (503, ...) is asked again like any connection.
        if mirror && status != StatusCode::PARTIAL_CONTENT && !http::is_transient_status(status) {
            return Err(self.drop_source(source, &format!("answered {status}")));
        }
        if status == StatusCode::OK {
            return Err(DownloadError::Restart(
                "the server sent the whole file to a range request (it changed, or stopped serving ranges)"
                    .into(),
            ));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(DownloadError::from_status(response));
        }
        let expected = range::Expected {
            start,
            size: Some(self.size),
            // Validators are only comparable on the server that issued them.
            validators: (!mirror).then_some((self.etag.as_deref(), self.last_modified.as_deref())),
        };
        match range::check(response, &expected) {
            Ok(served) => Ok(served.end),
            Err(problem) if mirror => Err(self.drop_source(source, &problem.to_string())),
            Err(problem) => Err(DownloadError::Restart(problem.to_string())),
        }
    }

    /// Stream a response into the writer until this connection's range is done.
    async fn stream(
        &self,
        conn: usize,
        response: Response,
        response_end: u64,
        writer: &mut SegmentWriter,
    ) -> Result<(), DownloadError> {
        // Its own stalls are the split's business (a connection takes over
        // another's range); its data says the host is alive.
        let flow = self.dl.stalls.flow(&response, false);
        let mut body = Body::new(response, self.dl.idle_timeout).with_flow(flow);
        let mut flush = self.flush.subscribe();
        let io_err = |e| self.io_err(e);
        loop {
            let tick = async {
                let _ = flush.changed().await;
            };
            match body.next(&self.stop, tick).await? {
                Next::Tick => {
                    let upto = writer.flush().await.map_err(io_err)?;
                    self.lock().wrote(conn, upto);
                }
                Next::Chunk(chunk) => {
                    let (take, range_done) = self.lock().accept(conn, chunk.len() as u64);
                    if take > 0 {
                        self.progress.add(take);
                        if let Some(until) = body.charge(&self.limits, take) {
                            // Paused by our own rate limit, not stalled.
                            self.lock().quiet_until(conn, until);
                        }
                        let written = writer
                            .push(chunk.slice(..take as usize))
                            .await
                            .map_err(io_err)?;
                        if let Some(upto) = written {
                            self.lock().wrote(conn, upto);
                        }
                    }
                    // Done with the range; a response that goes on is dropped,
                    // one that ends here is read to its end so the connection
                    // can be reused.
                    if range_done && self.lock().slot(conn).pos < response_end {
                        // The last bytes count against the rate limit too.
                        tokio::select! {
                            _ = self.stop.cancelled() => {}
                            _ = pause(body.resume_at()) => {}
                        }
                        return Ok(());
                    }
                }
                Next::End => {
                    let slot = self.lock().slot(conn);
                    return if slot.pos >= slot.end {
                        Ok(())
                    } else {
                        Err(DownloadError::ShortBody {
                            got: slot.pos,
                            expected: slot.end,
                        })
                    };
                }
            }
        }
    }
}
