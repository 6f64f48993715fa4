//! Which snapshots a restore tries, and in what order.
//!
//! A fallback never goes below what the pointer retains: a V2 pointer's
//! `retained` list is what the safe log-trim point is computed from, so an
//! older folder (one retention dropped and collection has not yet deleted)
//! may hold an LSN whose log the host has already trimmed. A V1 pointer
//! keeps every complete snapshot at or below it, and so does the trim point.

use std::collections::HashSet;

use super::{RestoreError, RestoreTarget};
use crate::format::{PartitionId, SnapshotId};
use crate::repository::{Repository, SnapshotFolder, VersionedPointer};

/// What a restore tries: these folders, newest first, and whether the
/// older ones are to be listed if all of them prove unusable (a pointer
/// that keeps no retained list names only its own snapshot).
pub(super) struct Candidates {
    pub folders: Vec<SnapshotFolder>,
    pub list_older: bool,
}

pub(super) async fn candidates(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
) -> Result<Vec<SnapshotFolder>, RestoreError> {
    Ok(plan(repo, partition, target).await?.folders)
}

pub(super) async fn plan(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
) -> Result<Candidates, RestoreError> {
    let mut list_older = false;
    let listed = || newest_first(repo, partition);
    let no_pointer = || RestoreError::NoSnapshot {
        partition,
        reason: format!(
            "{} has no latest.json",
            repo.layout().partition_dir(partition)
        ),
    };
    let chosen = match target {
        RestoreTarget::Latest => {
            let pointer = repo.read_pointer(partition).await?.ok_or_else(no_pointer)?;
            vec![newest(&pointer)]
        }
        // The pointer alone names what to try: its retained list, or (a
        // pointer without one) its snapshot, the older ones being listed
        // only if it is unusable (`older_than`). Starting a restore costs
        // the same requests however many snapshots the bucket holds.
        RestoreTarget::LatestOrOlder => {
            let pointer = repo.read_pointer(partition).await?.ok_or_else(no_pointer)?;
            list_older = pointer.pointer.retained.is_empty();
            retained_fallbacks(&pointer)
        }
        RestoreTarget::Snapshot(id) => vec![listed()
            .await?
            .into_iter()
            .find(|f| f.snapshot_id == id)
            .ok_or(RestoreError::UnknownSnapshot {
                partition,
                snapshot_id: id,
            })?],
        RestoreTarget::MinLsn(min) => {
            let mut v = match repo.read_pointer(partition).await? {
                Some(pointer) => fallbacks(&pointer, listed().await?),
                // No pointer: every complete snapshot is kept, so any may do.
                None => listed().await?,
            };
            v.retain(|f| f.lsn >= min);
            if v.is_empty() {
                return Err(RestoreError::NoneAtLeast {
                    partition,
                    lsn: min,
                });
            }
            v
        }
    };
    Ok(Candidates {
        folders: chosen,
        list_older,
    })
}

/// The snapshot the pointer names.
fn newest(pointer: &VersionedPointer) -> SnapshotFolder {
    SnapshotFolder {
        name: pointer.pointer.path.clone(),
        lsn: pointer.pointer.min_applied_lsn,
        snapshot_id: pointer.pointer.snapshot_id,
    }
}

/// The pointer's snapshot, then the older ones its retained list names,
/// newest first; just the pointer's snapshot if it keeps no list.
fn retained_fallbacks(pointer: &VersionedPointer) -> Vec<SnapshotFolder> {
    let first = newest(pointer);
    let older = pointer
        .pointer
        .retained
        .iter()
        .filter(|r| r.min_applied_lsn <= first.lsn && r.snapshot_id != first.snapshot_id)
        .map(|r| SnapshotFolder {
            name: r.path.clone(),
            lsn: r.min_applied_lsn,
            snapshot_id: r.snapshot_id,
        });
    std::iter::once(first.clone()).chain(older).collect()
}

/// For a pointer that keeps no retained list, once its snapshot proved
/// unusable: every complete-looking older snapshot, newest first, listed.
pub(super) async fn older_than(
    repo: &Repository,
    partition: PartitionId,
    first: &SnapshotFolder,
) -> Result<Vec<SnapshotFolder>, RestoreError> {
    Ok(older(first, newest_first(repo, partition).await?, None).collect())
}

/// A partition's snapshot folders, newest first.
async fn newest_first(
    repo: &Repository,
    partition: PartitionId,
) -> Result<Vec<SnapshotFolder>, RestoreError> {
    let mut all = repo.list_snapshots(partition).await?;
    all.reverse();
    Ok(all)
}

/// Those of `listed` that are older than `first` (not newer, not it), and,
/// given a retained list, on it.
fn older<'a>(
    first: &'a SnapshotFolder,
    listed: Vec<SnapshotFolder>,
    retained: Option<&'a HashSet<SnapshotId>>,
) -> impl Iterator<Item = SnapshotFolder> + 'a {
    listed.into_iter().filter(move |f| {
        f.lsn <= first.lsn
            && f.name != first.name
            && retained.is_none_or(|r| r.contains(&f.snapshot_id))
    })
}

/// The pointer's snapshot first (the listing may sort it elsewhere), then
/// the listed snapshots older than it, newest first: those its retained
/// list names, if it keeps one.
fn fallbacks(pointer: &VersionedPointer, listed: Vec<SnapshotFolder>) -> Vec<SnapshotFolder> {
    let first = newest(pointer);
    let retained: Option<HashSet<SnapshotId>> = (!pointer.pointer.retained.is_empty()).then(|| {
        pointer
            .pointer
            .retained
            .iter()
            .map(|r| r.snapshot_id)
            .collect()
    });
    let older = older(&first, listed, retained.as_ref());
    std::iter::once(first.clone()).chain(older).collect()
}
