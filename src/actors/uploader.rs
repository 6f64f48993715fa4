//! The uploader: stores parts, as many at once as the budget allows
//! requests. Each part holds an uploader credit from the moment the chunker
//! reads it; there is one credit more than requests, so the next part is
//! read while the others travel and no connection waits for the disk.
//!
//! The chunker announces each file (`Begin`, which hands over the port the
//! file's outcome is reported on), sends its parts, and closes it (`End`
//! with the file's CRC32C, or `Abandon` with the reason it stopped). A file
//! of one part is stored with a single put; a larger one with a multipart
//! upload. Every request runs as a task the uploader owns, and reports back
//! by message, so the uploader never waits on the store itself: a slow
//! CreateMultipartUpload of one file holds up no part of another (the file's
//! own parts wait for it in its queue, still bounded by the credits they
//! hold). A file with a failed part, or one that was abandoned or
//! cancelled, has its multipart upload aborted, so no half-written object
//! and no open upload is left behind.
//!
//! Longer than most files here on purpose: one actor, one file, and a
//! file's state machine (`Upload`, `Target`, `advance`) reads best whole.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::spawn_owned;
use crate::flow::{LeaseWritten, Part, PipelineStats};
use crate::metrics as m;
use crate::ratelimit::RateLimit;
use crate::retry::{is_transient, RetryPolicy};

/// One attempt at storing one file.
pub(crate) type FileId = ulid::Ulid;

/// Where a file's outcome is reported, once.
pub(crate) type FileReply = RpcReplyPort<Result<StoredFile, UploadError>>;

/// A file the chunker is about to send.
pub(crate) struct FileUpload {
    pub id: FileId,
    pub key: Path,
    pub size: u64,
    /// Number of parts the file is sent in (at least one).
    pub parts: u64,
    /// Cancelled when this attempt is given up, by anyone.
    pub cancel: CancellationToken,
    /// The object is stored (put whole, or completed) only once this opens.
    pub lease: LeaseWritten,
    pub reply: FileReply,
}

pub(crate) enum UploaderMsg {
    /// A file's parts follow.
    Begin(FileUpload),
    /// Part `index` of a file.
    Part {
        file: FileId,
        index: u64,
        part: Part,
    },
    /// Every part of the file was sent; its CRC32C.
    End {
        file: FileId,
        crc32c: u32,
    },
    /// The chunker stopped sending the file.
    Abandon {
        file: FileId,
        error: UploadError,
    },
    // Sent by the uploader's own tasks.
    Created {
        file: FileId,
        result: Result<Box<dyn MultipartUpload>, UploadError>,
    },
    PartDone {
        file: FileId,
        result: Result<(), UploadError>,
    },
    Settled {
        file: FileId,
        result: Result<(), UploadError>,
    },
    TaskPanicked(String),
}

