//! Verify: steps 1 to 3 of a restore, with no database.

use serde::Serialize;

use super::prepare::{check, Checked};
use super::{candidates, staging_dir, RestoreError, RestoreOptions, RestoreTarget};
use crate::format::{Lsn, PartitionId, SnapshotId};
use crate::partition::cf_name;
use crate::repository::{Repository, SnapshotFolder};

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The partition checked.
    pub partition_id: PartitionId,
    /// The snapshot checked.
    pub snapshot_id: SnapshotId,
    /// The snapshot's LSN, from its metadata.
    pub min_applied_lsn: Lsn,
    /// Number of files checked.
    pub files: usize,
    /// Total size of the checked files, in bytes.
    pub bytes: u64,
    /// Whether every entry of every SST was read and checked.
    pub deep: bool,
    /// The LSN stored in the snapshot's data.
    pub restored_lsn: Option<Lsn>,
    /// Whether the snapshot is encrypted.
    pub encrypted: bool,
    /// Whether every segment was opened with the keyring (an encrypted
    /// snapshot verified without it has only its stored bytes checked).
    pub authenticated: bool,
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
    let (folder, checked) = checked(repo, partition, target, deep, opts).await?;
    if checked.sealed {
        // Encrypted and no keyring: the stored bytes' sizes and checksums.
        let meta = &checked.meta;
        return Ok(VerifyReport {
            partition_id: partition,
            snapshot_id: meta.snapshot_id,
            min_applied_lsn: meta.min_applied_lsn,
            files: meta.files.len(),
            bytes: meta.total_bytes(),
            deep: false,
            restored_lsn: None,
            encrypted: true,
            authenticated: false,
        });
    }
    let encrypted = checked.meta.encryption.is_some();
    let prepared = super::prepare::import_checked(checked, &cf_name(partition), &folder).await?;
    Ok(VerifyReport {
        partition_id: partition,
        snapshot_id: prepared.meta.snapshot_id,
        min_applied_lsn: prepared.meta.min_applied_lsn,
        files: prepared.meta.files.len(),
        bytes: prepared.meta.total_bytes(),
        deep,
        restored_lsn: prepared.restored_lsn,
        encrypted,
        authenticated: encrypted,
    })
}

/// Downloads the target snapshot's files into a staging directory and checks
/// them (sizes, checksums, each SST's sequence numbers, and with `deep`
/// every entry), importing nothing; the staging directory is gone when it
/// returns. The snapshot's metadata, if every check passed.
pub(crate) async fn check_snapshot(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
    deep: bool,
    opts: &RestoreOptions,
) -> Result<crate::format::SnapshotMetadata, RestoreError> {
    Ok(checked(repo, partition, target, deep, opts).await?.1.meta)
}

/// The target's folder, downloaded into a staging directory under the
/// options' (or the system's temporary) directory and checked; an
/// encrypted snapshot without its keyring has its stored bytes checked.
async fn checked(
    repo: &Repository,
    partition: PartitionId,
    target: RestoreTarget,
    deep: bool,
    opts: &RestoreOptions,
) -> Result<(SnapshotFolder, Checked), RestoreError> {
    let folder = candidates(repo, partition, target).await?.remove(0);
    let root = opts.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
    let staging = staging_dir(&root, partition)?;
    let checked = check(repo, partition, &folder, staging, opts, deep, true).await?;
    Ok((folder, checked))
}
