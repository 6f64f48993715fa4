//! The publisher: one per partition, the only writer of its `latest.json`.
//!
//! It publishes a snapshot whose files are all stored: it writes
//! `metadata.json` create-only while it reads the current pointer, checks
//! the pointer (a pointer it cannot parse, or one of another cluster, is
//! never overwritten; a newer one is never moved back; a refusal deletes
//! the metadata again), and then swaps the pointer by compare-and-swap. A conflict means another writer (an old or a new leader)
//! moved the pointer in between: the publisher reads it again and decides
//! again, never overwrites blindly.

use std::time::Instant;

use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::format::{Dialect, Lsn, PartitionId, SnapshotId, SnapshotMetadata};
use crate::metrics as m;
use crate::repository::{RepoError, Repository};
use crate::retention::Retention;
use crate::retry::is_transient;

/// How often a conflicting swap is retried before giving up.
const MAX_SWAP_ATTEMPTS: u32 = 16;

pub(crate) enum PublisherMsg {
    /// Publish a snapshot whose files are all stored; the id is the snapshot
    /// it reused files from, if any.
    Publish(
        Box<Publication>,
        RpcReplyPort<Result<Published, PublishError>>,
    ),
}

/// A snapshot whose files are all stored, ready to be published.
pub(crate) struct Publication {
    pub meta: SnapshotMetadata,
    /// The snapshot it reused files from, if any.
    pub reused_from: Option<SnapshotId>,
    /// When its lease started: a garbage-collection fence at or after it
    /// means its objects may be gone.
    pub lease_started: DateTime<Utc>,
    /// The objects it sent (not those it reused): its own, which nothing
    /// else references.
    pub sent: Vec<object_store::path::Path>,
}

/// A published snapshot.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Compare-and-swap conflicts met on the way.
    pub conflicts: u32,
}

/// Why a snapshot whose files are all stored was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The pointer is already at a newer snapshot.
    #[error("latest.json already points at LSN {current}, newer than this snapshot's {new}; the pointer never moves back")]
    Stale {
        /// The pointer's LSN.
        current: Lsn,
        /// This snapshot's LSN.
        new: Lsn,
    },
    /// The pointer belongs to another cluster.
    #[error("latest.json belongs to cluster {found:?}, not {ours:?}, and is left as it is")]
    ForeignCluster {
        /// The pointer's cluster.
        found: String,
        /// This node's cluster.
        ours: String,
    },
    /// Garbage collection fenced the snapshot off: its lease expired while
    /// it ran, and its objects may have been collected.
    #[error("garbage collection fenced off every snapshot started at or before {fence} (this one started at {started}, and its lease expired while it ran), so its objects may be gone; not published")]
    Fenced {
        /// The pointer's fence.
        fence: DateTime<Utc>,
        /// When this snapshot's lease started.
        started: DateTime<Utc>,
    },
    /// The pointer is in the other dialect: a rocksnap snapshot onto a
    /// Restate pointer (whose fields it would replace with its own), or a
    /// Restate-dialect snapshot onto a rocksnap pointer (whose ids Restate
    /// cannot read).
    #[error("latest.json is in the {found:?} dialect and this snapshot in the {ours:?} one; the pointer is left as it is (publish with the dialect of the repository: --format restate for Restate's)")]
    OtherDialect {
        /// The pointer's dialect.
        found: Dialect,
        /// This snapshot's.
        ours: Dialect,
    },
    /// Files were reused from a snapshot that is no longer retained.
    #[error("files were shared with snapshot {0}, which is no longer retained; not published")]
    BaseGone(SnapshotId),
    /// Other writers kept moving the pointer.
    #[error("gave up after {0} compare-and-swap conflicts on latest.json")]
    TooManyConflicts(u32),
    /// The swap's answer was lost, and reading again did not settle it.
    #[error("metadata.json was written but latest.json could not be replaced: {0}")]
    Uncertain(#[source] RepoError),
    /// The repository failed.
    #[error(transparent)]
    Repository(#[from] RepoError),
}

impl PublishError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Stale { .. } => "stale",
            PublishError::ForeignCluster { .. } => "foreign_cluster",
            PublishError::TooManyConflicts(_) => "conflicts",
            PublishError::BaseGone(_) => "base_gone",
            PublishError::Fenced { .. } => "fenced",
            PublishError::OtherDialect { .. } => "other_dialect",
            PublishError::Uncertain(_) => "uncertain",
            PublishError::Repository(RepoError::Malformed { .. }) => "malformed_pointer",
            PublishError::Repository(_) => "repository",
        }
    }
}

