//! Scrubbing: a partition's latest snapshot read back from the repository,
//! so that rot in the bucket (a truncated object, a flipped bit, a file
//! gone) is found while older snapshots and the live partition still exist,
//! not on the day a node needs the snapshot to bootstrap.
//!
//! A scrub downloads every file of the latest snapshot into a staging
//! directory and checks its size and CRC32C, and each SST's own record of
//! its sequence numbers; with `deep`, every entry of every SST is read.
//! Nothing is imported into any database, and the staging directory is
//! removed when the scrub ends. Its downloads take their memory from the
//! options' budget (a node passes the one its uploads use) and their
//! bandwidth from the options' rate limit.

use serde::Serialize;

use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::metrics as m;
use crate::repository::Repository;
use crate::restore::{RestoreError, RestoreOptions, RestoreTarget, Unusable};

/// What a scrub read and found whole.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubReport {
    /// The partition.
    pub partition_id: PartitionId,
    /// Its latest snapshot, the one read.
    pub snapshot_id: SnapshotId,
    /// The snapshot's LSN.
    pub min_applied_lsn: Lsn,
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Whether every entry of every SST was read.
    pub deep: bool,
}

/// Reads the partition's latest snapshot back and checks it. `Ok(None)`: the
/// partition has no snapshot. Counts the outcome in
/// `rocksnap_scrub_last_success_timestamp_seconds` or
/// `rocksnap_scrub_failures_total{reason}`.
pub async fn scrub(
    repo: &Repository,
    partition: PartitionId,
    deep: bool,
    opts: &RestoreOptions,
) -> Result<Option<ScrubReport>, RestoreError> {
    let result =
        crate::restore::check_snapshot(repo, partition, RestoreTarget::Latest, deep, opts).await;
    match result {
        Ok(meta) => {
            m::scrub_last_success(partition.0).set(chrono::Utc::now().timestamp() as f64);
            Ok(Some(ScrubReport {
                partition_id: partition,
                snapshot_id: meta.snapshot_id,
                min_applied_lsn: meta.min_applied_lsn,
                files: meta.files.len(),
                bytes: meta.total_bytes(),
                deep,
            }))
        }
        Err(RestoreError::NoSnapshot { .. }) => Ok(None),
        Err(e) => {
            m::scrub_failures(partition.0, failure_reason(&e)).increment(1);
            Err(e)
        }
    }
}

/// A short, stable label for what a scrub found.
pub fn failure_reason(e: &RestoreError) -> &'static str {
    match e {
        RestoreError::Unusable { reason, .. } => match reason {
            Unusable::Missing { .. } => "missing",
            Unusable::Metadata(_) => "metadata",
            Unusable::Size { .. } => "size",
            Unusable::Checksum { .. } => "checksum",
            Unusable::Invalid { .. } => "invalid",
            Unusable::Import(_) => "import",
        },
        e if e.is_disk_full() => "disk_full",
        _ => "unreadable",
    }
}
