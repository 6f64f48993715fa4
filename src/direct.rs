//! Writing files around the page cache.
//!
//! Two kinds of file are written once and read little, if at all, soon
//! after: a restore's snapshot files (RocksDB reads them maybe much later)
//! and a snapshot's objects in a local directory (read only by a restore,
//! maybe never). Through the page cache, every byte would be copied by the
//! kernel into pages it must first find (reclaiming others: a node's own
//! working set, its database's blocks) and later write back; with
//! `O_DIRECT` the disk takes the bytes straight from the part's buffer,
//! which is reused from part to part. Where the filesystem or the request
//! refuses it (alignment, a filesystem without direct I/O), the same bytes
//! go through the page cache instead: the file is the same either way, and
//! `sync_all` makes both durable.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The alignment direct I/O asks of a write's memory, offset and length:
/// one page, a multiple of every logical block size in common use.
pub(crate) const ALIGN: usize = 4096;

/// A part's memory, its start aligned for direct I/O. Taken from safe
/// code: a `Vec` one alignment longer than asked, used from its first
/// aligned byte.
#[derive(Debug)]
pub(crate) struct AlignedBuffer {
    raw: Vec<u8>,
    start: usize,
    len: usize,
    capacity: usize,
}

impl AlignedBuffer {
    /// Room for `capacity` bytes, every page of it written once now: the
    /// first write of a fresh page costs a fault (on a virtual machine
    /// whose host took the page back, a fault on the host as well), paid
    /// here, where the caller chooses, rather than in the middle of a copy.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut raw = vec![0u8; capacity + ALIGN];
        for page in raw.chunks_mut(ALIGN) {
            page[0] = 1;
        }
        let start = raw.as_ptr().align_offset(ALIGN);
        AlignedBuffer {
            raw,
            start,
            len: 0,
            capacity,
        }
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empty again, its memory kept.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `data`, or returns `false` and appends nothing if it does
    /// not fit.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.len + data.len() > self.capacity {
            return false;
        }
        let at = self.start + self.len;
        self.raw[at..at + data.len()].copy_from_slice(data);
        self.len += data.len();
        true
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// A new file written at any offsets, from any thread.
#[derive(Debug)]
pub(crate) struct NewFile {
    /// Through the page cache: the writes direct I/O cannot take, the
    /// length, and the sync.
    file: File,
    path: PathBuf,
    /// The file's device and inode: the direct handle is opened by path,
    /// and a path can name another file by then (this one removed and a
    /// new one made under its name, by the retry of an aborted upload
    /// while a write of the old one was still on its way).
    identity: (u64, u64),
    /// Set once the filesystem refuses direct I/O: opened, or a write.
    refused: AtomicBool,
    /// Bytes the disk took straight from memory.
    direct_bytes: AtomicU64,
}

impl NewFile {
    /// Creates `path` (never an existing file) at `size` bytes; writes
    /// past the end grow it.
    pub fn create_new(path: &Path, size: u64) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(size)?;
        let identity = identity(&file)?;
        Ok(NewFile {
            file,
            path: path.to_path_buf(),
            identity,
            refused: AtomicBool::new(false),
            direct_bytes: AtomicU64::new(0),
        })
    }

    /// Writes all of `data` at `at`: the whole pages of an aligned write
    /// directly, anything else (a file's last partial page, a write the
    /// filesystem refuses directly) through the page cache. Pages of one
    /// file never go both ways at once: a direct write covers only whole
    /// pages of its own range.
    ///
    /// The direct handle is opened for the write and closed after it (an
    /// `open` per part, against a second descriptor held per file for the
    /// whole download: a partition of a thousand files would need two
    /// thousand).
    pub fn write_all_at(&self, data: &[u8], at: u64) -> io::Result<()> {
        let aligned = at.is_multiple_of(ALIGN as u64) && data.as_ptr().align_offset(ALIGN) == 0;
        let whole = if aligned {
            data.len() / ALIGN * ALIGN
        } else {
            0
        };
        if whole > 0 && !self.refused.load(Ordering::Relaxed) {
            // Any refusal to open (no direct I/O here, no descriptor left)
            // costs only the page cache; EINVAL says it will not change.
            match open_direct(&self.path) {
                // Another file under the path now: this one is no longer
                // anybody's, and the page cache writes what is left of it.
                Ok(direct) if identity(&direct)? != self.identity => {}
                Ok(direct) => match direct.write_all_at(&data[..whole], at) {
                    Ok(()) => {
                        self.direct_bytes.fetch_add(whole as u64, Ordering::Relaxed);
                        return self.file.write_all_at(&data[whole..], at + whole as u64);
                    }
                    // Not at this alignment: the page cache from now on,
                    // rewriting whatever went before.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.refuse(&e),
                    Err(e) => return Err(e),
                },
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.refuse(&e),
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e,
                        "cannot open for direct I/O; this write through the page cache");
                }
            }
        }
        self.file.write_all_at(data, at)
    }

    fn refuse(&self, e: &io::Error) {
        tracing::debug!(path = %self.path.display(), error = %e,
            "no direct I/O; writing through the page cache");
        self.refused.store(true, Ordering::Relaxed);
    }

    /// Bytes written around the page cache so far.
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes.load(Ordering::Relaxed)
    }

    /// The file's metadata, from its handle.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.file.metadata()
    }

    /// Makes the file durable, however its bytes were written.
    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// A file's device and inode number.
