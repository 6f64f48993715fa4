//! A snapshot repository: the object-store I/O that the bucket format needs.
//!
//! Keys and parsing live in [`crate::format`]; this module adds the store
//! calls and the one operation that needs care: replacing `latest.json` by
//! compare-and-swap. Object stores do that with conditional puts
//! (`If-None-Match: *`, `If-Match: <etag>`). `object_store`'s local directory
//! store cannot replace by version, so for a local directory the swap runs
//! under an exclusive lock file that every rocksnap process takes, with the
//! version check inside it: two processes writing into one directory then
//! behave like two nodes on S3.
//!
//! Longer than most files here on purpose: it is the one place the bucket
//! format meets the store, so every read, write and listing of a repository
//! is here (the local compare-and-swap is in `local.rs`).

mod local;

pub use local::LOCK_TIMEOUT;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::format::{
    parse_snapshot_folder, FormatError, LatestPointer, Layout, Lease, Lsn, PartitionId, SnapshotId,
    SnapshotMetadata, LEASES,
};
use crate::retry::RetryPolicy;
use crate::store::Destination;

/// A pointer together with the version it was read at, for a later swap.
#[derive(Debug, Clone)]
pub struct VersionedPointer {
    /// The parsed `latest.json`.
    pub pointer: LatestPointer,
    /// The object's e-tag and version when it was read, to pass to
    /// [`Repository::swap_pointer`].
    pub version: UpdateVersion,
}

/// One snapshot folder found by listing a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFolder {
    /// The folder's name, `lsn_<lsn:020>-<snapshot_id>`.
    pub name: String,
    /// The LSN in the folder's name.
    pub lsn: Lsn,
    /// The snapshot id in the folder's name.
    pub snapshot_id: SnapshotId,
}

/// A snapshot repository on one destination.
#[derive(Debug, Clone)]
pub struct Repository {
    retry: RetryPolicy,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    local_root: Option<PathBuf>,
    /// Nothing wraps the local store: its files are the objects, and
    /// restore copies them with the kernel's help.
    plain_local: bool,
    display: String,
    min_part_size: usize,
    uploads: crate::uploads::UploadLister,
}

impl Repository {
    /// The repository at a destination, with the default retry policy.
    pub fn new(dest: Destination) -> Self {
        Repository {
            retry: RetryPolicy::default(),
            store: dest.store,
            layout: Layout::new(dest.prefix),
            local_root: dest.local_root,
            plain_local: dest.plain_local,
            display: dest.display,
            min_part_size: dest.min_part_size,
            uploads: dest.uploads,
        }
    }

