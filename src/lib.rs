//! rocksnap takes consistent snapshots of RocksDB-backed partitions and
//! publishes them to object storage (S3, GCS, Azure or a local directory), so
//! that a node can bootstrap a partition, or skip a trimmed stretch of its
//! log, from the newest snapshot.
//!
//! A host node opens its [`PartitionStore`], starts a [`Supervisor`] over it
//! and a [`Repository`], sends it [`SnapshotRequest`]s and scrapes its
//! metrics (see [`metrics`]); before it opens a partition for writes, it can
//! rebuild one with [`restore::restore`]. Operators inspect and prune a
//! repository with [`Repository`] and [`gc`]. The README has an example.
//!
//! The bucket layout is [`format`](mod@format)'s, and only that module builds keys.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod actors;
pub mod bootstrap;
mod config;
pub mod crypto;
mod direct;
mod disk_full;
mod ffi;
mod flow;
pub mod format;
pub mod gc;
mod json;
pub mod metrics;
pub mod partition;
mod ratelimit;
pub mod rekey;
pub mod repository;
pub mod restore;
mod retention;
mod retry;
pub mod scrub;
mod staging;
pub mod store;
mod transfer;
mod uploads;

pub use actors::coordinator::{SnapshotError, SnapshotOutcome, SnapshotRequest};
pub use actors::exporter::ExportError;
pub use actors::publisher::PublishError;
pub use actors::supervisor::{
    Internal, ShutdownReport, StartError, Supervisor, SupervisorArgs, SupervisorMsg,
    SupervisorState, MAX_RESTARTS, RESTART_WINDOW,
};
pub use actors::uploader::UploadError;
pub use config::{
    LsnSource, PartitionSpec, PipelineConfig, DEFAULT_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE,
};
pub use ffi::{ExportedColumnFamily, ExportedFile, ImportFile, SstSummary};
pub use flow::{MemoryBudget, PipelineStats};
pub use format::{Lsn, PartitionId, SnapshotId};
pub use partition::PartitionStore;
pub use ratelimit::RateLimit;
pub use repository::Repository;
pub use retention::Retention;
pub use retry::RetryPolicy;
pub use staging::default_staging_dir;
pub use store::{Destination, OpenMode};
pub use transfer::TransferProgress;

/// The README's example is compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
