//! Staging directories: where exports wait for upload and downloads wait
//! for import.
//!
//! They live beside the database (`<database>.rocksnap-staging`) by default,
//! on the same filesystem, so that RocksDB's export and import move files by
//! hard link instead of copying them. Each export or restore gets its own
//! [`TempDir`], removed when it is dropped, whatever happened.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Names of export staging directories start with this.
const EXPORT_PREFIX: &str = "export-";

/// `<database>.rocksnap-staging`, beside the database.
pub fn default_staging_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".rocksnap-staging");
    db.with_file_name(name)
}

/// Creates `root` if needed and sweeps the exports killed processes left in
/// it (see [`sweep`]). Only the process that has the database open exports
/// into its staging root, so no export there can be in use. Restore
/// directories are left alone: one may hold the only copy of a column
/// family that an unsettled intent names (a restore whose way back failed),
/// and only opening the database, which settles the intents first, sweeps
/// them.
pub(crate) fn prepare_export_root(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    sweep(root, false).map(drop)
}

/// A fresh directory for one export, named after what it holds.
pub(crate) fn export_dir(root: &Path, name: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{EXPORT_PREFIX}{name}-"))
        .tempdir_in(root)
}

/// Names of restore staging directories start with this.
const RESTORE_PREFIX: &str = "restore-";

/// A restore's staging directory, locked for as long as the restore holds
/// it: a sweep at start leaves a locked one alone, and a killed process's
/// lock goes with it.
#[derive(Debug)]
pub(crate) struct StagingDir {
    dir: TempDir,
    _lock: std::fs::File,
}

impl StagingDir {
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory (and its files) after the restore is done.
    pub(crate) fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// A fresh directory for one restore or verification of `partition`.
pub(crate) fn restore_dir(root: &Path, name: &str) -> std::io::Result<StagingDir> {
    std::fs::create_dir_all(root)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RESTORE_PREFIX}{name}-"))
        .tempdir_in(root)?;
    let lock = std::fs::File::create(dir.path().join(".lock"))?;
    lock.lock()?;
    Ok(StagingDir { dir, _lock: lock })
}

/// Removes the staging directories a killed process left under `root`:
/// every export, and, with `restores`, every restore directory whose lock
/// nobody holds (only once no unsettled intent can name one). Returns what
/// it removed.
pub(crate) fn sweep(root: &Path, restores: bool) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let stale = if name.starts_with(EXPORT_PREFIX) {
            true
        } else if restores && name.starts_with(RESTORE_PREFIX) {
            !is_locked(&path.join(".lock"))
        } else {
            false
        };
        if stale {
            tracing::info!(path = %path.display(), "removing a stale staging directory");
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Whether another process (or this one) holds the lock file.
fn is_locked(lock: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(lock) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}
