//! Why an operation on the partition store failed.

use std::path::{Path, PathBuf};

use crate::format::{Lsn, PartitionId};

/// Why an operation on the partition store failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A write's LSN is below the partition's: the partition was moved
    /// ahead (fast-forwarded) and the host's log resumes after its LSN.
    #[error("partition {partition} is at LSN {applied}; a write at LSN {lsn} is behind it (the log resumes after {applied})")]
    Behind {
        /// The partition.
        partition: PartitionId,
        /// Its LSN.
        applied: Lsn,
        /// The write's LSN.
        lsn: Lsn,
    },
    /// A restore intent cannot be read; nothing is changed.
    #[error("restore intent {} cannot be read ({reason}); the database is left as it is", path.display())]
    Intent {
        /// The intent file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An interrupted restore could be neither finished nor rolled back.
    #[error("an interrupted restore of column family {cf:?} cannot be finished: {reason}; its files are kept in {}", kept.display())]
    Unrecoverable {
        /// The column family.
        cf: String,
        /// What failed.
        reason: String,
        /// Where the restore's files are.
        kept: PathBuf,
    },
    /// A local file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB returned an error.
    #[error("RocksDB at {}: {source}", path.display())]
    Rocks {
        /// Directory of the database.
        path: PathBuf,
        /// What RocksDB said.
        #[source]
        source: rocksdb::Error,
    },
    /// There is no database at the path (no `CURRENT` file).
    #[error("no RocksDB database at {}", .0.display())]
    NoDatabase(PathBuf),
    /// The partition has no column family in this database.
    #[error("unknown partition {0}")]
    UnknownPartition(PartitionId),
    /// No column family of that name in this database.
    #[error("no column family named {0:?}")]
    UnknownColumnFamily(String),
    /// RocksDB refused to import SST files as a column family.
    #[error("cannot import column family {cf:?}: {reason}")]
    Import {
        /// The column family being created.
        cf: String,
        /// What RocksDB said.
        reason: String,
    },
    /// RocksDB failed to export a column family.
    #[error("cannot export column family {cf:?}: {reason}")]
    Export {
        /// The column family being exported.
        cf: String,
        /// What RocksDB said.
        reason: String,
    },
    /// The value under [`super::APPLIED_LSN_KEY`] is not 8 bytes long.
    #[error("column family {cf:?}: the applied LSN is {len} bytes, expected 8")]
    CorruptLsn {
        /// The column family read.
        cf: String,
        /// Length in bytes of the stored value.
        len: usize,
    },
}

impl PartitionError {
    /// The filesystem under the database is full. RocksDB reports it only
    /// in its message.
    pub fn is_disk_full(&self) -> bool {
        match self {
            PartitionError::Io { source, .. } => crate::disk_full::is_full(source),
            PartitionError::Rocks { source, .. } => crate::disk_full::said(source.as_ref()),
            PartitionError::Import { reason, .. } | PartitionError::Export { reason, .. } => {
                crate::disk_full::said(reason)
            }
            _ => false,
        }
    }

    pub(super) fn rocks(path: &Path, source: rocksdb::Error) -> Self {
        PartitionError::Rocks {
            path: path.to_path_buf(),
            source,
        }
    }
}
