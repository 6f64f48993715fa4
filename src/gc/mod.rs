//! Retention and garbage collection of a partition's snapshots.
//!
//! Mark and sweep: every object a kept snapshot references (its
//! `metadata.json`, and each file's object, shared or not) and `latest.json`
//! are marked. Every other object belongs to a snapshot whose id its key
//! carries (see [`crate::format::owner`]), or to none:
//!
//! - an object of a snapshot whose lease is live is spared, however old:
//!   that snapshot is still being uploaded;
//! - an object of a snapshot whose lease expired (its writer crashed or
//!   stalled) is collected, after a fence in `latest.json` has made every
//!   snapshot started at or before that lease unpublishable;
//! - any other object is collected once it is older than the grace period.
//!
//! The grace period therefore bounds clock skew between writers and the
//! collector and how long a crashed writer's objects stay, not the length
//! of an upload. The decision is confirmed under the pointer's
//! compare-and-swap before anything is deleted: the fence is written by it,
//! and without a fence the pointer is read again. A snapshot published
//! between the collector's first read and its confirmation makes the
//! confirmation fail, and the collection starts over.
//!
//! Which snapshots are kept: those a V2 pointer lists (after applying the
//! retention asked for, by compare-and-swap on `latest.json`); with a V1
//! pointer, the complete snapshots (the newest `keep_last` of them when
//! asked). A pointer that cannot be read, or a kept snapshot whose metadata
//! cannot be read, stops the collection before anything is deleted.

mod confirm;
mod kept;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;
use serde::Serialize;

use crate::format::{owner, PartitionId, SnapshotId, LEASES, METADATA};
use crate::repository::{RepoError, Repository};
use crate::retention::Retention;
use confirm::{fence_pointer, lease_states, pointer_unchanged, Fenced};
use kept::{kept_snapshots, Kept};

/// How often a collection starts over when the pointer keeps moving.
const MAX_ROUNDS: usize = 16;

/// How a garbage collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Objects of no live snapshot younger than this are never deleted, and
    /// a lease counts as live for this long after it expires: it must exceed
    /// the clock skew between writers and the collector.
    pub grace: Duration,
    /// Report what would be deleted, delete nothing, change nothing.
    pub dry_run: bool,
    /// Retention to apply before collecting; `None` keeps what the pointer keeps.
    pub retention: Option<Retention>,
    /// The cluster whose pointer this is: a pointer of another cluster is
    /// never rewritten. `None` accepts any cluster but never rewrites.
    pub cluster: Option<String>,
    /// The collector's clock; `None` reads the system clock.
    pub now: Option<DateTime<Utc>>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(300),
            dry_run: false,
            retention: None,
            cluster: None,
            now: None,
        }
    }
}

/// What a garbage collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// The partition collected.
    pub partition_id: PartitionId,
    /// Whether this was a dry run, which deleted nothing.
    pub dry_run: bool,
    /// Snapshots kept, newest first.
    pub kept: Vec<SnapshotId>,
    /// Objects deleted (or, in a dry run, that would be).
    pub deleted: Vec<DeletedObject>,
    /// Total size of the deleted objects, in bytes.
    pub deleted_bytes: u64,
    /// Unreferenced objects spared because they are younger than the grace period.
    pub spared: usize,
    /// Objects spared because the snapshot that wrote them holds a live lease.
    pub leased: usize,
    /// Snapshots in progress, by a live lease.
    pub in_progress: Vec<SnapshotId>,
    /// The fence this collection set in `latest.json`, if it collected a
    /// snapshot whose lease had expired.
    pub fence: Option<DateTime<Utc>>,
    /// Keys of multipart uploads, left open for longer than the grace
    /// period, that were aborted (or, in a dry run, would be).
    pub aborted_uploads: Vec<String>,
}

/// An object garbage collection deleted (or would delete).
#[derive(Debug, Clone, Serialize)]
pub struct DeletedObject {
    /// Key of the object.
    pub key: String,
    /// Size of the object in bytes.
    pub size: u64,
}

/// What a partition's leases say of the snapshot that holds one.
#[derive(Debug, Clone, Copy)]
enum LeaseState {
    Live,
    Expired {
        started_at: DateTime<Utc>,
    },
    /// A lease that cannot be read protects its snapshot: nothing says when
    /// it started, so it could not be fenced.
    Unreadable,
}

/// Applies retention and collects the garbage of one partition.
pub async fn collect(
    repo: &Repository,
    partition: PartitionId,
    opts: &GcOptions,
) -> Result<GcReport, GcError> {
    // A local repository's scratch, beside its locks: what writers killed
    // between a write and its rename left, which no listing shows.
    match repo.sweep_scratch().await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "temporary files of killed writers removed"),
        Err(e) => tracing::warn!(error = %e, "cannot sweep the repository's scratch"),
    }
    for _ in 0..MAX_ROUNDS {
        if let Some(report) = collect_once(repo, partition, opts).await? {
            return Ok(report);
        }
        tracing::debug!(%partition, "latest.json moved during the collection; deciding again");
    }
    Err(GcError::Contended)
}

