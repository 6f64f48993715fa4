//! Downloads of snapshot files: ranged GETs in parallel, each written at its
//! offset, with the file's CRC32C built from the ranges' checksums.
//!
//! At most `concurrency` ranges are fetched at once across all files, and
//! one more may be held while it is written, so memory stays below
//! `part_size × (concurrency + 1)` and no connection waits for the disk.
//! Each range is read into a buffer of the memory budget's, reused from
//! range to range, and written from it around the page cache where the
//! filesystem allows (see [`crate::direct`]). Every response's object size is
//! checked against what the metadata says, and each file's checksum once
//! it is whole.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::try_join_all;
use futures::FutureExt;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::crypto::{FileKey, SEGMENT_SIZE, TAG_LEN};
use crate::flow::MemoryBudget;
use crate::ratelimit::RateLimit;
use crate::retry::RetryPolicy;

use crate::direct::NewFile;

/// Bytes moved so far and bytes to move, for progress reports.
#[derive(Debug, Default)]
pub struct TransferProgress {
    pub(crate) bytes: AtomicU64,
    pub(crate) total: AtomicU64,
}

impl TransferProgress {
    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes to move in all, once known.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// A stored segment of an encrypted object: its plaintext and its tag.
const STORED_SEGMENT: u64 = (SEGMENT_SIZE + TAG_LEN) as u64;

/// The file one download writes, shared by its ranges' tasks.
#[derive(Debug)]
struct Target {
    download: Download,
    file: NewFile,
    /// Held by the range being written: one write at a time per file, as
    /// concurrent writers of one file only wait on (and spin for) its
    /// inode's lock; other files' go on. The checksum and the opening of
    /// sealed segments run outside it.
    writing: std::sync::Mutex<()>,
    /// Stored bytes per range.
    step: u64,
    /// Segments in all, for a sealed object.
    segments: Option<u64>,
}

/// Fetches objects into local files.
#[derive(Debug, Clone)]
pub(crate) struct Downloader {
    store: Arc<dyn ObjectStore>,
    /// Parts held in memory, from the request to the write, and their
    /// buffers; and requests on the wire.
    budget: MemoryBudget,
    part_size: u64,
    progress: Arc<TransferProgress>,
    rate_limit: Option<RateLimit>,
    retry: RetryPolicy,
    /// The directory whose files are the objects (a plain local store).
    local_files: Option<PathBuf>,
}

/// One object to fetch and what it must be.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    pub key: Path,
    pub dest: PathBuf,
    /// Size of the stored object.
    pub size: u64,
    /// An encrypted object: its data key and plaintext size. Ranges are
    /// then whole stored segments, each opened (authenticated) and its
    /// plaintext written to `dest`; the checksum stays the stored bytes'.
    pub sealed: Option<(Arc<FileKey>, u64)>,
}

