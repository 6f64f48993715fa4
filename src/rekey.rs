//! Key rotation for what is already stored: the data keys of the snapshots
//! a partition's pointer retains wrapped again under the keyring's current
//! key, without sending any data again.
//!
//! `metadata.json` is create-only and named by its folder, so a rekeyed
//! snapshot is a new snapshot: a fresh id, the same LSN, a metadata whose
//! entries are the old ones with their data keys wrapped anew. Its files
//! are the same objects: a V2 entry references the same shared key; a V1
//! file is copied inside the store (a server-side copy: no byte passes
//! through this process) into the new folder. Once every retained snapshot
//! that needs it is rekeyed, one compare-and-swap of `latest.json` replaces
//! each by its rekeyed copy, in place: same LSNs, same order, so the
//! pointer never moves back. The old snapshots are then no longer retained,
//! and garbage collection removes them; their objects that the new ones
//! share stay. A rekey that loses the race for the pointer leaves new
//! metadata no pointer names, which collection removes too.
//!
//! While it runs, a rekey is a writer like a snapshot: each new snapshot's
//! lease is written before anything of it is stored and renewed beside the
//! rekey's own requests (not between them: one server-side copy of a large
//! object can outlast a lease), so a collection never takes what it wrote
//! however long its copies take. Should a lease expire anyway (the store
//! refused its renewals), the
//! collection that takes its objects fences `latest.json` first, which
//! moves the pointer's version: the rekey's compare-and-swap then fails,
//! and the pointer never names a snapshot whose objects are gone.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::DEFAULT_LEASE_TTL;
use crate::crypto::{FileKey, Keyring};
use crate::format::{LatestPointer, Lease, PartitionId, RetainedSnapshot, SnapshotId};
use crate::repository::{RepoError, Repository};

/// What a rekey did.
#[derive(Debug, Clone, Serialize)]
pub struct RekeyReport {
    /// The partition.
    pub partition_id: PartitionId,
    /// Each rekeyed snapshot: its old id and its new one.
    pub rekeyed: Vec<(SnapshotId, SnapshotId)>,
    /// Retained snapshots already under the current key, or not encrypted.
    pub unchanged: usize,
    /// Objects copied inside the store (V1 files).
    pub copied_objects: usize,
}

/// Why a rekey stopped; nothing it wrote is named by the pointer then.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    /// The partition has no pointer.
    #[error("partition {0} has no snapshot")]
    NoSnapshot(PartitionId),
    /// The pointer is Restate's, which rocksnap does not rewrite.
    #[error("latest.json of partition {0} is Restate's and is not rewritten")]
    RestatePointer(PartitionId),
    /// A data key did not unwrap.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The repository failed, or another writer moved the pointer.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// The pointer's fence covers the rekey's snapshots, as a collection
    /// sets it when it takes the objects of an expired lease: what the rekey
    /// wrote may be gone, and the pointer is not moved onto it.
    #[error("garbage collection fenced off every snapshot started at or before {fence} (the rekey's started at {started}), so what it wrote may be gone; latest.json not moved")]
    Fenced {
        /// The pointer's `gc_fence`.
        fence: DateTime<Utc>,
        /// When the rekey's earliest lease started.
        started: DateTime<Utc>,
    },
}

/// How a rekey runs.
#[derive(Debug, Clone)]
pub struct RekeyOptions {
    /// Time to live of the leases of the snapshots it writes (from a
    /// second to a day); each is renewed every third of it while the rekey
    /// runs.
    pub lease_ttl: Duration,
}

