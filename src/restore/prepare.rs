//! Steps 1 to 3 of a restore: a snapshot's documents checked, its files
//! downloaded and checked, and imported into a scratch database where
//! RocksDB reads them. Nothing here touches the live database.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::staging::StagingDir;

use super::{DownloadError, RestoreError, RestoreOptions, Unusable, BYTEWISE};
use crate::ffi::{self, ImportFile};
use crate::format::{FileEntry, Lsn, PartitionId, SnapshotMetadata, CHECKSUM_ALGORITHM};
use crate::partition::{PartitionError, PartitionStore};
use crate::repository::{RepoError, Repository, SnapshotFolder};
use crate::transfer::{Download, Downloader};

pub(super) fn staging_dir(root: &Path, partition: PartitionId) -> Result<StagingDir, RestoreError> {
    crate::staging::restore_dir(root, &partition.to_string())
        .map_err(|e| RestoreError::local(root, e))
}

/// A snapshot downloaded, checked and imported into a scratch database,
/// re-exported (hard links) into `new/`, ready to be imported for real.
pub(super) struct Prepared {
    pub(super) meta: SnapshotMetadata,
    pub(super) restored_lsn: Option<Lsn>,
    pub(super) comparator: String,
    pub(super) files: Vec<ImportFile>,
    pub(super) staging: StagingDir,
}

/// Steps 1 and 2, and the files' own checks: a snapshot's documents
/// checked, its files downloaded into `staging` with their sizes and
/// checksums checked, their sequence numbers (and with `deep`, every entry)
/// read back. Nothing is imported anywhere.
pub(crate) struct Checked {
    /// The snapshot's metadata; for an encrypted snapshot opened with its
    /// keyring, each file's plaintext size and user keys in place.
    pub(crate) meta: SnapshotMetadata,
    import: Vec<ImportFile>,
    staging: StagingDir,
    /// Encrypted and checked without its keyring: only the stored bytes'
    /// sizes and checksums were checked, nothing was opened.
    pub(crate) sealed: bool,
}