impl Downloader {
    /// A downloader fetching at most `concurrency` ranges at once (holding
    /// one more while it is written), or as many as `budget` allows.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        concurrency: usize,
        budget: Option<&MemoryBudget>,
        part_size: usize,
        progress: Arc<TransferProgress>,
        rate_limit: Option<RateLimit>,
        retry: RetryPolicy,
    ) -> Self {
        let budget = budget
            .cloned()
            .unwrap_or_else(|| MemoryBudget::for_requests(concurrency));
        Downloader {
            retry,
            store,
            budget,
            part_size: part_size.max(1) as u64,
            progress,
            rate_limit,
            local_files: None,
        }
    }

    /// Objects are files below `root` (a plain local store): a plain,
    /// unlimited download copies each with the kernel's help
    /// (`copy_file_range`, which shares blocks where the filesystem can)
    /// instead of reading it into memory and writing it out, then reads the
    /// copy back for its checksum (from the page cache).
    pub fn with_local_files(mut self, root: Option<&std::path::Path>) -> Self {
        self.local_files = root.map(std::path::Path::to_path_buf);
        self
    }

    /// Fetches every download; returns each file's CRC32C, in order.
    ///
    /// Returns only once no work of theirs is left: the first failure
    /// drops the other fetches, but a copy or a write already on a
    /// blocking thread runs to its end, and would otherwise land in a
    /// staging directory the caller is removing. Every task it spawns
    /// (each range's, and each blocking step) goes through one tracker,
    /// which is waited for; a range's task is aborted when its fetch is
    /// dropped.
    pub async fn fetch_all(&self, downloads: &[Download]) -> Result<Vec<u32>, DownloadError> {
        let _running = self.budget.download();
        let blocking = TaskTracker::new();
        // A panic in a range is held until the rest is done too, so that it
        // does not unwind past the wait either.
        let result = AssertUnwindSafe(try_join_all(
            downloads.iter().map(|d| self.fetch(d, &blocking)),
        ))
        .catch_unwind()
        .await;
        blocking.close();
        blocking.wait().await;
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Fetches one object into `dest` (created, never overwritten) and
    /// returns its CRC32C; its tasks run on `blocking`.
    async fn fetch(&self, d: &Download, blocking: &TaskTracker) -> Result<u32, DownloadError> {
        if let Some(root) = &self.local_files {
            if d.sealed.is_none() && self.rate_limit.is_none() {
                return self.copy_local(root, d, blocking).await;
            }
        }
        // No request of its own for the size: every ranged response says
        // the object's size. An empty file has no ranges, so it is asked.
        if d.size == 0 {
            self.check_size(d).await?;
        }
        let dest = d.dest.clone();
        let size = d.sealed.as_ref().map_or(d.size, |(_, plain)| *plain);
        let file = blocking
            .spawn_blocking(move || NewFile::create_new(&dest, size))
            .await
            .expect("create task")
            .map_err(|e| DownloadError::Local {
                path: d.dest.clone(),
                source: e,
            })?;
        // Sealed objects are fetched in whole stored segments.
        let step = match &d.sealed {
            Some(_) => (self.part_size / SEGMENT_SIZE as u64).max(1) * STORED_SEGMENT,
            None => self.part_size,
        };
        let segments = d
            .sealed
            .as_ref()
            .map(|(_, plain)| plain.div_ceil(SEGMENT_SIZE as u64).max(1));
        let target = Arc::new(Target {
            download: d.clone(),
            file,
            writing: std::sync::Mutex::new(()),
            step,
            segments,
        });
        // Each range is a task of its own, so that the copies of their
        // bodies spread over the runtime's threads instead of all falling
        // to the one polling this future. The tasks are this call's: the
        // first failure drops (aborts) the others, and the tracker is
        // waited for before `fetch_all` returns.
        let tasks: Vec<_> =
            (0..d.size)
                .step_by(step as usize)
                .map(|start| {
                    let end = (start + step).min(d.size);
                    let (this, target, tracker) = (self.clone(), target.clone(), blocking.clone());
                    AbortOnDropHandle::new(blocking.spawn(async move {
                        this.fetch_range(&target, start, end, &tracker).await
                    }))
                })
                .collect();
        let crcs = try_join_all(tasks.into_iter().map(|task| async move {
            match task.await {
                Ok(crc) => crc,
                Err(e) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // Never aborted while awaited: only the runtime's
                    // shutdown cancels it.
                    Err(e) => panic!("a range's task ended early: {e}"),
                },
            }
        }))
        .await?;
        let path = d.dest.clone();
        blocking
            .spawn_blocking(move || {
            tracing::trace!(path = %path.display(), direct = target.file.direct_bytes(), "file written");
            target.file.sync_all()
                .map_err(|e| DownloadError::Local { path, source: e })
        })
        .await
        .expect("sync task")?;
        Ok(crcs
            .into_iter()
            .fold(0, |acc, (crc, len)| crc32c::crc32c_combine(acc, crc, len)))
    }

    /// Fetches stored bytes `start..end` of `target`'s object, checks what
    /// came, and writes them (opened, if sealed) at their place; the
    /// range's CRC32C and length. Its blocking steps run on `blocking`.
    async fn fetch_range(
        &self,
        target: &Arc<Target>,
        start: u64,
        end: u64,
        blocking: &TaskTracker,
    ) -> Result<(u32, usize), DownloadError> {
        let d = &target.download;
        let step = target.step;
        // Memory first, held until the range is written; the request only
        // while it is on the wire. Never the other way round: uploads
        // sharing the budget take theirs in this order, and each would
        // wait for what the other holds.
        let part = self.budget.part(step as usize).await;
        let on_the_wire = self
            .budget
            .requests()
            .acquire()
            .await
            .expect("never closed");
        if let Some(limit) = &self.rate_limit {
            limit.acquire(end - start).await;
        }
        let want = end - start;
        // Each attempt reads the range anew, into the same part.
        let part = tokio::sync::Mutex::new(part);
        let fetched = self
            .retry
            .run("ranged get", || async {
                let mut buf = part.lock().await;
                buf.clear();
                let options = GetOptions::new().with_range(Some(start..end));
                let got = self.store.get_opts(&d.key, options).await?;
                let size = got.meta.size;
                let mut body = got.into_stream();
                let mut received = 0;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    received += chunk.len() as u64;
                    // More than asked: no more is read, and the size check
                    // below says so.
                    if received > want || !buf.push(&chunk) {
                        break;
                    }
                }
                Ok((size, received))
            })
            .await;
        drop(on_the_wire);
        let mut part = part.into_inner();
        let (stored_size, received) = match fetched {
            Ok(fetched) => fetched,
            // Missing, or shorter than the range: say which, the part (of
            // no more use) back first.
            Err(e) => {
                drop(part);
                self.check_size(d).await?;
                return Err(DownloadError::Store {
                    key: d.key.to_string(),
                    source: e,
                });
            }
        };
        if stored_size != d.size {
            return Err(DownloadError::Size {
                key: d.key.to_string(),
                expected: d.size,
                actual: stored_size,
            });
        }
        if received != want {
            return Err(DownloadError::Size {
                key: d.key.to_string(),
                expected: d.size,
                actual: start + received,
            });
        }
        let target = target.clone();
        let crc = blocking
            .spawn_blocking(move || {
                let crc = (crc32c::crc32c(part.as_slice()), part.as_slice().len());
                let d = &target.download;
                let write = |data: &[u8], at: u64| {
                    let _alone = target.writing.lock().expect("not poisoned");
                    target
                        .file
                        .write_all_at(data, at)
                        .map_err(|e| DownloadError::Local {
                            path: d.dest.clone(),
                            source: e,
                        })
                };
                match d.sealed.as_ref().zip(target.segments) {
                    None => write(part.as_slice(), start)?,
                    Some(((seal, _), segments)) => {
                        let first = start / STORED_SEGMENT;
                        let plain = seal
                            .open_segments(d.key.as_ref(), first, segments, part.as_mut_slice())
                            .map_err(DownloadError::Sealed)?;
                        write(&part.as_slice()[..plain], first * SEGMENT_SIZE as u64)?;
                    }
                }
                // The part (its memory) goes back once written.
                drop(part);
                Ok::<_, DownloadError>(crc)
            })
            .await
            .expect("write task")?;
        self.progress
            .bytes
            .fetch_add(crc.1 as u64, Ordering::Relaxed);
        Ok(crc)
    }
}