impl Default for RekeyOptions {
    fn default() -> Self {
        RekeyOptions {
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// Wraps the data keys of every snapshot `latest.json` retains under the
/// keyring's current key (see the module's documentation).
pub async fn rekey(
    repo: &Repository,
    partition: PartitionId,
    keyring: &Keyring,
) -> Result<RekeyReport, RekeyError> {
    rekey_with(repo, partition, keyring, &RekeyOptions::default()).await
}

/// [`rekey`], with `opts`.
pub async fn rekey_with(
    repo: &Repository,
    partition: PartitionId,
    keyring: &Keyring,
    opts: &RekeyOptions,
) -> Result<RekeyReport, RekeyError> {
    let leases = Leases {
        repo,
        // Checked every sixth of it: not a loop of requests against the
        // store for a lease of no time at all, and not a wait longer than
        // any lease should live.
        ttl: opts
            .lease_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(24 * 60 * 60)),
        held: Mutex::new(Vec::new()),
    };
    // The leases are renewed beside the work, until it is done; a renewal
    // under way when it ends finishes before any lease is deleted, so that
    // it cannot bring one back afterwards.
    let done = CancellationToken::new();
    let work = async {
        let result = rekey_under(repo, partition, keyring, &leases).await;
        done.cancel();
        result
    };
    let (result, ()) = tokio::join!(work, leases.keep(&done));
    // Published or given up: nothing of the rekey is left but what the
    // pointer names (and, on failure, objects collection removes).
    leases.give_back().await;
    result
}

async fn rekey_under(
    repo: &Repository,
    partition: PartitionId,
    keyring: &Keyring,
    leases: &Leases<'_>,
) -> Result<RekeyReport, RekeyError> {
    let current = repo
        .read_pointer(partition)
        .await?
        .ok_or(RekeyError::NoSnapshot(partition))?;
    if current.pointer.is_restate() {
        return Err(RekeyError::RestatePointer(partition));
    }
    let mut report = RekeyReport {
        partition_id: partition,
        rekeyed: Vec::new(),
        unchanged: 0,
        copied_objects: 0,
    };
    let mut replaced: Vec<(RetainedSnapshot, RetainedSnapshot)> = Vec::new();
    for kept in current.pointer.kept() {
        let meta = repo.read_metadata(partition, &kept.path).await?;
        let stale = meta.files.iter().any(|f| {
            f.encryption
                .as_ref()
                .is_some_and(|e| e.kek_id != keyring.current_id())
        });
        if !stale {
            report.unchanged += 1;
            continue;
        }
        let mut new = meta.clone();
        new.snapshot_id = SnapshotId::new().encoded(meta.snapshot_id.encoding());
        leases.take(partition, new.snapshot_id).await?;
        let folder = new.path();
        for f in new.files.iter_mut() {
            let Some(envelope) = &f.encryption else {
                continue;
            };
            let key = repo
                .layout()
                .object(partition, &kept.path, f)
                .map_err(|e| RepoError::Foreign {
                    key: kept.path.clone(),
                    reason: e.to_string(),
                })?;
            let data_key = FileKey::unwrap(key.as_ref(), envelope, keyring)?;
            f.encryption = Some(data_key.rewrap(keyring, envelope));
            if f.key.is_none() {
                // V1: the file lives in its snapshot's folder.
                let name = f.file_name().expect("checked when parsed");
                let to = repo.layout().file(partition, &folder, name);
                repo.store()
                    .copy(&key, &to)
                    .await
                    .map_err(|source| RepoError::store("copy", &key, source))?;
                report.copied_objects += 1;
            }
        }
        repo.put_metadata(&new).await?;
        report.rekeyed.push((meta.snapshot_id, new.snapshot_id));
        replaced.push((kept, new.retained_entry()));
    }
    if replaced.is_empty() {
        return Ok(report);
    }
    let mut pointer: LatestPointer = current.pointer.clone();
    for (old, new) in &replaced {
        if pointer.snapshot_id == old.snapshot_id {
            pointer.snapshot_id = new.snapshot_id;
            pointer.path = new.path.clone();
        }
        for r in pointer.retained.iter_mut() {
            if r.snapshot_id == old.snapshot_id {
                *r = RetainedSnapshot {
                    created_at: old.created_at,
                    ..new.clone()
                };
            }
        }
    }
    // The swap fails if the pointer changed since it was read, which a
    // collection's new fence does; but a fence already at or past the
    // rekey's start (a collector whose clock runs ahead rewrites the same
    // bytes, which a version compared by content or ETag cannot tell from
    // no change) is refused here, as a snapshot's publisher refuses it.
    if let (Some(fence), Some(started)) = (current.pointer.gc_fence, leases.earliest_start()) {
        if started <= fence {
            return Err(RekeyError::Fenced { fence, started });
        }
    }
    repo.swap_pointer(Some(&current.version), &pointer).await?;
    tracing::info!(%partition, rekeyed = report.rekeyed.len(), "data keys wrapped under {}", keyring.current_id());
    Ok(report)
}

/// The leases of the snapshots a rekey writes.
struct Leases<'a> {
    repo: &'a Repository,
    ttl: Duration,
    /// Taken by the work, renewed by [`Leases::keep`] beside it; never held
    /// across a request.
    held: Mutex<Vec<Lease>>,
}

impl Leases<'_> {
    /// Writes the lease of `id`, before anything of it is stored.
    async fn take(&self, partition: PartitionId, id: SnapshotId) -> Result<(), RepoError> {
        let lease = Lease::new(partition, id, "rekey".into(), self.ttl);
        self.repo.put_lease(&lease).await?;
        self.held.lock().expect("not poisoned").push(lease);
        Ok(())
    }

    /// Renews every lease a third of whose time to live has passed, until
    /// `done`, whatever the work is waiting for. A renewal the store
    /// refuses is tried again at the next turn; a lease that expires
    /// meanwhile no longer protects its objects, and the fence a collector
    /// writes before taking them fails the rekey's swap.
    async fn keep(&self, done: &CancellationToken) {
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tokio::time::sleep(self.ttl / 6) => {}
            }
            let due: Vec<Lease> = self
                .held
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|l| l.renewal_due(self.ttl))
                .map(|l| l.renewed(self.ttl))
                .collect();
            for renewed in due {
                match self.repo.put_lease(&renewed).await {
                    Ok(()) => {
                        let mut held = self.held.lock().expect("not poisoned");
                        if let Some(l) = held
                            .iter_mut()
                            .find(|l| l.snapshot_id == renewed.snapshot_id)
                        {
                            *l = renewed;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = %renewed.partition_id, error = %e, "cannot renew a rekey's lease; trying again");
                    }
                }
            }
        }
    }

    /// When the earliest lease held started.
    fn earliest_start(&self) -> Option<DateTime<Utc>> {
        self.held
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|l| l.started_at)
            .min()
    }

    async fn give_back(self) {
        for lease in self.held.into_inner().expect("not poisoned") {
            if let Err(e) = self
                .repo
                .delete_lease(lease.partition_id, lease.snapshot_id)
                .await
            {
                tracing::warn!(partition = %lease.partition_id, error = %e, "cannot delete a rekey's lease; it expires by itself");
            }
        }
    }
}
