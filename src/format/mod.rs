//! The snapshot repository format: object keys and the two JSON documents.
//!
//! This is the only module that knows how a repository is laid out. Everything
//! else asks it for keys and hands it bytes to parse, so a change to the layout
//! is a change here and nowhere else. The layout is documented in `FORMAT.md`
//! at the root of the repository:
//!
//! ```text
//! [prefix/]<partition_id>/latest.json
//! [prefix/]<partition_id>/lsn_<min_applied_lsn:020>-<snapshot_id>/metadata.json
//! [prefix/]<partition_id>/lsn_<min_applied_lsn:020>-<snapshot_id>/<file>.sst
//! ```
//!
//! Format V2 adds shared SST files, uploaded once and referenced by every
//! snapshot that contains them, and a retained-snapshot list in the pointer:
//!
//! ```text
//! [prefix/]<partition_id>/ssts/<identity>-<snapshot_id>.sst
//! ```
//!
//! Snapshots in progress hold leases (`[prefix/]<partition_id>/leases/`),
//! described in [`Lease`].
//!
//! Everything read from a repository is untrusted: parsing refuses unknown
//! versions, and file names are checked to be plain names before any key or
//! local path is derived from them.
//!
//! Longer than most files here on purpose: the bucket format lives in this
//! one module, which every other module calls, so that keys are built and
//! untrusted documents checked in one place.

mod id;
mod lease;

pub use id::{IdEncoding, SnapshotId};
pub use lease::{lease_name, owner, shared_key, shared_name, Lease, LEASES};

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

/// Name of the pointer object in a partition's folder.
pub const LATEST: &str = "latest.json";
/// Name of the metadata object in a snapshot's folder.
pub const METADATA: &str = "metadata.json";
/// Folder of a partition's shared SST files (format V2).
pub const SHARED: &str = "ssts";
/// The checksum algorithm written next to every file.
pub const CHECKSUM_ALGORITHM: &str = "crc32c";

/// Identifies a partition of the host system; one column family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub u64);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PartitionId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(PartitionId)
    }
}

/// A position in the host's log. A snapshot covers every record up to its LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Versions of the documents this build reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FormatVersion {
    /// Every snapshot holds its own copy of every file.
    #[default]
    V1,
    /// SST files are shared between a partition's snapshots; the pointer
    /// lists the retained snapshots.
    V2,
}

impl FromStr for FormatVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "V1" | "v1" => Ok(FormatVersion::V1),
            "V2" | "v2" => Ok(FormatVersion::V2),
            _ => Err(format!("{s:?} is not a format version (V1 or V2)")),
        }
    }
}

/// Whose documents a repository holds. Both dialects share the layout;
/// they differ in the id encoding, a few fields, and what `version` means.
///
/// A pointer's dialect is told by its fields (a Restate id, `log_id`,
/// `cluster_fingerprint`), never by its version string: both say "V2" and
/// mean different things (Restate's V2 is a `retained_snapshots` list,
/// rocksnap's V2 is shared `ssts/` files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// rocksnap's own: ULID ids, `retained`, V1 or V2 snapshots.
    #[default]
    Rocksnap,
    /// What a Restate v1.7 node reads: base62 ids, `metadata.json` V1 with
    /// every file in the snapshot's folder and a `log_id`, `latest.json` V2
    /// with `log_id` and `retained_snapshots`. rocksnap's per-file
    /// checksums ride along as fields Restate ignores.
    Restate,
}

impl Dialect {
    /// How the dialect writes snapshot ids.
    pub fn id_encoding(self) -> IdEncoding {
        match self {
            Dialect::Rocksnap => IdEncoding::Ulid,
            Dialect::Restate => IdEncoding::Restate,
        }
    }
}

