//! The one place rocksnap calls RocksDB's C API directly.
//!
//! The `rocksdb` crate does not wrap column family export and import, so this
//! module calls `rocksdb_checkpoint_export_column_family` and
//! `rocksdb_create_column_family_with_import` through `librocksdb-sys` with
//! the raw handles the crate's `raw-ptr` feature exposes, and copies every
//! result into owned Rust values before anything else sees it. The C API
//! cannot build an import's file list nor read an SST's entries with their
//! sequence numbers; `shim.cc` (compiled by `build.rs` against the same
//! RocksDB headers) adds those two functions.
//!
//! # Safety argument
//!
//! * The `rocksdb_t` and column family pointers come from a `&DB` and a
//!   `&impl AsColumnFamilyRef` borrowed for the whole call, so the database
//!   and the handle outlive every use of the pointers. RocksDB's checkpoint
//!   and export are thread-safe against concurrent reads and writes.
//! * Every object the C API allocates (checkpoint, export metadata, file
//!   list, strings, error messages) is owned by exactly one guard below and
//!   released exactly once, on every path, by that guard's `Drop`.
//! * Strings returned by the C API are copied while their owner is alive;
//!   no pointer into RocksDB memory escapes this module.
//! * Indices passed to `rocksdb_livefiles_*` are below
//!   `rocksdb_livefiles_count` of the same list.
//! * Strings and keys passed in are `CString`s or slices that outlive the
//!   call; RocksDB and the shim copy them.
//! * The shim's `rocksdb_livefiles_t` is the same definition as RocksDB's own
//!   (a `std::vector<LiveFileMetaData>`), compiled with the same headers and
//!   standard library, and the list it fills is handed to
//!   `rocksdb_export_import_files_metadata_set_files`, which takes ownership.
//! * An imported column family's handle is kept in an [`OwnedColumnFamily`],
//!   which holds the database (so it outlives the handle) and destroys the
//!   handle once, when dropped; that releases the handle, not the column
//!   family.
//!
//! Longer than most files here on purpose: every `unsafe` block of the
//! crate is in this module, next to the safety argument that covers it.

#![allow(unsafe_code)]

use std::ffi::{c_char, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use librocksdb_sys as ffi;
use rocksdb::{AsColumnFamilyRef, AsRawPtr, DB};

/// One SST file of an exported column family, as RocksDB describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    /// Name of the column family the file belongs to.
    pub column_family_name: String,
    /// With a leading `/`, as RocksDB writes it.
    pub name: String,
    /// Directory the file was exported to.
    pub directory: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// LSM level of the file.
    pub level: i32,
    /// Smallest user key in the file.
    pub smallest_key: Vec<u8>,
    /// Largest user key in the file.
    pub largest_key: Vec<u8>,
    /// Smallest sequence number in the file.
    pub smallest_seqno: u64,
    /// Largest sequence number in the file.
    pub largest_seqno: u64,
    /// Number of entries in the file.
    pub num_entries: u64,
    /// Number of deletion entries in the file.
    pub num_deletions: u64,
}

/// RocksDB's description of an exported column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedColumnFamily {
    /// Name of the column family's comparator.
    pub comparator_name: String,
    /// The exported SST files.
    pub files: Vec<ExportedFile>,
}

/// Why a call into RocksDB's C API (or the shim) failed.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    /// RocksDB's error message.
    #[error("RocksDB: {0}")]
    Rocks(String),
    /// A path or name passed in contains a NUL byte, so it cannot be a C string.
    #[error("{0:?} contains a NUL byte")]
    NulInPath(String),
}

