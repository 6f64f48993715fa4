//! Which snapshots a partition keeps.
//!
//! A V2 pointer lists the snapshots it retains; the publisher applies the
//! policy each time it adds one, and garbage collection applies it when asked
//! to prune. Both call [`Retention::apply`] so that they agree on what is kept.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::format::RetainedSnapshot;

/// Which snapshots a V2 pointer keeps: the newest `keep_last`, and of those
/// only the ones younger than `max_age` (the newest is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Snapshots kept at most, newest first; at least one is always kept.
    pub keep_last: usize,
    /// Kept snapshots older than this are dropped, but for the newest.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 10,
            max_age: None,
        }
    }
}

impl Retention {
    /// Applies the policy to a list of snapshots, newest first, as of `now`.
    pub fn apply(
        &self,
        mut kept: Vec<RetainedSnapshot>,
        now: DateTime<Utc>,
    ) -> Vec<RetainedSnapshot> {
        kept.truncate(self.keep_last.max(1));
        if let Some(max_age) = self.max_age {
            let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
            let mut first = true;
            kept.retain(|r| std::mem::take(&mut first) || now - r.created_at <= max_age);
        }
        kept
    }
}