/// What a writer writes, as an operator names it: `V1`, `V2` (rocksnap's
/// versions) or `restate` (Restate's documents, every file in its
/// snapshot's folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputFormat {
    /// Layout of the snapshots' files.
    pub version: FormatVersion,
    /// Whose documents.
    pub dialect: Dialect,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("restate") {
            return Ok(OutputFormat {
                version: FormatVersion::V1,
                dialect: Dialect::Restate,
            });
        }
        s.parse()
            .map(|version| OutputFormat {
                version,
                dialect: Dialect::Rocksnap,
            })
            .map_err(|_| format!("{s:?} is not a format (V1, V2 or restate)"))
    }
}

impl<'de> Deserialize<'de> for OutputFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The half-open range of partition keys a partition owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// First key of the range (inclusive).
    pub start: u64,
    /// End of the range (exclusive).
    pub end: u64,
}

impl KeyRange {
    /// The range of every key, `0..u64::MAX`.
    pub const FULL: KeyRange = KeyRange {
        start: 0,
        end: u64::MAX,
    };
}

/// One exported SST, as RocksDB's export metadata describes it, plus its
/// checksum. Exactly what column family import needs on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name of the column family the file was exported from.
    pub column_family_name: String,
    /// RocksDB's name for the file, with a leading `/` (`/000603.sst`).
    pub name: String,
    /// Local directory the file was exported to on the snapshotting node.
    pub directory: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// LSM level the file was at in the exported column family.
    pub level: i32,
    /// Smallest key in the file, hex.
    pub start_key: String,
    /// Largest key in the file, hex.
    pub end_key: String,
    /// Smallest RocksDB sequence number in the file.
    pub smallest_seqno: u64,
    /// Largest RocksDB sequence number in the file.
    pub largest_seqno: u64,
    /// Number of entries in the file, as RocksDB reports it.
    pub num_entries: u64,
    /// Number of deletion entries in the file, as RocksDB reports it.
    pub num_deletions: u64,
    /// CRC32C (Castagnoli) of the whole file, as 8 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// V2: the file's identity, which no other file can share: RocksDB's
    /// original file number, the id of the database session that wrote it,
    /// and its size (`<number>-<session>-<size>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// V2: the object key of the file, relative to the partition's folder
    /// (`ssts/<identity>.sst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Encrypted snapshots: how to open the file. `size` and `checksum`
    /// are then the stored (sealed) bytes', and `start_key`/`end_key` are
    /// empty: the real ones are sealed in here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<FileEncryption>,
}

/// An encrypted file's envelope, as `metadata.json` stores it (see
/// [`crate::crypto`] and `FORMAT.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEncryption {
    /// Id of the key-encryption key in the operator's keyring.
    pub kek_id: String,
    /// The file's data key wrapped with it: base64 of nonce ‖ ciphertext ‖ tag.
    pub wrapped_key: String,
    /// 16 random bytes naming the file in every segment's associated data, hex.
    pub file_id: String,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// Size of the file before sealing (what RocksDB imports).
    pub plaintext_size: u64,
    /// The file's first user key, sealed, base64.
    pub start_key: String,
    /// The file's last user key, sealed, base64.
    pub end_key: String,
}

impl FileEntry {
    /// The file's plain name (`000603.sst`), after checking that it is one:
    /// no separator, no `..`, no NUL, not empty. Names come from an untrusted
    /// repository on restore, so no key or path is built from anything else.
    pub fn file_name(&self) -> Result<&str, FormatError> {
        plain_file_name(&self.name)
    }

    /// The shared object's plain name inside `ssts/`, for a V2 entry; `None`
    /// for a V1 entry, whose object is in the snapshot's folder.
    pub fn shared_name(&self) -> Result<Option<&str>, FormatError> {
        match &self.key {
            None => Ok(None),
            Some(key) => {
                let name = key
                    .strip_prefix(SHARED)
                    .and_then(|k| k.strip_prefix('/'))
                    .ok_or_else(|| FormatError::UnsafeFileName(key.clone()))?;
                plain_file_name(name).map(Some)
            }
        }
    }
}

