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
//! download, and the staging directory is removed whatever happens.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tempfile::TempDir;

use crate::actors::supervisor::{default_staging_dir, DEFAULT_PARTS_IN_FLIGHT, DEFAULT_PART_SIZE};
use crate::ffi::{self, ImportFile};
use crate::format::{
    FileEntry, Lsn, PartitionId, SnapshotId, SnapshotMetadata, CHECKSUM_ALGORITHM,
};
use crate::metrics as m;
use crate::partition::{cf_name, PartitionError, PartitionStore};
use crate::ratelimit::RateLimit;
use crate::repository::{RepoError, Repository, SnapshotFolder};
use crate::transfer::{Download, DownloadError, Downloader, TransferProgress};

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

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Column family to restore into [default: `data-<partition>`].
    pub cf: Option<String>,
    /// Ranges fetched at once, across all files.
    pub concurrency: usize,
    /// Size of each ranged GET.
    pub part_size: usize,
    /// Parent of the staging directory; default `<database>.rocksnap-staging`.
    /// Must be on the database's filesystem for files to move by hard link.
    pub staging_dir: Option<PathBuf>,
    /// Bytes downloaded so far and bytes to download, for progress reports.
    pub progress: Arc<TransferProgress>,
    /// Download bandwidth, shared with whatever else holds the same limit.
    pub rate_limit: Option<RateLimit>,
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
        }
    }
}

