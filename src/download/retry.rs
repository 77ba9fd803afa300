//! The retry policy: how many failed tries a download may have and how long to
//! wait before the next one (exponential backoff with full jitter, or the
//! server's `Retry-After`, both capped).

use std::time::Duration;

/// `--retries`, `--retry-wait` and `--max-retry-wait`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    /// Backoff base.
    pub wait: Duration,
    /// Backoff and Retry-After cap.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// Most tries in all.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The wait after `failed_tries` failures.
    pub fn delay(&self, failed_tries: u32, retry_after: Option<Duration>, salt: u64) -> Duration {
        backoff(self.wait, self.max_wait, failed_tries, retry_after, salt)
    }
}

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base·2^(n-1))]`;
/// a server's `Retry-After` is honoured instead, up to the cap.
pub fn backoff(
    base: Duration,
    cap: Duration,
    failed_tries: u32,
    retry_after: Option<Duration>,
    salt: u64,
) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(cap);
    }
    let exp = base.saturating_mul(1u32 << failed_tries.saturating_sub(1).min(20));
    let ceiling = exp.min(cap);
    ceiling.mul_f64(jitter(salt ^ u64::from(failed_tries)))
}

/// A number in `[0, 1)` that differs between calls (xorshift over the clock).
fn jitter(salt: u64) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for n in 1..30 {
            let d = backoff(base, cap, n, None, 7);
            let ceiling = Duration::from_secs(1u64 << (n - 1).min(20)).min(cap);
            assert!(d <= ceiling, "try {n}: {d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let cap = Duration::from_secs(10);
        let b = |ra| backoff(Duration::from_secs(1), cap, 1, Some(ra), 0);
        assert_eq!(b(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(b(Duration::from_secs(100)), cap);
    }

    #[test]
    fn jitter_spreads() {
        let samples: Vec<f64> = (0..100).map(jitter).collect();
        assert!(samples.iter().all(|&x| (0.0..1.0).contains(&x)));
        let distinct = samples
            .iter()
            .map(|x| (x * 1000.0) as u32)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 50);
    }
}
