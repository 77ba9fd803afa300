//! One loop for reading a body, shared by a single stream to a file, a body
//! to stdout and each connection of a split download: the next chunk once the
//! rate limits allow it, unless the try is stopped or it is time for the
//! caller's periodic work (a checkpoint, a flush) first.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::Response;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ratelimit::{pause, Limits};
use super::stall::{Flow, RECHECK};
use super::DownloadError;

/// What reading a body brought.
#[derive(Debug)]
pub enum Next {
    /// Some bytes.
    Chunk(Bytes),
    /// The caller's periodic work is due; no bytes were taken.
    Tick,
    /// The body ended.
    End,
}

/// A body being read, paced by rate limits.
pub struct Body {
    stream: BoxStream<'static, reqwest::Result<Bytes>>,
    /// When the rate limits allow the next read.
    resume_at: Option<Instant>,
    /// The idle timeout, for messages.
    idle: Duration,
    /// When data arrives, and whether this body stalled (see [`super::stall`]).
    flow: Option<Flow>,
    /// Since when the body has been waited for without a byte (kept across
    /// reads that a tick or a pause cut short).
    silent_since: Option<std::time::Instant>,
}

impl Body {
    /// Read `response`'s body.
    pub fn new(response: Response, idle: Duration) -> Self {
        Body {
            stream: response.bytes_stream().boxed(),
            resume_at: None,
            idle,
            flow: None,
            silent_since: None,
        }
    }

    /// Record this body's data in `flow` (and drop it when it stalls, if the
    /// flow watches it).
    pub fn with_flow(mut self, flow: Option<Flow>) -> Self {
        self.flow = flow;
        self
    }

    /// The next chunk, read once the rate limits allow it. `stop` ends the
    /// read with [`DownloadError::Interrupted`]; `tick` finishing first gives
    /// [`Next::Tick`] (pass `std::future::pending()` for none). Both win over
    /// a chunk that is ready at the same time.
    pub async fn next(
        &mut self,
        stop: &CancellationToken,
        tick: impl Future<Output = ()>,
    ) -> Result<Next, DownloadError> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => Err(DownloadError::Interrupted),
            _ = tick => Ok(Next::Tick),
            next = self.read() => next,
        }
    }

    /// The next chunk once the rate limits allow it; with a watched flow, a
    /// stall ends the read.
    async fn read(&mut self) -> Result<Next, DownloadError> {
        pause(self.resume_at).await;
        let watched = self.flow.as_ref().and_then(|f| Some((f, f.watch()?)));
        let next = match watched {
            None => self.stream.next().await,
            Some((flow, after)) => {
                let since = *self
                    .silent_since
                    .get_or_insert_with(std::time::Instant::now);
                let mut at = since + after;
                loop {
                    match tokio::time::timeout_at(at.into(), self.stream.next()).await {
                        Ok(next) => break next,
                        Err(_) if flow.stalled(since) => return Err(flow.error()),
                        Err(_) => at = std::time::Instant::now() + RECHECK,
                    }
                }
            }
        };
        self.silent_since = None;
        match next {
            Some(Ok(chunk)) => {
                if let Some(flow) = &self.flow {
                    flow.received();
                }
                Ok(Next::Chunk(chunk))
            }
            Some(Err(e)) => Err(DownloadError::from_reqwest(e, self.idle)),
            None => Ok(Next::End),
        }
    }

    /// Count `n` bytes against `limits`: the next read waits as long as they
    /// say. Returns when reading may go on, when it must wait.
    pub fn charge(&mut self, limits: &Limits, n: u64) -> Option<Instant> {
        self.resume_at = limits.reserve(n);
        self.resume_at
    }

    /// When reading may go on, as the last [`Body::charge`] said.
    pub fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }
}
