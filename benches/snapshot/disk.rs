//! The disk's own pace: a set of files copied with nothing but the
//! filesystem in the way, the size curve's reference.
//!
//! One thread reads each file in 8 MiB chunks (from the page cache, where
//! the benchmark keeps its datasets) while another writes the chunk before
//! with `O_DIRECT` at its offset; each file is fsynced, and the folder once
//! at the end. No checksum, no staging name, no rename: what is left is
//! what the disk and the filesystem take for as many bytes in as many
//! files, so that the snapshot's time per GiB can be read against the
//! disk's at each size. Its buffers are touched before the clock starts; a
//! snapshot child touches its parts' memory while it runs, which is part
//! of what a snapshot costs a new process.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

const CHUNK: usize = 8 << 20;
const ALIGN: usize = 4096;

/// A chunk's memory, its start page-aligned for direct I/O.
struct Chunk {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    /// Every page written once now, so that the copy measures the disk and
    /// not first touches of fresh memory.
    fn new() -> Self {
        let mut raw = vec![1u8; CHUNK + ALIGN];
        let start = raw.as_mut_ptr().align_offset(ALIGN);
        Chunk { raw, start, len: 0 }
    }

    fn room(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + CHUNK]
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

/// One chunk on its way from the reader to the writer.
struct Piece {
    file: usize,
    offset: u64,
    chunk: Chunk,
    last: bool,
}

/// What [`copy`] did.
pub struct Copied {
    pub took: Duration,
    pub bytes: u64,
    /// Whether the filesystem took `O_DIRECT` (a refusal, `EINVAL`, leaves
    /// every write buffered, as the local store's would be).
    pub direct: bool,
}

/// Copies every file directly in `src` into `dest` (made anew) and makes
/// the copies durable.
pub fn copy(src: &Path, dest: &Path) -> Copied {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).unwrap();
    let (full_tx, full_rx) = sync_channel::<Piece>(1);
    let (free_tx, free_rx) = sync_channel::<Chunk>(3);
    for _ in 0..3 {
        free_tx.send(Chunk::new()).unwrap();
    }
    let mut direct_taken = true;
    let t = Instant::now();
    std::thread::scope(|s| {
        let files = &files;
        s.spawn(move || {
            for (i, path) in files.iter().enumerate() {
                let mut f = File::open(path).unwrap();
                let size = f.metadata().unwrap().len();
                let mut offset = 0;
                loop {
                    let mut chunk = free_rx.recv().unwrap();
                    let want = (size - offset).min(CHUNK as u64) as usize;
                    f.read_exact(&mut chunk.room()[..want]).unwrap();
                    chunk.len = want;
                    let last = offset + want as u64 == size;
                    full_tx
                        .send(Piece {
                            file: i,
                            offset,
                            chunk,
                            last,
                        })
                        .unwrap();
                    offset += want as u64;
                    if last {
                        break;
                    }
                }
            }
        });
        let mut open: Option<(File, File)> = None;
        for piece in full_rx {
            let name = files[piece.file].file_name().unwrap();
            let (direct, buffered) = open.get_or_insert_with(|| {
                let path = dest.join(name);
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                let direct = match options.clone().custom_flags(libc::O_DIRECT).open(&path) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        direct_taken = false;
                        options.open(&path).unwrap()
                    }
                    opened => opened.unwrap(),
                };
                let buffered = OpenOptions::new().write(true).open(&path).unwrap();
                (direct, buffered)
            });
            let bytes = piece.chunk.bytes();
            let whole = bytes.len() / ALIGN * ALIGN;
            direct.write_all_at(&bytes[..whole], piece.offset).unwrap();
            // The last partial page goes through the page cache, as the
            // local store's does.
            buffered
                .write_all_at(&bytes[whole..], piece.offset + whole as u64)
                .unwrap();
            if piece.last {
                let (direct, _) = open.take().unwrap();
                direct.sync_all().unwrap();
            }
            let _ = free_tx.send(piece.chunk);
        }
    });
    File::open(dest).unwrap().sync_all().unwrap();
    Copied {
        took: t.elapsed(),
        bytes: files.iter().map(|f| f.metadata().unwrap().len()).sum(),
        direct: direct_taken,
    }
}
