//! Trim-gap fast-forward: a partition of an open, serving store brought
//! past the start of the host's log, in place.

use std::time::Instant;

use serde::Serialize;

use super::{restore_inner, Live, RestoreError, RestoreOptions, RestoreOutcome, RestoreTarget};
use crate::format::{Lsn, PartitionId};
use crate::metrics as m;
use crate::partition::{cf_name, PartitionStore};
use crate::repository::Repository;

/// What a fast-forward did.
#[derive(Debug, Clone, Serialize)]
pub struct FastForward {
    /// The partition.
    pub partition_id: PartitionId,
    /// Its applied LSN now: the host's log resumes after it.
    pub applied_lsn: Option<Lsn>,
    /// The restore, if one was needed; `None` if the partition already
    /// reached the log's start.
    pub restored: Option<RestoreOutcome>,
}

/// Brings a partition of an open, serving store past a trim gap: the
/// host's log now starts at `log_start`, so the partition must be at
/// `log_start − 1` or beyond. If it already is, nothing happens. Otherwise
/// it is restored, in place, from the newest snapshot at `log_start − 1` or
/// beyond that the pointer retains; the other partitions keep serving, and
/// this one's writes through [`PartitionStore::apply`] and its exports wait
/// for the swap (a host that writes by other means holds the partition's
/// writes itself). No snapshot covering the gap: a refusal that names the
/// newest snapshot's LSN, and nothing touched.
pub async fn fast_forward(
    store: &PartitionStore,
    repo: &Repository,
    partition: PartitionId,
    log_start: Lsn,
    opts: &RestoreOptions,
) -> Result<FastForward, RestoreError> {
    let cf = opts.cf.clone().unwrap_or_else(|| cf_name(partition));
    let applied = if store.has_column_family(&cf) {
        store.applied_lsn(&cf)?
    } else {
        None
    };
    let needed = Lsn(log_start.0.saturating_sub(1));
    if applied.is_some_and(|a| a >= needed) || (needed.0 == 0 && applied.is_none()) {
        return Ok(FastForward {
            partition_id: partition,
            applied_lsn: applied,
            restored: None,
        });
    }
    let started = Instant::now();
    let result = restore_inner(
        repo,
        Live::Open(store),
        partition,
        RestoreTarget::MinLsn(needed),
        opts,
    )
    .await;
    m::restore_duration().record(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(o) => {
            m::restores(partition.0, "fast_forwarded").increment(1);
            m::restore_fallbacks(partition.0).increment(o.skipped.len() as u64);
            o
        }
        Err(RestoreError::Overtaken { live, .. }) => {
            return Ok(FastForward {
                partition_id: partition,
                applied_lsn: Some(live),
                restored: None,
            })
        }
        Err(RestoreError::NoneAtLeast { .. } | RestoreError::NoSnapshot { .. }) => {
            m::restores(partition.0, "not_covered").increment(1);
            let newest = repo
                .read_pointer(partition)
                .await?
                .map(|p| p.pointer.min_applied_lsn);
            return Err(RestoreError::NotCovered {
                partition,
                log_start,
                applied,
                newest,
            });
        }
        Err(e) => {
            m::restores(partition.0, "failed").increment(1);
            return Err(e);
        }
    };
    tracing::info!(%partition, snapshot_id = %outcome.snapshot_id, restored_lsn = ?outcome.restored_lsn,
        ms = outcome.duration.as_millis() as u64, "partition fast-forwarded past a trim gap");
    Ok(FastForward {
        partition_id: partition,
        applied_lsn: outcome.restored_lsn,
        restored: Some(outcome),
    })
}
