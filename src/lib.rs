//! rocksnap takes consistent snapshots of RocksDB-backed partitions and
//! publishes them to object storage (S3, GCS, Azure or a local directory), so
//! that a node can bootstrap a partition, or skip a trimmed stretch of its
//! log, from the newest snapshot.
//!
//! A host node starts a [`Supervisor`], sends it [`SnapshotRequest`]s and
//! scrapes its Prometheus metrics; see the README for an example.

pub mod actors;
pub mod cli;
pub mod error;
mod ffi;
pub mod flow;
pub mod format;
pub mod gc;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod ratelimit;
pub mod repository;
pub mod restore;
pub mod retry;
pub mod store;
pub mod transfer;
pub mod uploads;

pub use actors::exporter::LsnSource;
pub use actors::supervisor::{
    PartitionSpec, PipelineConfig, Retention, SnapshotOutcome, SnapshotRequest, Supervisor,
    SupervisorArgs, SupervisorMsg,
};
pub use error::SnapshotError;
pub use ffi::{pin_mmap_threshold, ExportedColumnFamily, ExportedFile, ImportFile, SstSummary};
pub use format::{Lsn, PartitionId, SnapshotId};
pub use partition::PartitionStore;
pub use repository::Repository;
pub use store::{Destination, OpenMode};

/// The README's example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
