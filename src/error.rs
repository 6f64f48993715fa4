//! The error a snapshot request is answered with.

use crate::actors::publisher::PublishError;
use crate::actors::uploader::UploadError;
use crate::format::{Lsn, PartitionId};
use crate::partition::PartitionError;

/// Why a snapshot was not published. Nothing of a failed snapshot is visible
/// through `latest.json`. Sources are boxed to keep results small.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("unknown partition {partition}: the database has no column family {cf:?}")]
    UnknownPartition { partition: PartitionId, cf: String },
    #[error("partition {0} is already being snapshotted")]
    InProgress(PartitionId),
    #[error(
        "partition {partition} has applied LSN {applied}, below the requested minimum {requested}"
    )]
    LsnBelowMinimum {
        partition: PartitionId,
        applied: Lsn,
        requested: Lsn,
    },
    #[error("partition {partition}: cannot read its applied LSN: {source}")]
    Lsn {
        partition: PartitionId,
        #[source]
        source: Box<PartitionError>,
    },
    #[error("partition {partition}: export failed: {reason}")]
    Export {
        partition: PartitionId,
        reason: String,
    },
    #[error("partition {partition}: {source}")]
    Upload {
        partition: PartitionId,
        #[source]
        source: Box<UploadError>,
    },
    #[error("partition {partition}: not published: {source}")]
    Publish {
        partition: PartitionId,
        #[source]
        source: Box<PublishError>,
    },
    #[error("partition {partition}: the upload took longer than garbage collection's grace period ({limit:?}); not published")]
    TooSlow {
        partition: PartitionId,
        limit: std::time::Duration,
    },
    #[error("the snapshot pipeline has stopped ({0})")]
    Stopped(String),
}

impl SnapshotError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::UnknownPartition { .. } => "unknown_partition",
            SnapshotError::InProgress(_) => "in_progress",
            SnapshotError::LsnBelowMinimum { .. } => "lsn_below_minimum",
            SnapshotError::Lsn { .. } => "lsn",
            SnapshotError::Export { .. } => "export",
            SnapshotError::Upload { .. } => "upload",
            SnapshotError::Publish { source, .. } => source.reason(),
            SnapshotError::TooSlow { .. } => "too_slow",
            SnapshotError::Stopped(_) => "stopped",
        }
    }
}