/// `name` without its one optional leading `/`, if what remains is a plain file name.
pub fn plain_file_name(name: &str) -> Result<&str, FormatError> {
    let plain = name.strip_prefix('/').unwrap_or(name);
    let bad = plain.is_empty()
        || plain == "."
        || plain == ".."
        || plain.contains(['/', '\\', '\0'])
        || plain.chars().any(|c| c.is_control());
    if bad {
        return Err(FormatError::UnsafeFileName(name.to_string()));
    }
    Ok(plain)
}

/// `metadata.json`: written once, after every file it names is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    /// Format version of this document and of the snapshot's layout.
    pub version: FormatVersion,
    /// Name of the cluster the snapshot was taken in.
    pub cluster_name: String,
    /// Restate: the cluster's fingerprint, where the writer knew it
    /// (Restate compares it with its own when both have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_fingerprint: Option<u64>,
    /// Partition the snapshot is of.
    pub partition_id: PartitionId,
    /// Name of the node that took the snapshot.
    pub node_name: String,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// Unique id of the snapshot.
    pub snapshot_id: SnapshotId,
    /// Keys the partition owned when the snapshot was taken.
    pub key_range: KeyRange,
    /// Restate: the log the partition's records come from (written in the
    /// Restate dialect; Restate's first snapshots have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<u64>,
    /// The partition's applied LSN, read before the export started; the
    /// snapshot holds at least every record up to it.
    pub min_applied_lsn: Lsn,
    /// Name of the comparator of the database the files were exported from.
    pub db_comparator_name: String,
    /// Name of the per-file checksum algorithm (`crc32c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// The encryption scheme of every file, if the snapshot is encrypted
    /// ([`crate::crypto::SCHEME`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
    /// Every file of the snapshot.
    pub files: Vec<FileEntry>,
}

impl SnapshotMetadata {
    /// Folder name of this snapshot inside its partition's folder.
    pub fn path(&self) -> String {
        snapshot_folder(self.min_applied_lsn, self.snapshot_id)
    }

    /// Sum of the sizes of the snapshot's files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Parses and checks an untrusted `metadata.json`.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        check_version(bytes)?;
        let meta: SnapshotMetadata =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json(METADATA, e))?;
        let mut names = std::collections::HashSet::new();
        for file in &meta.files {
            if !names.insert(file.file_name()?) {
                return Err(FormatError::DuplicateFileName(file.name.clone()));
            }
            let shared = file.shared_name()?;
            if meta.version == FormatVersion::V2 && shared.is_none() {
                return Err(FormatError::MissingKey(file.name.clone()));
            }
        }
        Ok(meta)
    }

    /// This document as pretty-printed JSON, ready to store.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("metadata serializes")
    }

    /// The dialect the snapshot is written in, told by its id.
    pub fn dialect(&self) -> Dialect {
        match self.snapshot_id.encoding() {
            IdEncoding::Ulid => Dialect::Rocksnap,
            IdEncoding::Restate => Dialect::Restate,
        }
    }

    /// Whether the pointer keeps a list of retained snapshots: rocksnap's
    /// V2, and every pointer in the Restate dialect (Restate's V2).
    pub fn keeps_a_list(&self) -> bool {
        self.version == FormatVersion::V2 || self.dialect() == Dialect::Restate
    }

    /// The pointer that makes this snapshot the partition's latest. In the
    /// Restate dialect it is a Restate V2 pointer, whatever the metadata's
    /// version (Restate's metadata is always V1).
    pub fn pointer(&self) -> LatestPointer {
        let restate = self.dialect() == Dialect::Restate;
        LatestPointer {
            version: if restate {
                FormatVersion::V2
            } else {
                self.version
            },
            partition_id: self.partition_id,
            log_id: self.log_id,
            cluster_name: self.cluster_name.clone(),
            cluster_fingerprint: self.cluster_fingerprint,
            node_name: self.node_name.clone(),
            created_at: self.created_at,
            snapshot_id: self.snapshot_id,
            min_applied_lsn: self.min_applied_lsn,
            path: self.path(),
            retained: if self.keeps_a_list() {
                vec![self.retained_entry()]
            } else {
                Vec::new()
            },
            gc_fence: None,
        }
    }

    /// This snapshot as an entry of a pointer's retained list.
    pub fn retained_entry(&self) -> RetainedSnapshot {
        RetainedSnapshot {
            snapshot_id: self.snapshot_id,
            min_applied_lsn: self.min_applied_lsn,
            created_at: self.created_at,
            path: self.path(),
        }
    }
}