    /// A repository on any store, e.g. a test wrapper around a real one.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Repository {
            retry: RetryPolicy::default(),
            store,
            layout: Layout::new(prefix),
            local_root: None,
            plain_local: false,
            display: "object store".into(),
            min_part_size: 1,
            uploads: Default::default(),
        }
    }

    /// The same repository with another retry policy for every request,
    /// file resend and compare-and-swap made through it.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The retry policy requests through this repository follow.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The directory whose files are the objects, if the store is a plain
    /// local directory.
    pub(crate) fn local_files(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref().filter(|_| self.plain_local)
    }

    /// Removes what writers killed half-way through a pointer's or a
    /// lease's write left beside a local repository's locks (temporary
    /// files an hour old); nothing elsewhere. The number removed.
    pub(crate) async fn sweep_scratch(&self) -> std::io::Result<usize> {
        match &self.local_root {
            Some(root) => local::sweep_scratch(root).await,
            None => Ok(0),
        }
    }

    /// The store behind the repository.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The repository's key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How to find multipart uploads left open in this repository.
    pub(crate) fn uploads(&self) -> &crate::uploads::UploadLister {
        &self.uploads
    }

    /// The smallest multipart part the store accepts.
    pub fn min_part_size(&self) -> usize {
        self.min_part_size
    }

    /// Where the repository is, safe to print.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Reads `latest.json`; `None` if the partition has none yet. A pointer
    /// that does not parse is an error, and the caller must not replace it.
    pub async fn read_pointer(
        &self,
        partition: PartitionId,
    ) -> Result<Option<VersionedPointer>, RepoError> {
        let key = self.layout.latest(partition);
        let read = self
            .retry
            .run("read latest.json", || async {
                let got = self.store.get(&key).await?;
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                Ok((version, got.bytes().await?))
            })
            .await;
        let (version, bytes) = match read {
            // A local pointer's version is its content (see `local`).
            Ok((_, bytes)) if self.local_root.is_some() => (local::version_of(&bytes), bytes),
            Ok(read) => read,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(RepoError::store("read", &key, e)),
        };
        let pointer = LatestPointer::parse(&bytes).map_err(|source| RepoError::Malformed {
            key: key.to_string(),
            source,
        })?;
        if pointer.partition_id != partition {
            return Err(RepoError::Foreign {
                key: key.to_string(),
                reason: format!("it names partition {}", pointer.partition_id),
            });
        }
        Ok(Some(VersionedPointer { pointer, version }))
    }

    /// Replaces `latest.json` if it is still at `expected` (`None`: if it
    /// does not exist yet). Returns [`RepoError::Conflict`] if another writer
    /// got there first; the caller re-reads and decides again.
    pub async fn swap_pointer(
        &self,
        expected: Option<&UpdateVersion>,
        pointer: &LatestPointer,
    ) -> Result<UpdateVersion, RepoError> {
        let key = self.layout.latest(pointer.partition_id);
        let payload = PutPayload::from(pointer.to_json());
        if let Some(root) = &self.local_root {
            return local::swap(root, &key, expected, pointer.to_json()).await;
        }
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v.clone()),
        };
        match self.store.put_opts(&key, payload, mode.into()).await {
            Ok(r) => Ok(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            }),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Err(RepoError::Conflict {
                key: key.to_string(),
            }),
            Err(object_store::Error::NotImplemented { .. }) => Err(RepoError::NoCompareAndSwap {
                store: self.display.clone(),
            }),
            Err(e) => Err(RepoError::store("replace", &key, e)),
        }
    }

    /// Checks that the store honours conditional writes, without which the
    /// compare-and-swap of `latest.json` would be a blind overwrite: a probe
    /// object is created, created again (which must fail), replaced at a
    /// wrong version (which must fail), and deleted. A local directory needs
    /// no probe: its swap runs under rocksnap's own lock. Writers run this
    /// once at start; `rocksnap snapshot` and `rocksnap node` do.
    pub async fn check_conditional_writes(&self) -> Result<(), RepoError> {
        if self.local_root.is_some() {
            return Ok(());
        }
        let key = self
            .layout
            .prefix()
            .clone()
            .join(format!(".rocksnap-cas-probe-{}", ulid::Ulid::new()).as_str());
        let create = || {
            self.store.put_opts(
                &key,
                PutPayload::from_static(b"probe"),
                PutOptions::from(PutMode::Create),
            )
        };
        let refused = |what: &str| RepoError::NoConditionalWrites {
            store: self.display.clone(),
            what: what.to_string(),
        };
        let first = create()
            .await
            .map_err(|e| RepoError::store("write", &key, e))?;
        let result = async {
            match create().await {
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Ok(_) => {
                    return Err(refused(
                        "a second create-only write (If-None-Match: *) of one key succeeded",
                    ))
                }
                Err(e) => return Err(RepoError::store("write", &key, e)),
            }
            let stale = UpdateVersion {
                e_tag: Some(format!("\"{}\"", ulid::Ulid::new())),
                version: None,
            };
            match self
                .store
                .put_opts(
                    &key,
                    PutPayload::from_static(b"probe"),
                    PutOptions::from(PutMode::Update(stale)),
                )
                .await
            {
                Err(object_store::Error::Precondition { .. }) => Ok(()),
                Err(object_store::Error::NotImplemented { .. }) => {
                    Err(RepoError::NoCompareAndSwap {
                        store: self.display.clone(),
                    })
                }
                Ok(_) => Err(refused(
                    "a write at a version the object does not have (If-Match) succeeded",
                )),
                Err(e) => Err(RepoError::store("write", &key, e)),
            }
        }
        .await;
        drop(first);
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(%key, error = %e, "cannot delete the conditional-write probe");
        }
        result
    }

    /// Writes `metadata.json` create-only: a snapshot's metadata is written once.
    pub async fn put_metadata(&self, meta: &SnapshotMetadata) -> Result<(), RepoError> {
        let key = self.layout.metadata(meta.partition_id, &meta.path());
        let json = meta.to_json();
        let payload = PutPayload::from(json.clone());
        let put = self
            .retry
            .run("write metadata.json", || {
                self.store
                    .put_opts(&key, payload.clone(), PutOptions::from(PutMode::Create))
            })
            .await;
        match put {
            Ok(_) => Ok(()),
            // The key holds a fresh snapshot id, so an existing object is
            // either an earlier attempt of this very write that landed
            // without an answer (ours, or the store client's own retry), or
            // someone else's: its bytes tell which.
            Err(object_store::Error::AlreadyExists { .. }) => match self.get_bytes(&key).await {
                Ok(found) if found == json => Ok(()),
                Ok(_) => Err(RepoError::Conflict {
                    key: key.to_string(),
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(RepoError::store("write", &key, e)),
        }
    }

    /// Writes or renews a snapshot's lease (see [`Lease`]).
    pub async fn put_lease(&self, lease: &Lease) -> Result<(), RepoError> {
        let key = self.layout.lease(lease.partition_id, lease.snapshot_id);
        let json = lease.to_json();
        self.retry
            .run("write a lease", || async {
                match self.local_files() {
                    // In a local directory, without the folder fsyncs a
                    // lease does not need (see `local::put_lease`).
                    Some(root) => local::put_lease(root, &key, json.clone())
                        .await
                        .map_err(|e| local_error(&key, e)),
                    None => self
                        .store
                        .put_opts(
                            &key,
                            PutPayload::from(json.clone()),
                            PutOptions::from(PutMode::Overwrite),
                        )
                        .await
                        .map(drop),
                }
            })
            .await
            .map_err(|e| RepoError::store("write", &key, e))
    }

    /// Deletes `keys`, as few requests as the store allows: `object_store`
    /// sends a batch as one request where the store has one for it (S3), and
    /// one per key elsewhere. A key already gone counts as deleted. Nothing
    /// is looked at again first: keys are never reused (each names the
    /// snapshot that wrote it), so a caller that decided on an object decided
    /// on that object.
    pub async fn delete_objects(&self, keys: &[Path]) -> Result<(), RepoError> {
        for batch in keys.chunks(DELETE_BATCH) {
            self.retry
                .run("delete", || async {
                    let batch: Vec<Path> = batch.to_vec();
                    let paths = futures::stream::iter(batch.into_iter().map(Ok)).boxed();
                    let mut deleted = self.store.delete_stream(paths);
                    while let Some(result) = deleted.next().await {
                        match result {
                            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(|source| RepoError::Store {
                    op: "delete",
                    key: match batch.len() {
                        1 => batch[0].to_string(),
                        n => format!("{} and {} more", batch[0], n - 1),
                    },
                    source,
                })?;
        }
        Ok(())
    }

    /// Deletes a snapshot's lease once the snapshot is published or given up.
    pub async fn delete_lease(
        &self,
        partition: PartitionId,
        id: SnapshotId,
    ) -> Result<(), RepoError> {
        let key = self.layout.lease(partition, id);
        match self
            .retry
            .run("delete a lease", || async {
                match self.local_files() {
                    Some(root) => local::delete_lease(root, &key)
                        .await
                        .map_err(|e| local_error(&key, e)),
                    None => self.store.delete(&key).await,
                }
            })
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(RepoError::store("delete", &key, e)),
        }
    }

    /// Every lease of a partition, by the snapshot id its key names; a lease
    /// that cannot be read or parsed comes with its error.
    pub async fn read_leases(
        &self,
        partition: PartitionId,
    ) -> Result<Vec<(SnapshotId, Result<Lease, RepoError>)>, RepoError> {
        let dir = self.layout.leases_dir(partition);
        let listed: Vec<_> = self
            .retry
            .run("list leases", || {
                self.store.list(Some(&dir)).try_collect::<Vec<_>>()
            })
            .await
            .map_err(|e| RepoError::store("list", &dir, e))?;
        let mut leases = Vec::with_capacity(listed.len());
        for object in listed {
            let Some(name) = object.location.filename() else {
                continue;
            };
            let Some(id) = crate::format::owner(&format!("{LEASES}/{name}")) else {
                continue;
            };
            let lease = match self.get_bytes(&object.location).await {
                Ok(bytes) => Lease::parse(&bytes, name).map_err(|source| RepoError::Malformed {
                    key: object.location.to_string(),
                    source,
                }),
                Err(e) => Err(e),
            };
            leases.push((id, lease));
        }
        Ok(leases)
    }

    /// Reads and checks a snapshot's `metadata.json`.
    pub async fn read_metadata(
        &self,
        partition: PartitionId,
        folder: &str,
    ) -> Result<SnapshotMetadata, RepoError> {
        let key = self.layout.metadata(partition, folder);
        let bytes = self.get_bytes(&key).await?;
        let meta = SnapshotMetadata::parse(&bytes).map_err(|source| RepoError::Malformed {
            key: key.to_string(),
            source,
        })?;
        if meta.partition_id != partition
            || !crate::format::names_snapshot(folder, meta.min_applied_lsn, meta.snapshot_id)
        {
            return Err(RepoError::Foreign {
                key: key.to_string(),
                reason: format!(
                    "it describes partition {} folder {}",
                    meta.partition_id,
                    meta.path()
                ),
            });
        }
        Ok(meta)
    }

    /// Reads a whole object.
    pub async fn get_bytes(&self, key: &Path) -> Result<Bytes, RepoError> {
        self.retry
            .run("read", || async {
                self.store.get(key).await?.bytes().await
            })
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => RepoError::Missing {
                    key: key.to_string(),
                },
                e => RepoError::store("read", key, e),
            })
    }

    /// The partitions that have a folder in the repository, in order.
    pub async fn list_partitions(&self) -> Result<Vec<PartitionId>, RepoError> {
        let prefix = self.layout.prefix();
        let listing = self
            .retry
            .run("list", || self.store.list_with_delimiter(Some(prefix)))
            .await
            .map_err(|e| RepoError::store("list", prefix, e))?;
        let mut ids: Vec<PartitionId> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The snapshot folders of a partition, oldest first (by LSN, then id).
    pub async fn list_snapshots(
        &self,
        partition: PartitionId,
    ) -> Result<Vec<SnapshotFolder>, RepoError> {
        let dir = self.layout.partition_dir(partition);
        let listing = self
            .retry
            .run("list", || self.store.list_with_delimiter(Some(&dir)))
            .await
            .map_err(|e| RepoError::store("list", &dir, e))?;
        let names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .map(str::to_string)
            .collect();
        Ok(self.snapshot_folders(partition, names).await)
    }

    /// The snapshot folders among `names` (names of folders of the
    /// partition, from a listing), oldest first (by LSN, then id).
    pub(crate) async fn snapshot_folders(
        &self,
        partition: PartitionId,
        names: impl IntoIterator<Item = String>,
    ) -> Vec<SnapshotFolder> {
        let mut folders: Vec<SnapshotFolder> = Vec::new();
        for name in names {
            let name = name.as_str();
            if let Some((lsn, snapshot_id)) = parse_snapshot_folder(name) {
                folders.push(SnapshotFolder {
                    name: name.to_string(),
                    lsn,
                    snapshot_id,
                });
            } else if let Some(lsn) = crate::format::parse_seed_folder(name) {
                // The seed's folders carry no id: their metadata has it.
                match self.read_metadata(partition, name).await {
                    Ok(meta) if meta.min_applied_lsn == lsn => folders.push(SnapshotFolder {
                        name: name.to_string(),
                        lsn,
                        snapshot_id: meta.snapshot_id,
                    }),
                    Ok(_) => {
                        tracing::warn!(folder = name, "its metadata names another LSN; left out")
                    }
                    Err(e) => {
                        tracing::warn!(folder = name, error = %e, "cannot read its metadata; left out")
                    }
                }
            }
        }
        folders.sort_by_key(|f| (f.lsn, f.snapshot_id));
        folders
    }

    /// The newest `limit` snapshot folders of a partition (every one with
    /// `None`), oldest first, each with its metadata as read, and how many
    /// older folders were left out. One listing (a request per 1 000
    /// folders on S3) and one read per folder shown, 16 at a time: a view
    /// of a bucket of 100 000 snapshots costs what a view of 20 does.
    pub async fn newest_snapshots(
        &self,
        partition: PartitionId,
        limit: Option<usize>,
    ) -> Result<(Vec<DescribedSnapshot>, usize), RepoError> {
        let mut folders = self.list_snapshots(partition).await?;
        let older = folders.len().saturating_sub(limit.unwrap_or(usize::MAX));
        folders.drain(..older);
        let reads: Vec<_> = folders
            .into_iter()
            .map(|folder| self.describe(partition, folder))
            .collect();
        let described = futures::stream::iter(reads).buffered(16).collect().await;
        Ok((described, older))
    }

    async fn describe(&self, partition: PartitionId, folder: SnapshotFolder) -> DescribedSnapshot {
        let metadata = self.read_metadata(partition, &folder.name).await;
        DescribedSnapshot { folder, metadata }
    }

    /// The LSN up to which the host may trim its log: that of the oldest
    /// complete snapshot the repository keeps, so that a restore, even one
    /// that falls back to an older snapshot, finds the log it needs.
    pub async fn safe_trim_point(&self, partition: PartitionId) -> Result<Option<Lsn>, RepoError> {
        let pointer = self.read_pointer(partition).await?;
        self.safe_trim_point_with(partition, pointer.as_ref().map(|p| &p.pointer))
            .await
    }

    /// [`Self::safe_trim_point`] for a caller that has just read the pointer.
    pub async fn safe_trim_point_with(
        &self,
        partition: PartitionId,
        pointer: Option<&LatestPointer>,
    ) -> Result<Option<Lsn>, RepoError> {
        // A V2 pointer lists what is kept.
        if let Some(oldest) = pointer.and_then(|p| p.retained.last()) {
            return Ok(Some(oldest.min_applied_lsn));
        }
        for folder in self.list_snapshots(partition).await? {
            match self.read_metadata(partition, &folder.name).await {
                Ok(meta) => return Ok(Some(meta.min_applied_lsn)),
                Err(
                    RepoError::Missing { .. }
                    | RepoError::Malformed { .. }
                    | RepoError::Foreign { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Every object under a snapshot's folder with its size.
    pub async fn list_objects(
        &self,
        partition: PartitionId,
        folder: &str,
    ) -> Result<Vec<(Path, u64)>, RepoError> {
        let dir = self.layout.snapshot_dir(partition, folder);
        self.store
            .list(Some(&dir))
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await
            .map_err(|e| RepoError::store("list", &dir, e))
    }
}

/// A snapshot folder and what reading its `metadata.json` gave.
#[derive(Debug)]
pub struct DescribedSnapshot {
    /// The folder.
    pub folder: SnapshotFolder,
    /// Its metadata, or why it could not be read (`Missing`: an upload in
    /// progress, or one that failed).
    pub metadata: Result<SnapshotMetadata, RepoError>,
}

/// What went wrong talking to a repository. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A store request failed (after any retries).
    #[error("cannot {op} {key}: {source}")]
    Store {
        /// The operation attempted (`read`, `write`, `replace`, `list`).
        op: &'static str,
        /// The key, or folder for a listing.
        key: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The object does not exist.
    #[error("{key} does not exist")]
    Missing {
        /// Its key.
        key: String,
    },
    /// The object does not parse as the document it should be.
    #[error("{key} is malformed and is left as it is: {source}")]
    Malformed {
        /// Its key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
    /// The document parses but names another partition or folder than the
    /// one it is stored under.
    #[error("{key} does not belong here ({reason}) and is left as it is")]
    Foreign {
        /// Its key.
        key: String,
        /// What it names instead.
        reason: String,
    },
    /// A create-only or compare-and-swap write lost to another writer.
    #[error("{key} was changed by another writer")]
    Conflict {
        /// Its key.
        key: String,
    },
    /// The store does not support conditional puts, so `latest.json` cannot
    /// be replaced safely.
    #[error("{store} cannot replace objects conditionally; configure conditional put (for S3: AWS_CONDITIONAL_PUT=etag)")]
    NoCompareAndSwap {
        /// Where the repository is, as [`Repository::display()`] gives it.
        store: String,
    },
    /// The store ignores conditional writes, so `latest.json` cannot be
    /// replaced safely.
    #[error("{store} does not honour conditional writes ({what}); two writers would overwrite each other's latest.json, so nothing is written")]
    NoConditionalWrites {
        /// Where the repository is.
        store: String,
        /// What the probe saw.
        what: String,
    },
    /// Another writer held the local pointer's lock for too long.
    #[error("{key} stayed locked by another writer for {waited:?}; is a rocksnap process stuck?")]
    LockTimeout {
        /// The pointer's key.
        key: String,
        /// How long this writer waited.
        waited: std::time::Duration,
    },
    /// The local pointer's lock file could not be taken, or the pointer
    /// not be read or written under it.
    #[error("cannot lock or replace {key}: {source}")]
    Lock {
        /// Key of the object the lock guards.
        key: String,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
}

/// Keys deleted per request where the store deletes many at once (S3's
/// DeleteObjects takes at most 1 000).
const DELETE_BATCH: usize = 1000;

impl RepoError {
    pub(crate) fn store(op: &'static str, key: &Path, source: object_store::Error) -> Self {
        RepoError::Store {
            op,
            key: key.to_string(),
            source,
        }
    }
}

/// A local filesystem's error as the store's error: a refused permission as
/// such (retrying it cannot help), anything else as `object_store`'s own
/// local store reports one it has no better name for.
fn local_error(key: &Path, source: std::io::Error) -> object_store::Error {
    match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            object_store::Error::PermissionDenied {
                path: key.to_string(),
                source: Box::new(source),
            }
        }
        _ => object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        },
    }
}