/// A restored partition.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub partition_id: PartitionId,
    pub snapshot_id: SnapshotId,
    pub min_applied_lsn: Lsn,
    /// The LSN stored in the restored data: where the host resumes its log.
    /// `None` for data written without an LSN.
    pub restored_lsn: Option<Lsn>,
    pub files: usize,
    pub bytes: u64,
    #[serde(with = "crate::actors::supervisor::duration_seconds")]
    pub duration: Duration,
    /// Newer snapshots that were tried and found unusable.
    pub skipped: Vec<SkippedSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedSnapshot {
    pub snapshot_id: SnapshotId,
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
    let result = restore_inner(repo, db, partition, target, opts).await;
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

async fn restore_inner(
    repo: &Repository,
    db: &Path,
    partition: PartitionId,
    target: RestoreTarget,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    let cf = opts.cf.clone().unwrap_or_else(|| cf_name(partition));
    let staging_root = opts
        .staging_dir
        .clone()
        .unwrap_or_else(|| default_staging_dir(db));
    let candidates = candidates(repo, partition, target).await?;
    let mut skipped = Vec::new();
    for (i, folder) in candidates.iter().enumerate() {
        let staging = staging_dir(&staging_root, partition)?;
        let prepared = match prepare(repo, partition, folder, &cf, staging, opts, false).await {
            Ok(p) => p,
            Err(RestoreError::Unusable { snapshot, reason }) if i + 1 < candidates.len() => {
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
        let db = db.to_path_buf();
        let cf = cf.clone();
        let meta = prepared.meta.clone();
        let restored_lsn = prepared.restored_lsn;
        let swap_started = Instant::now();
        tokio::task::spawn_blocking(move || swap_into(&db, &cf, prepared))
            .await
            .expect("swap task")?;
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

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub partition_id: PartitionId,
    pub snapshot_id: SnapshotId,
    pub min_applied_lsn: Lsn,
    pub files: usize,
    pub bytes: u64,
    /// Whether every entry of every SST was read and checked.
    pub deep: bool,
    /// The LSN stored in the snapshot's data.
    pub restored_lsn: Option<Lsn>,
}

/// Downloads and checks a snapshot without touching any database: sizes and
/// checksums, RocksDB's own import checks in a scratch database, and with
/// `deep`, every entry of every SST against the metadata's key and sequence
/// number ranges.
pub async fn verify(
    repo: &Repository,
    partition: PartitionId,
    snapshot: Option<SnapshotId>,
    deep: bool,
    opts: &RestoreOptions,
) -> Result<VerifyReport, RestoreError> {
    let target = snapshot.map_or(RestoreTarget::Latest, RestoreTarget::Snapshot);
    let folder = candidates(repo, partition, target).await?.remove(0);
    let root = opts.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
    let staging = staging_dir(&root, partition)?;
    let prepared = prepare(
        repo,
        partition,
        &folder,
        &cf_name(partition),
        staging,
        opts,
        deep,
    )
    .await?;
    Ok(VerifyReport {
        partition_id: partition,
        snapshot_id: prepared.meta.snapshot_id,
        min_applied_lsn: prepared.meta.min_applied_lsn,
        files: prepared.meta.files.len(),
        bytes: prepared.meta.total_bytes(),
        deep,
        restored_lsn: prepared.restored_lsn,
    })
}

/// The snapshots to try, in order.
async fn candidates(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
) -> Result<Vec<SnapshotFolder>, RestoreError> {
    let listed = || async {
        let mut all = repo.list_snapshots(partition).await?;
        all.reverse(); // newest first
        Ok::<_, RestoreError>(all)
    };
    let latest = || async {
        match repo.read_pointer(partition).await? {
            Some(p) => Ok(SnapshotFolder {
                name: p.pointer.path.clone(),
                lsn: p.pointer.min_applied_lsn,
                snapshot_id: p.pointer.snapshot_id,
            }),
            None => Err(RestoreError::NoSnapshot {
                partition,
                reason: format!(
                    "{} has no latest.json",
                    repo.layout().partition_dir(partition)
                ),
            }),
        }
    };
    let chosen = match target {
        RestoreTarget::Latest => vec![latest().await?],
        RestoreTarget::LatestOrOlder => {
            let newest = latest().await?;
            let mut v = vec![newest.clone()];
            v.extend(
                listed()
                    .await?
                    .into_iter()
                    .filter(|f| f.lsn <= newest.lsn && f.name != newest.name),
            );
            v
        }
        RestoreTarget::Snapshot(id) => vec![listed()
            .await?
            .into_iter()
            .find(|f| f.snapshot_id == id)
            .ok_or(RestoreError::UnknownSnapshot {
                partition,
                snapshot_id: id,
            })?],
        RestoreTarget::MinLsn(min) => {
            // The pointer first (it may name a snapshot the listing sorts
            // elsewhere), then every older one that is still new enough.
            let mut v = Vec::new();
            if let Ok(newest) = latest().await {
                v.push(newest);
            }
            for f in listed().await? {
                if !v.iter().any(|c: &SnapshotFolder| c.name == f.name)
                    && v.first().is_none_or(|n| f.lsn <= n.lsn)
                {
                    v.push(f);
                }
            }
            v.retain(|f| f.lsn >= min);
            if v.is_empty() {
                return Err(RestoreError::NoneAtLeast {
                    partition,
                    lsn: min,
                });
            }
            v
        }
    };
    Ok(chosen)
}

fn staging_dir(root: &Path, partition: PartitionId) -> Result<TempDir, RestoreError> {
    std::fs::create_dir_all(root).map_err(|e| RestoreError::local(root, e))?;
    tempfile::Builder::new()
        .prefix(&format!("restore-{partition}-"))
        .tempdir_in(root)
        .map_err(|e| RestoreError::local(root, e))
}

/// A snapshot downloaded, checked and imported into a scratch database,
/// re-exported (hard links) into `new/`, ready to be imported for real.
struct Prepared {
    meta: SnapshotMetadata,
    restored_lsn: Option<Lsn>,
    comparator: String,
    files: Vec<ImportFile>,
    staging: TempDir,
}

async fn prepare(
    repo: &Repository,
    partition: PartitionId,
    folder: &SnapshotFolder,
    cf: &str,
    staging: TempDir,
    opts: &RestoreOptions,
    deep: bool,
) -> Result<Prepared, RestoreError> {
    let unusable = |reason: Unusable| RestoreError::Unusable {
        snapshot: folder.name.clone(),
        reason,
    };
    let meta = match repo.read_metadata(partition, &folder.name).await {
        Ok(m) => m,
        Err(RepoError::Missing { key }) => return Err(unusable(Unusable::Missing { key })),
        Err(e @ (RepoError::Malformed { .. } | RepoError::Foreign { .. })) => {
            return Err(unusable(Unusable::Metadata(e.to_string())))
        }
        Err(e) => return Err(e.into()),
    };
    let meta_key = repo.layout().metadata(partition, &folder.name).to_string();
    if meta.db_comparator_name != BYTEWISE {
        return Err(unusable(Unusable::Invalid {
            key: meta_key,
            reason: format!(
                "comparator {:?} is not {BYTEWISE:?}",
                meta.db_comparator_name
            ),
        }));
    }
    if let Some(alg) = &meta.checksum_algorithm {
        if alg != CHECKSUM_ALGORITHM {
            return Err(unusable(Unusable::Invalid {
                key: meta_key,
                reason: format!("unknown checksum algorithm {alg:?}"),
            }));
        }
    }
    let download_dir = staging.path().join("download");
    std::fs::create_dir(&download_dir).map_err(|e| RestoreError::local(&download_dir, e))?;
    let mut downloads = Vec::with_capacity(meta.files.len());
    let mut import = Vec::with_capacity(meta.files.len());
    let mut checksums = Vec::with_capacity(meta.files.len());
    for f in &meta.files {
        // Checked when the metadata was parsed; checked again here because
        // this is where a name becomes a path.
        let name = f
            .file_name()
            .map_err(|e| unusable(Unusable::Metadata(e.to_string())))?;
        let key = repo
            .layout()
            .object(partition, &folder.name, f)
            .map_err(|e| unusable(Unusable::Metadata(e.to_string())))?;
        let invalid = |reason: String| {
            unusable(Unusable::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        import.push(ImportFile {
            directory: download_dir.to_string_lossy().into_owned(),
            name: format!("/{name}"),
            level: f.level,
            size: f.size,
            smallest_key: hex::decode(&f.start_key)
                .map_err(|e| invalid(format!("start_key: {e}")))?,
            largest_key: hex::decode(&f.end_key).map_err(|e| invalid(format!("end_key: {e}")))?,
            smallest_seqno: f.smallest_seqno,
            largest_seqno: f.largest_seqno,
        });
        checksums.push(expected_checksum(f).map_err(invalid)?);
        downloads.push(Download {
            key,
            dest: download_dir.join(name),
            size: f.size,
        });
    }
    opts.progress
        .total
        .store(meta.total_bytes(), Ordering::Relaxed);
    let downloader = Downloader::new(
        repo.store().clone(),
        opts.concurrency,
        opts.part_size,
        opts.progress.clone(),
        opts.rate_limit.clone(),
    );
    let download_started = Instant::now();
    let crcs = downloader
        .fetch_all(&downloads)
        .await
        .map_err(|e| match e {
            DownloadError::Missing { key } => unusable(Unusable::Missing { key }),
            DownloadError::Size {
                key,
                expected,
                actual,
            } => unusable(Unusable::Size {
                key,
                expected,
                actual,
            }),
            e => RestoreError::Download(e),
        })?;
    for ((want, d), crc) in checksums.iter().zip(&downloads).zip(crcs) {
        match want {
            Some(want) if *want != crc => {
                return Err(unusable(Unusable::Checksum {
                    key: d.key.to_string(),
                    expected: format!("{want:08x}"),
                    actual: format!("{crc:08x}"),
                }))
            }
            Some(_) => {}
            None => {
                tracing::warn!(key = %d.key, "no checksum in metadata; only the size was checked")
            }
        }
    }

    tracing::debug!(snapshot = %folder.name, bytes = meta.total_bytes(),
        ms = download_started.elapsed().as_millis() as u64, "downloaded and checked");

    let cf = cf.to_string();
    let comparator = meta.db_comparator_name.clone();
    let meta2 = meta.clone();
    let downloads2 = downloads.clone();
    let folder_name = folder.name.clone();
    tokio::task::spawn_blocking(move || {
        if deep {
            deep_check(&meta2, &downloads2).map_err(|reason| RestoreError::Unusable {
                snapshot: folder_name.clone(),
                reason,
            })?;
        }
        let import_started = Instant::now();
        let imported = scratch_import(staging.path(), &cf, &comparator, &import);
        tracing::debug!(
            ms = import_started.elapsed().as_millis() as u64,
            "imported into a scratch database"
        );
        let (restored_lsn, files) = imported.map_err(|e| match e {
            PartitionError::Import { reason, .. } => RestoreError::Unusable {
                snapshot: folder_name.clone(),
                reason: Unusable::Import(reason),
            },
            e => RestoreError::Partition(e),
        })?;
        Ok(Prepared {
            meta: meta2,
            restored_lsn,
            comparator,
            files,
            staging,
        })
    })
    .await
    .expect("import task")
}

/// The checksum `metadata.json` gives for a file, if any.
fn expected_checksum(f: &FileEntry) -> Result<Option<u32>, String> {
    f.checksum
        .as_deref()
        .map(|h| {
            u32::from_str_radix(h, 16).map_err(|_| format!("checksum {h:?} is not 8 hex digits"))
        })
        .transpose()
}

/// Imports the downloaded files into a scratch database in `staging`, reads
/// the LSN stored in them, and exports them again (hard links) into `new/`.
fn scratch_import(
    staging: &Path,
    cf: &str,
    comparator: &str,
    files: &[ImportFile],
) -> Result<(Option<Lsn>, Vec<ImportFile>), PartitionError> {
    let scratch = staging.join("scratch");
    PartitionStore::open(&scratch, &[])?.import_column_family(cf, comparator, files)?;
    // Opened again so that the `rocksdb` crate sees the imported column family.
    let store = PartitionStore::open_existing(&scratch)?;
    let lsn = store.applied_lsn(cf)?;
    let exported = store.export_column_family(cf, &staging.join("new"))?;
    Ok((lsn, import_files(&exported.files)))
}

fn import_files(exported: &[ffi::ExportedFile]) -> Vec<ImportFile> {
    exported
        .iter()
        .map(|f| ImportFile {
            directory: f.directory.clone(),
            name: f.name.clone(),
            level: f.level,
            size: f.size,
            smallest_key: f.smallest_key.clone(),
            largest_key: f.largest_key.clone(),
            smallest_seqno: f.smallest_seqno,
            largest_seqno: f.largest_seqno,
        })
        .collect()
}

/// Replaces the live column family with the prepared one, keeping the old one
/// (exported by hard links) until the new one is in.
fn swap_into(db: &Path, cf: &str, prepared: Prepared) -> Result<(), RestoreError> {
    let live = PartitionStore::open(db, &[])?;
    let previous = if live.has_column_family(cf) {
        let exported = live.export_column_family(cf, &prepared.staging.path().join("previous"))?;
        live.drop_column_family(cf)?;
        Some(exported)
    } else {
        None
    };
    if let Err(e) = live.import_column_family(cf, &prepared.comparator, &prepared.files) {
        if let Some(previous) = previous {
            let files = import_files(&previous.files);
            if let Err(back) = live.import_column_family(cf, &previous.comparator_name, &files) {
                // Keep the previous files: they are the partition's only copy now.
                let kept = prepared.staging.keep().join("previous");
                return Err(RestoreError::PreviousLost {
                    cf: cf.to_string(),
                    import: e.to_string(),
                    back: back.to_string(),
                    kept,
                });
            }
        }
        return Err(e.into());
    }
    Ok(())
}

/// Reads every entry of every SST and checks it against the metadata.
fn deep_check(meta: &SnapshotMetadata, downloads: &[Download]) -> Result<(), Unusable> {
    for (f, d) in meta.files.iter().zip(downloads) {
        let key = d.key.to_string();
        let bad = |reason: String| Unusable::Invalid {
            key: key.clone(),
            reason,
        };
        let s = ffi::scan_sst(&d.dest).map_err(|e| bad(e.to_string()))?;
        if s.entries == 0 {
            return Err(bad("the file has no entries".into()));
        }
        let (start, end) = (hex::encode(&s.smallest_key), hex::encode(&s.largest_key));
        let keys_ok = if s.range_deletions == 0 {
            start == f.start_key && end == f.end_key
        } else {
            // A range deletion may widen the file's bounds beyond its point entries.
            start >= f.start_key && end <= f.end_key
        };
        if !keys_ok {
            return Err(bad(format!(
                "keys {start}..{end} do not match the metadata's {}..{}",
                f.start_key, f.end_key
            )));
        }
        if s.smallest_seqno < f.smallest_seqno || s.largest_seqno > f.largest_seqno {
            return Err(bad(format!(
                "sequence numbers {}..{} are outside the metadata's {}..{}",
                s.smallest_seqno, s.largest_seqno, f.smallest_seqno, f.largest_seqno
            )));
        }
    }
    Ok(())
}

/// Why a snapshot cannot be used. Each names the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("{key} is missing")]
    Missing { key: String },
    #[error("{0}")]
    Metadata(String),
    #[error("{key} has {actual} bytes, the metadata says {expected}")]
    Size {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("{key} is corrupt: crc32c is {actual}, the metadata says {expected}")]
    Checksum {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("RocksDB refused the files: {0}")]
    Import(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("partition {partition} has no snapshot: {reason}")]
    NoSnapshot {
        partition: PartitionId,
        reason: String,
    },
    #[error("partition {partition} has no snapshot {snapshot_id}")]
    UnknownSnapshot {
        partition: PartitionId,
        snapshot_id: SnapshotId,
    },
    #[error("partition {partition} has no snapshot at LSN {lsn} or above")]
    NoneAtLeast { partition: PartitionId, lsn: Lsn },
    #[error("snapshot {snapshot} is unusable: {reason}")]
    Unusable { snapshot: String, reason: Unusable },
    #[error(transparent)]
    Repository(#[from] RepoError),
    #[error(transparent)]
    Download(DownloadError),
    #[error("{}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("importing the restored column family {cf:?} failed ({import}) and putting the previous one back failed too ({back}); its files are kept in {}", kept.display())]
    PreviousLost {
        cf: String,
        import: String,
        back: String,
        kept: PathBuf,
    },
}

impl RestoreError {
    fn local(path: &Path, source: std::io::Error) -> Self {
        RestoreError::Local {
            path: path.to_path_buf(),
            source,
        }
    }
}