/// `latest.json`: the one object that is ever replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestPointer {
    /// Format version of this document.
    pub version: FormatVersion,
    /// Partition the pointer belongs to.
    pub partition_id: PartitionId,
    /// Restate: the log the partition's records come from (required in
    /// Restate's V2 pointers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<u64>,
    /// Name of the cluster that owns the partition; a pointer of another
    /// cluster is never overwritten. (The seed's pointers have none.)
    #[serde(default)]
    pub cluster_name: String,
    /// Restate: the cluster's fingerprint; kept when rocksnap replaces a
    /// pointer that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_fingerprint: Option<u64>,
    /// Name of the node that took the latest snapshot.
    pub node_name: String,
    /// When the latest snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// Id of the latest snapshot.
    pub snapshot_id: SnapshotId,
    /// The latest snapshot's LSN; it never decreases from one pointer to the next.
    pub min_applied_lsn: Lsn,
    /// Folder of the latest snapshot inside the partition's folder.
    pub path: String,
    /// V2: the snapshots kept, newest first (the latest included). Whatever
    /// they reference is never deleted; the oldest one's LSN is the safe
    /// log-trim point.
    /// Restate's pointers call it `retained_snapshots`.
    #[serde(
        default,
        alias = "retained_snapshots",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub retained: Vec<RetainedSnapshot>,
    /// Set by garbage collection before it collects the objects of a
    /// snapshot whose lease expired: no snapshot whose lease started at or
    /// before this time may be published any more. Never moves back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gc_fence: Option<DateTime<Utc>>,
}

/// A snapshot kept by retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedSnapshot {
    /// Id of the snapshot.
    pub snapshot_id: SnapshotId,
    /// The snapshot's LSN.
    pub min_applied_lsn: Lsn,
    /// When the snapshot was taken.
    pub created_at: DateTime<Utc>,
    /// Folder of the snapshot inside the partition's folder.
    pub path: String,
}

impl RetainedSnapshot {
    /// The folder named by this entry's LSN and id (its `path` must match).
    pub fn folder(&self) -> String {
        snapshot_folder(self.min_applied_lsn, self.snapshot_id)
    }
}

impl LatestPointer {
    /// Whether this is a Restate pointer, told by its fields: a Restate
    /// id, a `log_id` or a `cluster_fingerprint` (never by its version).
    /// Only a snapshot in the Restate dialect is published onto it, and
    /// garbage collection never rewrites it.
    pub fn is_restate(&self) -> bool {
        self.dialect() == Dialect::Restate
    }

    /// The dialect of this pointer (see [`LatestPointer::is_restate`]).
    pub fn dialect(&self) -> Dialect {
        let restate = self.snapshot_id.encoding() == IdEncoding::Restate
            || self.log_id.is_some()
            || self.cluster_fingerprint.is_some();
        if restate {
            Dialect::Restate
        } else {
            Dialect::Rocksnap
        }
    }

    /// The snapshots this pointer keeps, newest first: the retained list of
    /// a V2 pointer, or the one snapshot a V1 pointer names.
    pub fn kept(&self) -> Vec<RetainedSnapshot> {
        if self.retained.is_empty() {
            vec![RetainedSnapshot {
                snapshot_id: self.snapshot_id,
                min_applied_lsn: self.min_applied_lsn,
                created_at: self.created_at,
                path: self.path.clone(),
            }]
        } else {
            self.retained.clone()
        }
    }