pub(crate) async fn check(
    repo: &Repository,
    partition: PartitionId,
    folder: &SnapshotFolder,
    staging: StagingDir,
    opts: &RestoreOptions,
    deep: bool,
    allow_sealed: bool,
) -> Result<Checked, RestoreError> {
    let unusable = |reason: Unusable| RestoreError::Unusable {
        snapshot: folder.name.clone(),
        reason,
    };
    let mut meta = match repo.read_metadata(partition, &folder.name).await {
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
    // Encrypted: every file, by the one scheme this build knows, and opened
    // only with the keyring (without it, `verify` checks the stored bytes).
    let encrypted = meta.encryption.is_some();
    if let Some(scheme) = &meta.encryption {
        if scheme != crate::crypto::SCHEME {
            return Err(unusable(Unusable::Invalid {
                key: meta_key,
                reason: format!("unknown encryption scheme {scheme:?}"),
            }));
        }
    }
    if meta
        .files
        .iter()
        .any(|f| f.encryption.is_some() != encrypted)
    {
        return Err(unusable(Unusable::Invalid {
            key: meta_key,
            reason: "encrypted and plain files mixed in one snapshot".into(),
        }));
    }
    if encrypted && opts.keyring.is_none() && !allow_sealed {
        return Err(RestoreError::Encrypted {
            snapshot: folder.name.clone(),
        });
    }
    let sealed = encrypted && opts.keyring.is_none();
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
    for f in meta.files.iter_mut() {
        // Checked when the metadata was parsed; checked again here because
        // this is where a name becomes a path.
        let name = f
            .file_name()
            .map_err(|e| unusable(Unusable::Metadata(e.to_string())))?
            .to_string();
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
        checksums.push(expected_checksum(f).map_err(invalid)?);
        let stored_size = f.size;
        // Opened with the keyring: the data key unwrapped, the user keys
        // unsealed, and from here on the entry describes the plaintext.
        let opened = match (&f.encryption, &opts.keyring) {
            (Some(envelope), Some(keyring)) => {
                let file = key.to_string();
                let data_key = crate::crypto::FileKey::unwrap(&file, envelope, keyring)?;
                let (start, end) = data_key.user_keys(&file, envelope)?;
                f.start_key = hex::encode(&start);
                f.end_key = hex::encode(&end);
                f.size = envelope.plaintext_size;
                Some((std::sync::Arc::new(data_key), envelope.plaintext_size))
            }
            _ => None,
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
        downloads.push(Download {
            key,
            dest: download_dir.join(&name),
            size: stored_size,
            sealed: opened,
        });
    }
    let stored_bytes: u64 = downloads.iter().map(|d| d.size).sum();
    opts.progress.total.store(stored_bytes, Ordering::Relaxed);
    let downloader = Downloader::new(
        repo.store().clone(),
        opts.concurrency,
        opts.budget.as_ref(),
        opts.part_size,
        opts.progress.clone(),
        opts.rate_limit.clone(),
        repo.retry(),
    )
    .with_local_files(repo.local_files());
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
            DownloadError::Sealed(e) => {
                let key = match &e {
                    crate::crypto::CryptoError::Segment { file, .. } => file.clone(),
                    _ => folder.name.clone(),
                };
                unusable(Unusable::Invalid {
                    key,
                    reason: e.to_string(),
                })
            }
            DownloadError::Local { path, source } if crate::disk_full::is_full(&source) => {
                RestoreError::DiskFull {
                    path,
                    bytes: stored_bytes,
                }
            }
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

    if sealed {
        return Ok(Checked {
            meta,
            import,
            staging,
            sealed,
        });
    }
    let folder_name = folder.name.clone();
    tokio::task::spawn_blocking(move || {
        // The sequence numbers in metadata.json become the database's own on
        // import: understated, the host's next writes would be hidden under
        // the imported entries. Each file's own record of them is checked.
        check_seqnos(&meta, &downloads).map_err(|reason| RestoreError::Unusable {
            snapshot: folder_name.clone(),
            reason,
        })?;
        if deep {
            deep_check(&meta, &downloads).map_err(|reason| RestoreError::Unusable {
                snapshot: folder_name.clone(),
                reason,
            })?;
        }
        Ok(Checked {
            meta,
            import,
            staging,
            sealed,
        })
    })
    .await
    .expect("check task")
}

/// Steps 1 to 3: [`check`], then the files imported into a scratch
/// database, where RocksDB reads them, and exported again for the swap.
pub(super) async fn prepare(
    repo: &Repository,
    partition: PartitionId,
    folder: &SnapshotFolder,
    cf: &str,
    staging: StagingDir,
    opts: &RestoreOptions,
    deep: bool,
) -> Result<Prepared, RestoreError> {
    let checked = check(repo, partition, folder, staging, opts, deep, false).await?;
    import_checked(checked, cf, folder).await
}

/// Step 3 of a checked snapshot: imported into a scratch database in its
/// staging directory, and exported again for the swap.
pub(crate) async fn import_checked(
    checked: Checked,
    cf: &str,
    folder: &SnapshotFolder,
) -> Result<Prepared, RestoreError> {
    let cf = cf.to_string();
    let folder_name = folder.name.clone();
    tokio::task::spawn_blocking(move || {
        let Checked {
            meta,
            import,
            staging,
            ..
        } = checked;
        let comparator = meta.db_comparator_name.clone();
        let (staging_path, stored_bytes) = (staging.path().to_path_buf(), meta.total_bytes());
        let import_started = Instant::now();
        let imported = scratch_import(staging.path(), &cf, &comparator, &import);
        tracing::debug!(
            ms = import_started.elapsed().as_millis() as u64,
            "imported into a scratch database"
        );
        let (restored_lsn, files) = imported.map_err(|e| match e {
            PartitionError::Import { reason, .. } if is_corruption(&reason) => {
                RestoreError::Unusable {
                    snapshot: folder_name.clone(),
                    reason: Unusable::Import(reason),
                }
            }
            // A full disk or an I/O error says nothing of the snapshot:
            // no fallback, the error as it is.
            e if e.is_disk_full() => RestoreError::DiskFull {
                path: staging_path.clone(),
                bytes: stored_bytes,
            },
            e => RestoreError::Partition(e),
        })?;
        Ok(Prepared {
            meta,
            restored_lsn,
            comparator,
            files,
            staging,
        })
    })
    .await
    .expect("import task")
}

/// Whether RocksDB refused the files themselves (Corruption, InvalidArgument)
/// rather than the machine failing (IOError, NoSpace, …): only the former
/// makes a snapshot unusable. RocksDB's C API reports a status only as its
/// text, which starts with the status code's name.
fn is_corruption(reason: &str) -> bool {
    let status = reason.strip_prefix("RocksDB: ").unwrap_or(reason);
    status.starts_with("Corruption") || status.starts_with("Invalid argument")
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

pub(super) fn import_files(exported: &[ffi::ExportedFile]) -> Vec<ImportFile> {
    exported.iter().map(ImportFile::from).collect()
}

/// Checks that each file's sequence numbers lie within the range the
/// metadata gives for it: from the file's table properties, or, for a file
/// that does not record them, by reading its entries.
fn check_seqnos(meta: &SnapshotMetadata, downloads: &[Download]) -> Result<(), Unusable> {
    for (f, d) in meta.files.iter().zip(downloads) {
        let bad = |reason: String| Unusable::Invalid {
            key: d.key.to_string(),
            reason,
        };
        let range = match ffi::sst_seqnos(&d.dest).map_err(|e| bad(e.to_string()))? {
            Some(range) => range,
            None => {
                let s = ffi::scan_sst(&d.dest).map_err(|e| bad(e.to_string()))?;
                if s.entries == 0 {
                    continue;
                }
                (s.smallest_seqno, s.largest_seqno)
            }
        };
        if range.0 < f.smallest_seqno || range.1 > f.largest_seqno {
            return Err(bad(format!(
                "its keys carry sequence numbers {}..{}, outside the metadata's {}..{}",
                range.0, range.1, f.smallest_seqno, f.largest_seqno
            )));
        }
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
