//! How the snapshot pipeline runs, and how a partition is found in the
//! database.
//!
//! A host fills a [`PipelineConfig`] once (most hosts change only the names)
//! and, for partitions that do not follow the default layout, a
//! [`PartitionSpec`].

use std::path::PathBuf;
use std::time::Duration;

use crate::format::{Dialect, FormatVersion, KeyRange, Lsn, PartitionId};
use crate::partition::cf_name;
use crate::ratelimit::RateLimit;
use crate::repository::Repository;
use crate::retention::Retention;

/// Default part size: S3 needs 5 MiB for every part but the last.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default number of parts in flight across all files and partitions.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 8;

/// Default time to live of a snapshot's lease.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(60);

/// How the pipeline runs; the defaults suit S3 and a local directory alike.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Written into every snapshot; a pointer of another cluster is never replaced.
    pub cluster_name: String,
    /// Written into every snapshot, for operators.
    pub node_name: String,
    /// Bytes per part; every part but a file's last has exactly this size.
    pub part_size: usize,
    /// Parts being stored at once (requests on the wire), across all files;
    /// one more is read while they travel: the memory bound is
    /// `part_size × (max_parts_in_flight + 1)`. A pipeline holds that much
    /// from its start: its part buffers are made (and their pages touched)
    /// before the first snapshot, so that no snapshot waits on fresh memory.
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
    /// Whose documents to write: rocksnap's, or ones a Restate node restores
    /// from (which needs format V1: Restate reads no shared files).
    pub dialect: Dialect,
    /// Client-side encryption: every file sealed under a fresh data key
    /// wrapped with the keyring's current key ([`crate::crypto`]).
    pub encryption: Option<std::sync::Arc<crate::crypto::Keyring>>,
    /// Which snapshots `latest.json` keeps (V2).
    pub retention: Retention,
    /// How long a snapshot's lease protects its objects from garbage
    /// collection without being renewed; it is renewed every third of it
    /// while the snapshot runs, however long that takes.
    pub lease_ttl: Duration,
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
            dialect: Dialect::Rocksnap,
            encryption: None,
            retention: Retention::default(),
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

impl PipelineConfig {
    /// Why this configuration cannot run against `repository`, if it cannot.
    pub fn check(&self, repository: &Repository) -> Result<(), String> {
        if self.part_size == 0
            || self.max_parts_in_flight == 0
            || self.chunker_queue == 0
            || self.max_concurrent_exports == 0
        {
            return Err("part size, parts in flight, chunker queue and concurrent exports must be above zero".into());
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(86_400) {
            return Err("the lease's time to live must be between a second and a day".into());
        }
        if self.dialect == Dialect::Restate && self.format != FormatVersion::V1 {
            return Err("the Restate dialect needs format V1: Restate reads every file from its snapshot's own folder, never shared ones".into());
        }
        if self.encryption.is_some() {
            if self.dialect == Dialect::Restate {
                return Err("Restate cannot read encrypted snapshots: the Restate dialect writes them in the clear".into());
            }
            if !self.part_size.is_multiple_of(crate::crypto::SEGMENT_SIZE) {
                return Err(format!(
                    "an encrypted snapshot's part size must be a whole number of {} KiB segments",
                    crate::crypto::SEGMENT_SIZE / 1024
                ));
            }
        }
        if self.part_size < repository.min_part_size() {
            return Err(format!(
                "part size {} is below the {} bytes {} needs for multipart uploads",
                self.part_size,
                repository.min_part_size(),
                repository.display()
            ));
        }
        Ok(())
    }
}

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

/// How one partition is found in the database; the default is column family
/// `data-<id>`, its stored LSN, and the full key range.
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    /// The column family that holds the partition.
    pub cf: String,
    /// Where the snapshot's LSN comes from.
    pub lsn: LsnSource,
    /// The keys the partition owns, recorded in the snapshot's metadata.
    /// (Restate restores a snapshot only if its range covers the
    /// partition's; the default, every key, always does.)
    pub key_range: KeyRange,
    /// Restate dialect: the log the partition's records come from
    /// (default: the partition id, as Restate's default log for it).
    pub log_id: Option<u64>,
}

impl PartitionSpec {
    /// The default layout: column family `data-<id>`, stored LSN, all keys.
    pub fn for_partition(partition: PartitionId) -> Self {
        PartitionSpec {
            cf: cf_name(partition),
            lsn: LsnSource::Stored,
            key_range: KeyRange::FULL,
            log_id: None,
        }
    }
}
