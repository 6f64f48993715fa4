//! Which snapshots a collection keeps.

use chrono::{DateTime, Utc};

use super::{GcError, GcOptions};
use crate::format::{LatestPointer, PartitionId, RetainedSnapshot};
use crate::repository::{RepoError, Repository, SnapshotFolder, VersionedPointer};

/// The snapshots kept, newest first, and the pointer they were read from
/// (after retention was applied to it), whose version the collection's
/// confirmation compares against.
pub(super) struct Kept {
    pub kept: Vec<RetainedSnapshot>,
    pub pointer: Option<VersionedPointer>,
}

/// The snapshots to keep, newest first, after applying the retention asked
/// for to the pointer (by compare-and-swap, so that a publisher racing with
/// us is never overwritten).
///
/// `folders` are the partition's snapshot folders, from the collection's
/// one listing of the partition.
pub(super) async fn kept_snapshots(
    repo: &Repository,
    partition: PartitionId,
    opts: &GcOptions,
    now: DateTime<Utc>,
    folders: &[SnapshotFolder],
) -> Result<Kept, GcError> {
    for _ in 0..16 {
        let Some(current) = repo.read_pointer(partition).await? else {
            // No pointer: keep every complete snapshot.
            let kept = complete_snapshots(repo, partition, None, usize::MAX, folders).await?;
            return Ok(Kept {
                kept,
                pointer: None,
            });
        };
        if current.pointer.retained.is_empty() {
            let kept = v1_kept(repo, partition, &current.pointer, opts, folders).await?;
            return Ok(Kept {
                kept,
                pointer: Some(current),
            });
        }
        let kept = current.pointer.kept();
        let Some(retention) = opts.retention else {
            return Ok(Kept {
                kept,
                pointer: Some(current),
            });
        };
        let pruned = retention.apply(kept.clone(), now);
        if pruned == kept || opts.dry_run {
            return Ok(Kept {
                kept: pruned,
                pointer: Some(current),
            });
        }
        if current.pointer.is_restate() {
            return Err(GcError::RestatePointer);
        }
        match &opts.cluster {
            Some(ours) if *ours == current.pointer.cluster_name => {}
            _ => {
                return Err(GcError::ForeignPointer {
                    found: current.pointer.cluster_name.clone(),
                })
            }
        }
        let mut pointer = current.pointer.clone();
        pointer.retained = pruned.clone();
        match repo.swap_pointer(Some(&current.version), &pointer).await {
            Ok(version) => {
                return Ok(Kept {
                    kept: pruned,
                    pointer: Some(VersionedPointer { pointer, version }),
                })
            }
            Err(RepoError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(GcError::Contended)
}

/// A V1 pointer keeps no list: every complete snapshot is kept, or the
/// newest `keep_last` of them (and the one the pointer names) when asked.
async fn v1_kept(
    repo: &Repository,
    partition: PartitionId,
    pointer: &LatestPointer,
    opts: &GcOptions,
    folders: &[SnapshotFolder],
) -> Result<Vec<RetainedSnapshot>, GcError> {
    let limit = opts.retention.map_or(usize::MAX, |r| r.keep_last.max(1));
    complete_snapshots(repo, partition, Some(pointer), limit, folders).await
}

/// The pointer's snapshot (if any), then the newest complete snapshots not
/// newer than it, up to `limit` in all.
async fn complete_snapshots(
    repo: &Repository,
    partition: PartitionId,
    pointer: Option<&LatestPointer>,
    limit: usize,
    folders: &[SnapshotFolder],
) -> Result<Vec<RetainedSnapshot>, GcError> {
    let mut kept: Vec<RetainedSnapshot> = pointer.map(|p| p.kept().remove(0)).into_iter().collect();
    for f in folders.iter().rev() {
        if kept.len() >= limit {
            break;
        }
        if pointer.is_some_and(|p| f.name == p.path || f.lsn > p.min_applied_lsn) {
            continue;
        }
        match repo.read_metadata(partition, &f.name).await {
            Ok(meta) => kept.push(meta.retained_entry()),
            Err(
                RepoError::Missing { .. } | RepoError::Malformed { .. } | RepoError::Foreign { .. },
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(kept)
}