/// A file stored in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub key: Path,
    pub size: u64,
    pub crc32c: u32,
}

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The exported file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The exported file.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// The store refused or failed a request.
    #[error("cannot store {key}: {source}")]
    Store {
        /// The object's key.
        key: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The snapshot gave up on the file.
    #[error("cancelled (another file of the snapshot failed, or the node is shutting down)")]
    Cancelled,
    /// A pipeline stage stopped while it held the file.
    #[error("the {0} stage stopped while storing the file (it is restarted; its error is logged)")]
    Stopped(&'static str),
}

impl UploadError {
    fn is_cancelled(&self) -> bool {
        matches!(self, UploadError::Cancelled)
    }
}

pub(crate) struct Uploader;

pub(crate) struct UploaderArgs {
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<PipelineStats>,
    /// Requests on the wire at once: a part holds its credit from the read
    /// on, and one of these only while it is sent.
    pub requests: Arc<Semaphore>,
    pub rate_limit: Option<RateLimit>,
    pub retry: RetryPolicy,
}

/// Where a file's object stands.
enum Target {
    /// One part, one put.
    Single,
    /// CreateMultipartUpload is in flight; the parts that arrived wait here.
    Creating(Vec<(u64, Part)>),
    Open(Box<dyn MultipartUpload>),
    /// No upload to finish: its creation failed, or it was handed to the
    /// task that completes or aborts it.
    Gone,
}

/// How the chunker closed the file.
enum Closed {
    No,
    Ended(u32),
    Abandoned,
}

struct Upload {
    key: Path,
    size: u64,
    parts: u64,
    cancel: CancellationToken,
    lease: LeaseWritten,
    reply: FileReply,
    target: Target,
    /// Requests in flight for the file.
    running: usize,
    closed: Closed,
    error: Option<UploadError>,
    /// The upload is being completed or aborted.
    settling: bool,
}

impl Upload {
    /// Records why the file fails: the first real cause wins over the
    /// cancellations it causes. The chunker stops reading it.
    fn fail(&mut self, error: UploadError) {
        if self.error.as_ref().is_none_or(UploadError::is_cancelled) {
            self.error = Some(error);
        }
        self.cancel.cancel();
    }
}

pub(crate) struct UploaderState {
    store: Arc<dyn ObjectStore>,
    stats: Arc<PipelineStats>,
    requests: Arc<Semaphore>,
    rate_limit: Option<RateLimit>,
    retry: RetryPolicy,
    uploads: HashMap<FileId, Upload>,
    tasks: JoinSet<()>,
}

impl Actor for Uploader {
    type Msg = UploaderMsg;
    type State = UploaderState;
    type Arguments = UploaderArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: UploaderArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(UploaderState {
            store: args.store,
            stats: args.stats,
            requests: args.requests,
            rate_limit: args.rate_limit,
            retry: args.retry,
            uploads: HashMap::new(),
            tasks: JoinSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        while state.tasks.try_join_next().is_some() {}
        let file = match msg {
            UploaderMsg::TaskPanicked(msg) => {
                return Err(format!("an upload task panicked: {msg}").into());
            }
            UploaderMsg::Begin(upload) => state.begin(&myself, upload),
            UploaderMsg::Part { file, index, part } => state.part(&myself, file, index, part),
            UploaderMsg::End { file, crc32c } => {
                if let Some(u) = state.uploads.get_mut(&file) {
                    u.closed = Closed::Ended(crc32c);
                }
                file
            }
            UploaderMsg::Abandon { file, error } => {
                if let Some(u) = state.uploads.get_mut(&file) {
                    u.closed = Closed::Abandoned;
                    u.fail(error);
                }
                file
            }
            UploaderMsg::Created { file, result } => state.created(&myself, file, result),
            UploaderMsg::PartDone { file, result } => {
                if let Some(u) = state.uploads.get_mut(&file) {
                    u.running -= 1;
                    if let Err(e) = result {
                        u.fail(e);
                    }
                }
                file
            }
            UploaderMsg::Settled { file, result } => {
                if let Some(u) = state.uploads.remove(&file) {
                    let stored = StoredFile {
                        key: u.key,
                        size: u.size,
                        crc32c: match u.closed {
                            Closed::Ended(crc) => crc,
                            _ => 0,
                        },
                    };
                    let _ = u.reply.send(result.map(|()| stored));
                }
                return Ok(());
            }
        };
        state.advance(&myself, file);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped with files in hand (the supervisor is going away): their
        // requests are aborted with the task set, their uploads here.
        state.tasks.abort_all();
        for (_, u) in state.uploads.drain() {
            if let Target::Open(mut multipart) = u.target {
                if let Err(e) = multipart.abort().await {
                    tracing::warn!(key = %u.key, error = %e, "cannot abort multipart upload");
                }
            }
            let _ = u.reply.send(Err(UploadError::Stopped("uploader")));
        }
        Ok(())
    }
}

/// ractor skips `post_stop` when the uploader fails or is killed (its
/// supervisor stopping): the multipart uploads it holds open are aborted
/// here instead, each in a task of its own on the runtime, as nothing is
/// left to own them; the reply ports dropped with the state tell the
/// snapshots the stage stopped.
impl Drop for UploaderState {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (_, u) in self.uploads.drain() {
            if let Target::Open(mut multipart) = u.target {
                let key = u.key;
                runtime.spawn(async move {
                    if let Err(e) = multipart.abort().await {
                        tracing::warn!(%key, error = %e, "cannot abort multipart upload; garbage collection will");
                    }
                });
            }
        }
    }
}

impl UploaderState {
    fn begin(&mut self, myself: &ActorRef<UploaderMsg>, upload: FileUpload) -> FileId {
        let target = if upload.parts == 1 {
            Target::Single
        } else {
            let store = self.store.clone();
            let key = upload.key.clone();
            let cancel = upload.cancel.clone();
            let retry = self.retry;
            let file = upload.id;
            spawn_owned(
                &mut self.tasks,
                myself,
                async move {
                    let create = retry.run("create multipart upload", || store.put_multipart(&key));
                    let result = tokio::select! {
                        _ = cancel.cancelled() => Err(UploadError::Cancelled),
                        r = create => r.map_err(|source| UploadError::Store { key: key.to_string(), source }),
                    };
                    Some(UploaderMsg::Created { file, result })
                },
                UploaderMsg::TaskPanicked,
            );
            Target::Creating(Vec::new())
        };
        self.uploads.insert(
            upload.id,
            Upload {
                key: upload.key,
                size: upload.size,
                parts: upload.parts,
                cancel: upload.cancel,
                lease: upload.lease,
                reply: upload.reply,
                target,
                running: 0,
                closed: Closed::No,
                error: None,
                settling: false,
            },
        );
        upload.id
    }

    fn part(
        &mut self,
        myself: &ActorRef<UploaderMsg>,
        file: FileId,
        index: u64,
        part: Part,
    ) -> FileId {
        let stats = self.stats.clone();
        let limit = self.rate_limit.clone();
        let requests = self.requests.clone();
        let Some(u) = self.uploads.get_mut(&file) else {
            return file; // a file already settled: the part is dropped
        };
        debug_assert!(index < u.parts, "part {index} of {}", u.parts);
        if u.error.is_some() {
            return file;
        }
        let payload = PutPayload::from(part.bytes());
        let request: UploadRequest = match &mut u.target {
            Target::Creating(queue) => {
                queue.push((index, part));
                return file;
            }
            Target::Gone => return file,
            Target::Single => {
                let store = self.store.clone();
                let key = u.key.clone();
                Box::pin(async move {
                    store
                        .put_opts(&key, payload, PutMode::Overwrite.into())
                        .await
                        .map(drop)
                })
            }
            Target::Open(multipart) => multipart.put_part(payload),
        };
        u.running += 1;
        let sending = Sending {
            file,
            key: u.key.to_string(),
            part,
            // A single put stores the object itself.
            lease: matches!(u.target, Target::Single).then(|| u.lease.clone()),
            cancel: u.cancel.clone(),
            stats,
            limit,
            requests,
        };
        spawn_owned(
            &mut self.tasks,
            myself,
            sending.run(request),
            UploaderMsg::TaskPanicked,
        );
        file
    }

    fn created(
        &mut self,
        myself: &ActorRef<UploaderMsg>,
        file: FileId,
        result: Result<Box<dyn MultipartUpload>, UploadError>,
    ) -> FileId {
        let Some(u) = self.uploads.get_mut(&file) else {
            return file;
        };
        let queued = match std::mem::replace(&mut u.target, Target::Gone) {
            Target::Creating(queued) => queued,
            other => {
                u.target = other;
                return file;
            }
        };
        match result {
            Err(e) => u.fail(e),
            Ok(multipart) => {
                u.target = Target::Open(multipart);
                for (index, part) in queued {
                    self.part(myself, file, index, part);
                }
            }
        }
        file
    }

    /// Finishes a file once the chunker has closed it and no request of it
    /// is in flight: completes its upload, or aborts it, and reports.
    fn advance(&mut self, myself: &ActorRef<UploaderMsg>, file: FileId) {
        let Some(u) = self.uploads.get_mut(&file) else {
            return;
        };
        let waiting = u.settling
            || u.running > 0
            || matches!(u.target, Target::Creating(_))
            || matches!(u.closed, Closed::No);
        if waiting {
            return;
        }
        if u.error.is_none() && u.cancel.is_cancelled() {
            u.error = Some(UploadError::Cancelled);
        }
        let target = std::mem::replace(&mut u.target, Target::Gone);
        let error = u.error.take();
        match (target, error) {
            (Target::Open(multipart), error) => {
                u.settling = true;
                let key = u.key.clone();
                let lease = u.lease.clone();
                let retry = self.retry;
                spawn_owned(
                    &mut self.tasks,
                    myself,
                    async move {
                        let result = settle(multipart, &key, error, &lease, retry).await;
                        Some(UploaderMsg::Settled { file, result })
                    },
                    UploaderMsg::TaskPanicked,
                );
            }
            (_, error) => {
                let u = self.uploads.remove(&file).expect("present above");
                let result = match (error, u.closed) {
                    (Some(e), _) => Err(e),
                    (None, Closed::Ended(crc32c)) => Ok(StoredFile {
                        key: u.key,
                        size: u.size,
                        crc32c,
                    }),
                    (None, _) => Err(UploadError::Cancelled),
                };
                let _ = u.reply.send(result);
            }
        }
    }
}

/// A part's request: a single put or a multipart part.
type UploadRequest = futures::future::BoxFuture<'static, object_store::Result<()>>;

/// One part on its way: waits for the rate limit, gives up at once when the
/// file is cancelled, and releases the part (its memory and its credit) when
/// the request ends.
struct Sending {
    file: FileId,
    key: String,
    part: Part,
    /// What the request waits for first, if it stores the object itself.
    lease: Option<LeaseWritten>,
    cancel: CancellationToken,
    stats: Arc<PipelineStats>,
    limit: Option<RateLimit>,
    requests: Arc<Semaphore>,
}

impl Sending {
    async fn run(self, request: UploadRequest) -> Option<UploaderMsg> {
        let Sending {
            file,
            key,
            part,
            lease,
            cancel,
            stats,
            limit,
            requests,
        } = self;
        let len = part.len() as u64;
        let send = async {
            if let Some(lease) = &lease {
                if !lease.written().await {
                    return Err(UploadError::Cancelled);
                }
            }
            let _on_the_wire = requests.acquire().await.expect("never closed");
            if let Some(limit) = &limit {
                limit.acquire(len).await;
            }
            request
                .await
                .map_err(|source| UploadError::Store { key, source })
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => Err(UploadError::Cancelled),
            r = send => r,
        };
        drop(part);
        if result.is_ok() {
            stats.uploaded(len);
            m::uploaded_parts().increment(1);
        }
        Some(UploaderMsg::PartDone { file, result })
    }
}

/// Completes a multipart upload whose parts are all stored, or aborts it;
/// an upload whose completion fails is aborted too.
async fn settle(
    mut multipart: Box<dyn MultipartUpload>,
    key: &Path,
    error: Option<UploadError>,
    lease: &LeaseWritten,
    retry: RetryPolicy,
) -> Result<(), UploadError> {
    // Not written: the snapshot stops for its lease, and this is aborted.
    let error = match error {
        None if !lease.written().await => Some(UploadError::Cancelled),
        error => error,
    };
    let result = match error {
        Some(e) => Err(e),
        None => multipart
            .complete()
            .await
            .map(drop)
            .map_err(|source| UploadError::Store {
                key: key.to_string(),
                source,
            }),
    };
    if result.is_err() {
        // The upload cannot be lent to `RetryPolicy::run` mutably, so its
        // delays are taken here.
        let mut delays = retry.delays();
        while let Err(e) = multipart.abort().await {
            match delays.next() {
                Some(wait) if is_transient(&e) => tokio::time::sleep(wait).await,
                _ => {
                    tracing::warn!(%key, error = %e, "cannot abort multipart upload");
                    break;
                }
            }
        }
    }
    result
}