    /// Parses and checks an untrusted `latest.json`: its `path` must be the
    /// folder its own LSN and snapshot id name.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        check_version(bytes)?;
        let pointer: LatestPointer =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json(LATEST, e))?;
        if !names_snapshot(&pointer.path, pointer.min_applied_lsn, pointer.snapshot_id) {
            return Err(FormatError::PointerPathMismatch {
                expected: snapshot_folder(pointer.min_applied_lsn, pointer.snapshot_id),
                path: pointer.path,
            });
        }
        for r in &pointer.retained {
            if !names_snapshot(&r.path, r.min_applied_lsn, r.snapshot_id) {
                return Err(FormatError::PointerPathMismatch {
                    path: r.path.clone(),
                    expected: r.folder(),
                });
            }
        }
        Ok(pointer)
    }

    /// This document as pretty-printed JSON, ready to store, in its own
    /// dialect: a Restate pointer names its list `retained_snapshots`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut doc = serde_json::to_value(self).expect("pointer serializes");
        if self.is_restate() {
            let map = doc.as_object_mut().expect("an object");
            if let Some(list) = map.remove("retained") {
                map.insert("retained_snapshots".into(), list);
            }
        }
        serde_json::to_vec_pretty(&doc).expect("pointer serializes")
    }
}

/// Refuses a document whose `version` this build does not know, before the
/// rest is read, so the error says "version" rather than "missing field".
pub(crate) fn check_version(bytes: &[u8]) -> Result<(), FormatError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: serde_json::Value,
    }
    let doc: Versioned =
        serde_json::from_slice(bytes).map_err(FormatError::NotAVersionedDocument)?;
    match doc.version.as_str() {
        Some("V1" | "V2") => Ok(()),
        _ => Err(FormatError::UnknownVersion(doc.version.to_string())),
    }
}

/// `lsn_<lsn:020>-<snapshot_id>`: zero-padded so a plain listing sorts oldest first.
pub fn snapshot_folder(lsn: Lsn, id: SnapshotId) -> String {
    format!("lsn_{:020}-{}", lsn.0, id)
}

/// The folder Restate's first snapshots used: `lsn_<lsn>`, unpadded and
/// without an id (read, never written).
pub fn seed_folder(lsn: Lsn) -> String {
    format!("lsn_{}", lsn.0)
}

