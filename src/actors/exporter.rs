//! The exporter: turns a partition's column family into SST files on disk.
//!
//! It reads the partition's applied LSN, then exports the column family with
//! RocksDB's checkpoint export into a fresh staging directory. The LSN is read
//! first: the export flushes and captures every write acknowledged before it
//! starts, so the snapshot holds at least that LSN (hence `min_applied_lsn`),
//! and the exact LSN travels inside the exported data under the reserved key.
//! The staging directory is a [`TempDir`] owned by the [`Export`], so it is
//! removed whatever happens to the snapshot afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tempfile::TempDir;
use tokio::sync::Semaphore;

use crate::error::SnapshotError;
use crate::ffi::{self, ExportedFile};
use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::metrics as m;
use crate::partition::PartitionStore;

/// Where the LSN recorded for a snapshot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LsnSource {
    /// The LSN stored in the partition, or else the database's latest
    /// sequence number (for databases written without rocksnap).
    #[default]
    Stored,
    /// Given by the caller.
    Fixed(Lsn),
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
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
pub struct Export {
    /// Removed when the export is dropped.
    pub staging: TempDir,
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

/// Names of export staging directories start with this.
const STAGING_PREFIX: &str = "export-";

pub enum ExporterMsg {
    Export(ExportRequest, RpcReplyPort<Result<Export, SnapshotError>>),
}

pub struct Exporter;

pub struct ExporterArgs {
    pub partitions: PartitionStore,
    /// Parent of the per-snapshot staging directories; on the database's
    /// filesystem so that RocksDB can hard-link instead of copying.
    pub staging_root: PathBuf,
    /// Exports that may run at once (each flushes a memtable and links files).
    pub max_concurrent: usize,
}

pub struct ExporterState {
    partitions: PartitionStore,
    staging_root: PathBuf,
    permits: Arc<Semaphore>,
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
        std::fs::create_dir_all(&args.staging_root)?;
        // Exports left by a process that was killed: only the process that
        // has the database open exports into its staging root, so nothing
        // else can be using them.
        for entry in std::fs::read_dir(&args.staging_root)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                tracing::info!(path = %entry.path().display(), "removing a stale export");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(ExporterState {
            partitions: args.partitions,
            staging_root: args.staging_root,
            permits: Arc::new(Semaphore::new(args.max_concurrent.max(1))),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ExporterMsg::Export(req, reply) => {
                let partitions = state.partitions.clone();
                let root = state.staging_root.clone();
                let permits = state.permits.clone();
                // Exports of different partitions run side by side, up to the bound.
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("never closed");
                    let started = Instant::now();
                    let result =
                        tokio::task::spawn_blocking(move || export(&partitions, &root, req))
                            .await
                            .unwrap_or_else(|e| {
                                Err(SnapshotError::Stopped(format!("export task failed: {e}")))
                            });
                    m::stage_duration("export").record(started.elapsed().as_secs_f64());
                    // The requester may have gone away; the export is then
                    // dropped and its staging directory removed.
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }
}

fn export(
    partitions: &PartitionStore,
    staging_root: &std::path::Path,
    req: ExportRequest,
) -> Result<Export, SnapshotError> {
    if !partitions.has_column_family(&req.cf) {
        return Err(SnapshotError::UnknownPartition {
            partition: req.partition,
            cf: req.cf.clone(),
        });
    }
    let lsn = match req.lsn {
        LsnSource::Fixed(lsn) => lsn,
        LsnSource::Stored => partitions
            .applied_lsn(&req.cf)
            .map_err(|source| SnapshotError::Lsn {
                partition: req.partition,
                source: Box::new(source),
            })?
            .unwrap_or(Lsn(partitions.db().latest_sequence_number())),
    };
    if let Some(min) = req.min_lsn {
        if lsn < min {
            return Err(SnapshotError::LsnBelowMinimum {
                partition: req.partition,
                applied: lsn,
                requested: min,
            });
        }
    }
    let export_err = |reason: String| SnapshotError::Export {
        partition: req.partition,
        reason,
    };
    let staging = tempfile::Builder::new()
        .prefix(&format!(
            "{STAGING_PREFIX}{}-{}-",
            req.partition, req.snapshot_id
        ))
        .tempdir_in(staging_root)
        .map_err(|e| export_err(format!("cannot create staging directory: {e}")))?;
    // RocksDB insists on creating the export directory itself.
    let dir = staging.path().join("export");
    let exported = partitions
        .export_column_family(&req.cf, &dir)
        .map_err(|e| export_err(e.to_string()))?;
    let mut identities = Vec::with_capacity(exported.files.len());
    for f in &exported.files {
        identities.push(if req.identities {
            let path = PathBuf::from(&f.directory).join(f.name.trim_start_matches('/'));
            let (session, number) = ffi::sst_identity(&path)
                .map_err(|e| export_err(format!("{}: {e}", path.display())))?;
            Some(format!("{number}-{session}-{}", f.size))
        } else {
            None
        });
    }
    Ok(Export {
        staging,
        min_applied_lsn: lsn,
        comparator_name: exported.comparator_name,
        files: exported.files,
        identities,
    })
}
