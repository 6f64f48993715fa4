//! The chunker: reads exported files into parts for the uploader.
//!
//! One [`BytesMut`] serves every part: a part is read into it, split off and
//! frozen into [`bytes::Bytes`] (no copy), and sent on. Once the uploader
//! drops the part, its allocation goes back to a [`BufferPool`] and serves a
//! later part. The pool starts with one buffer per credit, made and
//! touched when the pipeline starts ([`BufferPool::prepare`]), so that a
//! snapshot's first parts are not read into fresh memory while the disk
//! waits for them; it is the supervisor's, and outlives a restarted
//! chunker. Before reading a part the chunker takes an uploader credit, so
//! with every credit held by a part in flight it waits instead of reading
//! ahead: memory stays below part size × credits (parts in flight + 1)
//! however large the snapshot is. The file's CRC32C is computed while reading, so every byte is
//! read from disk exactly once.
//!
//! The chunker talks to the uploader by messages only: `Begin` hands over
//! the port the file's outcome goes to, then come the parts, then `End` or
//! `Abandon`. It stops reading a file as soon as the file's cancellation
//! token fires (a failed part, a cancelled snapshot).

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use object_store::path::Path;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use tokio_util::sync::CancellationToken;

use super::uploader::{FileId, FileReply, FileUpload, UploadError, UploaderMsg};
use crate::crypto::FileKey;
use crate::flow::{BoundedMailbox, BufferPool, Credit, LeaseWritten, Part, PipelineStats};

/// One file to store under one key.
pub(crate) struct FileRequest {
    pub id: FileId,
    pub path: PathBuf,
    pub key: Path,
    pub size: u64,
    pub part_size: usize,
    /// Encrypted snapshots: the file's data key; each part is sealed
    /// segment by segment before it is sent (`part_size` is a whole number
    /// of segments).
    pub seal: Option<Arc<FileKey>>,
    /// Cancelled when this attempt is given up.
    pub cancel: CancellationToken,
    /// What the file's object waits for before it is stored.
    pub lease: LeaseWritten,
    /// The uploader to send the parts to.
    pub uploader: BoundedMailbox<UploaderMsg>,
    /// Where the file's outcome goes: handed to the uploader with `Begin`.
    pub reply: FileReply,
}

pub(crate) enum ChunkerMsg {
    /// Read a file into parts. The credit bounds the chunker's own mailbox.
    File(FileRequest, Credit),
}

pub(crate) struct Chunker;

pub(crate) struct ChunkerArgs {
    pub stats: Arc<PipelineStats>,
    /// The supervisor's, made once with a buffer per credit: a chunker
    /// restarted after a panic reads into the same buffers, which the
    /// parts still in flight give back as they are stored.
    pub pool: BufferPool,
}

pub(crate) struct ChunkerState {
    stats: Arc<PipelineStats>,
    pool: BufferPool,
    /// The one buffer every part is read into; `None` only while a read runs
    /// on the blocking pool.
    buffer: Option<BytesMut>,
}

impl Actor for Chunker {
    type Msg = ChunkerMsg;
    type State = ChunkerState;
    type Arguments = ChunkerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ChunkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ChunkerState {
            stats: args.stats,
            pool: args.pool,
            buffer: Some(BytesMut::new()),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ChunkerMsg::File(request, _credit) = msg;
        state.file(request).await;
        Ok(())
    }
}

