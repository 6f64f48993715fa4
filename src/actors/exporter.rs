//! The exporter: turns a partition's column family into SST files on disk.
//!
//! It reads the partition's applied LSN, then exports the column family with
//! RocksDB's checkpoint export into a fresh staging directory. The LSN is read
//! first: the export flushes and captures every write acknowledged before it
//! starts, so the snapshot holds at least that LSN (hence `min_applied_lsn`),
//! and the exact LSN travels inside the exported data under the reserved key.
//! The staging directory is a [`TempDir`] owned by the [`Export`], so it is
//! removed whatever happens to the snapshot afterwards.
//!
//! Exports of different partitions run side by side, up to a bound: each is
//! a task in the exporter's own [`JoinSet`], aborted if the exporter stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tempfile::TempDir;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::LsnSource;
use crate::ffi::{self, ExportedFile};
use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::metrics as m;
use crate::partition::{PartitionError, PartitionStore};
use crate::staging;

/// What to export.
#[derive(Debug, Clone)]
pub(crate) struct ExportRequest {
    pub partition: PartitionId,
    pub cf: String,
    pub lsn: LsnSource,
    pub min_lsn: Option<Lsn>,
    pub snapshot_id: SnapshotId,
    /// Read every file's identity (for shared files, format V2).
    pub identities: bool,
}

/// An exported column family in its staging directory.
#[derive(Debug)]
pub(crate) struct Export {
    /// Removed when the export is dropped.
    _staging: TempDir,
    pub min_applied_lsn: Lsn,
    pub comparator_name: String,
    pub files: Vec<ExportedFile>,
    /// Each file's identity, when asked for: `<number>-<session>-<size>`.
    pub identities: Vec<Option<String>>,
}

impl Export {
    /// Local path of an exported file.
    pub fn file_path(&self, file: &ExportedFile) -> PathBuf {
        PathBuf::from(&file.directory).join(file.name.trim_start_matches('/'))
    }
}

/// Why a partition could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The database has no such column family.
    #[error("the database has no column family {cf:?}")]
    UnknownColumnFamily {
        /// The column family looked for.
        cf: String,
    },
    /// The stored LSN could not be read.
    #[error("cannot read its applied LSN: {0}")]
    Lsn(#[source] Box<PartitionError>),
    /// The partition is behind what the request asked for.
    #[error("applied LSN {applied} is below the requested minimum {requested}")]
    LsnBelowMinimum {
        /// The partition's LSN.
        applied: Lsn,
        /// The request's minimum.
        requested: Lsn,
    },
    /// RocksDB or the filesystem refused.
    #[error("export failed: {0}")]
    Failed(String),
}

pub(crate) enum ExporterMsg {
    Export(ExportRequest, RpcReplyPort<Result<Export, ExportError>>),
    /// One of the exporter's tasks panicked: the stage fails and is restarted.
    TaskPanicked(String),
}

pub(crate) struct Exporter;

pub(crate) struct ExporterArgs {
    pub partitions: PartitionStore,
    /// Parent of the per-snapshot staging directories; on the database's
    /// filesystem so that RocksDB can hard-link instead of copying.
    pub staging_root: PathBuf,
    /// Exports that may run at once (each flushes a memtable and links files).
    pub max_concurrent: usize,
}

pub(crate) struct ExporterState {
    partitions: PartitionStore,
    staging_root: PathBuf,
    permits: Arc<Semaphore>,
    tasks: JoinSet<()>,
}

impl Actor for Exporter {
    type Msg = ExporterMsg;
    type State = ExporterState;
    type Arguments = ExporterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ExporterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        staging::prepare_export_root(&args.staging_root)?;
        Ok(ExporterState {
            partitions: args.partitions,
            staging_root: args.staging_root,
            permits: Arc::new(Semaphore::new(args.max_concurrent.max(1))),
            tasks: JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Forget the tasks that have ended; a panic was reported by message.
        while state.tasks.try_join_next().is_some() {}
        match msg {
            ExporterMsg::Export(req, reply) => {
                let partitions = state.partitions.clone();
                let root = state.staging_root.clone();
                let permits = state.permits.clone();
                let work = async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    let started = Instant::now();
                    // RocksDB's export blocks; a panic inside it fails this
                    // export only, with its message.
                    let result =
                        tokio::task::spawn_blocking(move || export(&partitions, &root, req))
                            .await
                            .unwrap_or_else(|e| {
                                Err(ExportError::Failed(format!("export panicked: {e}")))
                            });
                    m::stage_duration("export").record(started.elapsed().as_secs_f64());
                    // The requester may have gone away; the export is then
                    // dropped and its staging directory removed.
                    let _ = reply.send(result);
                    None
                };
                super::spawn_owned(&mut state.tasks, &myself, work, ExporterMsg::TaskPanicked);
            }
            ExporterMsg::TaskPanicked(msg) => {
                return Err(format!("an export task panicked: {msg}").into());
            }
        }
        Ok(())
    }
}

fn export(
    partitions: &PartitionStore,
    staging_root: &std::path::Path,
    req: ExportRequest,
) -> Result<Export, ExportError> {
    // One shared pass of the partition's gate for the checks and the export:
    // a fast-forward swaps the column family either before or after all of it.
    let gate = partitions.gate(&req.cf);
    tracing::debug!(cf = %req.cf, "export waits for the partition's gate");
    let _shared = gate.read().expect("not poisoned");
    if !partitions.has_column_family(&req.cf) {
        return Err(ExportError::UnknownColumnFamily { cf: req.cf });
    }
    let lsn = match req.lsn {
        LsnSource::Fixed(lsn) => lsn,
        LsnSource::Stored => partitions
            .applied_lsn(&req.cf)
            .map_err(|e| ExportError::Lsn(Box::new(e)))?
            .unwrap_or(Lsn(partitions.db().latest_sequence_number())),
    };
    if let Some(min) = req.min_lsn {
        if lsn < min {
            return Err(ExportError::LsnBelowMinimum {
                applied: lsn,
                requested: min,
            });
        }
    }
    let staging = staging::export_dir(
        staging_root,
        &format!("{}-{}", req.partition, req.snapshot_id),
    )
    .map_err(|e| ExportError::Failed(format!("cannot create staging directory: {e}")))?;
    // RocksDB insists on creating the export directory itself.
    let dir = staging.path().join("export");
    let exported = partitions
        .export_ungated(&req.cf, &dir)
        .map_err(|e| ExportError::Failed(e.to_string()))?;
    let mut identities = Vec::with_capacity(exported.files.len());
    for f in &exported.files {
        identities.push(if req.identities {
            let path = PathBuf::from(&f.directory).join(f.name.trim_start_matches('/'));
            let (session, number) = ffi::sst_identity(&path)
                .map_err(|e| ExportError::Failed(format!("{}: {e}", path.display())))?;
            Some(format!("{number}-{session}-{}", f.size))
        } else {
            None
        });
    }
    Ok(Export {
        _staging: staging,
        min_applied_lsn: lsn,
        comparator_name: exported.comparator_name,
        files: exported.files,
        identities,
    })
}