fn identity(file: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// `path` opened again for direct writes: `EINVAL` where the filesystem
/// has no direct I/O.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> io::Result<File> {
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether files in `dir` can be written with direct I/O (tests say what
/// they could check).
#[cfg(test)]
pub(crate) fn takes_direct_io(dir: &Path) -> bool {
    let probe = dir.join(".direct-probe");
    let _ = std::fs::File::create(&probe);
    let direct = open_direct(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    direct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_starts_aligned_and_refuses_what_does_not_fit() {
        let mut b = AlignedBuffer::with_capacity(10_000);
        assert_eq!(b.as_slice().as_ptr().align_offset(ALIGN), 0);
        assert!(b.push(&[1; 6000]));
        assert!(!b.push(&[2; 6000]));
        assert_eq!(b.as_slice(), &[1; 6000][..]);
        b.clear();
        assert!(b.as_slice().is_empty());
        assert!(b.push(&[3; 10_000]));
    }

    #[test]
    fn every_kind_of_write_lands_where_it_was_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 4 * ALIGN as u64 + 100;
        let d = NewFile::create_new(&path, size).unwrap();
        let direct = open_direct(&path).is_ok();
        let mut aligned = AlignedBuffer::with_capacity(2 * ALIGN + 100);
        assert!(aligned.push(&[7; 2 * ALIGN + 100]));
        // Aligned with a partial page at its end.
        d.write_all_at(aligned.as_slice(), 2 * ALIGN as u64)
            .unwrap();
        // Aligned, whole pages.
        aligned.clear();
        assert!(aligned.push(&[9; ALIGN]));
        d.write_all_at(aligned.as_slice(), 0).unwrap();
        // Unaligned memory: through the page cache.
        let unaligned = vec![5u8; 2 * ALIGN];
        let at = unaligned.as_ptr().align_offset(ALIGN) + 1;
        d.write_all_at(&unaligned[at..at + ALIGN - 1], ALIGN as u64)
            .unwrap();
        d.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len() as u64, size);
        assert!(back[..ALIGN].iter().all(|&b| b == 9));
        assert!(back[ALIGN..2 * ALIGN - 1].iter().all(|&b| b == 5));
        assert_eq!(back[2 * ALIGN - 1], 0, "a byte nothing wrote");
        assert!(back[2 * ALIGN..4 * ALIGN + 100].iter().all(|&b| b == 7));
        // Where the filesystem takes direct I/O, the aligned writes' whole
        // pages went that way and nothing else did.
        let expected = if direct { 3 * ALIGN as u64 } else { 0 };
        assert_eq!(d.direct_bytes(), expected);
        assert!(
            NewFile::create_new(&path, 1).is_err(),
            "never an existing file"
        );
    }

    #[test]
    fn a_write_never_lands_in_a_new_file_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f#1");
        let old = NewFile::create_new(&path, 0).unwrap();
        std::fs::remove_file(&path).unwrap();
        let new = NewFile::create_new(&path, 0).unwrap();
        let mut aligned = AlignedBuffer::with_capacity(2 * ALIGN);
        assert!(aligned.push(&[4; 2 * ALIGN]));
        old.write_all_at(aligned.as_slice(), 0).unwrap();
        assert_eq!(old.direct_bytes(), 0, "written directly into the new file");
        new.sync_all().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(std::fs::read(&path).unwrap().is_empty());
    }
}
