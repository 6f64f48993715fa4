//! Restore intents: what makes a restore that dies at any instant recoverable.
//!
//! A restore replaces a live column family in three moves: it exports the
//! current one (hard links, as a way back), drops it, and imports the
//! verified files. Between the drop and the import the database has no such
//! column family at all. So before the drop, the restore writes an intent
//! (`<database>.rocksnap-staging/intents/<column family>.json`, fsynced)
//! naming the files of both sides, and removes it once the import is done.
//! Whatever opens the database next ([`super::PartitionStore::open`], or
//! [`super::PartitionStore::recover`] for a database the host opened)
//! finishes the restore from the intent: if the column family exists, the
//! restore either never dropped it or completed, and the intent is simply
//! removed; if it is missing, the new files are imported (or, if that
//! fails, the previous ones), and only then is the intent removed. It never
//! creates an empty column family where a restore was interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ffi::ImportFile;
use crate::format::FormatVersion;
use crate::staging::default_staging_dir;

/// One file of an intent, as `ImportFile` says it (keys in hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IntentFile {
    directory: String,
    name: String,
    level: i32,
    size: u64,
    smallest_key: String,
    largest_key: String,
    smallest_seqno: u64,
    largest_seqno: u64,
}

impl From<&ImportFile> for IntentFile {
    fn from(f: &ImportFile) -> Self {
        IntentFile {
            directory: f.directory.clone(),
            name: f.name.clone(),
            level: f.level,
            size: f.size,
            smallest_key: hex::encode(&f.smallest_key),
            largest_key: hex::encode(&f.largest_key),
            smallest_seqno: f.smallest_seqno,
            largest_seqno: f.largest_seqno,
        }
    }
}

impl IntentFile {
    fn to_import(&self) -> Result<ImportFile, String> {
        Ok(ImportFile {
            directory: self.directory.clone(),
            name: self.name.clone(),
            level: self.level,
            size: self.size,
            smallest_key: hex::decode(&self.smallest_key).map_err(|e| e.to_string())?,
            largest_key: hex::decode(&self.largest_key).map_err(|e| e.to_string())?,
            smallest_seqno: self.smallest_seqno,
            largest_seqno: self.largest_seqno,
        })
    }
}

/// The column family a restore is about to replace, and the files of both
/// sides: what recovery needs to finish it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreIntent {
    version: FormatVersion,
    /// The column family being replaced.
    pub cf: String,
    /// Comparator of the new files.
    comparator: String,
    /// The verified files to import.
    new: Vec<IntentFile>,
    /// Comparator and files of the column family being replaced, if there
    /// was one.
    previous: Option<(String, Vec<IntentFile>)>,
    /// The restore's staging directory, removed once the intent is settled.
    pub staging: PathBuf,
}

impl RestoreIntent {
    /// An intent to replace `cf` with `new`, keeping `previous` as the way back.
    pub fn new(
        cf: &str,
        comparator: &str,
        new: &[ImportFile],
        previous: Option<(&str, &[ImportFile])>,
        staging: &Path,
    ) -> Self {
        RestoreIntent {
            version: FormatVersion::V1,
            cf: cf.to_string(),
            comparator: comparator.to_string(),
            new: new.iter().map(IntentFile::from).collect(),
            previous: previous
                .map(|(c, files)| (c.to_string(), files.iter().map(IntentFile::from).collect())),
            staging: staging.to_path_buf(),
        }
    }

    /// The new files, and their comparator.
    pub(crate) fn new_files(&self) -> Result<(String, Vec<ImportFile>), String> {
        let files = self
            .new
            .iter()
            .map(IntentFile::to_import)
            .collect::<Result<_, _>>()?;
        Ok((self.comparator.clone(), files))
    }

    /// The previous files, and their comparator, if there were any.
    pub(crate) fn previous_files(&self) -> Result<Option<(String, Vec<ImportFile>)>, String> {
        self.previous
            .as_ref()
            .map(|(c, files)| {
                let files = files
                    .iter()
                    .map(IntentFile::to_import)
                    .collect::<Result<_, _>>()?;
                Ok((c.clone(), files))
            })
            .transpose()
    }

    /// Writes the intent durably (file and directory fsynced) for the
    /// database at `db`.
    pub fn write(&self, db: &Path) -> std::io::Result<PathBuf> {
        let dir = intents_dir(db);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", hex::encode(&self.cf)));
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(self).expect("an intent serializes"))?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(path)
    }
}

/// Where a database's intents are.
pub(crate) fn intents_dir(db: &Path) -> PathBuf {
    default_staging_dir(db).join("intents")
}

/// Every intent left for the database at `db`, with its path.
pub(crate) fn pending(db: &Path) -> std::io::Result<Vec<(PathBuf, Result<RestoreIntent, String>)>> {
    let dir = intents_dir(db);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
        out.push((path, parsed));
    }
    Ok(out)
}

/// Removes a settled intent durably.
pub(crate) fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