impl ChunkerState {
    async fn file(&mut self, request: FileRequest) {
        let FileRequest {
            id,
            path,
            key,
            size,
            part_size,
            seal,
            cancel,
            lease,
            uploader,
            reply,
        } = request;
        let file = match open(path.clone(), size).await {
            Ok(file) => file,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let parts = size.div_ceil(part_size as u64).max(1);
        let stored = crate::crypto::stored_len(size, seal.is_some());
        let begin = UploaderMsg::Begin(FileUpload {
            id,
            key,
            size: stored,
            parts,
            cancel: cancel.clone(),
            lease,
            reply,
        });
        if let Err(MessagingErr::SendErr(UploaderMsg::Begin(upload))) = uploader.actor().cast(begin)
        {
            let _ = upload.reply.send(Err(UploadError::Stopped("uploader")));
            return;
        }
        // From here on the uploader reports the outcome; the file ends with
        // `End` or `Abandon`, even if the chunker fails half-way (the guard
        // abandons it as it unwinds), so the uploader never waits for ever.
        let mut closing = Closing {
            uploader: uploader.actor().clone(),
            file: id,
            open: true,
        };
        let close = match self
            .send_parts(
                file,
                &path,
                id,
                size,
                parts,
                part_size,
                seal.as_ref(),
                &cancel,
                &uploader,
            )
            .await
        {
            Ok(crc32c) => UploaderMsg::End { file: id, crc32c },
            Err(error) => UploaderMsg::Abandon { file: id, error },
        };
        closing.open = false;
        let _ = uploader.actor().cast(close);
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &mut self,
        mut file: File,
        path: &std::path::Path,
        id: FileId,
        size: u64,
        parts: u64,
        part_size: usize,
        seal: Option<&Arc<FileKey>>,
        cancel: &CancellationToken,
        uploader: &BoundedMailbox<UploaderMsg>,
    ) -> Result<u32, UploadError> {
        let read_err = |source| UploadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut crc = 0u32;
        for index in 0..parts {
            let offset = index * part_size as u64;
            let len = (size - offset).min(part_size as u64) as usize;
            // Wait for room downstream before touching the disk.
            let credit = {
                let _waiting = self.stats.waiting_for_room();
                tokio::select! {
                    _ = cancel.cancelled() => return Err(UploadError::Cancelled),
                    credit = uploader.credits().acquire() => credit,
                }
            };
            let mut buf = self.buffer.take().expect("buffer is home between reads");
            // Any allocation happens here, on the actor's thread, not on one of
            // the many blocking threads: each of those would grow an allocator
            // arena of its own, and memory would no longer track the bound.
            buf.clear();
            // Room for a whole part (sealed, a part grows by a tag per
            // segment), whatever this part's length: a recycled buffer then
            // fits any later part, and the pool never holds more buffers
            // than there are credits. Sized to each part, files of many
            // sizes left buffers in the pool that fitted no later part.
            let room = crate::crypto::stored_len(part_size as u64, seal.is_some()) as usize;
            buf = next_buffer(buf, &self.pool, room);
            // Read into the buffer's spare room, which nothing zeroes first.
            let (mut room_vec, skip) = read_buffer(buf, room, seal.is_some());
            let seal = seal.cloned();
            let last = index + 1 == parts;
            // The read, the sealing and the checksum run on a blocking
            // thread, so that a part's CPU work never holds up a runtime
            // thread that the uploads' requests are waiting on.
            let (f, filled, read) = tokio::task::spawn_blocking(move || {
                let read = read_part(&file, &mut room_vec, len).map(|()| {
                    if let Some(seal) = &seal {
                        let first = offset / crate::crypto::SEGMENT_SIZE as u64;
                        seal.seal_segments(first, &mut room_vec, last);
                    }
                    crc32c::crc32c_append(crc, &room_vec[skip..])
                });
                (file, room_vec, read)
            })
            .await
            .expect("a read does not panic");
            file = f;
            let mut buf = part_buffer(filled, skip);
            match read {
                Ok(next) => crc = next,
                Err(e) => {
                    self.buffer = Some(buf);
                    return Err(read_err(e));
                }
            }
            let bytes = buf.split().freeze();
            self.buffer = Some(keep_rest(buf, room));
            let part = Part::new(bytes, credit, self.stats.clone(), self.pool.clone());
            uploader
                .actor()
                .cast(UploaderMsg::Part {
                    file: id,
                    index,
                    part,
                })
                .map_err(|_| UploadError::Stopped("uploader"))?;
        }
        Ok(crc)
    }
}

/// The buffer the next part is read into: what is left of the chunker's
/// own after the last part was split off, if it has room for a whole part
/// and the filler before it, or else one the pool recycled. (With less
/// than that test, the rest after a part of a few bytes would count as
/// room while that part still shares its allocation: turned into a
/// vector it would be copied into a new one, and every small file would
/// leave one more buffer behind.)
fn next_buffer(rest: BytesMut, pool: &BufferPool, room: usize) -> BytesMut {
    if holds_a_part(&rest, room) {
        return rest;
    }
    pool.take(room).unwrap_or(rest)
}

/// Whether `buf` has room for a whole part of `room` stored bytes and the
/// filler before it.
fn holds_a_part(buf: &BytesMut, room: usize) -> bool {
    buf.capacity() >= room + crate::direct::ALIGN
}

/// The capacity the pipeline makes its part buffers with: a whole stored
/// part (sealed, a part grows by a tag per segment) and the filler that
/// starts a plain one on a page.
pub(crate) fn buffer_capacity(part_size: usize, sealed: bool) -> usize {
    crate::crypto::stored_len(part_size as u64, sealed) as usize + crate::direct::ALIGN
}

/// What is left of the buffer once a part is split off, if a whole part
/// (and the filler before it) still fits in it; else an empty buffer. The
/// rest shares the part's allocation: kept, it would still hold it when
/// the part is dropped, which then could not give the allocation back to
/// the pool (it goes when the rest does), and the chunker would take fresh
/// memory for a later part, one buffer more than there are credits.
fn keep_rest(rest: BytesMut, room: usize) -> BytesMut {
    if holds_a_part(&rest, room) {
        rest
    } else {
        BytesMut::new()
    }
}

/// `buf`'s allocation as an empty vector with room for `room` bytes after
/// the returned number of filler bytes, which make a plain part start on a
/// page boundary: a local directory writes it around the page cache (see
/// [`crate::direct`]). A sealed part grows in place by its tags, and its
/// offsets in the object are not aligned: it starts where it lands.
///
/// As a vector, the buffer is the same allocation (no copy: it is empty
/// and, once recycled, owned by the chunker alone), which the standard
/// library reads a file straight into.
fn read_buffer(buf: BytesMut, room: usize, sealed: bool) -> (Vec<u8>, usize) {
    let mut vec = Vec::from(buf);
    vec.reserve_exact(room + crate::direct::ALIGN);
    let skip = if sealed {
        0
    } else {
        vec.as_ptr().align_offset(crate::direct::ALIGN)
    };
    vec.resize(skip, 0);
    (vec, skip)
}

/// The buffer a part is split from: `filled`, less its filler bytes.
fn part_buffer(filled: Vec<u8>, skip: usize) -> BytesMut {
    let mut buf = BytesMut::from(bytes::Bytes::from(filled));
    buf.advance(skip);
    buf
}

/// Reads the next `len` bytes of `file` into `buf`'s spare capacity (which
/// has room for them), without zeroing it first.
fn read_part(file: &File, buf: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    let read = file.take(len as u64).read_to_end(buf)?;
    if read < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended {} bytes early", len - read),
        ));
    }
    Ok(())
}

