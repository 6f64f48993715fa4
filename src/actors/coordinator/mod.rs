//! The coordinator: one per snapshot, it takes the snapshot from request to
//! published pointer, in four steps a reader can follow:
//!
//! 1. **export** the column family (the exporter);
//! 2. **plan** each file's key, and which files a V2 snapshot can reuse from
//!    the previous one;
//! 3. **upload** every other file (the chunker reads it into parts, the
//!    uploader stores them), sending a file again after a transient failure;
//! 4. **publish** `metadata.json` and move `latest.json` (the publisher).
//!
//! It is a linked child of the supervisor that runs its one snapshot when it
//! starts and then stops; the outcome travels back to the supervisor once,
//! which answers the request. A cancellation token (the supervisor's, for
//! shutdown) is observed at every wait, so a cancelled snapshot ends within
//! one store request, with its uploads aborted and nothing published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio_util::sync::CancellationToken;

mod lease;
mod outcome;
mod plan;
mod upload;

pub use outcome::{SnapshotError, SnapshotOutcome, SnapshotRequest};

use crate::actors::chunker::ChunkerMsg;
use crate::actors::exporter::{Export, ExportRequest, ExporterMsg};
use crate::actors::publisher::{Publication, PublisherMsg};
use crate::actors::uploader::{StoredFile, UploadError, UploaderMsg};
use crate::config::{PartitionSpec, PipelineConfig};
use crate::flow::{BoundedMailbox, LeaseGate, PipelineStats};
use crate::format::{
    Dialect, FileEntry, FormatVersion, PartitionId, SnapshotId, SnapshotMetadata,
    CHECKSUM_ALGORITHM,
};
use crate::metrics as m;
use crate::repository::Repository;

/// The stages a snapshot runs through, as the supervisor has them now.
#[derive(Clone)]
pub(crate) struct Stages {
    pub exporter: ActorRef<ExporterMsg>,
    pub chunker: BoundedMailbox<ChunkerMsg>,
    pub uploader: BoundedMailbox<UploaderMsg>,
}

/// Reports a snapshot's outcome to whoever started it, once.
pub(crate) type Report = Box<dyn FnOnce(Result<SnapshotOutcome, SnapshotError>) + Send>;

/// Everything one snapshot needs.
pub(crate) struct CoordinatorArgs {
    pub request: SnapshotRequest,
    pub spec: PartitionSpec,
    pub config: Arc<PipelineConfig>,
    pub repository: Repository,
    pub stages: Stages,
    pub publisher: ActorRef<PublisherMsg>,
    pub cancel: CancellationToken,
    pub report: Report,
    /// The pipeline's counters, for progress.
    pub stats: Arc<PipelineStats>,
}

/// Receives no messages: it runs its snapshot when it starts, then stops.
pub(crate) enum CoordinatorMsg {}

pub(crate) struct Coordinator;

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = Option<CoordinatorArgs>;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: CoordinatorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Some(args))
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let args = state.take().expect("started once");
        let (job, report) = Job::new(args);
        let result = job.run().await;
        report(result);
        myself.stop(None);
        Ok(())
    }
}

/// One snapshot in progress.
struct Job {
    request: SnapshotRequest,
    spec: PartitionSpec,
    config: Arc<PipelineConfig>,
    repository: Repository,
    stages: Stages,
    publisher: ActorRef<PublisherMsg>,
    cancel: CancellationToken,
    snapshot_id: SnapshotId,
    stats: Arc<PipelineStats>,
    /// Told whether the lease was written; its gates go with every file.
    lease_gate: LeaseGate,
}

/// What to do with one exported file.
struct PlannedFile {
    path: std::path::PathBuf,
    key: Path,
    /// V2: the object's key relative to the partition's folder, as the
    /// metadata names it.
    entry_key: Option<String>,
    /// The file's size on disk.
    size: u64,
    /// The file is already stored (V2: shared with the previous snapshot),
    /// with this CRC32C and stored size.
    reused: Option<(u32, u64)>,
    /// Encrypted snapshots: the file's data key, to seal what is sent.
    seal: Option<Arc<crate::crypto::FileKey>>,
    /// Encrypted snapshots: the file's envelope, as metadata stores it.
    encryption: Option<crate::format::FileEncryption>,
}

/// A V2 file the previous snapshot references.
struct SharedFile {
    key: Path,
    /// Its key relative to the partition's folder, as metadata names it.
    entry_key: String,
    crc32c: u32,
    /// Its stored size.
    size: u64,
    /// Its envelope, if it is encrypted.
    encryption: Option<crate::format::FileEncryption>,
}