/// One round: `None` if the pointer moved before the decision could be
/// confirmed, and nothing was deleted.
async fn collect_once(
    repo: &Repository,
    partition: PartitionId,
    opts: &GcOptions,
) -> Result<Option<GcReport>, GcError> {
    let now = opts.now.unwrap_or_else(Utc::now);
    let layout = repo.layout();
    let dir = layout.partition_dir(partition);
    // One listing of the partition serves every decision (a request per
    // 1 000 objects on S3). Listed before the leases are read: a writer
    // puts its lease before any object, so every object listed here has
    // its lease in the reading below, unless the writer is done with it.
    // Listed before the pointer is read: a snapshot published since is in
    // the pointer, or changes it before the decision is confirmed.
    let objects: Vec<ObjectMeta> =
        repo.store()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| GcError::Store {
                key: dir.to_string(),
                source: e,
            })?;
    let folder_names: std::collections::BTreeSet<String> = objects
        .iter()
        .filter_map(|o| {
            let below = o.location.as_ref().strip_prefix(dir.as_ref())?;
            let (folder, _) = below.strip_prefix('/')?.split_once('/')?;
            Some(folder.to_string())
        })
        .collect();
    let folders = repo.snapshot_folders(partition, folder_names).await;
    let Kept { kept, pointer } = kept_snapshots(repo, partition, opts, now, &folders).await?;
    let marked = mark(repo, partition, &kept).await?;
    let leases = lease_states(repo, partition, now, opts.grace).await?;
    let open_uploads = repo.uploads().list(&dir).await.map_err(GcError::Uploads)?;

    let cutoff = chrono::Duration::from_std(opts.grace)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let owner_of = |key: &str| {
        key.strip_prefix(dir.as_ref())
            .and_then(|k| k.strip_prefix('/'))
            .and_then(owner)
    };
    let mut report = GcReport {
        partition_id: partition,
        dry_run: opts.dry_run,
        kept: kept.iter().map(|k| k.snapshot_id).collect(),
        deleted: Vec::new(),
        deleted_bytes: 0,
        spared: 0,
        leased: 0,
        in_progress: leases
            .iter()
            .filter(|(_, s)| matches!(s, LeaseState::Live))
            .map(|(id, _)| *id)
            .collect(),
        fence: None,
        aborted_uploads: Vec::new(),
    };
    report.in_progress.sort();
    // Collecting from a snapshot whose lease expired needs a fence at or
    // after that lease's start.
    let mut fence_needed: Option<DateTime<Utc>> = None;
    let mut fence_for = |started_at: DateTime<Utc>| {
        fence_needed = Some(fence_needed.map_or(started_at, |f| f.max(started_at)));
    };
    let mut candidates = Vec::new();
    let mut young_metadata: Vec<String> = Vec::new();
    for object in objects {
        if marked.contains(&object.location) {
            continue;
        }
        match owner_of(object.location.as_ref()).and_then(|id| leases.get(&id)) {
            Some(LeaseState::Live | LeaseState::Unreadable) => report.leased += 1,
            Some(LeaseState::Expired { started_at }) => {
                fence_for(*started_at);
                candidates.push((object, true));
            }
            None if object.last_modified > cutoff => {
                report.spared += 1;
                if object.location.filename() == Some(METADATA) {
                    young_metadata.push(folder_of(&object.location));
                }
            }
            None => candidates.push((object, false)),
        }
    }
    // A folder whose metadata.json is spared keeps its files too, this
    // time: deleting them would leave a folder that looks complete.
    candidates.retain(|(o, _)| {
        let keep = young_metadata.contains(&folder_of(&o.location));
        if keep {
            report.spared += 1;
        }
        !keep
    });
    let mut uploads_to_abort = Vec::new();
    for upload in open_uploads {
        match owner_of(&upload.key).and_then(|id| leases.get(&id)) {
            Some(LeaseState::Live | LeaseState::Unreadable) => {}
            Some(LeaseState::Expired { started_at }) => {
                fence_for(*started_at);
                uploads_to_abort.push((upload, true));
            }
            None if upload.initiated > cutoff => {}
            None => uploads_to_abort.push((upload, false)),
        }
    }

    // Confirm the decision under the pointer's compare-and-swap.
    if let Some(fence) = fence_needed {
        match fence_pointer(repo, pointer.as_ref(), fence, opts).await? {
            Fenced::Moved => return Ok(None),
            Fenced::Set(fence) => report.fence = fence,
            Fenced::Impossible(why) => {
                // Without a fence, an expired lease's writer could still
                // publish: its objects stay until a fence can be set.
                tracing::info!(%partition, reason = why, "objects of snapshots whose lease expired are kept");
                candidates.retain(|(_, leased)| !leased);
                uploads_to_abort.retain(|(_, leased)| !leased);
            }
        }
    } else if !opts.dry_run && !pointer_unchanged(repo, partition, pointer.as_ref()).await? {
        return Ok(None);
    }

    // Folders' metadata.json go first, and every one of them is gone
    // before any other object is deleted: a collection interrupted half-way
    // then leaves files without metadata (garbage, collected next time),
    // never metadata without its files (a folder that looks complete).
    // Leases go last, once what they protected is gone.
    let leases_dir = format!("/{LEASES}/");
    let phase = |o: &ObjectMeta| {
        let in_leases = o
            .location
            .as_ref()
            .strip_prefix(dir.as_ref())
            .is_some_and(|k| k.starts_with(&leases_dir));
        match o.location.filename() {
            Some(METADATA) => 0,
            _ if in_leases => 2,
            _ => 1,
        }
    };
    for step in 0..3 {
        let objects: Vec<&ObjectMeta> = candidates
            .iter()
            .map(|(o, _)| o)
            .filter(|o| phase(o) == step)
            .collect();
        if !opts.dry_run {
            let keys: Vec<Path> = objects.iter().map(|o| o.location.clone()).collect();
            repo.delete_objects(&keys).await?;
        }
        for object in objects {
            report.deleted_bytes += object.size;
            report.deleted.push(DeletedObject {
                key: object.location.to_string(),
                size: object.size,
            });
        }
    }
    // Uploads a killed process left open, or whose snapshot's lease expired.
    for (upload, _) in uploads_to_abort {
        if !opts.dry_run {
            repo.uploads()
                .abort(&upload)
                .await
                .map_err(GcError::Uploads)?;
        }
        report.aborted_uploads.push(upload.key);
    }
    tracing::info!(
        partition = %partition, dry_run = opts.dry_run, aborted_uploads = report.aborted_uploads.len(), kept = report.kept.len(),
        deleted = report.deleted.len(), bytes = report.deleted_bytes, spared = report.spared, leased = report.leased,
        fence = ?report.fence, "garbage collected"
    );
    Ok(Some(report))
}

