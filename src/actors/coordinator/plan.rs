//! Step 2 of a snapshot: each exported file's key, and, in format V2, which
//! files the previous snapshot already holds.

use std::collections::HashMap;

use super::{Job, Plan, PlannedFile, SharedFile, SnapshotError};
use crate::actors::exporter::Export;
use crate::format::{shared_key, shared_name, snapshot_folder, FormatVersion, SnapshotId};

impl Job {
    /// Step 2: each file's key, and which files need not be sent again.
    pub(super) async fn plan(&self, export: &Export) -> Result<Plan, SnapshotError> {
        let partition = self.partition();
        let folder = snapshot_folder(export.min_applied_lsn, self.snapshot_id);
        let layout = self.repository.layout();
        // V2: files the previous snapshot already references are not sent again.
        let (base, previous) = match self.config.format {
            FormatVersion::V2 => self.previous_files().await,
            FormatVersion::V1 => (None, HashMap::new()),
        };
        let mut files = Vec::with_capacity(export.files.len());
        for (file, identity) in export.files.iter().zip(&export.identities) {
            let name =
                crate::format::plain_file_name(&file.name).map_err(|e| SnapshotError::Export {
                    partition,
                    reason: e.to_string(),
                })?;
            // A reused file keeps the key its snapshot stored it under; a
            // new shared file gets a key of its own, named after this
            // snapshot, so that no upload ever lands on a key a collector
            // may be deleting.
            let reused = identity.as_ref().and_then(|id| previous.get(id));
            let (key, entry_key) = match (identity, reused) {
                (Some(_), Some(prev)) => (prev.key.clone(), Some(prev.entry_key.clone())),
                (Some(id), None) => (
                    layout.shared(partition, &shared_name(id, self.snapshot_id)),
                    Some(shared_key(id, self.snapshot_id)),
                ),
                (None, _) => (layout.file(partition, &folder, name), None),
            };
            // A new file of an encrypted snapshot gets its own data key.
            let (seal, encryption) = match (&self.config.encryption, reused) {
                (_, Some(prev)) => (None, prev.encryption.clone()),
                (Some(keyring), None) => {
                    let seal = crate::crypto::FileKey::generate();
                    let entry =
                        seal.entry(keyring, file.size, &file.smallest_key, &file.largest_key);
                    (Some(std::sync::Arc::new(seal)), Some(entry))
                }
                (None, None) => (None, None),
            };
            files.push(PlannedFile {
                path: export.file_path(file),
                key,
                entry_key,
                size: file.size,
                reused: reused.map(|prev| (prev.crc32c, prev.size)),
                seal,
                encryption,
            });
        }
        Ok(Plan { base, files })
    }

    /// The partition's latest snapshot, and identity → where each file it
    /// references is, if it is a V2 snapshot. Any trouble reading it only
    /// means that nothing is shared.
    async fn previous_files(&self) -> (Option<SnapshotId>, HashMap<String, SharedFile>) {
        let partition = self.partition();
        let pointer = match self.repository.read_pointer(partition).await {
            Ok(Some(p)) => p.pointer,
            _ => return (None, HashMap::new()),
        };
        match self
            .repository
            .read_metadata(partition, &pointer.path)
            .await
        {
            Ok(meta) => {
                let layout = self.repository.layout();
                let files = meta
                    .files
                    .iter()
                    // A file is reused only into a snapshot encrypted as it
                    // is: plain and sealed objects never stand for each other.
                    .filter(|f| f.encryption.is_some() == self.config.encryption.is_some())
                    .filter_map(|f| {
                        let crc32c = u32::from_str_radix(f.checksum.as_deref()?, 16).ok()?;
                        let entry_key = f.key.clone()?;
                        let key = layout.object(partition, &pointer.path, f).ok()?;
                        let shared = SharedFile {
                            key,
                            entry_key,
                            crc32c,
                            size: f.size,
                            encryption: f.encryption.clone(),
                        };
                        Some((f.identity.clone()?, shared))
                    })
                    .collect();
                (Some(meta.snapshot_id), files)
            }
            Err(e) => {
                tracing::warn!(%partition, error = %e, "cannot read the previous snapshot; sending every file");
                (None, HashMap::new())
            }
        }
    }
}
