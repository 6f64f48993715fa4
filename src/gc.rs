//! Retention and garbage collection of a partition's snapshots.
//!
//! Mark and sweep: every object a kept snapshot references (its
//! `metadata.json`, and each file's object, shared or not) and `latest.json`
//! are marked; every other object of the partition older than the grace
//! period is deleted. The grace period protects snapshots whose upload is
//! still in progress: their objects are all younger than it, and a new
//! snapshot reuses only files the current pointer's snapshot references,
//! which are marked. The grace period must therefore exceed the longest
//! snapshot upload.
//!
//! Which snapshots are kept: those a V2 pointer lists (after applying the
//! retention asked for, by compare-and-swap on `latest.json`); with a V1
//! pointer, the complete snapshots (the newest `keep_last` of them when
//! asked). A pointer that cannot be read, or a kept snapshot whose metadata
//! cannot be read, stops the collection before anything is deleted.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::format::{PartitionId, RetainedSnapshot, SnapshotId};
use crate::repository::{RepoError, Repository};
use crate::retention::Retention;

/// How a garbage collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Objects younger than this are never deleted.
    pub grace: Duration,
    /// Report what would be deleted, delete nothing, change nothing.
    pub dry_run: bool,
    /// Retention to apply before collecting; `None` keeps what the pointer keeps.
    pub retention: Option<Retention>,
    /// The cluster whose pointer this is: a pointer of another cluster is
    /// never rewritten. `None` accepts any cluster but never rewrites.
    pub cluster: Option<String>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(300),
            dry_run: false,
            retention: None,
            cluster: None,
        }
    }
}

/// What a garbage collection kept, deleted and spared.
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

/// Applies retention and collects the garbage of one partition.
pub async fn collect(
    repo: &Repository,
    partition: PartitionId,
    opts: &GcOptions,
) -> Result<GcReport, GcError> {
    let kept = kept_snapshots(repo, partition, opts).await?;
    let layout = repo.layout();

    let mut marked: HashSet<Path> = HashSet::new();
    marked.insert(layout.latest(partition));
    for snapshot in &kept {
        let meta = repo
            .read_metadata(partition, &snapshot.path)
            .await
            .map_err(|source| GcError::KeptUnreadable {
                snapshot: snapshot.path.clone(),
                source,
            })?;
        marked.insert(layout.metadata(partition, &snapshot.path));
        for f in &meta.files {
            let key = layout.object(partition, &snapshot.path, f).map_err(|e| {
                GcError::KeptUnreadable {
                    snapshot: snapshot.path.clone(),
                    source: RepoError::Malformed {
                        key: layout.metadata(partition, &snapshot.path).to_string(),
                        source: e,
                    },
                }
            })?;
            marked.insert(key);
        }
    }

    let dir = layout.partition_dir(partition);
    let objects: Vec<_> = repo
        .store()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| GcError::Store {
            key: dir.to_string(),
            source: e,
        })?;
    let cutoff =
        Utc::now() - chrono::Duration::from_std(opts.grace).unwrap_or(chrono::Duration::MAX);
    let mut report = GcReport {
        partition_id: partition,
        dry_run: opts.dry_run,
        kept: kept.iter().map(|k| k.snapshot_id).collect(),
        deleted: Vec::new(),
        deleted_bytes: 0,
        spared: 0,
        aborted_uploads: Vec::new(),
    };
    // A folder's metadata.json goes first: a collection interrupted half-way
    // then leaves files without metadata (garbage, collected next time),
    // never metadata without its files (a folder that looks complete).
    let mut objects = objects;
    objects.sort_by_key(|o| o.location.filename() != Some(crate::format::METADATA));
    for object in objects {
        if marked.contains(&object.location) {
            continue;
        }
        if object.last_modified > cutoff {
            report.spared += 1;
            continue;
        }
        if !opts.dry_run {
            // Written again since the listing (a snapshot re-sending a shared
            // file)? Then it is young, and it stays.
            match repo.store().head(&object.location).await {
                Ok(now) if now.last_modified > cutoff => {
                    report.spared += 1;
                    continue;
                }
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(GcError::Store {
                        key: object.location.to_string(),
                        source: e,
                    })
                }
            }
            let deleted = repo
                .retry()
                .run("delete", || repo.store().delete(&object.location))
                .await;
            match deleted {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(GcError::Store {
                        key: object.location.to_string(),
                        source: e,
                    })
                }
            }
        }
        report.deleted_bytes += object.size;
        report.deleted.push(DeletedObject {
            key: object.location.to_string(),
            size: object.size,
        });
    }
    // Uploads a killed process left open: older than the grace period, no
    // snapshot in progress can still complete them.
    let open = repo.uploads().list(&dir).await.map_err(GcError::Uploads)?;
    for upload in open.into_iter().filter(|u| u.initiated <= cutoff) {
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
        deleted = report.deleted.len(), bytes = report.deleted_bytes, spared = report.spared,
        "garbage collected"
    );
    Ok(report)
}

/// The snapshots to keep, newest first, after applying the retention asked
/// for to the pointer (by compare-and-swap, so that a publisher racing with
/// us is never overwritten).
async fn kept_snapshots(
    repo: &Repository,
    partition: PartitionId,
    opts: &GcOptions,
) -> Result<Vec<RetainedSnapshot>, GcError> {
    for _ in 0..16 {
        let Some(current) = repo.read_pointer(partition).await? else {
            // No pointer: keep every complete snapshot.
            return complete_snapshots(repo, partition, None, usize::MAX).await;
        };
        if current.pointer.retained.is_empty() {
            return v1_kept(repo, partition, &current.pointer, opts).await;
        }
        let kept = current.pointer.kept();
        let Some(retention) = opts.retention else {
            return Ok(kept);
        };
        let pruned = retention.apply(kept.clone(), Utc::now());
        if pruned == kept || opts.dry_run {
            return Ok(pruned);
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
            Ok(_) => return Ok(pruned),
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
    pointer: &crate::format::LatestPointer,
    opts: &GcOptions,
) -> Result<Vec<RetainedSnapshot>, GcError> {
    let limit = opts.retention.map_or(usize::MAX, |r| r.keep_last.max(1));
    complete_snapshots(repo, partition, Some(pointer), limit).await
}

/// The pointer's snapshot (if any), then the newest complete snapshots not
/// newer than it, up to `limit` in all.
async fn complete_snapshots(
    repo: &Repository,
    partition: PartitionId,
    pointer: Option<&crate::format::LatestPointer>,
    limit: usize,
) -> Result<Vec<RetainedSnapshot>, GcError> {
    let mut kept: Vec<RetainedSnapshot> = pointer.map(|p| p.kept().remove(0)).into_iter().collect();
    let mut folders = repo.list_snapshots(partition).await?;
    folders.reverse();
    for f in folders {
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
