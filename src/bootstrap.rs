//! Bootstrap: a node that starts without a partition's data restores it
//! from the repository before it opens the partition for writes.
//!
//! A partition is bootstrapped when its column family is missing, or is
//! empty (no key and no applied LSN); one that holds anything is never
//! touched. It is restored from the newest usable snapshot, falling back
//! only within the snapshots the pointer retains, through the verified
//! restore. A partition the repository has no snapshot of is not an error:
//! it starts empty, and the report says so. The host resumes each
//! partition's log after the LSN the report gives.

use std::path::Path;

use serde::Serialize;

use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::partition::{cf_name, PartitionError, PartitionStore};
use crate::repository::Repository;
use crate::restore::{restore_partitions, RestoreError, RestoreOptions, RestoreTarget};

/// When a node bootstraps its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootstrapMode {
    /// Restore a partition whose column family is missing or empty.
    #[default]
    IfMissing,
    /// Never restore: missing partitions start empty.
    Never,
}

/// Where a partition came from at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin {
    /// It held data already and was left as it was.
    Existing {
        /// Its stored LSN.
        applied_lsn: Option<Lsn>,
    },
    /// It was restored from a snapshot.
    Snapshot {
        /// The snapshot restored.
        snapshot_id: SnapshotId,
        /// The LSN stored in the restored data: the log resumes after it.
        restored_lsn: Option<Lsn>,
        /// Newer snapshots skipped as unusable.
        skipped: usize,
    },
    /// The repository has no snapshot of it: it starts empty.
    Empty,
    /// Bootstrap is off and it had no data: it starts empty.
    NotBootstrapped,
}

impl Origin {
    /// The LSN after which the host resumes the partition's log.
    pub fn resume_after(&self) -> Option<Lsn> {
        match self {
            Origin::Existing { applied_lsn } => *applied_lsn,
            Origin::Snapshot { restored_lsn, .. } => *restored_lsn,
            Origin::Empty | Origin::NotBootstrapped => None,
        }
    }
}

/// One partition after bootstrap.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrapped {
    /// The partition.
    pub partition_id: PartitionId,
    /// Where its data came from.
    #[serde(flatten)]
    pub origin: Origin,
}

/// Why bootstrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The database could not be opened or read.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A partition's restore failed: nothing usable in what the pointer retains.
    #[error("partition {partition}: {source}")]
    Restore {
        /// The partition.
        partition: PartitionId,
        /// Why.
        #[source]
        source: RestoreError,
    },
}

/// Bootstraps `partitions` of the database at `db` (which must not be open
/// elsewhere) from `repo`, before the host opens it for writes.
pub async fn bootstrap(
    repo: &Repository,
    db: &Path,
    partitions: &[PartitionId],
    mode: BootstrapMode,
    opts: &RestoreOptions,
) -> Result<Vec<Bootstrapped>, BootstrapError> {
    // Which partitions hold nothing, read with the database opened (and
    // recovered) once, then closed for the restores.
    let empty: Vec<(PartitionId, Option<Lsn>, bool)> = {
        let store = if db.join("CURRENT").is_file() {
            Some(PartitionStore::open_existing(db)?)
        } else {
            None
        };
        let mut v = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let cf = cf_name(p);
            let (lsn, is_empty) = match &store {
                Some(s) if s.has_column_family(&cf) => {
                    let lsn = s.applied_lsn(&cf)?;
                    (lsn, lsn.is_none() && !s.has_keys(&cf)?)
                }
                _ => (None, true),
            };
            v.push((p, lsn, is_empty));
        }
        v
    };
    // The empty ones are restored together: one opening of the database,
    // their downloads sharing the options' bound.
    let to_restore: Vec<PartitionId> = if mode == BootstrapMode::Never {
        Vec::new()
    } else {
        empty
            .iter()
            .filter(|(_, _, is_empty)| *is_empty)
            .map(|(p, _, _)| *p)
            .collect()
    };
    let mut restored: std::collections::HashMap<PartitionId, Result<_, RestoreError>> =
        if to_restore.is_empty() {
            Default::default()
        } else {
            let results =
                restore_partitions(repo, db, &to_restore, RestoreTarget::LatestOrOlder, opts)
                    .await
                    .map_err(|source| BootstrapError::Restore {
                        partition: to_restore[0],
                        source,
                    })?;
            to_restore.iter().copied().zip(results).collect()
        };
    let mut out = Vec::with_capacity(partitions.len());
    for (partition, applied_lsn, is_empty) in empty {
        let origin = if !is_empty {
            Origin::Existing { applied_lsn }
        } else if mode == BootstrapMode::Never {
            Origin::NotBootstrapped
        } else {
            match restored
                .remove(&partition)
                .expect("restored with the others")
            {
                Ok(o) => Origin::Snapshot {
                    snapshot_id: o.snapshot_id,
                    restored_lsn: o.restored_lsn,
                    skipped: o.skipped.len(),
                },
                Err(RestoreError::NoSnapshot { .. }) => Origin::Empty,
                Err(source) => return Err(BootstrapError::Restore { partition, source }),
            }
        };
        match &origin {
            Origin::Snapshot {
                snapshot_id,
                restored_lsn,
                skipped,
            } => tracing::info!(
                %partition, %snapshot_id, resume_after = ?restored_lsn, skipped,
                "partition bootstrapped from a snapshot"
            ),
            Origin::Empty => {
                tracing::info!(%partition, "no snapshot of the partition: it starts empty")
            }
            _ => {}
        }
        out.push(Bootstrapped {
            partition_id: partition,
            origin,
        });
    }
    Ok(out)
}
