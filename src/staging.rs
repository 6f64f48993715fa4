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

/// Creates `root` if needed and removes the exports a killed process left
/// in it. Only the process that has the database open exports into its
/// staging root, so nothing else can be using them.
pub(crate) fn prepare_export_root(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(EXPORT_PREFIX)
        {
            tracing::info!(path = %entry.path().display(), "removing a stale export");
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// A fresh directory for one export, named after what it holds.
pub(crate) fn export_dir(root: &Path, name: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{EXPORT_PREFIX}{name}-"))
        .tempdir_in(root)
}

/// A fresh directory for one restore or verification of `partition`.
pub(crate) fn restore_dir(root: &Path, name: &str) -> std::io::Result<TempDir> {
    std::fs::create_dir_all(root)?;
    tempfile::Builder::new()
        .prefix(&format!("restore-{name}-"))
        .tempdir_in(root)
}