/// Exports `cf` into `export_dir`, which must not exist yet and should be on
/// the database's filesystem (RocksDB hard-links the SST files there, and
/// copies them otherwise). The memtable is flushed first, so the export holds
/// every write acknowledged before the call.
pub fn export_column_family(
    db: &DB,
    cf: &impl AsColumnFamilyRef,
    export_dir: &Path,
) -> Result<ExportedColumnFamily, FfiError> {
    let dir = path_cstring(export_dir)?;
    // SAFETY: see the module's safety argument; `db` is borrowed for the call.
    let db_ptr = unsafe { db.as_raw_ptr() };
    let checkpoint = Checkpoint(call(|err| unsafe {
        ffi::rocksdb_checkpoint_object_create(db_ptr, err)
    })?);
    // SAFETY: `checkpoint.0` is live until `checkpoint` drops at the end of
    // this function; `cf.inner()` is live while `cf` is borrowed.
    let metadata = Metadata(call(|err| unsafe {
        ffi::rocksdb_checkpoint_export_column_family(checkpoint.0, cf.inner(), dir.as_ptr(), err)
    })?);
    // SAFETY: the comparator name is a strdup'd copy that `CString` below frees.
    let comparator_name = unsafe {
        owned_c_string(ffi::rocksdb_export_import_files_metadata_get_db_comparator_name(metadata.0))
    };
    // SAFETY: returns a new list owned by `LiveFiles`.
    let files =
        LiveFiles(unsafe { ffi::rocksdb_export_import_files_metadata_get_files(metadata.0) });
    Ok(ExportedColumnFamily {
        comparator_name,
        files: files.read(),
    })
}

impl From<&ExportedFile> for ImportFile {
    /// An exported file, imported where it lies.
    fn from(f: &ExportedFile) -> Self {
        ImportFile {
            directory: f.directory.clone(),
            name: f.name.clone(),
            level: f.level,
            size: f.size,
            smallest_key: f.smallest_key.clone(),
            largest_key: f.largest_key.clone(),
            smallest_seqno: f.smallest_seqno,
            largest_seqno: f.largest_seqno,
        }
    }
}

/// A file to import: where it is and what the snapshot's metadata says of it.
#[derive(Debug, Clone)]
pub struct ImportFile {
    /// Directory holding the file.
    pub directory: String,
    /// RocksDB's name for it, with a leading `/`.
    pub name: String,
    /// LSM level to import the file at.
    pub level: i32,
    /// Size of the file in bytes.
    pub size: u64,
    /// Smallest user key in the file.
    pub smallest_key: Vec<u8>,
    /// Largest user key in the file.
    pub largest_key: Vec<u8>,
    /// Smallest sequence number in the file.
    pub smallest_seqno: u64,
    /// Largest sequence number in the file.
    pub largest_seqno: u64,
}

/// Creates column family `name` in `db` from `files`, moving them into the
/// database (hard links on the same filesystem). RocksDB refuses an empty
/// list, and a file with no entries or unreadable keys.
pub fn import_column_family(
    db: &Arc<DB>,
    name: &str,
    comparator: &str,
    files: &[ImportFile],
) -> Result<OwnedColumnFamily, FfiError> {
    let cname = cstring(name)?;
    let ccomparator = cstring(comparator)?;
    let owned: Vec<[CString; 3]> = files
        .iter()
        .map(|f| Ok([cstring(name)?, cstring(&f.name)?, cstring(&f.directory)?]))
        .collect::<Result<_, FfiError>>()?;
    // SAFETY: see the module's safety argument. Every guard below owns one
    // C object and frees it once; `list` is given away to `metadata`.
    unsafe {
        let metadata = Metadata(ffi::rocksdb_export_import_files_metadata_create());
        ffi::rocksdb_export_import_files_metadata_set_db_comparator_name(
            metadata.0,
            ccomparator.as_ptr(),
        );
        let list = ffi::rocksdb_livefiles_create();
        for (f, [cf, fname, dir]) in files.iter().zip(&owned) {
            rocksnap_livefiles_push(
                list,
                cf.as_ptr(),
                fname.as_ptr(),
                dir.as_ptr(),
                f.level,
                f.size,
                f.smallest_key.as_ptr().cast(),
                f.smallest_key.len(),
                f.largest_key.as_ptr().cast(),
                f.largest_key.len(),
                f.smallest_seqno,
                f.largest_seqno,
            );
        }
        ffi::rocksdb_export_import_files_metadata_set_files(metadata.0, list);
        let options = rocksdb::Options::default();
        let import = ImportOptions(ffi::rocksdb_import_column_family_options_create());
        ffi::rocksdb_import_column_family_options_set_move_files(import.0, 1);
        let handle = call(|err| {
            ffi::rocksdb_create_column_family_with_import(
                db.as_raw_ptr(),
                options.as_raw_ptr(),
                cname.as_ptr(),
                import.0,
                metadata.0,
                err,
            )
        })?;
        Ok(OwnedColumnFamily {
            db: db.clone(),
            handle,
        })
    }
}