impl Downloader {
    /// Asks the store for the object's size and checks it: `Missing` or
    /// `Size` if it is not what the metadata says.
    async fn check_size(&self, d: &Download) -> Result<(), DownloadError> {
        let _on_the_wire = self
            .budget
            .requests()
            .acquire()
            .await
            .expect("never closed");
        let meta = self
            .retry
            .run("head", || self.store.head(&d.key))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => DownloadError::Missing {
                    key: d.key.to_string(),
                },
                e => DownloadError::Store {
                    key: d.key.to_string(),
                    source: e,
                },
            })?;
        if meta.size != d.size {
            return Err(DownloadError::Size {
                key: d.key.to_string(),
                expected: d.size,
                actual: meta.size,
            });
        }
        Ok(())
    }

    /// The fast path of [`Downloader::fetch`] for a plain local store.
    async fn copy_local(
        &self,
        root: &std::path::Path,
        d: &Download,
        blocking: &TaskTracker,
    ) -> Result<u32, DownloadError> {
        // One permit per file: its read-back buffer is one part.
        let _permit = self.budget.permit().await;
        // Keys are built from checked plain names, '/'-separated.
        let src = root.join(d.key.as_ref());
        let (dest, key, size, part) = (d.dest.clone(), d.key.to_string(), d.size, self.part_size);
        let progress = self.progress.clone();
        blocking
            .spawn_blocking(move || copy_and_sum(&src, &dest, &key, size, part, &progress))
            .await
            .expect("copy task")
    }
}

/// Copies `src` to a new `dest` in the kernel, checks its size, reads the
/// copy back for its CRC32C and syncs it.
fn copy_and_sum(
    src: &std::path::Path,
    dest: &std::path::Path,
    key: &str,
    size: u64,
    part: u64,
    progress: &TransferProgress,
) -> Result<u32, DownloadError> {
    use std::io::Read;
    let local = |e: std::io::Error| DownloadError::Local {
        path: dest.to_path_buf(),
        source: e,
    };
    let mut from = match std::fs::File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DownloadError::Missing {
                key: key.to_string(),
            })
        }
        Err(e) => {
            return Err(DownloadError::Local {
                path: src.to_path_buf(),
                source: e,
            })
        }
    };
    let actual = from
        .metadata()
        .map_err(|e| DownloadError::Local {
            path: src.to_path_buf(),
            source: e,
        })?
        .len();
    if actual != size {
        return Err(DownloadError::Size {
            key: key.to_string(),
            expected: size,
            actual,
        });
    }
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .open(dest)
        .map_err(local)?;
    // std's copy between two files is copy_file_range on Linux.
    let copied = std::io::copy(&mut (&mut from).take(size), &mut to).map_err(local)?;
    if copied != size {
        return Err(DownloadError::Size {
            key: key.to_string(),
            expected: size,
            actual: copied,
        });
    }
    // Read back through the same handle, from the start.
    std::io::Seek::rewind(&mut to).map_err(local)?;
    let mut buf = vec![0u8; part.clamp(64 * 1024, 8 << 20) as usize];
    let mut crc = 0u32;
    loop {
        let n = to.read(&mut buf).map_err(local)?;
        if n == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    to.sync_all().map_err(local)?;
    Ok(crc)
}

/// Why an object could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The object does not exist.
    #[error("{key} is missing")]
    Missing {
        /// Its key.
        key: String,
    },
    /// The object is not the size the metadata says.
    #[error("{key} has {actual} bytes, the metadata says {expected}")]
    Size {
        /// Its key.
        key: String,
        /// What the metadata says.
        expected: u64,
        /// What the store has.
        actual: u64,
    },
    /// The store failed.
    #[error("cannot read {key}: {source}")]
    Store {
        /// Its key.
        key: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// A segment of an encrypted object failed authentication.
    #[error(transparent)]
    Sealed(crate::crypto::CryptoError),
    /// The local file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Local {
        /// The local file.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
}
