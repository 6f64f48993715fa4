//! What a collection reads before it decides (the partition's leases), how
//! it confirms the decision against the pointer, and how it deletes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{GcError, GcOptions, LeaseState};
use crate::format::{PartitionId, SnapshotId};
use crate::repository::{RepoError, Repository, VersionedPointer};

/// Each lease of the partition, live or not at `now`.
pub(super) async fn lease_states(
    repo: &Repository,
    partition: PartitionId,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<HashMap<SnapshotId, LeaseState>, GcError> {
    let mut states = HashMap::new();
    for (id, lease) in repo.read_leases(partition).await? {
        let state = match lease {
            Ok(lease) if lease.is_live(now, grace) => LeaseState::Live,
            Ok(lease) => LeaseState::Expired {
                started_at: lease.started_at,
            },
            Err(e) => {
                tracing::warn!(%partition, snapshot = %id, error = %e, "unreadable lease: its snapshot's objects are kept");
                LeaseState::Unreadable
            }
        };
        states.insert(id, state);
    }
    Ok(states)
}

pub(super) enum Fenced {
    /// The pointer moved since it was read: decide again.
    Moved,
    /// The fence is in place (`None` in a dry run, which writes nothing).
    Set(Option<DateTime<Utc>>),
    /// No fence can be written; the reason says why.
    Impossible(&'static str),
}

/// Raises the pointer's fence to at least `fence`, by compare-and-swap
/// against the version the collection decided on.
pub(super) async fn fence_pointer(
    repo: &Repository,
    current: Option<&VersionedPointer>,
    fence: DateTime<Utc>,
    opts: &GcOptions,
) -> Result<Fenced, GcError> {
    let Some(current) = current else {
        return Ok(Fenced::Impossible(
            "the partition has no latest.json to hold a fence",
        ));
    };
    if current.pointer.is_restate() {
        return Ok(Fenced::Impossible(
            "latest.json was written by Restate, and rocksnap never rewrites it",
        ));
    }
    if opts.cluster.as_deref() != Some(current.pointer.cluster_name.as_str()) {
        return Ok(Fenced::Impossible(
            "latest.json belongs to another cluster than the one named",
        ));
    }
    if opts.dry_run {
        return Ok(Fenced::Set(None));
    }
    let mut pointer = current.pointer.clone();
    let fence = pointer.gc_fence.map_or(fence, |f| f.max(fence));
    pointer.gc_fence = Some(fence);
    match repo.swap_pointer(Some(&current.version), &pointer).await {
        Ok(_) => Ok(Fenced::Set(Some(fence))),
        Err(RepoError::Conflict { .. }) => Ok(Fenced::Moved),
        Err(e) => Err(e.into()),
    }
}

/// Whether the pointer is still the one the collection decided on.
pub(super) async fn pointer_unchanged(
    repo: &Repository,
    partition: PartitionId,
    decided_on: Option<&VersionedPointer>,
) -> Result<bool, GcError> {
    let now = repo.read_pointer(partition).await?;
    Ok(match (decided_on, now) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.version.e_tag.is_some()
                && a.version.e_tag == b.version.e_tag
                && a.pointer == b.pointer
        }
        _ => false,
    })
}