/// What step 3 has to do.
struct Plan {
    /// The previous snapshot, whose files a V2 snapshot may reuse.
    base: Option<SnapshotId>,
    files: Vec<PlannedFile>,
}

/// Where the files went.
struct Uploaded {
    stored: Vec<StoredFile>,
    /// Each file's key relative to the partition's folder (V2).
    entry_keys: Vec<Option<String>>,
    /// Each file's envelope (encrypted snapshots).
    encryption: Vec<Option<crate::format::FileEncryption>>,
    /// The files sent (not reused): the snapshot's own objects.
    sent: Vec<StoredFile>,
    /// The snapshot whose files were reused, if any was.
    reused_from: Option<SnapshotId>,
}

impl Job {
    fn new(args: CoordinatorArgs) -> (Self, Report) {
        let snapshot_id = SnapshotId::new().encoded(args.config.dialect.id_encoding());
        let job = Job {
            request: args.request,
            spec: args.spec,
            config: args.config,
            repository: args.repository,
            stages: args.stages,
            publisher: args.publisher,
            cancel: args.cancel,
            snapshot_id,
            stats: args.stats,
            lease_gate: LeaseGate::new(),
        };
        (job, args.report)
    }

    fn partition(&self) -> PartitionId {
        self.request.partition
    }

    /// Exports, then runs the rest under the snapshot's lease: written
    /// while the export runs, renewed while the steps run, given back once
    /// they are done. The parts travel while the lease is still on its way;
    /// the snapshot's objects wait for it (see [`crate::flow::LeaseWritten`]).
    async fn run(&self) -> Result<SnapshotOutcome, SnapshotError> {
        let started = Instant::now();
        let lease = self.new_lease();
        let lease_started = lease.started_at;
        let work = async {
            let export = self.export().await?;
            self.steps(export, lease_started, started).await
        };
        let done = CancellationToken::new();
        let guard = async {
            self.write_lease(&lease).await?;
            Ok(self.keep_lease(lease.clone(), &done).await)
        };
        tokio::pin!(work, guard);
        let result = tokio::select! {
            result = &mut work => {
                // A renewal on its way finishes before the lease is deleted,
                // so that it cannot bring the lease back afterwards. A lease
                // that could not be written tells its gates at once, so that
                // its failure ends here first: this work failed on its own.
                done.cancel();
                let _ = (&mut guard).await;
                result
            }
            guarded = &mut guard => {
                // Stop, and let the uploads abort what they started. A
                // publish already under way stands or falls by the fence:
                // a collector that takes this snapshot's objects fences it
                // off first.
                self.cancel.cancel();
                let result = work.await;
                match guarded {
                    Err(lease) => Err(lease),
                    Ok(lost) => {
                        let lost = lost.expect("renewal ends by itself only when the lease is lost");
                        result.or(Err(lost))
                    }
                }
            }
        };
        self.give_back_lease().await;
        result
    }

    /// Deletes the snapshot's lease, or leaves it to expire.
    async fn give_back_lease(&self) {
        if let Err(e) = self
            .repository
            .delete_lease(self.partition(), self.snapshot_id)
            .await
        {
            tracing::warn!(partition = %self.partition(), error = %e, "cannot delete the snapshot's lease; it expires by itself");
        }
    }

    /// Plan, upload, publish.
    async fn steps(
        &self,
        export: Export,
        lease_started: DateTime<Utc>,
        started: Instant,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let upload_started = Instant::now();
        let plan = self.plan(&export).await?;
        let uploaded = self.upload(plan).await;
        m::stage_duration("upload").record(upload_started.elapsed().as_secs_f64());
        let uploaded = uploaded?;
        let meta = self.metadata(&export, &uploaded);
        // The staging files are no longer needed once every file is stored.
        drop(export);
        // `metadata.json` is an object too (with nothing sent, the first).
        if self.cancel.is_cancelled() || !self.lease_gate.gate().written().await {
            return Err(self.cancelled());
        }
        let outcome = SnapshotOutcome {
            partition_id: self.partition(),
            snapshot_id: self.snapshot_id,
            min_applied_lsn: meta.min_applied_lsn,
            key: self
                .repository
                .layout()
                .metadata(self.partition(), &meta.path())
                .to_string(),
            bytes: meta.total_bytes(),
            uploaded_bytes: uploaded.sent.iter().map(|f| f.size).sum(),
            files: meta.files.len(),
            duration: Duration::ZERO,
        };
        let sent = uploaded.sent.into_iter().map(|f| f.key).collect();
        self.publish(meta, uploaded.reused_from, sent, lease_started)
            .await?;
        Ok(SnapshotOutcome {
            duration: started.elapsed(),
            ..outcome
        })
    }