/// The handle of a column family this module imported: the `rocksdb`
/// crate keeps its own list of handles and learns of an imported column
/// family only when the database is opened again, so the partition store
/// uses this one meanwhile, wherever the crate takes a column family.
pub struct OwnedColumnFamily {
    /// Held so that the database outlives the handle.
    db: Arc<DB>,
    handle: *mut ffi::rocksdb_column_family_handle_t,
}

// SAFETY: RocksDB's column family handles may be used from any thread (the
// `rocksdb` crate's own handles are Send and Sync for the same reason); this
// one is only read after it is created, and destroyed once, in `Drop`.
unsafe impl Send for OwnedColumnFamily {}
// SAFETY: as above.
unsafe impl Sync for OwnedColumnFamily {}

impl std::fmt::Debug for OwnedColumnFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnedColumnFamily")
    }
}

impl AsColumnFamilyRef for OwnedColumnFamily {
    fn inner(&self) -> *mut ffi::rocksdb_column_family_handle_t {
        self.handle
    }
}

impl AsColumnFamilyRef for &'_ OwnedColumnFamily {
    fn inner(&self) -> *mut ffi::rocksdb_column_family_handle_t {
        self.handle
    }
}

impl OwnedColumnFamily {
    /// Drops the column family and its data (the handle stays valid until
    /// it is dropped, as RocksDB requires).
    pub fn drop_column_family(&self) -> Result<(), FfiError> {
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: `self.db` is alive (held here) and `self.handle` is a
        // handle of it that has not been destroyed; `err` is read once.
        unsafe {
            ffi::rocksdb_drop_column_family(self.db.as_raw_ptr(), self.handle, &mut err);
            if !err.is_null() {
                return Err(FfiError::Rocks(owned_c_string(err)));
            }
        }
        Ok(())
    }
}

impl Drop for OwnedColumnFamily {
    fn drop(&mut self) {
        // SAFETY: created by `rocksdb_create_column_family_with_import`,
        // destroyed once, while `self.db` (still held) is open.
        unsafe { ffi::rocksdb_column_family_handle_destroy(self.handle) }
    }
}

/// What a full read of one SST found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SstSummary {
    /// Smallest user key of the point entries; empty if there are none.
    pub smallest_key: Vec<u8>,
    /// Largest user key of the point entries; empty if there are none.
    pub largest_key: Vec<u8>,
    /// Smallest sequence number of the point entries (0 if there are none).
    pub smallest_seqno: u64,
    /// Largest sequence number of the point entries (0 if there are none).
    pub largest_seqno: u64,
    /// Number of point entries read, deletions included.
    pub entries: u64,
    /// Number of range deletions, from the file's table properties.
    pub range_deletions: u64,
}

/// Verifies every block checksum of the SST at `path` and reads every entry,
/// deletions included, with its sequence number.
pub fn scan_sst(path: &Path) -> Result<SstSummary, FfiError> {
    let cpath = path_cstring(path)?;
    let mut out = RawSstSummary::default();
    // SAFETY: `out` is a valid, zeroed struct the shim fills; the key buffers
    // it allocates with malloc are copied and freed once below.
    unsafe {
        let err = rocksnap_sst_scan(cpath.as_ptr(), &mut out);
        let take = |p: *mut c_char, len: usize| {
            let v = if p.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
            };
            ffi::rocksdb_free(p.cast());
            v
        };
        let smallest_key = take(out.smallest_key, out.smallest_len);
        let largest_key = take(out.largest_key, out.largest_len);
        if !err.is_null() {
            return Err(FfiError::Rocks(owned_c_string(err)));
        }
        Ok(SstSummary {
            smallest_key,
            largest_key,
            smallest_seqno: out.smallest_seqno,
            largest_seqno: out.largest_seqno,
            entries: out.entries,
            range_deletions: out.range_deletions,
        })
    }
}

