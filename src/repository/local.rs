//! Compare-and-swap of `latest.json` on a local directory.
//!
//! `object_store`'s local store cannot replace an object only if it is still
//! at a version, so every rocksnap process that writes into one directory
//! takes the same exclusive lock file around its check and its write. Three
//! things make that safe:
//!
//! - The check, the write, the fsyncs and the rename run in one blocking
//!   task that holds the lock throughout: a caller that goes away (its
//!   actor killed, its future dropped) cannot release the lock while its
//!   write is still on the way.
//! - The version compared is the pointer's content, not the file's
//!   inode-mtime-size (which an in-place rewrite or a reused inode can
//!   repeat): a pointer is replaced only if it still holds exactly what the
//!   writer read.
//! - The lock is waited for at most [`LOCK_TIMEOUT`], then the swap fails
//!   with [`RepoError::LockTimeout`] instead of hanging behind a stuck writer.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use object_store::path::Path;
use object_store::UpdateVersion;

use super::RepoError;

/// How long a writer waits for another one's swap before it gives up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting writer tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// The version of a local pointer: its content.
pub(super) fn version_of(bytes: &[u8]) -> UpdateVersion {
    UpdateVersion {
        e_tag: Some(format!("local:{}", String::from_utf8_lossy(bytes))),
        version: None,
    }
}

/// Replaces `key` under `root` with `payload` if it is still at `expected`
/// (`None`: if it does not exist yet).
pub(super) async fn swap(
    root: &FsPath,
    key: &Path,
    expected: Option<&UpdateVersion>,
    payload: Vec<u8>,
) -> Result<UpdateVersion, RepoError> {
    let lock = lock(root, key).await?;
    let path = root.join(key.as_ref());
    let tmp_dir = locks_dir(root);
    let expected = expected.map(|v| v.e_tag.clone());
    let key_s = key.to_string();
    tokio::task::spawn_blocking(move || {
        // Held until the new pointer is durable, whatever the caller does.
        let _lock = lock;
        let current = match std::fs::read(&path) {
            Ok(bytes) => Some(version_of(&bytes).e_tag),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(RepoError::Lock {
                    key: key_s,
                    source: e,
                })
            }
        };
        if current != expected {
            return Err(RepoError::Conflict { key: key_s });
        }
        write_durably(&path, &tmp_dir, &payload)
            .map_err(|source| RepoError::Lock { key: key_s, source })?;
        Ok(version_of(&payload))
    })
    .await
    .expect("the swap task does not panic")
}

/// Takes the key's lock file, waiting at most [`LOCK_TIMEOUT`].
async fn lock(root: &FsPath, key: &Path) -> Result<std::fs::File, RepoError> {
    let lock_path = locks_dir(root).join(key.as_ref().replace('/', "%2F"));
    let lock_err = |source| RepoError::Lock {
        key: key.to_string(),
        source,
    };
    let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(lock_path.parent().expect("lock has a parent"))?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
    })
    .await
    .expect("open task")
    .map_err(lock_err)?;
    let deadline = tokio::time::Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RepoError::LockTimeout {
                key: key.to_string(),
                waited: LOCK_TIMEOUT,
            });
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// Writes `bytes` to a temporary file beside the lock, fsyncs it, renames it
/// over `path` and fsyncs the directory: readers see the old pointer or the
/// new one, and a power cut loses neither.
fn write_durably(path: &FsPath, tmp_dir: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir: PathBuf = path.parent().expect("a key has a folder").to_path_buf();
    std::fs::create_dir_all(&dir)?;
    replace_whole(path, tmp_dir, bytes)?;
    // The pointer is replaced from here on: a directory fsync that fails
    // (some network filesystems refuse it) must not report the swap as
    // failed, or the publisher would undo what the pointer now names.
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the pointer's directory; the pointer is replaced");
    }
    Ok(())
}

/// Replaces `path` with `bytes`, whole: written to a temporary file in
/// `tmp_dir` (on the same filesystem), fsynced, then renamed over it, so a
/// reader or a power cut finds the old content or the new, never a part.
fn replace_whole(path: &FsPath, tmp_dir: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempfile_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// The folder of a local repository's lock files, and of the temporary
/// files its replacements are written to (on the same filesystem).
fn locks_dir(root: &FsPath) -> PathBuf {
    root.join(".locks")
}

/// How the temporary files [`replace_whole`] writes beside the locks begin,
/// so that a sweep tells them from lock files (named after their key).
const SCRATCH_PREFIX: &str = ".tmp";

/// Temporary files in `.locks` older than this are a killed writer's: a
/// live one renames its file into place within the write that made it.
const STALE_SCRATCH: Duration = Duration::from_secs(60 * 60);

/// Removes the temporary files that writers killed between a write and its
/// rename left in `root`'s `.locks` (a pointer's or a lease's bytes, never
/// named by anything); the number removed. A file younger than
/// [`STALE_SCRATCH`] may still be a live writer's, and stays.
pub(super) async fn sweep_scratch(root: &FsPath) -> std::io::Result<usize> {
    let dir = locks_dir(root);
    tokio::task::spawn_blocking(move || {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(SCRATCH_PREFIX)
            {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if now.duration_since(modified).unwrap_or_default() < STALE_SCRATCH {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    })
    .await
    .expect("the sweep does not panic")
}

/// Writes a lease under `root` for a writer on this machine: its bytes are
/// fsynced before the rename that makes it visible, so a lease is there
/// whole or not at all; its folder is made, and later removed, without an
/// fsync.
///
/// Why no folder fsync: a lease only has to be seen by a collection while
/// its writer lives, and every process on the machine sees the rename at
/// once. A power cut that loses the rename also ends the writer, whose
/// snapshot nothing will publish. That saves a snapshot three of its
/// fourteen fsyncs (the folder after the rename, and its parent when the
/// folder is made, once per snapshot since the last lease's deletion
/// removes it), the cost that grows with the partitions a node has.
pub(super) async fn put_lease(root: &FsPath, key: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = root.join(key.as_ref());
    let tmp_dir = locks_dir(root);
    tokio::task::spawn_blocking(move || {
        let leases = path.parent().expect("a key has a folder");
        // The partition's folder holds what the snapshot will store: made
        // durably, as the store makes an object's folders.
        crate::store::local::create_dirs_durably(
            leases.parent().expect("leases sit in a partition"),
        )?;
        match std::fs::create_dir(leases) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(&tmp_dir)?;
        replace_whole(&path, &tmp_dir, &bytes)
    })
    .await
    .expect("the lease task does not panic")
}

/// Deletes a lease under `root` (gone already counts as deleted), then its
/// folder and the partition's if that leaves them empty, as the store does
/// for every object: a partition folder holding nothing is no partition
/// (listing a local directory names every folder in it).
pub(super) async fn delete_lease(root: &FsPath, key: &Path) -> std::io::Result<()> {
    let path = root.join(key.as_ref());
    tokio::task::spawn_blocking(move || {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Each fails, harmlessly, while anything is left in it; a writer
        // that makes the folder again at the same moment retries its write.
        let leases = path.parent().expect("a key has a folder");
        if std::fs::remove_dir(leases).is_ok() {
            let _ = std::fs::remove_dir(leases.parent().expect("leases sit in a partition"));
        }
        Ok(())
    })
    .await
    .expect("the lease task does not panic")
}
