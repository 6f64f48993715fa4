//! Restore: rebuild a partition from the repository, verified, without ever
//! harming the live database.
//!
//! The order of work is what keeps the database safe:
//!
//! 1. Read `latest.json` and `metadata.json` (untrusted: versions, names and
//!    sizes are checked before anything is fetched).
//! 2. Download every file into a staging directory beside the database,
//!    ranged GETs in parallel, and check every file's size and checksum.
//! 3. Import the files into a scratch database in the staging directory:
//!    RocksDB reads every file's properties and key range, and the restored
//!    LSN is read from the data. A snapshot that fails here is unusable, and
//!    the next older one is tried if the target allows it.
//! 4. Only then touch the live database: export its current column family
//!    (hard links) as a way back, drop it, and import the verified files
//!    under the partition's name. If that import fails, the previous column
//!    family is imported back, so the database is as it was.
//!
//! Every step moves files by hard link, so no byte is copied after the
//! download (unless the staging directory is on another disk than the
//! database: then the verified files are copied beside the database once,
//! before the swap), and the staging directory is removed whatever happens.

mod candidates;
mod fast_forward;
mod prepare;
mod swap;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use fast_forward::{fast_forward, FastForward};
pub(crate) use verify::check_snapshot;
pub use verify::{verify, VerifyReport};

use candidates::candidates;
use prepare::{prepare, staging_dir};
use swap::{onto_database_disk, swap_in, swap_into};

use crate::config::{DEFAULT_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE};
use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::metrics as m;
use crate::partition::{cf_name, PartitionError, PartitionStore};
use crate::ratelimit::RateLimit;
use crate::repository::{RepoError, Repository};
use crate::staging::default_staging_dir;
pub use crate::transfer::DownloadError;
use crate::transfer::TransferProgress;

/// The comparator rocksnap opens databases with.
const BYTEWISE: &str = "leveldb.BytewiseComparator";

/// Which snapshot to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The one `latest.json` points at, and nothing else.
    Latest,
    /// The latest; if it is unusable, the next older one, and so on.
    LatestOrOlder,
    /// Exactly this snapshot.
    Snapshot(SnapshotId),
    /// The newest usable snapshot whose LSN is at least this.
    MinLsn(Lsn),
}

/// How a restore or verify downloads and where it stages files.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Column family to restore into (default: `data-<partition>`).
    pub cf: Option<String>,
    /// Ranges fetched at once, across all files (one more may be held while
    /// it is written: memory stays below `part_size × (concurrency + 1)`).
    pub concurrency: usize,
    /// Size of each ranged GET.
    pub part_size: usize,
    /// Parent of the staging directory; default `<database>.rocksnap-staging`.
    /// On the database's filesystem, files move by hard link; on another,
    /// the verified files are copied beside the database before the swap,
    /// which needs room for them there too.
    pub staging_dir: Option<PathBuf>,
    /// Bytes downloaded so far and bytes to download, for progress reports.
    pub progress: Arc<TransferProgress>,
    /// Download bandwidth, shared with whatever else holds the same limit.
    pub rate_limit: Option<RateLimit>,
    /// A memory budget shared with the process's other transfers: ranges
    /// are fetched under its parts and requests instead of `concurrency`
    /// of their own.
    pub budget: Option<crate::flow::MemoryBudget>,
    /// The keys that open encrypted snapshots.
    pub keyring: Option<Arc<crate::crypto::Keyring>>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            cf: None,
            concurrency: DEFAULT_PARTS_IN_FLIGHT,
            part_size: DEFAULT_PART_SIZE,
            staging_dir: None,
            progress: Arc::default(),
            rate_limit: None,
            budget: None,
            keyring: None,
        }
    }
}

/// A restored partition.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The partition restored.
    pub partition_id: PartitionId,
    /// The snapshot restored.
    pub snapshot_id: SnapshotId,
    /// The restored snapshot's LSN, from its metadata.
    pub min_applied_lsn: Lsn,
    /// The LSN stored in the restored data: where the host resumes its log.
    /// `None` for data written without an LSN.
    pub restored_lsn: Option<Lsn>,
    /// Number of files imported.
    pub files: usize,
    /// Total size of the imported files, in bytes.
    pub bytes: u64,
    /// Time the whole restore took, including snapshots skipped.
    #[serde(with = "crate::json::duration_seconds")]
    pub duration: Duration,
    /// Newer snapshots that were tried and found unusable.
    pub skipped: Vec<SkippedSnapshot>,
}

