//! Bandwidth caps (`--limit-rate`, `--limit-rate-per-download`): token buckets
//! shared by every connection they cover.
//!
//! Each bucket is kept as a "theoretical arrival time" (GCRA): taking `n` bytes
//! moves it `n / rate` into the future, and a reader that is ahead of it sleeps
//! until it. Credit saved while idle is capped at [`BURST`], so after a pause at
//! most that much of the rate arrives at once, and a bucket starts with no
//! credit at all: the long-run rate is the cap, not the cap plus a burst.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Most credit a bucket saves while idle, in time at its rate.
pub const BURST: Duration = Duration::from_millis(100);

/// One token bucket of `rate` bytes per second.
#[derive(Debug)]
pub struct RateLimiter {
    /// Seconds per byte.
    per_byte: f64,
    /// When the bytes taken so far are paid for.
    tat: Mutex<Instant>,
}

impl RateLimiter {
    /// A bucket of `bytes_per_second` (more than 0), with no credit yet.
    pub fn new(bytes_per_second: u64) -> Arc<Self> {
        Arc::new(RateLimiter {
            per_byte: 1.0 / bytes_per_second.max(1) as f64,
            tat: Mutex::new(Instant::now()),
        })
    }

    /// Take `n` bytes; the result is the instant until which the reader must
    /// wait before reading more, if it is in the future.
    pub fn reserve(&self, n: u64) -> Option<Instant> {
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = (*tat).max(earliest);
        *tat = start + Duration::from_secs_f64(n as f64 * self.per_byte);
        (*tat > now).then_some(*tat)
    }
}

/// The buckets one download's bytes count against: the run's and its own.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `--limit-rate`, shared by the whole run.
    pub run: Option<Arc<RateLimiter>>,
    /// `--limit-rate-per-download` or `limit_rate=`, shared by this download's connections.
    pub download: Option<Arc<RateLimiter>>,
}

impl Limits {
    /// Take `n` bytes from every bucket; returns when reading may go on.
    pub fn reserve(&self, n: u64) -> Option<Instant> {
        let run = self.run.as_ref().and_then(|r| r.reserve(n));
        let own = self.download.as_ref().and_then(|r| r.reserve(n));
        run.max(own)
    }
}

/// Wait until `until`, if given.
pub async fn pause(until: Option<Instant>) {
    if let Some(t) = until {
        tokio::time::sleep_until(t).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_run_rate_is_the_cap_without_an_initial_burst() {
        let limiter = RateLimiter::new(1_000_000);
        let start = Instant::now();
        // 5 MB in 16 KiB chunks, taken as fast as the bucket allows.
        let mut sent = 0u64;
        while sent < 5_000_000 {
            pause(limiter.reserve(16_384)).await;
            sent += 16_384;
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = sent as f64 / secs;
        assert!(
            (rate - 1_000_000.0).abs() < 10_000.0,
            "{rate} B/s over {secs} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_credit_is_capped() {
        let limiter = RateLimiter::new(1_000_000);
        tokio::time::advance(Duration::from_secs(10)).await;
        // After 10 s idle, only BURST worth (100 kB) passes without a wait.
        assert!(limiter.reserve(90_000).is_none());
        assert!(limiter.reserve(20_000).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn connections_share_one_bucket() {
        let limiter = RateLimiter::new(1_000_000);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..61 {
                    pause(l.reserve(16_384)).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 4 x 61 x 16 KiB ≈ 4 MB at 1 MB/s ≈ 4 s, whatever the number of connections.
        let secs = start.elapsed().as_secs_f64();
        assert!((3.9..4.1).contains(&secs), "{secs}");
    }

    #[test]
    fn the_slower_bucket_wins() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let limits = Limits {
                run: Some(RateLimiter::new(1_000_000)),
                download: Some(RateLimiter::new(100_000)),
            };
            let now = Instant::now();
            let until = limits.reserve(100_000).unwrap();
            assert_eq!(until - now, Duration::from_secs(1));
        });
    }
}
