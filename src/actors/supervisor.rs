//! The supervisor: the entry point a host node starts.
//!
//! It owns the pipeline (exporter → chunker → uploader) and one publisher per
//! partition, takes snapshot requests, and answers each with a
//! [`SnapshotOutcome`] or a typed [`SnapshotError`]. Snapshots of different
//! partitions run at once, sharing the pipeline's bounds; a second request for
//! a partition that is already being snapshotted is refused, not queued.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use object_store::ObjectStoreExt;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::Serialize;
use tokio::sync::watch;

use crate::actors::chunker::{Chunker, ChunkerArgs, ChunkerMsg, FileUpload};
use crate::actors::exporter::{ExportRequest, Exporter, ExporterArgs, ExporterMsg, LsnSource};
use crate::actors::publisher::{Publisher, PublisherArgs, PublisherMsg};
use crate::actors::uploader::{StoredFile, UploadError, Uploader, UploaderArgs, UploaderMsg};
use crate::error::SnapshotError;
use crate::flow::{BoundedMailbox, Credits, PipelineStats};
use crate::format::{
    snapshot_folder, FileEntry, FormatVersion, KeyRange, Lsn, PartitionId, SnapshotId,
    SnapshotMetadata, CHECKSUM_ALGORITHM,
};
use crate::metrics as m;
use crate::partition::{cf_name, PartitionStore};
use crate::ratelimit::RateLimit;
use crate::repository::Repository;
use crate::retry::{is_transient, RetryPolicy};

/// Default part size: S3 needs 5 MiB for every part but the last.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default number of parts in flight across all files and partitions.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 8;

/// How the pipeline runs; the defaults suit S3 and a local directory alike.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub cluster_name: String,
    pub node_name: String,
    /// Bytes per part; every part but a file's last has exactly this size.
    pub part_size: usize,
    /// Parts read and not yet stored, across all files: the memory bound is
    /// `part_size × (max_parts_in_flight + 1)`.
    pub max_parts_in_flight: usize,
    /// Files queued at the chunker.
    pub chunker_queue: usize,
    /// Exports that may run at once.
    pub max_concurrent_exports: usize,
    /// Where exports are staged; default `<database>.rocksnap-staging` beside
    /// the database, on the same filesystem so that export can hard-link.
    pub staging_dir: Option<PathBuf>,
    /// Upload bandwidth, shared with whatever else holds the same limit.
    pub rate_limit: Option<RateLimit>,
    /// V1: every snapshot holds all its files. V2: SST files are shared
    /// between snapshots, and only new ones are sent.
    pub format: FormatVersion,
    /// Which snapshots `latest.json` keeps (V2).
    pub retention: Retention,
    /// Garbage collection's grace period, when one runs against the
    /// repository: a snapshot whose uploads took longer is not published.
    pub max_upload_age: Option<Duration>,
}

/// Which snapshots a V2 pointer keeps: the newest `keep_last`, and of those
/// only the ones younger than `max_age` (the newest is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: usize,
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 10,
            max_age: None,
        }
    }
}

impl Retention {
    /// Applies the policy to a list of snapshots, newest first.
    pub fn apply(
        &self,
        mut kept: Vec<crate::format::RetainedSnapshot>,
        now: chrono::DateTime<Utc>,
    ) -> Vec<crate::format::RetainedSnapshot> {
        kept.truncate(self.keep_last.max(1));
        if let Some(max_age) = self.max_age {
            let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
            let mut first = true;
            kept.retain(|r| std::mem::take(&mut first) || now - r.created_at <= max_age);
        }
        kept
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            cluster_name: "localcluster".into(),
            node_name: "node".into(),
            part_size: DEFAULT_PART_SIZE,
            max_parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            chunker_queue: 2,
            max_concurrent_exports: 2,
            staging_dir: None,
            rate_limit: None,
            format: FormatVersion::V1,
            retention: Retention::default(),
            max_upload_age: None,
        }
    }
}