/// A snapshot a restore tried and passed over.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedSnapshot {
    /// The snapshot skipped.
    pub snapshot_id: SnapshotId,
    /// Why it was unusable.
    pub reason: String,
}

/// Restores `partition` into the database at `db` (created if missing; it
/// must not be open elsewhere), replacing its column family if it has one.
pub async fn restore(
    repo: &Repository,
    db: &Path,
    partition: PartitionId,
    target: RestoreTarget,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    let result = restore_inner(repo, Live::Closed(db), partition, target, opts).await;
    counted(partition, started, result)
}

/// Records a restore's duration and outcome in the metrics.
fn counted(
    partition: PartitionId,
    started: Instant,
    result: Result<RestoreOutcome, RestoreError>,
) -> Result<RestoreOutcome, RestoreError> {
    m::restore_duration().record(started.elapsed().as_secs_f64());
    match &result {
        Ok(o) => {
            m::restores(partition.0, "restored").increment(1);
            m::restore_fallbacks(partition.0).increment(o.skipped.len() as u64);
        }
        Err(_) => m::restores(partition.0, "failed").increment(1),
    }
    result
}

/// Restores several partitions into the database at `db` (which nothing
/// else may have open) at once, each from `target` as [`restore`] does:
/// the database is opened once; the partitions' snapshots are downloaded,
/// checked and imported into scratch databases concurrently, their ranged
/// downloads sharing `opts.budget` (or, without one, `opts.concurrency`
/// ranges in all, as one restore); each is swapped in under its own column
/// family's gate (each partition's default column family; `opts.cf` is
/// not used). One result per partition, in their order; an `Err` only if
/// the database cannot be opened.
pub async fn restore_partitions(
    repo: &Repository,
    db: &Path,
    partitions: &[PartitionId],
    target: RestoreTarget,
    opts: &RestoreOptions,
) -> Result<Vec<Result<RestoreOutcome, RestoreError>>, RestoreError> {
    let opening = Instant::now();
    let store = {
        let db = db.to_path_buf();
        tokio::task::spawn_blocking(move || PartitionStore::open(&db, &[]))
            .await
            .expect("open task")?
    };
    tracing::debug!(
        ms = opening.elapsed().as_millis() as u64,
        "database opened for the restores"
    );
    let opts = RestoreOptions {
        cf: None,
        budget: Some(
            opts.budget
                .clone()
                .unwrap_or_else(|| crate::flow::MemoryBudget::for_requests(opts.concurrency)),
        ),
        ..opts.clone()
    };
    let results = futures::future::join_all(partitions.iter().map(|&partition| {
        let (store, opts) = (&store, &opts);
        async move {
            let started = Instant::now();
            let result = restore_inner(repo, Live::Replace(store), partition, target, opts).await;
            counted(partition, started, result)
        }
    }))
    .await;
    // Closed before the caller opens it.
    let closing = Instant::now();
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .expect("close task");
    tracing::debug!(
        ms = closing.elapsed().as_millis() as u64,
        "database closed after the restores"
    );
    Ok(results)
}

