//! The retry policy: how many failed tries a download may have and how long to
//! wait before the next one (exponential backoff with full jitter, the random
//! part drawn with `fastrand`, or the server's `Retry-After`, both capped).

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
    pub fn delay(&self, failed_tries: u32, retry_after: Option<Duration>) -> Duration {
        backoff(self.wait, self.max_wait, failed_tries, retry_after)
    }
}

/// Exponential backoff with full jitter: a random wait in `[0, min(cap, base·2^(n-1))]`;
/// a server's `Retry-After` is honoured instead, up to the cap. Downloads
/// that fail together do not retry together: fastrand's generator is seeded
/// at random for each thread and moves on with every draw.
fn backoff(
    base: Duration,
    cap: Duration,
    failed_tries: u32,
    retry_after: Option<Duration>,
) -> Duration {
    backoff_with(
        &mut fastrand::Rng::new(),
        base,
        cap,
        failed_tries,
        retry_after,
    )
}

/// [`backoff`] drawing from `rng` (seeded in tests).
fn backoff_with(
    rng: &mut fastrand::Rng,
    base: Duration,
    cap: Duration,
    failed_tries: u32,
    retry_after: Option<Duration>,
) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(cap);
    }
    let exp = base.saturating_mul(1u32 << failed_tries.saturating_sub(1).min(20));
    let ceiling = exp.min(cap);
    ceiling.mul_f64(rng.f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for seed in 0..20 {
            let mut rng = fastrand::Rng::with_seed(seed);
            for n in 1..30 {
                let d = backoff_with(&mut rng, base, cap, n, None);
                let ceiling = Duration::from_secs(1u64 << (n - 1).min(20)).min(cap);
                assert!(d <= ceiling, "seed {seed}, try {n}: {d:?} > {ceiling:?}");
            }
        }
        assert!(backoff(base, cap, 40, None) <= cap);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let cap = Duration::from_secs(10);
        let b = |ra| backoff(Duration::from_secs(1), cap, 1, Some(ra));
        assert_eq!(b(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(b(Duration::from_secs(100)), cap);
    }

    #[test]
    fn jitter_is_full_and_seedable() {
        // Third try, 1 s base: waits spread over the whole of [0, 4 s].
        let ceiling = Duration::from_secs(4);
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..1000)
                .map(|_| backoff_with(&mut rng, Duration::from_secs(1), ceiling * 10, 3, None))
                .collect::<Vec<_>>()
        };
        let waits = draw(42);
        assert!(waits.iter().all(|&d| d <= ceiling));
        assert!(waits.iter().any(|&d| d < ceiling / 10), "no short wait");
        assert!(waits.iter().any(|&d| d > ceiling * 9 / 10), "no long wait");
        let distinct = waits
            .iter()
            .map(|d| d.as_millis())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 500, "{} distinct", distinct.len());
        assert_eq!(waits, draw(42), "a seed gives the same waits");
        assert_ne!(waits, draw(43));
    }

    #[test]
    fn unseeded_waits_differ_between_calls() {
        let base = Duration::from_secs(1);
        let waits = (0..100)
            .map(|_| backoff(base, base * 64, 7, None))
            .collect::<std::collections::HashSet<_>>();
        assert!(waits.len() > 90, "{} distinct", waits.len());
    }
}
