//! Which snapshots a restore tries, and in what order.

use super::{RestoreError, RestoreTarget};
use crate::format::PartitionId;
use crate::repository::{Repository, SnapshotFolder};

/// The snapshots to try, in order.
pub(super) async fn candidates(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
) -> Result<Vec<SnapshotFolder>, RestoreError> {
    let listed = || async {
        let mut all = repo.list_snapshots(partition).await?;
        all.reverse(); // newest first
        Ok::<_, RestoreError>(all)
    };
    let latest = || async {
        match repo.read_pointer(partition).await? {
            Some(p) => Ok(SnapshotFolder {
                name: p.pointer.path.clone(),
                lsn: p.pointer.min_applied_lsn,
                snapshot_id: p.pointer.snapshot_id,
            }),
            None => Err(RestoreError::NoSnapshot {
                partition,
                reason: format!(
                    "{} has no latest.json",
                    repo.layout().partition_dir(partition)
                ),
            }),
        }
    };
    let chosen = match target {
        RestoreTarget::Latest => vec![latest().await?],
        RestoreTarget::LatestOrOlder => {
            let newest = latest().await?;
            let mut v = vec![newest.clone()];
            v.extend(
                listed()
                    .await?
                    .into_iter()
                    .filter(|f| f.lsn <= newest.lsn && f.name != newest.name),
            );
            v
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
            // The pointer first (it may name a snapshot the listing sorts
            // elsewhere), then every older one that is still new enough.
            let mut v = Vec::new();
            if let Ok(newest) = latest().await {
                v.push(newest);
            }
            for f in listed().await? {
                if !v.iter().any(|c: &SnapshotFolder| c.name == f.name)
                    && v.first().is_none_or(|n| f.lsn <= n.lsn)
                {
                    v.push(f);
                }
            }
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
    Ok(chosen)
}
