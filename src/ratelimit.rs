//! A bytes-per-second budget for transfers, shared by every upload and
//! download of a process, next to the concurrency bound.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Bytes are metered in units of this size.
const UNIT: u64 = 1024;

/// A bandwidth limit in bytes per second; clones share one budget.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Units that may be taken at once: 50 ms worth, so that a transfer
    /// never runs far ahead of the rate.
    burst: u32,
    bytes_per_second: u64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({} B/s)", self.bytes_per_second)
    }
}

impl RateLimit {
    /// A limit of `bytes_per_second` (at least 1 KiB/s).
    pub fn new(bytes_per_second: u64) -> Self {
        let per_second = (bytes_per_second / UNIT).clamp(1, u32::MAX as u64) as u32;
        let burst = (per_second / 20).max(1);
        let quota = Quota::per_second(NonZeroU32::new(per_second).expect("at least 1"))
            .allow_burst(NonZeroU32::new(burst).expect("at least 1"));
        RateLimit {
            limiter: Arc::new(RateLimiter::direct(quota)),
            burst,
            bytes_per_second,
        }
    }

    /// The rate asked for, in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Waits until `bytes` may be sent or received.
    pub async fn acquire(&self, bytes: u64) {
        self.acquire_unless(bytes, || false).await;
    }

    /// Waits until `bytes` may be sent or received, giving up (and returning
    /// false) as soon as `stop` says so: a cancelled transfer does not wait
    /// for bandwidth it will not use.
    pub async fn acquire_unless(&self, bytes: u64, stop: impl Fn() -> bool) -> bool {
        let mut units = bytes.div_ceil(UNIT);
        while units > 0 {
            if stop() {
                return false;
            }
            let n = units.min(self.burst as u64) as u32;
            self.limiter
                .until_n_ready(NonZeroU32::new(n).expect("n > 0"))
                .await
                .expect("n is within the burst");
            units -= n as u64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn holds_the_rate() {
        let limit = RateLimit::new(4 * 1024 * 1024);
        let started = Instant::now();
        for _ in 0..8 {
            limit.acquire(256 * 1024).await;
        }
        // 2 MiB at 4 MiB/s: about half a second, less the first burst.
        let secs = started.elapsed().as_secs_f64();
        assert!(secs > 0.4, "2 MiB went through in {secs} s");
    }
}
