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

use super::ratelimit::{paced, Limits};
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
}

impl Body {
    /// Read `response`'s body.
    pub fn new(response: Response, idle: Duration) -> Self {
        Body {
            stream: response.bytes_stream().boxed(),
            resume_at: None,
            idle,
        }
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
            next = paced(&mut self.stream, self.resume_at) => match next {
                Some(Ok(chunk)) => Ok(Next::Chunk(chunk)),
                Some(Err(e)) => Err(DownloadError::from_reqwest(e, self.idle)),
                None => Ok(Next::End),
            },
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
