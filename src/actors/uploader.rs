//! The uploader: stores parts, as many at once as the chunker holds credits.
//!
//! A file of one part is stored with a single put; a larger one with a
//! multipart upload whose parts go out as they arrive, side by side with the
//! parts of other files. The concurrency bound is the uploader's credit count:
//! every part in flight holds one, and its memory, until its request ends. A
//! multipart upload with a failed part, or whose file failed to read, is
//! aborted, so no half-written object and no open upload is left behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use crate::actors::chunker::FileUpload;
use crate::flow::{Part, PipelineStats};
use crate::metrics as m;
use crate::ratelimit::RateLimit;
use crate::retry::RetryPolicy;

pub enum UploaderMsg {
    /// Part `index` of a file; the last part carries the file's CRC32C.
    Part {
        upload: Arc<FileUpload>,
        index: u64,
        part: Part,
        crc32c: Option<u32>,
    },
    /// The file cannot be finished: abort what was started and report `error`.
    Abort {
        upload: Arc<FileUpload>,
        error: UploadError,
    },
}

/// A file stored in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub key: Path,
    pub size: u64,
    pub crc32c: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot store {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cancelled (another file of the snapshot failed, or the node is shutting down)")]
    Cancelled,
    #[error("the {0} stage has stopped")]
    Stopped(&'static str),
}

pub struct Uploader;

pub struct UploaderArgs {
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<PipelineStats>,
    pub rate_limit: Option<RateLimit>,
}

struct InProgress {
    multipart: Box<dyn MultipartUpload>,
    /// `Ok(false)`: the part was not sent because the file was given up.
    parts: Vec<JoinHandle<Result<bool, object_store::Error>>>,
}

pub struct UploaderState {
    store: Arc<dyn ObjectStore>,
    stats: Arc<PipelineStats>,
    rate_limit: Option<RateLimit>,
    uploads: HashMap<Path, InProgress>,
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
            rate_limit: args.rate_limit,
            uploads: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UploaderMsg::Part {
                upload,
                index,
                part,
                crc32c,
            } => state.part(upload, index, part, crc32c).await,
            UploaderMsg::Abort { upload, error } => match state.uploads.remove(&upload.key) {
                Some(in_progress) => {
                    tokio::spawn(finish_multipart(in_progress, upload, Err(error)));
                }
                None => upload.finish(Err(error)),
            },
        }
        Ok(())
    }
}

impl UploaderState {
    async fn part(&mut self, upload: Arc<FileUpload>, index: u64, part: Part, crc32c: Option<u32>) {
        let store_err = |source| UploadError::Store {
            key: upload.key.to_string(),
            source,
        };
        if upload.part_count() == 1 {
            let store = self.store.clone();
            let stats = self.stats.clone();
            let crc = crc32c.expect("a single part is the last part");
            let limit = self.rate_limit.clone();
            tokio::spawn(async move {
                let len = part.len() as u64;
                if let Some(limit) = limit {
                    limit.acquire(len).await;
                }
                let put = store
                    .put_opts(
                        &upload.key,
                        PutPayload::from(part.bytes()),
                        PutMode::Overwrite.into(),
                    )
                    .await;
                drop(part);
                let result = match put {
                    Ok(_) => {
                        stats.uploaded(len);
                        m::uploaded_parts().increment(1);
                        Ok(StoredFile {
                            key: upload.key.clone(),
                            size: upload.size,
                            crc32c: crc,
                        })
                    }
                    Err(source) => Err(UploadError::Store {
                        key: upload.key.to_string(),
                        source,
                    }),
                };
                upload.finish(result);
            });
            return;
        }
        if index == 0 {
            let create = RetryPolicy::default()
                .run("create multipart upload", || {
                    self.store.put_multipart(&upload.key)
                })
                .await;
            match create {
                Ok(multipart) => {
                    self.uploads.insert(
                        upload.key.clone(),
                        InProgress {
                            multipart,
                            parts: Vec::new(),
                        },
                    );
                }
                Err(e) => {
                    upload.finish(Err(store_err(e)));
                    return;
                }
            }
        }
        let Some(in_progress) = self.uploads.get_mut(&upload.key) else {
            // The upload could not be started or was aborted; the part is dropped.
            return;
        };
        if !upload.is_failed() {
            let request = in_progress
                .multipart
                .put_part(PutPayload::from(part.bytes()));
            let stats = self.stats.clone();
            let failed = upload.failed.clone();
            let limit = self.rate_limit.clone();
            let cancel = upload.cancel.clone();
            in_progress.parts.push(tokio::spawn(async move {
                let len = part.len() as u64;
                if let Some(limit) = limit {
                    let given_up =
                        || failed.load(Ordering::SeqCst) || cancel.load(Ordering::SeqCst);
                    if !limit.acquire_unless(len, given_up).await {
                        return Ok(false);
                    }
                }
                let result = request.await;
                drop(part);
                match &result {
                    Ok(()) => {
                        stats.uploaded(len);
                        m::uploaded_parts().increment(1);
                    }
                    Err(_) => failed.store(true, Ordering::SeqCst),
                }
                result.map(|()| true)
            }));
        }
        if let Some(crc) = crc32c {
            let in_progress = self.uploads.remove(&upload.key).expect("present above");
            let stored = StoredFile {
                key: upload.key.clone(),
                size: upload.size,
                crc32c: crc,
            };
            tokio::spawn(finish_multipart(in_progress, upload, Ok(stored)));
        }
    }
}

/// Waits for every part, then completes the upload, or aborts it if a part
/// failed or the file was given up.
async fn finish_multipart(
    mut in_progress: InProgress,
    upload: Arc<FileUpload>,
    outcome: Result<StoredFile, UploadError>,
) {
    let store_err = |source| UploadError::Store {
        key: upload.key.to_string(),
        source,
    };
    let (stored, mut error) = match outcome {
        Ok(stored) => (Some(stored), None),
        Err(e) => (None, Some(e)),
    };
    for handle in in_progress.parts.drain(..) {
        let part = handle.await.unwrap_or_else(|join| {
            Err(object_store::Error::Generic {
                store: "uploader",
                source: Box::new(join),
            })
        });
        match part {
            Ok(true) => {}
            Ok(false) => {
                error.get_or_insert(UploadError::Cancelled);
            }
            // A failed part is the cause; a cancellation is only its echo.
            Err(e) => {
                if matches!(error, None | Some(UploadError::Cancelled)) {
                    error = Some(store_err(e));
                }
            }
        }
    }
    if error.is_none() && upload.is_failed() {
        error = Some(UploadError::Cancelled);
    }
    let result = match (stored, error) {
        (Some(stored), None) => in_progress
            .multipart
            .complete()
            .await
            .map(|_| stored)
            .map_err(store_err),
        (_, Some(e)) => Err(e),
        (None, None) => unreachable!("an outcome is either stored or an error"),
    };
    if result.is_err() {
        // `RetryPolicy::run` cannot lend the upload mutably to each attempt,
        // so the same policy is applied here by hand, with its backoff.
        let policy = RetryPolicy::default();
        let mut attempt = 0;
        while let Err(e) = in_progress.multipart.abort().await {
            attempt += 1;
            if attempt >= policy.attempts || !crate::retry::is_transient(&e) {
                tracing::warn!(key = %upload.key, error = %e, "cannot abort multipart upload");
                break;
            }
            tokio::time::sleep(policy.backoff(attempt - 1)).await;
        }
    }
    upload.finish(result);
}