/// The LSN of a folder named the seed's way.
pub fn parse_seed_folder(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("lsn_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Whether `folder` is the folder of the snapshot with this LSN and id: its
/// own name, or, for an id in Restate's encoding, the seed's `lsn_<lsn>`.
pub fn names_snapshot(folder: &str, lsn: Lsn, id: SnapshotId) -> bool {
    folder == snapshot_folder(lsn, id)
        || (id.encoding() == IdEncoding::Restate && folder == seed_folder(lsn))
}

/// Parses a snapshot folder name back into its LSN and snapshot id.
pub fn parse_snapshot_folder(name: &str) -> Option<(Lsn, SnapshotId)> {
    let rest = name.strip_prefix("lsn_")?;
    let (lsn, id) = rest.split_once('-')?;
    if lsn.len() != 20 {
        return None;
    }
    Some((Lsn(lsn.parse().ok()?), id.parse().ok()?))
}

/// Keys of one repository: a prefix inside a store.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    prefix: Path,
}

impl Layout {
    /// A layout whose keys all start with `prefix` (empty for the store's root).
    pub fn new(prefix: Path) -> Self {
        Layout { prefix }
    }

    /// The key prefix of the repository.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Folder of a partition: `[prefix/]<partition_id>`.
    pub fn partition_dir(&self, partition: PartitionId) -> Path {
        self.prefix.clone().join(partition.to_string())
    }

    /// Key of a partition's `latest.json`.
    pub fn latest(&self, partition: PartitionId) -> Path {
        self.partition_dir(partition).join(LATEST)
    }

    /// Folder of a snapshot; `folder` is its name from [`snapshot_folder`].
    pub fn snapshot_dir(&self, partition: PartitionId, folder: &str) -> Path {
        self.partition_dir(partition).join(folder)
    }

    /// Key of a snapshot's `metadata.json`.
    pub fn metadata(&self, partition: PartitionId, folder: &str) -> Path {
        self.snapshot_dir(partition, folder).join(METADATA)
    }

    /// Key of a snapshot's file; `name` must already be a checked plain name.
    pub fn file(&self, partition: PartitionId, folder: &str, name: &str) -> Path {
        self.snapshot_dir(partition, folder).join(name)
    }

    /// Key of a shared SST (V2); `name` must already be a checked plain name.
    pub fn shared(&self, partition: PartitionId, name: &str) -> Path {
        self.partition_dir(partition).join(SHARED).join(name)
    }

    /// Folder of a partition's leases.
    pub fn leases_dir(&self, partition: PartitionId) -> Path {
        self.partition_dir(partition).join(LEASES)
    }

    /// Key of a snapshot's lease.
    pub fn lease(&self, partition: PartitionId, id: SnapshotId) -> Path {
        self.leases_dir(partition).join(lease_name(id))
    }

    /// Where an entry's object is: its shared key (V2) or its snapshot's folder (V1).
    pub fn object(
        &self,
        partition: PartitionId,
        folder: &str,
        entry: &FileEntry,
    ) -> Result<Path, FormatError> {
        match entry.shared_name()? {
            Some(name) => Ok(self.shared(partition, name)),
            None => Ok(self.file(partition, folder, entry.file_name()?)),
        }
    }
}

/// What is wrong with a document or a name read from a repository.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes are not JSON, or have no `version` field.
    #[error("not a versioned JSON document: {0}")]
    NotAVersionedDocument(#[source] serde_json::Error),
    /// The document's `version` is not one this build reads.
    #[error("unknown format version {0} (this build reads \"V1\" and \"V2\")")]
    UnknownVersion(String),
    /// The named document (`latest.json` or `metadata.json`) does not parse.
    #[error("malformed {0}: {1}")]
    Json(&'static str, #[source] serde_json::Error),
    /// A file name or object key that is not a plain file name.
    #[error("file name {0:?} is not a plain file name")]
    UnsafeFileName(String),
    /// Two file entries of one snapshot have the same name.
    #[error("file name {0:?} appears twice")]
    DuplicateFileName(String),
    /// A file entry of a V2 snapshot without its shared object key.
    #[error("file {0:?} of a V2 snapshot has no object key")]
    MissingKey(String),
    /// A string that is not `snap_` followed by a ULID, or Restate's
    /// `snap_1` followed by 22 base62 digits.
    #[error(
        "{0:?} is not a snapshot id (expected snap_<ULID> or Restate's snap_1<22 base62 digits>)"
    )]
    BadSnapshotId(String),
    /// A pointer's (or retained entry's) `path` is not the folder its LSN
    /// and snapshot id name.
    #[error(
        "pointer path {path:?} does not match its LSN and snapshot id (expected {expected:?})"
    )]
    PointerPathMismatch {
        /// The path the document gives.
        path: String,
        /// The folder its LSN and snapshot id name.
        expected: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_round_trips_and_sorts_by_lsn() {
        let a = SnapshotId::new();
        let name = snapshot_folder(Lsn(96), a);
        assert_eq!(name.len(), "lsn_".len() + 20 + 1 + "snap_".len() + 26);
        assert_eq!(parse_snapshot_folder(&name), Some((Lsn(96), a)));
        assert!(snapshot_folder(Lsn(9), a) < snapshot_folder(Lsn(10), a));
        assert_eq!(parse_snapshot_folder("lsn_96-snap_x"), None);
    }

    #[test]
    fn file_names_must_be_plain() {
        assert_eq!(plain_file_name("/000603.sst").unwrap(), "000603.sst");
        assert_eq!(plain_file_name("000603.sst").unwrap(), "000603.sst");
        for bad in [
            "../escape.sst",
            "/..",
            "a/b.sst",
            "//etc/passwd",
            "",
            "/",
            "x\0.sst",
            "..\\x",
        ] {
            assert!(plain_file_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_file_named_twice_is_refused() {
        let entry = serde_json::json!({
            "column_family_name": "", "name": "/000001.sst", "directory": "/x", "size": 1,
            "level": 0, "start_key": "", "end_key": "", "smallest_seqno": 0,
            "largest_seqno": 0, "num_entries": 0, "num_deletions": 0
        });
        let doc = serde_json::json!({
            "version": "V1", "cluster_name": "c", "partition_id": 1, "node_name": "n",
            "created_at": "2026-11-27T10:00:00Z", "snapshot_id": format!("{}", SnapshotId::new()),
            "key_range": {"start": 0, "end": 1}, "min_applied_lsn": 1,
            "db_comparator_name": "leveldb.BytewiseComparator", "files": [entry.clone(), entry]
        });
        let err = SnapshotMetadata::parse(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    #[test]
    fn a_pointer_dialect_is_told_by_its_fields_not_its_version() {
        let id = SnapshotId::new();
        let pointer = |extra: serde_json::Value, id: SnapshotId| {
            let mut doc = serde_json::json!({
                "version": "V2", "partition_id": 1, "cluster_name": "c", "node_name": "n",
                "created_at": "2026-11-27T10:00:00Z", "snapshot_id": id.to_string(),
                "min_applied_lsn": 5, "path": snapshot_folder(Lsn(5), id),
            });
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            LatestPointer::parse(&serde_json::to_vec(&doc).unwrap()).unwrap()
        };
        let entry = |id: SnapshotId| {
            serde_json::json!([{ "snapshot_id": id.to_string(), "min_applied_lsn": 5,
                "created_at": "2026-11-27T10:00:00Z", "path": snapshot_folder(Lsn(5), id) }])
        };
        // rocksnap's V2: its list is `retained`, and it is rocksnap's.
        let ours = pointer(serde_json::json!({ "retained": entry(id) }), id);
        assert_eq!(ours.dialect(), Dialect::Rocksnap);
        assert_eq!(ours.kept().len(), 1);
        // Restate's V2, told by its log_id (even with a ULID id) or its id.
        let theirs = pointer(
            serde_json::json!({ "log_id": 1, "retained_snapshots": entry(id) }),
            id,
        );
        assert_eq!(theirs.dialect(), Dialect::Restate);
        assert_eq!(theirs.kept().len(), 1, "retained_snapshots read");
        let restate_id = id.encoded(IdEncoding::Restate);
        assert!(pointer(serde_json::json!({}), restate_id).is_restate());
        // Written back in its own dialect: Restate's list keeps its name.
        let doc: serde_json::Value = serde_json::from_slice(&theirs.to_json()).unwrap();
        assert!(doc.get("retained").is_none() && doc["retained_snapshots"].is_array());
        let doc: serde_json::Value = serde_json::from_slice(&ours.to_json()).unwrap();
        assert!(doc.get("retained_snapshots").is_none() && doc["retained"].is_array());
    }

    #[test]
    fn output_formats_parse() {
        assert_eq!(
            "restate".parse::<OutputFormat>().unwrap(),
            OutputFormat {
                version: FormatVersion::V1,
                dialect: Dialect::Restate
            }
        );
        assert_eq!(
            "V2".parse::<OutputFormat>().unwrap().dialect,
            Dialect::Rocksnap
        );
        assert!("V3"
            .parse::<OutputFormat>()
            .unwrap_err()
            .contains("restate"));
    }

    #[test]
    fn unknown_version_is_refused_by_name() {
        let err = LatestPointer::parse(br#"{"version":"V9"}"#).unwrap_err();
        assert!(err.to_string().contains("V9"), "{err}");
        assert!(LatestPointer::parse(b"{not json").is_err());
    }
}