/// How one partition is found in the database; the default is column family
/// `data-<id>`, its stored LSN, and the full key range.
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub cf: String,
    pub lsn: LsnSource,
    pub key_range: KeyRange,
}

impl PartitionSpec {
    pub fn for_partition(partition: PartitionId) -> Self {
        PartitionSpec {
            cf: cf_name(partition),
            lsn: LsnSource::Stored,
            key_range: KeyRange::FULL,
        }
    }
}

/// Asks for a snapshot of `partition` whose LSN is at least `min_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub partition: PartitionId,
    pub min_lsn: Option<Lsn>,
}

/// A published snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {
    pub partition_id: PartitionId,
    pub snapshot_id: SnapshotId,
    pub min_applied_lsn: Lsn,
    /// Key of the snapshot's `metadata.json`.
    pub key: String,
    /// Size of every file the snapshot references.
    pub bytes: u64,
    /// Bytes sent: less than `bytes` when files were shared with the
    /// previous snapshot (format V2).
    pub uploaded_bytes: u64,
    pub files: usize,
    #[serde(with = "duration_seconds")]
    pub duration: Duration,
}

/// Serializes a duration as seconds (a float), as the JSON outputs do.
pub(crate) mod duration_seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub enum SupervisorMsg {
    Snapshot(
        SnapshotRequest,
        RpcReplyPort<Result<SnapshotOutcome, SnapshotError>>,
    ),
    /// A snapshot of the partition ended (either way).
    Finished(PartitionId),
    /// Take no more requests; let the snapshots in flight finish within the
    /// deadline, then cancel the rest (their uploads are aborted, nothing is
    /// published). Answered once none is left.
    Shutdown(Duration, RpcReplyPort<ShutdownReport>),
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Snapshots that were running when the shutdown began.
    pub in_flight: usize,
    /// Of those, the ones cancelled at the deadline.
    pub cancelled: usize,
}

pub struct Supervisor;

pub struct SupervisorArgs {
    pub config: PipelineConfig,
    pub partitions: PartitionStore,
    pub repository: Repository,
    /// Partitions that are not found the default way.
    pub overrides: HashMap<PartitionId, PartitionSpec>,
    pub stats: Arc<PipelineStats>,
}

impl SupervisorArgs {
    pub fn new(config: PipelineConfig, partitions: PartitionStore, repository: Repository) -> Self {
        SupervisorArgs {
            config,
            partitions,
            repository,
            overrides: HashMap::new(),
            stats: Arc::new(PipelineStats::default()),
        }
    }
}

pub struct SupervisorState {
    job: Job,
    partitions: PartitionStore,
    overrides: HashMap<PartitionId, PartitionSpec>,
    publishers: HashMap<PartitionId, ActorRef<PublisherMsg>>,
    /// Snapshots in flight and the flag that cancels each.
    running: HashMap<PartitionId, Arc<AtomicBool>>,
    running_count: watch::Sender<usize>,
    closing: bool,
}

/// What a snapshot run needs from the supervisor; cheap to clone.
#[derive(Clone)]
struct Job {
    config: Arc<PipelineConfig>,
    repository: Repository,
    exporter: ActorRef<ExporterMsg>,
    chunker: BoundedMailbox<ChunkerMsg>,
}

impl Supervisor {
    /// Starts the supervisor and its pipeline.
    pub async fn start(
        args: SupervisorArgs,
    ) -> Result<(ActorRef<SupervisorMsg>, tokio::task::JoinHandle<()>), ractor::SpawnErr> {
        Actor::spawn(None, Supervisor, args).await
    }

