//! The one retry policy above the store's own.
//!
//! Requests are retried first by the store client (`object_store`'s
//! `RetryConfig` for S3, GCS and Azure). What fails past that reaches
//! rocksnap, and only three things are tried again here, all with this one
//! policy: requests that are safe to repeat (reads, create-only and
//! overwriting puts of immutable objects), a whole file whose multipart
//! upload was aborted (a part cannot be repeated on its own), and the
//! compare-and-swap of `latest.json` after a conflict or a lost answer.
//! Errors are told apart by their `object_store::Error` variant only.
//!
//! Waits come from `backon`'s exponential backoff with jitter, on tokio's
//! clock, so a test can run retries under `tokio::time::pause`.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub base: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            // Writers that failed together do not retry together.
            .with_jitter()
    }

    /// The waits between attempts, one per retry: for loops that decide
    /// for themselves after each failure (a file sent again, a pointer read
    /// again after a conflict). `None` once the attempts are spent.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send {
        self.builder().build()
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts run out.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, object_store::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, object_store::Error>>,
    {
        op.retry(self.builder())
            .when(is_transient)
            .notify(|e, wait| {
                tracing::debug!(%what, error = %e, ?wait, "transient store error, retrying");
            })
            .await
    }
}

/// Whether an error may go away by itself: anything but the answers that
/// are final (missing, exists, precondition, refused, unsupported, invalid).
pub fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::UnknownConfigurationKey { .. }
            | E::NotSupported { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: "connection reset".into(),
        }
    }

    // The clock is paused: the backoff's waits pass at once, in order.
    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success_and_stops_on_final_ones() {
        let policy = RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let ok = policy
            .run("t", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two waits of at least 100 ms and 200 ms were taken on the clock.
        assert!(started.elapsed() >= Duration::from_millis(300));

        calls.store(0, Ordering::SeqCst);
        let gave_up: Result<(), _> = policy
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(transient())
            })
            .await;
        assert!(gave_up.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        calls.store(0, Ordering::SeqCst);
        let final_error: Result<(), _> = policy
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(object_store::Error::NotFound {
                    path: "x".into(),
                    source: "gone".into(),
                })
            })
            .await;
        assert!(final_error.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn delays_are_bounded_and_run_out() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = policy.delays().collect();
        assert_eq!(delays.len(), policy.attempts as usize - 1);
        assert!(delays.iter().all(|d| *d <= policy.max));
    }
}
