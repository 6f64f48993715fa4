//! Retries of transient store errors, with bounded exponential backoff.
//!
//! Cloud stores already retry at the HTTP layer; this is the layer above,
//! for failures that reach rocksnap (a connection cut after the retries, a
//! store wrapper that fails). Only requests that are safe to repeat are
//! retried here: reads, create-only and overwriting puts of immutable
//! objects, and whole files (a multipart upload cannot repeat one part, so a
//! failed part aborts the upload and the file is sent again).

use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
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
    /// The wait after failed attempt `n` (0-based), with up to 25% jitter so
    /// that writers that failed together do not retry together.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.min(16)).min(self.max);
        let jitter = rand::random::<f64>() * 0.25;
        exp.mul_f64(1.0 + jitter).min(self.max)
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts run out.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, object_store::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, object_store::Error>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && attempt + 1 < self.attempts => {
                    let wait = self.backoff(attempt);
                    tracing::debug!(%what, attempt, error = %e, ?wait, "transient store error, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
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

    #[tokio::test]
    async fn retries_transient_errors_until_success_and_stops_on_final_ones() {
        let policy = RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        };
        let calls = AtomicU32::new(0);
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
}