    /// Stops taking requests and waits for the snapshots in flight, cancelling
    /// those still running after `deadline`.
    pub async fn shutdown(
        supervisor: &ActorRef<SupervisorMsg>,
        deadline: Duration,
    ) -> Option<ShutdownReport> {
        match supervisor
            .call(|reply| SupervisorMsg::Shutdown(deadline, reply), None)
            .await
        {
            Ok(CallResult::Success(report)) => Some(report),
            _ => None,
        }
    }

    /// Sends a snapshot request and waits for its outcome.
    pub async fn snapshot(
        supervisor: &ActorRef<SupervisorMsg>,
        request: SnapshotRequest,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        match supervisor
            .call(|reply| SupervisorMsg::Snapshot(request, reply), None)
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(_) | Err(_) => Err(SnapshotError::Stopped("supervisor".into())),
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let config = args.config;
        if config.part_size == 0
            || config.max_parts_in_flight == 0
            || config.chunker_queue == 0
            || config.max_concurrent_exports == 0
        {
            return Err("part size, parts in flight, chunker queue and concurrent exports must be above zero".into());
        }
        if config.part_size < args.repository.min_part_size() {
            return Err(format!(
                "part size {} is below the {} bytes {} needs for multipart uploads",
                config.part_size,
                args.repository.min_part_size(),
                args.repository.display()
            )
            .into());
        }
        let staging_root = config
            .staging_dir
            .clone()
            .unwrap_or_else(|| default_staging_dir(args.partitions.path()));
        let cell = myself.get_cell();
        let (exporter, _) = Actor::spawn_linked(
            None,
            Exporter,
            ExporterArgs {
                partitions: args.partitions.clone(),
                staging_root,
                max_concurrent: config.max_concurrent_exports,
            },
            cell.clone(),
        )
        .await?;
        let (uploader, _) = Actor::spawn_linked(
            None,
            Uploader,
            UploaderArgs {
                store: args.repository.store().clone(),
                stats: args.stats.clone(),
                rate_limit: config.rate_limit.clone(),
            },
            cell.clone(),
        )
        .await?;
        let uploader: BoundedMailbox<UploaderMsg> =
            BoundedMailbox::new(uploader, Credits::new("upload", config.max_parts_in_flight));
        let (chunker, _) = Actor::spawn_linked(
            None,
            Chunker,
            ChunkerArgs {
                uploader,
                stats: args.stats.clone(),
            },
            cell,
        )
        .await?;
        let chunker = BoundedMailbox::new(chunker, Credits::new("chunk", config.chunker_queue));
        Ok(SupervisorState {
            job: Job {
                config: Arc::new(config),
                repository: args.repository,
                exporter,
                chunker,
            },
            partitions: args.partitions,
            overrides: args.overrides,
            publishers: HashMap::new(),
            running: HashMap::new(),
            running_count: watch::channel(0).0,
            closing: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Snapshot(request, reply) => {
                let partition = request.partition;
                let spec = state
                    .overrides
                    .get(&partition)
                    .cloned()
                    .unwrap_or_else(|| PartitionSpec::for_partition(partition));
                if !state.partitions.has_column_family(&spec.cf) {
                    let _ = reply.send(Err(SnapshotError::UnknownPartition {
                        partition,
                        cf: spec.cf,
                    }));
                    return Ok(());
                }
                if state.closing {
                    let _ = reply.send(Err(SnapshotError::Stopped("shutting down".into())));
                    return Ok(());
                }
                if state.running.contains_key(&partition) {
                    let _ = reply.send(Err(SnapshotError::InProgress(partition)));
                    return Ok(());
                }
                let cancel = Arc::new(AtomicBool::new(false));
                state.running.insert(partition, cancel.clone());
                state.running_count.send_replace(state.running.len());
                let publisher = state.publisher(&myself, partition).await?;
                let job = state.job.clone();
                m::snapshots_started(partition.0).increment(1);
                tokio::spawn(async move {
                    let result = job.run(request, spec, publisher, cancel).await;
                    match &result {
                        Ok(o) => {
                            m::snapshots_succeeded(partition.0).increment(1);
                            tracing::info!(
                                partition = %partition, snapshot_id = %o.snapshot_id,
                                lsn = %o.min_applied_lsn, bytes = o.bytes, files = o.files,
                                duration_ms = o.duration.as_millis() as u64, "snapshot published"
                            );
                        }
                        Err(e) => {
                            m::snapshots_failed(partition.0, e.reason()).increment(1);
                            tracing::warn!(partition = %partition, reason = e.reason(), error = %e, "snapshot failed");
                        }
                    }
                    let _ = myself.cast(SupervisorMsg::Finished(partition));
                    let _ = reply.send(result);
                });
            }
            SupervisorMsg::Finished(partition) => {
                state.running.remove(&partition);
                state.running_count.send_replace(state.running.len());
            }
            SupervisorMsg::Shutdown(deadline, reply) => {
                state.closing = true;
                let flags: Vec<_> = state.running.values().cloned().collect();
                let mut count = state.running_count.subscribe();
                tokio::spawn(async move {
                    let in_flight = flags.len();
                    let mut cancelled = 0;
                    let drained = tokio::time::timeout(deadline, count.wait_for(|n| *n == 0))
                        .await
                        .is_ok();
                    if !drained {
                        for flag in &flags {
                            if !flag.swap(true, Ordering::SeqCst) {
                                cancelled += 1;
                            }
                        }
                        tracing::warn!(
                            cancelled,
                            "shutdown deadline reached; cancelling snapshots in flight"
                        );
                        let _ = count.wait_for(|n| *n == 0).await.map(|_| ());
                    }
                    let _ = reply.send(ShutdownReport {
                        in_flight,
                        cancelled,
                    });
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(who, error) => {
                // A pipeline stage that panics takes the node's snapshots with
                // it; stop so that the host's own supervision restarts us.
                tracing::error!(actor = ?who.get_id(), %error, "pipeline actor failed");
                myself.stop(Some(format!("pipeline actor failed: {error}")));
            }
            SupervisionEvent::ActorTerminated(who, _, _) => {
                state.publishers.retain(|_, p| p.get_id() != who.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn publisher(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        partition: PartitionId,
    ) -> Result<ActorRef<PublisherMsg>, ActorProcessingErr> {
        if let Some(p) = self.publishers.get(&partition) {
            return Ok(p.clone());
        }
        let (publisher, _) = Actor::spawn_linked(
            None,
            Publisher,
            PublisherArgs {
                partition,
                repository: self.job.repository.clone(),
                retention: self.job.config.retention,
            },
            myself.get_cell(),
        )
        .await?;
        self.publishers.insert(partition, publisher.clone());
        Ok(publisher)
    }
}

/// `<database>.rocksnap-staging`, beside the database.
pub fn default_staging_dir(db: &std::path::Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".rocksnap-staging");
    db.with_file_name(name)
}

impl Job {
    /// Stores one file, sending it through the chunker again (after a
    /// backoff) when a transient store error aborted the previous attempt.
    /// Giving up cancels the snapshot's other files.
    async fn store_file(
        &self,
        path: PathBuf,
        key: object_store::path::Path,
        size: u64,
        cancel: &Arc<AtomicBool>,
    ) -> Result<StoredFile, UploadError> {
        let policy = RetryPolicy::default();
        let mut attempt = 0;
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(UploadError::Cancelled);
            }
            let (upload, done) = FileUpload::new(
                path.clone(),
                key.clone(),
                size,
                self.config.part_size,
                cancel.clone(),
            );
            self.chunker
                .send(|credit| ChunkerMsg::File(upload, credit))
                .await
                .map_err(|_| UploadError::Stopped("chunker"))?;
            let result = done.await.unwrap_or(Err(UploadError::Stopped("uploader")));
            match result {
                Ok(stored) => return Ok(stored),
                Err(UploadError::Store { source, key: k })
                    if is_transient(&source)
                        && attempt + 1 < policy.attempts
                        && !cancel.load(Ordering::SeqCst) =>
                {
                    tracing::debug!(key = %k, attempt, error = %source, "file upload failed, sending it again");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    cancel.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
    }

    /// The partition's latest snapshot, and identity → CRC32C of the files
    /// it references if it is a V2 snapshot. Any trouble reading it only
    /// means that nothing is shared.
    async fn previous_files(
        &self,
        partition: PartitionId,
    ) -> (Option<SnapshotId>, HashMap<String, u32>) {
        let pointer = match self.repository.read_pointer(partition).await {
            Ok(Some(p)) => p.pointer,
            _ => return (None, HashMap::new()),
        };
        match self
            .repository
            .read_metadata(partition, &pointer.path)
            .await
        {
            Ok(meta) => {
                let files = meta
                    .files
                    .iter()
                    .filter_map(|f| {
                        let crc = u32::from_str_radix(f.checksum.as_deref()?, 16).ok()?;
                        f.key.as_ref()?;
                        Some((f.identity.clone()?, crc))
                    })
                    .collect();
                (Some(meta.snapshot_id), files)
            }
            Err(e) => {
                tracing::warn!(%partition, error = %e, "cannot read the previous snapshot; sending every file");
                (None, HashMap::new())
            }
        }
    }

    async fn run(
        &self,
        request: SnapshotRequest,
        spec: PartitionSpec,
        publisher: ActorRef<PublisherMsg>,
        cancel: Arc<AtomicBool>,
    ) -> Result<SnapshotOutcome, SnapshotError> {
        let started = Instant::now();
        let partition = request.partition;
        let snapshot_id = SnapshotId::new();
        let export_request = ExportRequest {
            partition,
            cf: spec.cf,
            lsn: spec.lsn,
            min_lsn: request.min_lsn,
            snapshot_id,
            identities: self.config.format == FormatVersion::V2,
        };
        let export = match self
            .exporter
            .call(|reply| ExporterMsg::Export(export_request, reply), None)
            .await
        {
            Ok(CallResult::Success(export)) => export?,
            _ => return Err(SnapshotError::Stopped("exporter".into())),
        };

        let upload_started = Instant::now();
        let folder = snapshot_folder(export.min_applied_lsn, snapshot_id);
        let layout = self.repository.layout();
        // V2: files the previous snapshot already references are not sent again.
        let (base, previous) = match self.config.format {
            FormatVersion::V2 => self.previous_files(partition).await,
            FormatVersion::V1 => (None, HashMap::new()),
        };
        let cancel = &cancel;
        let mut uploads = Vec::with_capacity(export.files.len());
        for (file, identity) in export.files.iter().zip(&export.identities) {
            let name =
                crate::format::plain_file_name(&file.name).map_err(|e| SnapshotError::Export {
                    partition,
                    reason: e.to_string(),
                })?;
            let key = match identity {
                Some(id) => layout.shared(partition, &format!("{id}.sst")),
                None => layout.file(partition, &folder, name),
            };
            let reuse = identity.as_ref().and_then(|id| previous.get(id).copied());
            let path = export.file_path(file);
            let size = file.size;
            uploads.push(async move {
                match reuse {
                    Some(crc32c) => Ok((StoredFile { key, size, crc32c }, false)),
                    None => self
                        .store_file(path, key, size, cancel)
                        .await
                        .map(|s| (s, true)),
                }
            });
        }
        let results = join_all(uploads).await;
        m::stage_duration("upload").record(upload_started.elapsed().as_secs_f64());

        let mut stored = Vec::with_capacity(results.len());
        let mut uploaded = Vec::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok((file, sent)) => {
                    if sent {
                        uploaded.push(file.clone());
                    }
                    stored.push(file);
                }
                Err(e) => errors.push(e),
            }
        }
        // The cause is the first failure that is not a cancellation caused by it.
        let cause = errors
            .iter()
            .position(|e| !matches!(e, UploadError::Cancelled))
            .unwrap_or(0);
        let first_error = (!errors.is_empty()).then(|| errors.swap_remove(cause));
        if let Some(source) = first_error {
            // No metadata names the objects in this snapshot's own folder, so
            // nothing can reference them. Shared files (V2) may be referenced
            // by older retained snapshots: garbage collection decides.
            let own = layout.snapshot_dir(partition, &folder);
            for file in uploaded.iter().filter(|f| f.key.prefix_matches(&own)) {
                if let Err(e) = self.repository.store().delete(&file.key).await {
                    tracing::debug!(key = %file.key, error = %e, "cannot remove object of a failed snapshot");
                }
            }
            return Err(SnapshotError::Upload {
                partition,
                source: Box::new(source),
            });
        }

        let files = export
            .files
            .iter()
            .zip(&stored)
            .zip(&export.identities)
            .map(|((f, s), id)| FileEntry {
                column_family_name: f.column_family_name.clone(),
                name: f.name.clone(),
                directory: f.directory.clone(),
                size: f.size,
                level: f.level,
                start_key: hex::encode(&f.smallest_key),
                end_key: hex::encode(&f.largest_key),
                smallest_seqno: f.smallest_seqno,
                largest_seqno: f.largest_seqno,
                num_entries: f.num_entries,
                num_deletions: f.num_deletions,
                checksum: Some(format!("{:08x}", s.crc32c)),
                identity: id.clone(),
                key: id.as_ref().map(|id| crate::format::shared_key(id)),
            })
            .collect();
        let meta = SnapshotMetadata {
            version: self.config.format,
            cluster_name: self.config.cluster_name.clone(),
            partition_id: partition,
            node_name: self.config.node_name.clone(),
            created_at: Utc::now(),
            snapshot_id,
            key_range: spec.key_range,
            min_applied_lsn: export.min_applied_lsn,
            db_comparator_name: export.comparator_name.clone(),
            checksum_algorithm: Some(CHECKSUM_ALGORITHM.into()),
            files,
        };
        let key = layout.metadata(partition, &folder).to_string();
        let lsn = export.min_applied_lsn;
        let bytes = meta.total_bytes();
        let uploaded_bytes = uploaded.iter().map(|f| f.size).sum();
        let file_count = meta.files.len();
        // Files reused from the base snapshot are safe only while it is
        // retained; the publisher checks that under its compare-and-swap.
        let reused_from = base.filter(|_| stored.len() > uploaded.len());
        // The staging files are no longer needed once every file is stored.
        drop(export);
        // A snapshot cancelled (shutdown deadline) while its last files were
        // stored is not published.
        if cancel.load(Ordering::SeqCst) {
            return Err(SnapshotError::Upload {
                partition,
                source: Box::new(UploadError::Cancelled),
            });
        }
        // A snapshot that took longer than garbage collection's grace period
        // may have lost its first objects to a collection: never publish it.
        if let Some(limit) = self.config.max_upload_age {
            if upload_started.elapsed() >= limit {
                return Err(SnapshotError::TooSlow { partition, limit });
            }
        }
        match publisher
            .call(
                |reply| PublisherMsg::Publish(Box::new(meta), reused_from, reply),
                None,
            )
            .await
        {
            Ok(CallResult::Success(Ok(_))) => {}
            Ok(CallResult::Success(Err(source))) => {
                return Err(SnapshotError::Publish {
                    partition,
                    source: Box::new(source),
                })
            }
            _ => return Err(SnapshotError::Stopped("publisher".into())),
        }
        Ok(SnapshotOutcome {
            partition_id: partition,
            snapshot_id,
            min_applied_lsn: lsn,
            key,
            bytes,
            uploaded_bytes,
            files: file_count,
            duration: started.elapsed(),
        })
    }
}