/// The identity RocksDB gives an SST file: the database session that wrote
/// it and its original file number. With the size, no two files share it.
pub fn sst_identity(path: &Path) -> Result<(String, u64), FfiError> {
    let cpath = path_cstring(path)?;
    let mut session: *mut c_char = ptr::null_mut();
    let mut number = 0u64;
    // SAFETY: the shim writes a malloc'd string into `session` (or leaves it
    // null) and a number into `number`; both are read and freed once here.
    unsafe {
        let err = rocksnap_sst_identity(cpath.as_ptr(), &mut session, &mut number);
        let session = owned_c_string(session);
        if !err.is_null() {
            return Err(FfiError::Rocks(owned_c_string(err)));
        }
        Ok((session, number))
    }
}

/// The sequence numbers an SST's keys carry, smallest and largest, as its
/// table properties record them; `None` for a file that does not record
/// them (written by an older RocksDB).
pub fn sst_seqnos(path: &Path) -> Result<Option<(u64, u64)>, FfiError> {
    let cpath = path_cstring(path)?;
    let (mut smallest, mut largest, mut known) = (0u64, 0u64, 0i32);
    // SAFETY: the shim writes two numbers and a flag, or returns a malloc'd
    // message, which is read and freed once here.
    unsafe {
        let err = rocksnap_sst_seqnos(cpath.as_ptr(), &mut smallest, &mut largest, &mut known);
        if !err.is_null() {
            return Err(FfiError::Rocks(owned_c_string(err)));
        }
    }
    Ok((known != 0).then_some((smallest, largest)))
}

#[repr(C)]
struct RawSstSummary {
    smallest_key: *mut c_char,
    smallest_len: usize,
    largest_key: *mut c_char,
    largest_len: usize,
    smallest_seqno: u64,
    largest_seqno: u64,
    entries: u64,
    range_deletions: u64,
}

impl Default for RawSstSummary {
    fn default() -> Self {
        RawSstSummary {
            smallest_key: ptr::null_mut(),
            smallest_len: 0,
            largest_key: ptr::null_mut(),
            largest_len: 0,
            smallest_seqno: 0,
            largest_seqno: 0,
            entries: 0,
            range_deletions: 0,
        }
    }
}

extern "C" {
    fn rocksnap_livefiles_push(
        files: *mut ffi::rocksdb_livefiles_t,
        cf_name: *const c_char,
        name: *const c_char,
        directory: *const c_char,
        level: i32,
        size: u64,
        smallest: *const c_char,
        smallest_len: usize,
        largest: *const c_char,
        largest_len: usize,
        smallest_seqno: u64,
        largest_seqno: u64,
    );
    fn rocksnap_sst_scan(path: *const c_char, out: *mut RawSstSummary) -> *mut c_char;
    fn rocksnap_sst_identity(
        path: *const c_char,
        session: *mut *mut c_char,
        file_number: *mut u64,
    ) -> *mut c_char;
    fn rocksnap_sst_seqnos(
        path: *const c_char,
        smallest: *mut u64,
        largest: *mut u64,
        known: *mut i32,
    ) -> *mut c_char;
}

struct ImportOptions(*mut ffi::rocksdb_import_column_family_options_t);

impl Drop for ImportOptions {
    fn drop(&mut self) {
        // SAFETY: created by `rocksdb_import_column_family_options_create`, destroyed once.
        unsafe { ffi::rocksdb_import_column_family_options_destroy(self.0) }
    }
}

fn cstring(s: &str) -> Result<CString, FfiError> {
    CString::new(s).map_err(|_| FfiError::NulInPath(s.to_string()))
}