/// Abandons a file whose parts stopped coming, if it is dropped still open.
struct Closing {
    uploader: ractor::ActorRef<UploaderMsg>,
    file: FileId,
    open: bool,
}

impl Drop for Closing {
    fn drop(&mut self) {
        if self.open {
            let _ = self.uploader.cast(UploaderMsg::Abandon {
                file: self.file,
                error: UploadError::Stopped("chunker"),
            });
        }
    }
}

/// Opens an exported file and checks that it has the size RocksDB described.
async fn open(path: PathBuf, expected: u64) -> Result<File, UploadError> {
    let opened = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, len))
        }
    })
    .await
    .expect("an open does not panic");
    let read_err = |source| UploadError::Read {
        path: path.clone(),
        source,
    };
    let (file, actual) = opened.map_err(read_err)?;
    if actual != expected {
        return Err(read_err(std::io::Error::other(format!(
            "size is {actual} bytes, the export said {expected}"
        ))));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::ALIGN;
    use crate::flow::Credits;
    use std::collections::VecDeque;

    /// The chunker's round, as `send_parts` runs it, from a pool made
    /// with one buffer per credit as the chunker's is: a part read into the
    /// next buffer and split off, the rest kept only if a whole part fits
    /// in it, the part held by the uploader for two more rounds (every
    /// credit out) and then dropped, its buffer going back to the pool;
    /// every fifth round the uploader has stored every part before the
    /// chunker reads again (small files go fast). Parts of a few bytes (a
    /// `CURRENT` file) alternate with whole ones. No part is ever read into
    /// fresh memory.
    #[tokio::test]
    async fn parts_start_on_a_page_and_reuse_the_buffers_made_at_the_start() {
        let room = 3 * ALIGN + 100;
        let credits = Credits::new("test", 3);
        let stats = Arc::new(PipelineStats::default());
        let pool = BufferPool::default();
        pool.prepare(3, room + ALIGN).await;
        let mut rest = BytesMut::new();
        let mut in_flight = VecDeque::new();
        let mut fresh = Vec::new();
        for round in 0..40u8 {
            if round % 5 == 0 {
                in_flight.clear();
            }
            if in_flight.len() == 3 {
                drop(in_flight.pop_front());
            }
            let credit = credits.acquire().await;
            rest.clear();
            let pooled = pool.len();
            let buf = next_buffer(rest, &pool, room);
            if pool.len() == pooled {
                fresh.push(round);
            }
            let (mut vec, skip) = read_buffer(buf, room, false);
            assert!(vec.capacity() >= skip + room);
            let len = if round % 2 == 0 { 16 } else { room };
            vec.extend(std::iter::repeat_n(round, len));
            let mut buf = part_buffer(vec, skip);
            let part = buf.split().freeze();
            rest = keep_rest(buf, room);
            assert_eq!(part.as_ptr().align_offset(ALIGN), 0, "round {round}");
            assert_eq!(part.len(), len);
            assert!(part.iter().all(|&b| b == round));
            in_flight.push_back(Part::new(part, credit, stats.clone(), pool.clone()));
        }
        assert!(fresh.is_empty(), "rounds {fresh:?} read into fresh memory");
    }

    #[test]
    fn a_sealed_part_starts_where_its_buffer_does() {
        let (vec, skip) = read_buffer(BytesMut::new(), 3 * ALIGN, true);
        assert_eq!(skip, 0);
        assert!(vec.is_empty());
    }
}
