//! Recovery at open: interrupted restores finished or rolled back (see
//! [`super::intent`]), stale staging directories swept.

use std::path::{Path, PathBuf};

use super::{intent, PartitionError, PartitionStore};

/// What [`PartitionStore::recover`] did.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Column families whose interrupted restore was finished.
    pub finished: Vec<String>,
    /// Column families whose interrupted restore was rolled back to the
    /// column family it was replacing.
    pub rolled_back: Vec<String>,
    /// Column families whose restore had not touched them yet, or had
    /// already completed: only the intent was left.
    pub settled: Vec<String>,
    /// Staging directories removed.
    pub swept: Vec<PathBuf>,
}

impl PartitionStore {
    /// This store after recovery; a column family recovery imported is
    /// seen at once, through the store's own handle.
    pub(super) fn recovered(self) -> Result<Self, PartitionError> {
        self.recover()?;
        Ok(self)
    }

    /// Finishes the restores that were interrupted and removes the staging
    /// directories killed processes left (`export-*`, and `restore-*` that
    /// no live restore holds) under `<database>.rocksnap-staging`.
    ///
    /// [`Self::open`] does this by itself. A host that opened the database
    /// itself ([`Self::from_db`]) calls it once, before anything reads or
    /// writes the partitions. A column family recovery imported is reached
    /// through this store; the host's own `DB` handle sees it once the
    /// database is opened again.
    pub fn recover(&self) -> Result<Recovery, PartitionError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PartitionError::Io { path, source }
        };
        let mut report = Recovery::default();
        for (path, intent) in intent::pending(&self.path).map_err(io(&self.path))? {
            let intent = intent.map_err(|reason| PartitionError::Intent {
                path: path.clone(),
                reason,
            })?;
            let cf = intent.cf.clone();
            if self.has_column_family(&cf) {
                // Never dropped, or already imported: either way whole.
                report.settled.push(cf);
            } else {
                let unrecoverable = |reason: String| PartitionError::Unrecoverable {
                    cf: cf.clone(),
                    reason,
                    kept: intent.staging.clone(),
                };
                let (comparator, files) = intent.new_files().map_err(&unrecoverable)?;
                match self.import_column_family(&cf, &comparator, &files) {
                    Ok(()) => {
                        tracing::warn!(%cf, "finished a restore that was interrupted");
                        report.finished.push(cf);
                    }
                    Err(e) => match intent.previous_files().map_err(&unrecoverable)? {
                        Some((comparator, files)) => {
                            self.import_column_family(&cf, &comparator, &files)
                                .map_err(|back| {
                                    unrecoverable(format!(
                                        "importing the restored files failed ({e}) and so did putting the previous ones back ({back})"
                                    ))
                                })?;
                            tracing::warn!(%cf, error = %e, "rolled back a restore that was interrupted");
                            report.rolled_back.push(cf);
                        }
                        None => {
                            return Err(unrecoverable(format!(
                                "importing the restored files failed ({e}), and there was no column family before"
                            )))
                        }
                    },
                }
            }
            intent::remove(&path).map_err(io(&path))?;
            match std::fs::remove_dir_all(&intent.staging) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&intent.staging)(e)),
            }
        }
        // Every intent is settled: no restore directory is needed any more
        // but those a running restore holds locked.
        let root = crate::staging::default_staging_dir(&self.path);
        report.swept = crate::staging::sweep(&root, true).map_err(io(&root))?;
        Ok(report)
    }
}
