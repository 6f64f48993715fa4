//! The chunker: reads exported files into parts for the uploader.
//!
//! One [`BytesMut`] serves every part: a part is read into it, split off and
//! frozen into [`Bytes`] (no copy), and sent on. Once the uploader drops the
//! part, its allocation goes back to a [`BufferPool`] and serves a later part. Before reading a part the
//! chunker takes an uploader credit, so with every credit held by a part in
//! flight it waits instead of reading ahead: memory stays below
//! part size × (credits + 1) however large the snapshot is. The file's CRC32C
//! is computed while reading, so every byte is read from disk exactly once.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use object_store::path::Path;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use crate::actors::uploader::{StoredFile, UploadError, UploaderMsg};
use crate::flow::{BoundedMailbox, BufferPool, Credit, Part, PipelineStats};

/// One file to store under one key, and where to report the outcome.
#[derive(Debug)]
pub struct FileUpload {
    pub path: PathBuf,
    pub key: Path,
    pub size: u64,
    pub part_size: usize,
    /// Set when this attempt fails (a read, a part): its remaining parts are
    /// not read.
    pub failed: Arc<AtomicBool>,
    /// Set when the snapshot gives up: no part of any of its files is read.
    pub cancel: Arc<AtomicBool>,
    done: Mutex<Option<oneshot::Sender<Result<StoredFile, UploadError>>>>,
}

impl FileUpload {
    /// A file upload, and the receiver of its outcome. `cancel` is shared by
    /// every file of one snapshot, so that giving up on one stops them all.
    pub fn new(
        path: PathBuf,
        key: Path,
        size: u64,
        part_size: usize,
        cancel: Arc<AtomicBool>,
    ) -> (
        Arc<Self>,
        oneshot::Receiver<Result<StoredFile, UploadError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let upload = FileUpload {
            path,
            key,
            size,
            part_size,
            failed: Arc::default(),
            cancel,
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(upload), rx)
    }

    /// Number of parts: at least one, so that an empty file is still stored.
    pub fn part_count(&self) -> u64 {
        self.size.div_ceil(self.part_size as u64).max(1)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    /// Reports the outcome once; later reports are ignored.
    pub fn finish(&self, result: Result<StoredFile, UploadError>) {
        if result.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        if let Some(tx) = self.done.lock().expect("not poisoned").take() {
            let _ = tx.send(result);
        }
    }
}

pub enum ChunkerMsg {
    /// Read a file into parts. The credit bounds the chunker's own mailbox.
    File(Arc<FileUpload>, Credit),
}

pub struct Chunker;

pub struct ChunkerArgs {
    pub uploader: BoundedMailbox<UploaderMsg>,
    pub stats: Arc<PipelineStats>,
}

pub struct ChunkerState {
    uploader: BoundedMailbox<UploaderMsg>,
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
            uploader: args.uploader,
            stats: args.stats,
            pool: BufferPool::default(),
            buffer: Some(BytesMut::new()),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChunkerMsg::File(upload, _credit) => {
                if let Err(e) = chunk_file(state, &upload).await {
                    abort(state, &upload, e).await;
                }
            }
        }
        Ok(())
    }
}

async fn chunk_file(state: &mut ChunkerState, upload: &Arc<FileUpload>) -> Result<(), UploadError> {
    let read_err = |source| UploadError::Read {
        path: upload.path.clone(),
        source,
    };
    let path = upload.path.clone();
    let (mut file, actual) = tokio::task::spawn_blocking(move || {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok::<_, std::io::Error>((file, len))
    })
    .await
    .expect("open task")
    .map_err(read_err)?;
    // A file whose size changed since the export is not the file RocksDB described.
    if actual != upload.size {
        return Err(read_err(std::io::Error::other(format!(
            "size is {actual} bytes, the export said {}",
            upload.size
        ))));
    }
    let parts = upload.part_count();
    let mut crc = 0u32;
    for index in 0..parts {
        if upload.is_failed() {
            return Err(UploadError::Cancelled);
        }
        let offset = index * upload.part_size as u64;
        let len = (upload.size - offset).min(upload.part_size as u64) as usize;
        // Wait for room downstream before touching the disk.
        let credit = state.uploader.credits().acquire().await;
        let mut buf = state.buffer.take().expect("buffer is home between reads");
        // Any allocation happens here, on the actor's thread, not on one of
        // the many blocking threads: each of those would grow an allocator
        // arena of its own, and memory would no longer track the bound.
        buf.clear();
        if buf.capacity() < len {
            if let Some(recycled) = state.pool.take(len) {
                buf = recycled;
            }
        }
        buf.reserve(len);
        let (f, b, read) = tokio::task::spawn_blocking(move || {
            buf.resize(len, 0);
            let read = file.read_exact(&mut buf[..]);
            (file, buf, read)
        })
        .await
        .expect("read task");
        file = f;
        let mut buf = b;
        if let Err(e) = read {
            state.buffer = Some(buf);
            return Err(read_err(e));
        }
        crc = crc32c::crc32c_append(crc, &buf);
        let bytes = buf.split().freeze();
        state.buffer = Some(buf);
        let part = Part::new(bytes, credit, state.stats.clone(), state.pool.clone());
        let last = index + 1 == parts;
        let msg = UploaderMsg::Part {
            upload: upload.clone(),
            index,
            part,
            crc32c: last.then_some(crc),
        };
        state
            .uploader
            .actor()
            .cast(msg)
            .map_err(|_| UploadError::Stopped("uploader"))?;
    }
    Ok(())
}

async fn abort(state: &ChunkerState, upload: &Arc<FileUpload>, error: UploadError) {
    upload.failed.store(true, Ordering::SeqCst);
    let msg = UploaderMsg::Abort {
        upload: upload.clone(),
        error,
    };
    if let Err(ractor::MessagingErr::SendErr(UploaderMsg::Abort { error, .. })) =
        state.uploader.actor().cast(msg)
    {
        upload.finish(Err(error));
    }
}