pub(crate) struct Publisher;

pub(crate) struct PublisherArgs {
    pub partition: PartitionId,
    pub repository: Repository,
    /// Which snapshots a V2 pointer keeps.
    pub retention: Retention,
}

impl Actor for Publisher {
    type Msg = PublisherMsg;
    type State = PublisherArgs;
    type Arguments = PublisherArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: PublisherArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The partition's counters exist from the start, at zero, so that
        // a rate or an alert on them works before the first event.
        let p = args.partition.0;
        m::snapshots_started(p).increment(0);
        m::snapshots_succeeded(p).increment(0);
        m::cas_conflicts(p).increment(0);
        m::restore_fallbacks(p).increment(0);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PublisherMsg::Publish(publication, reply) => {
                let meta = &publication.meta;
                assert_eq!(
                    meta.partition_id, state.partition,
                    "routed to its own publisher"
                );
                let started = Instant::now();
                let result = publish(&state.repository, &publication, state.retention).await;
                m::stage_duration("publish").record(started.elapsed().as_secs_f64());
                if let Ok(published) = &result {
                    tracing::debug!(partition = %state.partition, snapshot_id = %meta.snapshot_id,
                        conflicts = published.conflicts, "latest.json replaced");
                    let p = state.partition.0;
                    m::latest_lsn(p).set(meta.min_applied_lsn.0 as f64);
                    m::latest_timestamp(p).set(meta.created_at.timestamp() as f64);
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// What a publish has done so far, for the cleanup after a failure.
#[derive(Default)]
struct Progress {
    metadata_written: bool,
    /// A swap failed in a way that may still have landed.
    maybe_swapped: bool,
}

/// Publishes, and if that fails for good after `metadata.json` was written
/// (and no swap may have landed), deletes it again: a folder whose metadata
/// no pointer will ever name would otherwise look complete for ever. Its
/// files then go too, so that a refused snapshot leaves nothing behind.
async fn publish(
    repo: &Repository,
    publication: &Publication,
    retention: Retention,
) -> Result<Published, PublishError> {
    let meta = &publication.meta;
    let mut progress = Progress::default();
    let result = try_publish(repo, publication, retention, &mut progress).await;
    if result.is_err() && progress.metadata_written && !progress.maybe_swapped {
        // The metadata first: then nothing can name the files it sent.
        let key = repo.layout().metadata(meta.partition_id, &meta.path());
        let removed = match repo.delete_objects(std::slice::from_ref(&key)).await {
            Ok(()) => repo.delete_objects(&publication.sent).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, "cannot remove a snapshot that was not published; garbage collection will");
        }
    }
    result
}

async fn try_publish(
    repo: &Repository,
    publication: &Publication,
    retention: Retention,
    progress: &mut Progress,
) -> Result<Published, PublishError> {
    let meta = &publication.meta;
    let mut delays = repo.retry().delays();
    let mut conflicts = 0;
    let mut uncertain = None;
    for attempt in 0..MAX_SWAP_ATTEMPTS {
        let current = if progress.metadata_written {
            repo.read_pointer(meta.partition_id).await?
        } else {
            // The first time, the pointer is read while `metadata.json` is
            // written: the swap needs both, and neither waits for the
            // other. A refusal below deletes the metadata again (`publish`).
            let (current, written) = tokio::join!(
                repo.read_pointer(meta.partition_id),
                repo.put_metadata(meta)
            );
            match written {
                Ok(()) => progress.metadata_written = true,
                // Someone else's object under our key: never ours to delete.
                Err(e @ RepoError::Conflict { .. }) => return Err(e.into()),
                // A write that failed may still have landed.
                Err(e) => {
                    progress.metadata_written = true;
                    return Err(e.into());
                }
            }
            current?
        };
        if let Some(cur) = &current {
            if cur.pointer.snapshot_id == meta.snapshot_id {
                // An earlier swap landed although its answer was lost.
                return Ok(Published { conflicts });
            }
            if cur.pointer.dialect() != meta.dialect() {
                return Err(PublishError::OtherDialect {
                    found: cur.pointer.dialect(),
                    ours: meta.dialect(),
                });
            }
            if cur.pointer.cluster_name != meta.cluster_name {
                return Err(PublishError::ForeignCluster {
                    found: cur.pointer.cluster_name.clone(),
                    ours: meta.cluster_name.clone(),
                });
            }
            if cur.pointer.min_applied_lsn > meta.min_applied_lsn {
                return Err(PublishError::Stale {
                    current: cur.pointer.min_applied_lsn,
                    new: meta.min_applied_lsn,
                });
            }
            // A collector that found this snapshot's lease expired fenced it
            // off before it took anything.
            if let Some(fence) = cur.pointer.gc_fence {
                if publication.lease_started <= fence {
                    return Err(PublishError::Fenced {
                        fence,
                        started: publication.lease_started,
                    });
                }
            }
            // Shared files reused from a snapshot that is no longer retained
            // may already be collected.
            if let Some(base) = publication.reused_from {
                if !cur.pointer.kept().iter().any(|k| k.snapshot_id == base) {
                    return Err(PublishError::BaseGone(base));
                }
            }
        }
        let mut pointer = meta.pointer();
        // The fence never moves back.
        pointer.gc_fence = current.as_ref().and_then(|c| c.pointer.gc_fence);
        // A Restate pointer's fingerprint names its cluster: kept.
        if let Some(cur) = &current {
            pointer.cluster_fingerprint = pointer
                .cluster_fingerprint
                .or(cur.pointer.cluster_fingerprint);
        }
        if meta.keeps_a_list() {
            // This snapshot, then those the current pointer keeps, pruned by
            // the retention policy.
            let mut kept = vec![meta.retained_entry()];
            if let Some(cur) = &current {
                kept.extend(cur.pointer.kept());
            }
            pointer.retained = retention.apply(kept, chrono::Utc::now());
        }
        match repo
            .swap_pointer(current.as_ref().map(|c| &c.version), &pointer)
            .await
        {
            Ok(_) => return Ok(Published { conflicts }),
            Err(RepoError::Conflict { .. }) => {
                tracing::debug!(partition = %meta.partition_id, attempt, "latest.json changed underneath, reading it again");
                m::cas_conflicts(meta.partition_id.0).increment(1);
                conflicts += 1;
            }
            // A failed conditional write may still have landed (a cut
            // connection after the store applied it): read the pointer again
            // and see.
            Err(RepoError::Store { source, op, key }) if is_transient(&source) => {
                progress.maybe_swapped = true;
                let Some(wait) = delays.next() else {
                    return Err(PublishError::Uncertain(RepoError::Store {
                        source,
                        op,
                        key,
                    }));
                };
                tokio::time::sleep(wait).await;
                uncertain = Some(RepoError::Store { source, op, key });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(match uncertain {
        Some(e) if conflicts == 0 => PublishError::Uncertain(e),
        _ => PublishError::TooManyConflicts(MAX_SWAP_ATTEMPTS),
    })
}