    /// Step 1: the column family, exported into a staging directory.
    async fn export(&self) -> Result<Export, SnapshotError> {
        let request = ExportRequest {
            partition: self.partition(),
            cf: self.spec.cf.clone(),
            lsn: self.spec.lsn,
            min_lsn: self.request.min_lsn,
            snapshot_id: self.snapshot_id,
            identities: self.config.format == FormatVersion::V2,
        };
        let call = self
            .stages
            .exporter
            .call(|reply| ExporterMsg::Export(request, reply), None);
        let answer = tokio::select! {
            _ = self.cancel.cancelled() => return Err(self.cancelled()),
            answer = call => answer,
        };
        match answer {
            Ok(CallResult::Success(export)) => {
                export.map_err(|e| SnapshotError::export(self.partition(), e))
            }
            _ => Err(SnapshotError::Stopped(
                "the exporter stopped while exporting; it is restarted".into(),
            )),
        }
    }

    fn metadata(&self, export: &Export, uploaded: &Uploaded) -> SnapshotMetadata {
        let files = export
            .files
            .iter()
            .zip(&uploaded.stored)
            .zip(&export.identities)
            .zip(&uploaded.entry_keys)
            .zip(&uploaded.encryption)
            .map(|((((f, s), id), key), encryption)| FileEntry {
                column_family_name: f.column_family_name.clone(),
                name: f.name.clone(),
                directory: f.directory.clone(),
                // The stored bytes' size (sealed, if encrypted).
                size: s.size,
                level: f.level,
                // Encrypted: sealed in the envelope instead.
                start_key: match encryption {
                    Some(_) => String::new(),
                    None => hex::encode(&f.smallest_key),
                },
                end_key: match encryption {
                    Some(_) => String::new(),
                    None => hex::encode(&f.largest_key),
                },
                smallest_seqno: f.smallest_seqno,
                largest_seqno: f.largest_seqno,
                num_entries: f.num_entries,
                num_deletions: f.num_deletions,
                checksum: Some(format!("{:08x}", s.crc32c)),
                identity: id.clone(),
                key: key.clone(),
                encryption: encryption.clone(),
            })
            .collect();
        let log_id = match self.config.dialect {
            Dialect::Rocksnap => None,
            Dialect::Restate => Some(self.spec.log_id.unwrap_or(self.partition().0)),
        };
        SnapshotMetadata {
            version: self.config.format,
            cluster_name: self.config.cluster_name.clone(),
            cluster_fingerprint: None,
            partition_id: self.partition(),
            node_name: self.config.node_name.clone(),
            created_at: Utc::now(),
            snapshot_id: self.snapshot_id,
            key_range: self.spec.key_range,
            log_id,
            min_applied_lsn: export.min_applied_lsn,
            db_comparator_name: export.comparator_name.clone(),
            checksum_algorithm: Some(CHECKSUM_ALGORITHM.into()),
            encryption: self
                .config
                .encryption
                .as_ref()
                .map(|_| crate::crypto::SCHEME.to_string()),
            files,
        }
    }

    /// Step 4: `metadata.json`, then `latest.json`, by the partition's publisher.
    async fn publish(
        &self,
        meta: SnapshotMetadata,
        reused_from: Option<SnapshotId>,
        sent: Vec<Path>,
        lease_started: DateTime<Utc>,
    ) -> Result<(), SnapshotError> {
        let partition = self.partition();
        let publication = Publication {
            meta,
            reused_from,
            lease_started,
            sent,
        };
        match self
            .publisher
            .call(
                |reply| PublisherMsg::Publish(Box::new(publication), reply),
                None,
            )
            .await
        {
            Ok(CallResult::Success(Ok(_))) => Ok(()),
            Ok(CallResult::Success(Err(source))) => Err(SnapshotError::Publish {
                partition,
                source: Box::new(source),
            }),
            _ => Err(SnapshotError::Stopped(
                "the publisher stopped while publishing; it is restarted".into(),
            )),
        }
    }

    fn cancelled(&self) -> SnapshotError {
        SnapshotError::upload(self.partition(), UploadError::Cancelled)
    }
}
