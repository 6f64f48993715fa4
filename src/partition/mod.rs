//! The partition store: one RocksDB database, one column family per partition.
//!
//! A partition `N` lives in the column family `data-N`. The host tells
//! rocksnap the LSN each write applies; it is stored under a reserved key in
//! the partition's own column family, in the same write batch as the data it
//! covers, so an export of the column family always carries the LSN that
//! matches its contents.

mod error;
pub(crate) mod intent;
mod recovery;

pub use error::PartitionError;
pub use intent::RestoreIntent;
pub use recovery::Recovery;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rocksdb::{AsColumnFamilyRef, BoundColumnFamily, Options, WriteBatch, DB};

use crate::ffi::{self, ExportedColumnFamily, ImportFile, OwnedColumnFamily};
use crate::format::{Lsn, PartitionId};

/// The reserved key under which a partition's applied LSN is stored (8 bytes,
/// big-endian). Host keys must not start with two zero bytes followed by `rocksnap`.
pub const APPLIED_LSN_KEY: &[u8] = b"\x00\x00rocksnap/applied_lsn";

/// A key and its value.
pub type Entry = (Box<[u8]>, Box<[u8]>);

/// Column family name of a partition.
pub fn cf_name(partition: PartitionId) -> String {
    format!("data-{partition}")
}

/// A RocksDB database holding partitions.
#[derive(Clone)]
pub struct PartitionStore {
    db: Arc<DB>,
    path: PathBuf,
    /// Column families imported through this store, which the `rocksdb`
    /// crate learns of only when the database is opened again.
    imported: Arc<RwLock<HashMap<String, Arc<OwnedColumnFamily>>>>,
    /// One gate per column family: writes and exports pass it shared, a
    /// swap of the column family (a fast-forward) holds it alone.
    gates: Arc<Mutex<HashMap<String, Arc<RwLock<()>>>>>,
    /// Records applied through this handle, per partition, for snapshot policies.
    applied: Arc<Mutex<HashMap<PartitionId, u64>>>,
}

impl std::fmt::Debug for PartitionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStore")
            .field("path", &self.path)
            .finish()
    }
}

impl PartitionStore {
    /// Opens (or creates) the database at `path` with every column family it
    /// already has, and creates the column families of `partitions` that are missing.
    ///
    /// A restore that was interrupted is finished (or rolled back) first, and
    /// stale staging directories are removed (see [`Self::recover`]): a
    /// partition whose restore died half-way is never created empty.
    pub fn open(path: &Path, partitions: &[PartitionId]) -> Result<Self, PartitionError> {
        let store = Self::open_existing_or_new(path)?.recovered()?;
        for &p in partitions {
            store.create_partition(p)?;
        }
        Ok(store)
    }

    /// Opens an existing database with all its column families; never creates one.
    pub fn open_existing(path: &Path) -> Result<Self, PartitionError> {
        if !path.join("CURRENT").is_file() {
            return Err(PartitionError::NoDatabase(path.to_path_buf()));
        }
        Self::open_existing_or_new(path)?.recovered()
    }