/// The folder an object is in (its key without the last part).
fn folder_of(key: &Path) -> String {
    key.as_ref()
        .rsplit_once('/')
        .map_or_else(String::new, |(folder, _)| folder.to_string())
}

/// Every object the kept snapshots reference, and the pointer.
async fn mark(
    repo: &Repository,
    partition: PartitionId,
    kept: &[crate::format::RetainedSnapshot],
) -> Result<HashSet<Path>, GcError> {
    let layout = repo.layout();
    let mut marked = HashSet::new();
    marked.insert(layout.latest(partition));
    for snapshot in kept {
        let unreadable = |source| GcError::KeptUnreadable {
            snapshot: snapshot.path.clone(),
            source,
        };
        let meta = repo
            .read_metadata(partition, &snapshot.path)
            .await
            .map_err(unreadable)?;
        marked.insert(layout.metadata(partition, &snapshot.path));
        for f in &meta.files {
            let key = layout.object(partition, &snapshot.path, f).map_err(|e| {
                unreadable(RepoError::Malformed {
                    key: layout.metadata(partition, &snapshot.path).to_string(),
                    source: e,
                })
            })?;
            marked.insert(key);
        }
    }
    Ok(marked)
}

/// Why a garbage collection stopped.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The repository failed: reading or replacing the pointer, listing
    /// snapshots, or reading a metadata document.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// A kept snapshot's metadata cannot be read, so its references are
    /// unknown and nothing is deleted.
    #[error("kept snapshot {snapshot} cannot be read, so nothing is deleted: {source}")]
    KeptUnreadable {
        /// Folder name of the snapshot.
        snapshot: String,
        /// Why it cannot be read.
        #[source]
        source: RepoError,
    },
    /// Listing, checking or deleting an object failed.
    #[error("cannot list or delete {key}: {source}")]
    Store {
        /// The key (or folder, for a listing) operated on.
        key: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// `latest.json` changed under every attempt to apply retention to it.
    #[error("latest.json kept changing; try again")]
    Contended,
    /// Retention would rewrite a pointer Restate wrote.
    #[error("latest.json was written by Restate: rocksnap collects what its retained_snapshots leave, but never rewrites it; prune without --keep/--older-than")]
    RestatePointer,
    /// Listing or aborting open multipart uploads failed.
    #[error("open multipart uploads: {0}")]
    Uploads(String),
    /// Retention would rewrite a pointer of another cluster (or of a cluster
    /// not named in [`GcOptions::cluster`]).
    #[error(
        "latest.json belongs to cluster {found:?}; pass its cluster name to apply retention to it"
    )]
    ForeignPointer {
        /// The cluster named in the pointer.
        found: String,
    },
}
