//! What a snapshot request is answered with: the published snapshot, or
//! why there is none.

use std::time::Duration;

use serde::Serialize;

use crate::actors::exporter::ExportError;
use crate::actors::publisher::PublishError;
use crate::actors::uploader::UploadError;
use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::partition::PartitionError;

/// Asks for a snapshot of `partition` whose LSN is at least `min_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The partition to snapshot.
    pub partition: PartitionId,
    /// Refuse the snapshot if the partition is behind this LSN.
    pub min_lsn: Option<Lsn>,
}

/// A published snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {
    /// The partition snapshotted.
    pub partition_id: PartitionId,
    /// The new snapshot's id.
    pub snapshot_id: SnapshotId,
    /// The snapshot holds every write up to at least this LSN.
    pub min_applied_lsn: Lsn,
    /// Key of the snapshot's `metadata.json`.
    pub key: String,
    /// Size of every file the snapshot references.
    pub bytes: u64,
    /// Bytes sent: less than `bytes` when files were shared with the
    /// previous snapshot (format V2).
    pub uploaded_bytes: u64,
    /// Files the snapshot references.
    pub files: usize,
    /// From request to published pointer.
    #[serde(with = "crate::json::duration_seconds")]
    pub duration: Duration,
}

/// Why a snapshot was not published. Nothing of a failed snapshot is visible
/// through `latest.json`. Sources are boxed to keep results small.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The database has no column family for the partition.
    #[error("unknown partition {partition}: the database has no column family {cf:?}")]
    UnknownPartition {
        /// The partition asked for.
        partition: PartitionId,
        /// The column family looked for.
        cf: String,
    },
    /// A snapshot of the partition is already running; requests are not queued.
    #[error("partition {0} is already being snapshotted")]
    InProgress(PartitionId),
    /// The partition is behind the request's minimum LSN.
    #[error(
        "partition {partition} has applied LSN {applied}, below the requested minimum {requested}"
    )]
    LsnBelowMinimum {
        /// The partition asked for.
        partition: PartitionId,
        /// Its LSN.
        applied: Lsn,
        /// The request's minimum.
        requested: Lsn,
    },
    /// The partition's stored LSN could not be read.
    #[error("partition {partition}: cannot read its applied LSN: {source}")]
    Lsn {
        /// The partition asked for.
        partition: PartitionId,
        /// What the database said.
        #[source]
        source: Box<PartitionError>,
    },
    /// RocksDB's export failed.
    #[error("partition {partition}: export failed: {reason}")]
    Export {
        /// The partition asked for.
        partition: PartitionId,
        /// What failed.
        reason: String,
    },
    /// A file could not be stored.
    #[error("partition {partition}: {source}")]
    Upload {
        /// The partition asked for.
        partition: PartitionId,
        /// The first file's failure.
        #[source]
        source: Box<UploadError>,
    },
    /// Every file was stored but the pointer was not moved.
    #[error("partition {partition}: not published: {source}")]
    Publish {
        /// The partition asked for.
        partition: PartitionId,
        /// Why.
        #[source]
        source: Box<PublishError>,
    },
    /// The snapshot's lease could not be taken or kept.
    #[error("partition {partition}: {reason}")]
    Lease {
        /// The partition asked for.
        partition: PartitionId,
        /// What happened to the lease.
        reason: String,
    },
    /// The pipeline, or a part of it, stopped while serving the request.
    #[error("the snapshot pipeline has stopped ({0})")]
    Stopped(String),
}

impl SnapshotError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        if self.is_disk_full() {
            return "disk_full";
        }
        match self {
            SnapshotError::UnknownPartition { .. } => "unknown_partition",
            SnapshotError::InProgress(_) => "in_progress",
            SnapshotError::LsnBelowMinimum { .. } => "lsn_below_minimum",
            SnapshotError::Lsn { .. } => "lsn",
            SnapshotError::Export { .. } => "export",
            SnapshotError::Upload { .. } => "upload",
            SnapshotError::Publish { source, .. } => source.reason(),
            SnapshotError::Lease { .. } => "lease",
            SnapshotError::Stopped(_) => "stopped",
        }
    }

    /// Whether a full disk (or a quota) stopped the snapshot: the
    /// repository's, for a local one, or the database's under its export.
    /// An operator frees room; nothing is wrong with the data.
    pub fn is_disk_full(&self) -> bool {
        crate::disk_full::caused(self)
            || matches!(self, SnapshotError::Export { reason, .. } if crate::disk_full::said(reason))
    }

    pub(super) fn export(partition: PartitionId, e: ExportError) -> Self {
        match e {
            ExportError::UnknownColumnFamily { cf } => {
                SnapshotError::UnknownPartition { partition, cf }
            }
            ExportError::Lsn(source) => SnapshotError::Lsn { partition, source },
            ExportError::LsnBelowMinimum { applied, requested } => SnapshotError::LsnBelowMinimum {
                partition,
                applied,
                requested,
            },
            ExportError::Failed(reason) => SnapshotError::Export { partition, reason },
        }
    }

    pub(super) fn upload(partition: PartitionId, e: UploadError) -> Self {
        SnapshotError::Upload {
            partition,
            source: Box::new(e),
        }
    }
}