    fn open_existing_or_new(path: &Path) -> Result<Self, PartitionError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = if path.join("CURRENT").is_file() {
            DB::list_cf(&opts, path).map_err(|e| PartitionError::rocks(path, e))?
        } else {
            vec![]
        };
        let db = DB::open_cf(&opts, path, cfs).map_err(|e| PartitionError::rocks(path, e))?;
        Ok(PartitionStore {
            db: Arc::new(db),
            path: path.to_path_buf(),
            applied: Arc::default(),
            imported: Arc::default(),
            gates: Arc::default(),
        })
    }

    /// Wraps a database the host already opened.
    pub fn from_db(db: Arc<DB>) -> Self {
        let path = db.path().to_path_buf();
        PartitionStore {
            db,
            path,
            applied: Arc::default(),
            imported: Arc::default(),
            gates: Arc::default(),
        }
    }

    /// The underlying RocksDB handle.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A column family's handle: one this store imported, or the crate's.
    fn cf(&self, name: &str) -> Option<Cf<'_>> {
        if let Some(own) = self.imported.read().expect("not poisoned").get(name) {
            return Some(Cf::Imported(own.clone()));
        }
        self.db.cf_handle(name).map(Cf::Crate)
    }

    /// The gate of a column family (see the `gates` field).
    pub(crate) fn gate(&self, cf: &str) -> Arc<RwLock<()>> {
        self.gates
            .lock()
            .expect("not poisoned")
            .entry(cf.to_string())
            .or_default()
            .clone()
    }

    /// Creates the partition's column family if it is missing.
    pub fn create_partition(&self, partition: PartitionId) -> Result<(), PartitionError> {
        let name = cf_name(partition);
        if !self.has_column_family(&name) {
            self.db
                .create_cf(&name, &Options::default())
                .map_err(|e| PartitionError::rocks(&self.path, e))?;
        }
        Ok(())
    }

    /// Whether this handle knows a column family named `name`.
    pub fn has_column_family(&self, name: &str) -> bool {
        self.cf(name).is_some()
    }

    /// Applies `records` to a partition together with the LSN they bring it
    /// to, atomically: a reader (or an export) sees both or neither. While
    /// the partition is being fast-forwarded, it waits for the swap; a write
    /// whose LSN is below the partition's (as after a fast-forward) is
    /// refused with [`PartitionError::Behind`], and the host resumes its log
    /// after the partition's LSN.
    pub fn apply<K, V>(
        &self,
        partition: PartitionId,
        lsn: Lsn,
        records: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), PartitionError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let name = cf_name(partition);
        let gate = self.gate(&name);
        let _shared = gate.read().expect("not poisoned");
        let cf = self
            .cf(&name)
            .ok_or(PartitionError::UnknownPartition(partition))?;
        // Checked under the gate: after a fast-forward, a write the host
        // meant for the partition as it was is refused, not applied on top.
        if let Some(applied) = self.lsn_of(&name, &cf)? {
            if lsn < applied {
                return Err(PartitionError::Behind {
                    partition,
                    applied,
                    lsn,
                });
            }
        }
        let mut batch = WriteBatch::default();
        let mut count = 0;
        for (k, v) in records {
            batch.put_cf(&cf, k, v);
            count += 1;
        }
        batch.put_cf(&cf, APPLIED_LSN_KEY, lsn.0.to_be_bytes());
        self.db
            .write(batch)
            .map_err(|e| PartitionError::rocks(&self.path, e))?;
        *self
            .applied
            .lock()
            .expect("not poisoned")
            .entry(partition)
            .or_default() += count;
        Ok(())
    }

    /// Records applied to a partition through this handle since it was opened.
    pub fn applied_records(&self, partition: PartitionId) -> u64 {
        self.applied
            .lock()
            .expect("not poisoned")
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a column family holds any key at all.
    pub fn has_keys(&self, cf: &str) -> Result<bool, PartitionError> {
        let handle = self
            .cf(cf)
            .ok_or_else(|| PartitionError::UnknownColumnFamily(cf.to_string()))?;
        match self
            .db
            .iterator_cf(&handle, rocksdb::IteratorMode::Start)
            .next()
        {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(PartitionError::rocks(&self.path, e)),
        }
    }

    /// Every key and value of a column family, in key order. For checks and
    /// small partitions: it holds the whole column family in memory.
    pub fn entries(&self, cf: &str) -> Result<Vec<Entry>, PartitionError> {
        let handle = self
            .cf(cf)
            .ok_or_else(|| PartitionError::UnknownColumnFamily(cf.to_string()))?;
        self.db
            .iterator_cf(&handle, rocksdb::IteratorMode::Start)
            .collect::<Result<_, _>>()
            .map_err(|e| PartitionError::rocks(&self.path, e))
    }

    /// Exports a column family into `dir` (which must not exist) with
    /// RocksDB's checkpoint export: SST files hard-linked when `dir` is on the
    /// database's filesystem, and RocksDB's description of each.
    pub fn export_column_family(
        &self,
        cf: &str,
        dir: &Path,
    ) -> Result<ExportedColumnFamily, PartitionError> {
        let gate = self.gate(cf);
        let _shared = gate.read().expect("not poisoned");
        self.export_ungated(cf, dir)
    }

    /// [`Self::export_column_family`] for a caller that holds the gate.
    pub(crate) fn export_ungated(
        &self,
        cf: &str,
        dir: &Path,
    ) -> Result<ExportedColumnFamily, PartitionError> {
        let handle = self
            .cf(cf)
            .ok_or_else(|| PartitionError::UnknownColumnFamily(cf.to_string()))?;
        ffi::export_column_family(&self.db, &handle, dir).map_err(|e| PartitionError::Export {
            cf: cf.to_string(),
            reason: e.to_string(),
        })
    }

    /// Creates column family `cf` from SST files, moving them into the
    /// database; with no files, an empty column family. This store sees it
    /// at once; the `rocksdb` crate's own `cf_handle` only once the database
    /// is opened again, so a host reaches it through this store.
    pub fn import_column_family(
        &self,
        cf: &str,
        comparator: &str,
        files: &[ImportFile],
    ) -> Result<(), PartitionError> {
        if files.is_empty() {
            return self
                .db
                .create_cf(cf, &Options::default())
                .map_err(|e| PartitionError::rocks(&self.path, e));
        }
        let handle = ffi::import_column_family(&self.db, cf, comparator, files).map_err(|e| {
            PartitionError::Import {
                cf: cf.to_string(),
                reason: e.to_string(),
            }
        })?;
        self.imported
            .write()
            .expect("not poisoned")
            .insert(cf.to_string(), Arc::new(handle));
        Ok(())
    }

    /// Drops a column family and its data.
    pub fn drop_column_family(&self, cf: &str) -> Result<(), PartitionError> {
        let imported = self.imported.write().expect("not poisoned").remove(cf);
        match imported {
            Some(own) => own
                .drop_column_family()
                .map_err(|e| PartitionError::Import {
                    cf: cf.to_string(),
                    reason: format!("cannot drop it: {e}"),
                }),
            None => self
                .db
                .drop_cf(cf)
                .map_err(|e| PartitionError::rocks(&self.path, e)),
        }
    }

    /// The LSN stored in a column family, if the host ever reported one.
    pub fn applied_lsn(&self, cf: &str) -> Result<Option<Lsn>, PartitionError> {
        let handle = self
            .cf(cf)
            .ok_or_else(|| PartitionError::UnknownColumnFamily(cf.to_string()))?;
        self.lsn_of(cf, &handle)
    }

    fn lsn_of(&self, cf: &str, handle: &Cf<'_>) -> Result<Option<Lsn>, PartitionError> {
        let raw = self
            .db
            .get_cf(handle, APPLIED_LSN_KEY)
            .map_err(|e| PartitionError::rocks(&self.path, e))?;
        match raw {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] =
                    v.as_slice()
                        .try_into()
                        .map_err(|_| PartitionError::CorruptLsn {
                            cf: cf.to_string(),
                            len: v.len(),
                        })?;
                Ok(Some(Lsn(u64::from_be_bytes(bytes))))
            }
        }
    }
}

/// A column family's handle: the `rocksdb` crate's, or one this store
/// imported.
enum Cf<'a> {
    Crate(Arc<BoundColumnFamily<'a>>),
    Imported(Arc<OwnedColumnFamily>),
}

impl AsColumnFamilyRef for Cf<'_> {
    fn inner(&self) -> *mut librocksdb_sys::rocksdb_column_family_handle_t {
        match self {
            Cf::Crate(cf) => cf.inner(),
            Cf::Imported(cf) => cf.inner(),
        }
    }
}