/// The database a restore swaps into.
enum Live<'a> {
    /// By path; the restore opens it, and nothing else may have it open.
    Closed(&'a Path),
    /// Opened by this module for several restores at once: each swaps
    /// under its column family's gate, replacing whatever is there.
    Replace(&'a PartitionStore),
    /// Open and serving: the swap holds the column family's gate, so the
    /// partition's writes and exports wait for it.
    Open(&'a PartitionStore),
}

impl Live<'_> {
    fn path(&self) -> &Path {
        match self {
            Live::Closed(p) => p,
            Live::Open(s) | Live::Replace(s) => s.path(),
        }
    }
}

async fn restore_inner(
    repo: &Repository,
    live: Live<'_>,
    partition: PartitionId,
    target: RestoreTarget,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    let db = live.path();
    let cf = opts.cf.clone().unwrap_or_else(|| cf_name(partition));
    let staging_root = opts
        .staging_dir
        .clone()
        .unwrap_or_else(|| default_staging_dir(db));
    let candidates::Candidates {
        folders: mut candidates,
        list_older: mut may_list,
    } = candidates::plan(repo, partition, target).await?;
    let mut skipped = Vec::new();
    let mut i = 0;
    while i < candidates.len() {
        let folder = candidates[i].clone();
        i += 1;
        let staging = staging_dir(&staging_root, partition)?;
        let prepared = match prepare(repo, partition, &folder, &cf, staging, opts, false).await {
            Ok(p) => p,
            Err(RestoreError::Unusable { snapshot, reason })
                if i < candidates.len() || may_list =>
            {
                if i == candidates.len() {
                    may_list = false;
                    candidates.extend(candidates::older_than(repo, partition, &folder).await?);
                    if i == candidates.len() {
                        return Err(RestoreError::Unusable { snapshot, reason });
                    }
                }
                tracing::warn!(partition = %partition, snapshot = %snapshot, %reason,
                    "snapshot is unusable; falling back to the next older one");
                skipped.push(SkippedSnapshot {
                    snapshot_id: folder.snapshot_id,
                    reason: reason.to_string(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let cf = cf.clone();
        let meta = prepared.meta.clone();
        let restored_lsn = prepared.restored_lsn;
        let swap_started = Instant::now();
        match &live {
            Live::Closed(db) => {
                let db = db.to_path_buf();
                tokio::task::spawn_blocking(move || swap_into(&db, &cf, prepared))
                    .await
                    .expect("swap task")?
            }
            Live::Open(store) | Live::Replace(store) => {
                let store = (*store).clone();
                // A fast-forward replaces the partition only if it is still
                // behind; a restore replaces it whatever it holds.
                let only_if_behind = matches!(live, Live::Open(_));
                tokio::task::spawn_blocking(move || {
                    let prepared = onto_database_disk(store.path(), &cf, prepared)?;
                    let gate = store.gate(&cf);
                    let _alone = gate.write().expect("not poisoned");
                    tracing::debug!(%partition, %cf, "swap holds the partition's gate");
                    // Checked again alone: another fast-forward (a retry)
                    // may have swapped already, and writes gone on since.
                    if only_if_behind {
                        let live = if store.has_column_family(&cf) {
                            store.applied_lsn(&cf)?
                        } else {
                            None
                        };
                        if let (Some(live), Some(new)) = (live, prepared.restored_lsn) {
                            if live >= new {
                                return Err(RestoreError::Overtaken { partition, live });
                            }
                        }
                    }
                    swap_in(&store, &cf, prepared)
                })
                .await
                .expect("swap task")?
            }
        }
        tracing::debug!(
            ms = swap_started.elapsed().as_millis() as u64,
            "swapped into the database"
        );
        return Ok(RestoreOutcome {
            partition_id: partition,
            snapshot_id: meta.snapshot_id,
            min_applied_lsn: meta.min_applied_lsn,
            restored_lsn,
            files: meta.files.len(),
            bytes: meta.total_bytes(),
            duration: started.elapsed(),
            skipped,
        });
    }
    unreachable!("candidates() returns at least one snapshot")
}

/// Why a snapshot cannot be used. Each names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// An object the snapshot needs is not in the store.
    #[error("{key} is missing")]
    Missing {
        /// Key of the missing object.
        key: String,
    },
    /// The snapshot's `metadata.json` is malformed, describes another
    /// partition or folder, or names a file unsafely.
    #[error("{0}")]
    Metadata(String),
    /// A downloaded file's size differs from its metadata.
    #[error("{key} has {actual} bytes, the metadata says {expected}")]
    Size {
        /// Key of the object.
        key: String,
        /// Size in bytes the metadata gives.
        expected: u64,
        /// Size in bytes downloaded.
        actual: u64,
    },
    /// A downloaded file's CRC32C differs from its metadata.
    #[error("{key} is corrupt: crc32c is {actual}, the metadata says {expected}")]
    Checksum {
        /// Key of the object.
        key: String,
        /// Checksum the metadata gives, 8 lowercase hex digits.
        expected: String,
        /// Checksum of the downloaded bytes, 8 lowercase hex digits.
        actual: String,
    },
    /// The metadata or a file's content is not acceptable (comparator,
    /// checksum algorithm, keys, or a deep check).
    #[error("{key}: {reason}")]
    Invalid {
        /// Key of the object at fault.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// RocksDB refused to import the files into the scratch database.
    #[error("RocksDB refused the files: {0}")]
    Import(String),
}

/// Why a restore or verify failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot is encrypted and no keyring was given.
    #[error("snapshot {snapshot} is encrypted: give its keyring (--keyring FILE, or the keys in ROCKSNAP_KEYRING)")]
    Encrypted {
        /// The snapshot's folder.
        snapshot: String,
    },
    /// A data key could not be unwrapped, or an envelope opened: an unknown
    /// key id, a wrong key, an altered entry.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The partition has no `latest.json` to follow.
    #[error("partition {partition} has no snapshot: {reason}")]
    NoSnapshot {
        /// The partition asked for.
        partition: PartitionId,
        /// What was looked for and not found.
        reason: String,
    },
    /// No snapshot of the partition has the requested id.
    #[error("partition {partition} has no snapshot {snapshot_id}")]
    UnknownSnapshot {
        /// The partition asked for.
        partition: PartitionId,
        /// The snapshot id asked for.
        snapshot_id: SnapshotId,
    },
    /// No snapshot of the partition has an LSN at least the requested one.
    #[error("partition {partition} has no snapshot at LSN {lsn} or above")]
    NoneAtLeast {
        /// The partition asked for.
        partition: PartitionId,
        /// The lowest acceptable LSN.
        lsn: Lsn,
    },
    /// No snapshot covers a trim gap; nothing was changed.
    #[error("partition {partition}: the log now starts at LSN {log_start} but the partition is at {} and the newest snapshot at {}: no snapshot covers the gap; nothing was changed", applied.map_or("no LSN".to_string(), |l| l.to_string()), newest.map_or("none".to_string(), |l| l.to_string()))]
    NotCovered {
        /// The partition.
        partition: PartitionId,
        /// The first LSN the host's log holds.
        log_start: Lsn,
        /// The partition's LSN.
        applied: Option<Lsn>,
        /// The newest snapshot's LSN, if there is one.
        newest: Option<Lsn>,
    },
    /// The partition reached the snapshot's LSN by itself while the
    /// snapshot was prepared; nothing was swapped.
    #[error("partition {partition} is already at LSN {live}; nothing was swapped")]
    Overtaken {
        /// The partition.
        partition: PartitionId,
        /// Its LSN.
        live: Lsn,
    },
    /// A snapshot cannot be used, and no older one may be tried instead.
    #[error("snapshot {snapshot} is unusable: {reason}")]
    Unusable {
        /// Folder name of the snapshot.
        snapshot: String,
        /// What is wrong with it.
        reason: Unusable,
    },
    /// Reading the repository failed.
    #[error(transparent)]
    Repository(#[from] RepoError),
    /// Downloading failed: the store could not be read or a local file not written.
    #[error(transparent)]
    Download(DownloadError),
    /// The disk the files are staged on is full. Nothing of the database
    /// was changed.
    #[error("no space left on the device of {} for the snapshot's {bytes} bytes; free some, or stage elsewhere (--staging-dir); the database is untouched", path.display())]
    DiskFull {
        /// Where the files were being written.
        path: PathBuf,
        /// The snapshot's size.
        bytes: u64,
    },
    /// The database's own disk has no room for the snapshot's files. Nothing
    /// of the database was changed.
    #[error("no space left on the device of the database {} for the snapshot's {bytes} bytes; free some there; the database is untouched", path.display())]
    DatabaseDiskFull {
        /// The database.
        path: PathBuf,
        /// The snapshot's size.
        bytes: u64,
    },
    /// A local file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Local {
        /// The path operated on.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Opening or changing the database failed.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Importing the restored column family failed, and so did importing the
    /// previous one back; the previous files are kept on disk.
    #[error("importing the restored column family {cf:?} failed ({import}) and putting the previous one back failed too ({back}); its files are kept in {}", kept.display())]
    PreviousLost {
        /// The column family being replaced.
        cf: String,
        /// Why importing the restored files failed.
        import: String,
        /// Why importing the previous files back failed.
        back: String,
        /// Directory that holds the previous column family's exported files.
        kept: PathBuf,
    },
}

impl RestoreError {
    /// Whether a full disk stopped the restore, wherever it filled: the
    /// staging directory, the scratch import, or the database's own disk
    /// under the swap. Such a failure says nothing of the snapshot.
    pub fn is_disk_full(&self) -> bool {
        match self {
            RestoreError::DiskFull { .. } | RestoreError::DatabaseDiskFull { .. } => true,
            RestoreError::Partition(e) => e.is_disk_full(),
            e => crate::disk_full::caused(e),
        }
    }

    fn local(path: &Path, source: std::io::Error) -> Self {
        RestoreError::Local {
            path: path.to_path_buf(),
            source,
        }
    }
}
