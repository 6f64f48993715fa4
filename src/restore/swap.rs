//! Step 4 of a restore, the only one that touches the live database.
//!
//! An intent naming both sides is written and fsynced before the live
//! column family is dropped, and removed once the new one is in, so that a
//! restore that dies at any instant is finished by whatever opens the
//! database next (see [`crate::partition::RestoreIntent`]).

use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt;

use super::prepare::{import_files, Prepared};
use super::RestoreError;
use crate::partition::{intent, PartitionStore, RestoreIntent};
use crate::staging;

/// Replaces the column family of the database at `db` (not open elsewhere)
/// with the prepared one.
pub(super) fn swap_into(db: &Path, cf: &str, prepared: Prepared) -> Result<(), RestoreError> {
    let prepared = onto_database_disk(db, cf, prepared)?;
    // Opening recovers an earlier restore that was interrupted, if any.
    let live = PartitionStore::open(db, &[])?;
    swap_in(&live, cf, prepared)
}

/// Replaces the live column family with the prepared one, keeping the old one
/// (exported by hard links) until the new one is in. The caller holds the
/// column family's gate, or has the database to itself.
pub(super) fn swap_in(
    live: &PartitionStore,
    cf: &str,
    prepared: Prepared,
) -> Result<(), RestoreError> {
    let db = live.path();
    let previous = if live.has_column_family(cf) {
        Some(live.export_ungated(cf, &prepared.staging.path().join("previous"))?)
    } else {
        None
    };
    let previous_files = previous.as_ref().map(|p| import_files(&p.files));
    let intent = RestoreIntent::new(
        cf,
        &prepared.comparator,
        &prepared.files,
        previous
            .as_ref()
            .zip(previous_files.as_deref())
            .map(|(p, files)| (p.comparator_name.as_str(), files)),
        prepared.staging.path(),
    );
    let intent_path = intent.write(db).map_err(|e| RestoreError::Local {
        path: intent::intents_dir(db),
        source: e,
    })?;
    if previous.is_some() {
        live.drop_column_family(cf)?;
    }
    if let Err(e) = live.import_column_family(cf, &prepared.comparator, &prepared.files) {
        if let Some((previous, files)) = previous.zip(previous_files) {
            if let Err(back) = live.import_column_family(cf, &previous.comparator_name, &files) {
                // Keep the previous files, and the intent that names them:
                // they are the partition's only copy now.
                let kept = prepared.staging.keep().join("previous");
                return Err(RestoreError::PreviousLost {
                    cf: cf.to_string(),
                    import: e.to_string(),
                    back: back.to_string(),
                    kept,
                });
            }
        }
        intent::remove(&intent_path).map_err(|e| RestoreError::Local {
            path: intent_path.clone(),
            source: e,
        })?;
        return Err(e.into());
    }
    // The column family is replaced: a leftover intent is settled by the
    // next open (the column family exists), so its removal failing is no
    // failure of the restore.
    if let Err(e) = intent::remove(&intent_path) {
        tracing::warn!(path = %intent_path.display(), error = %e, "cannot remove the restore's intent; the next open settles it");
    }
    Ok(())
}

/// The prepared files, on the database's own disk before anything of it
/// changes. Staged on another disk (`--staging-dir`), they would be copied
/// by the import itself, after the live column family is dropped: a disk
/// too full for them would then fail the import, and with it, for want of
/// room for RocksDB's own small files, the return of the previous column
/// family. Copied first, into a staging directory beside the database, a
/// full disk stops the restore with nothing touched, and the import (and
/// the previous column family's export) link files instead of copying.
///
/// Left as they are when they already are on the database's disk, and when
/// no directory beside the database is (the database is a mount point).
/// Called before the partition's gate is taken: the copy holds up no write.
pub(super) fn onto_database_disk(
    db: &Path,
    cf: &str,
    prepared: Prepared,
) -> Result<Prepared, RestoreError> {
    // A database not made yet will be made on its parent's disk.
    let dev = |p: &Path| {
        p.ancestors()
            .find_map(|a| std::fs::metadata(a).ok())
            // A relative path's last ancestor is the empty one: here.
            .or_else(|| std::fs::metadata(".").ok())
            .map(|m| m.dev())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    };
    let dev_of = |p: &Path| dev(p).map_err(|e| RestoreError::local(p, e));
    let db_dev = dev_of(db)?;
    let beside = db.parent().unwrap_or(db);
    if dev_of(prepared.staging.path())? == db_dev || dev_of(beside)? != db_dev {
        return Ok(prepared);
    }
    let root = staging::default_staging_dir(db);
    tracing::debug!(%cf, db = %db.display(), "copying the staged files beside the database before the swap");
    let bytes: u64 = prepared.files.iter().map(|f| f.size).sum();
    let full = |e: std::io::Error, path: PathBuf| match crate::disk_full::is_full(&e) {
        true => RestoreError::DatabaseDiskFull {
            path: db.to_path_buf(),
            bytes,
        },
        false => RestoreError::Local { path, source: e },
    };
    // Named as intents name a column family: any name makes a file name.
    let dir = staging::restore_dir(&root, &format!("swap-{}", hex::encode(cf)))
        .map_err(|e| full(e, root.clone()))?;
    // The folder's name is durable too: the intent will name files in it.
    std::fs::File::open(&root)
        .and_then(|d| d.sync_all())
        .map_err(|e| full(e, root.clone()))?;
    let mut files = prepared.files.clone();
    for f in files.iter_mut() {
        let name = f.name.trim_start_matches('/');
        let from = Path::new(&f.directory).join(name);
        let to = dir.path().join(name);
        // Durable before the import links it: the database will name it.
        let copied = std::fs::File::open(&from)
            .map_err(|e| RestoreError::local(&from, e))
            .and_then(|mut src| {
                let mut dst = std::fs::File::create(&to).map_err(|e| full(e, to.clone()))?;
                std::io::copy(&mut src, &mut dst)
                    .and_then(|_| dst.sync_all())
                    .map_err(|e| full(e, to.clone()))
            });
        // On failure the directory and what it holds go with `dir`.
        copied?;
        f.directory = dir.path().to_string_lossy().into_owned();
    }
    std::fs::File::open(dir.path())
        .and_then(|d| d.sync_all())
        .map_err(|e| full(e, dir.path().to_path_buf()))?;
    Ok(Prepared {
        files,
        staging: dir,
        ..prepared
    })
}