fn path_cstring(path: &Path) -> Result<CString, FfiError> {
    let s = path.to_string_lossy().into_owned();
    CString::new(s.clone()).map_err(|_| FfiError::NulInPath(s))
}

/// Runs a C call that reports failure through `char** errptr`.
fn call<T>(f: impl FnOnce(*mut *mut c_char) -> *mut T) -> Result<*mut T, FfiError> {
    let mut err: *mut c_char = ptr::null_mut();
    let out = f(&mut err);
    if !err.is_null() {
        // SAFETY: RocksDB allocated `err` with malloc; we copy and free it once.
        let msg = unsafe { owned_c_string(err) };
        return Err(FfiError::Rocks(msg));
    }
    if out.is_null() {
        return Err(FfiError::Rocks("the C API returned no object".into()));
    }
    Ok(out)
}

/// Copies a malloc'd C string and frees it.
///
/// # Safety
/// `s` is null or a NUL-terminated string from RocksDB's allocator, not used afterwards.
unsafe fn owned_c_string(s: *mut c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    let out = CStr::from_ptr(s).to_string_lossy().into_owned();
    ffi::rocksdb_free(s.cast());
    out
}

/// Copies a string that RocksDB still owns.
///
/// # Safety
/// `s` is null or NUL-terminated and alive for the call.
unsafe fn borrowed_c_string(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    CStr::from_ptr(s).to_string_lossy().into_owned()
}

struct Checkpoint(*mut ffi::rocksdb_checkpoint_t);

impl Drop for Checkpoint {
    fn drop(&mut self) {
        // SAFETY: created by `rocksdb_checkpoint_object_create`, destroyed once.
        unsafe { ffi::rocksdb_checkpoint_object_destroy(self.0) }
    }
}

struct Metadata(*mut ffi::rocksdb_export_import_files_metadata_t);

impl Drop for Metadata {
    fn drop(&mut self) {
        // SAFETY: created by the export call, destroyed once.
        unsafe { ffi::rocksdb_export_import_files_metadata_destroy(self.0) }
    }
}

struct LiveFiles(*mut ffi::rocksdb_livefiles_t);

impl LiveFiles {
    fn read(&self) -> Vec<ExportedFile> {
        let lf = self.0;
        // SAFETY: `lf` is a live list; every index is below its count, and
        // every string and key is copied before the next call.
        unsafe {
            let count = ffi::rocksdb_livefiles_count(lf);
            (0..count)
                .map(|i| {
                    let mut len = 0usize;
                    let k = ffi::rocksdb_livefiles_smallestkey(lf, i, &mut len);
                    let smallest_key = std::slice::from_raw_parts(k.cast::<u8>(), len).to_vec();
                    let k = ffi::rocksdb_livefiles_largestkey(lf, i, &mut len);
                    let largest_key = std::slice::from_raw_parts(k.cast::<u8>(), len).to_vec();
                    ExportedFile {
                        column_family_name: borrowed_c_string(
                            ffi::rocksdb_livefiles_column_family_name(lf, i),
                        ),
                        name: borrowed_c_string(ffi::rocksdb_livefiles_name(lf, i)),
                        directory: borrowed_c_string(ffi::rocksdb_livefiles_directory(lf, i)),
                        size: ffi::rocksdb_livefiles_size(lf, i) as u64,
                        level: ffi::rocksdb_livefiles_level(lf, i),
                        smallest_key,
                        largest_key,
                        smallest_seqno: ffi::rocksdb_livefiles_smallest_seqno(lf, i),
                        largest_seqno: ffi::rocksdb_livefiles_largest_seqno(lf, i),
                        num_entries: ffi::rocksdb_livefiles_entries(lf, i),
                        num_deletions: ffi::rocksdb_livefiles_deletions(lf, i),
                    }
                })
                .collect()
        }
    }
}

impl Drop for LiveFiles {
    fn drop(&mut self) {
        // SAFETY: a list we own, destroyed once.
        unsafe { ffi::rocksdb_livefiles_destroy(self.0) }
    }
}
