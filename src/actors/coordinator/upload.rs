//! Step 3 of a snapshot: every file the plan sends, through the chunker and
//! the uploader, with whole-file resends after transient failures.

use futures::future::join_all;
use ractor::RpcReplyPort;
use tokio_util::sync::CancellationToken;

use super::{Job, Plan, PlannedFile, SnapshotError, Uploaded};
use crate::actors::chunker::{ChunkerMsg, FileRequest};
use crate::actors::uploader::{StoredFile, UploadError};
use crate::retry::is_transient;

impl Job {
    /// Step 3: every planned file stored, or the snapshot's own objects
    /// removed again and the first real failure returned.
    pub(super) async fn upload(&self, plan: Plan) -> Result<Uploaded, SnapshotError> {
        // Giving up on one file gives up on the others.
        let files_cancel = self.cancel.child_token();
        self.stats.planned(
            plan.files
                .iter()
                .filter(|f| f.reused.is_none())
                .map(|f| crate::crypto::stored_len(f.size, f.seal.is_some()))
                .sum(),
        );
        let entry_keys: Vec<Option<String>> =
            plan.files.iter().map(|f| f.entry_key.clone()).collect();
        let encryption: Vec<_> = plan.files.iter().map(|f| f.encryption.clone()).collect();
        let results = join_all(plan.files.into_iter().map(|f| {
            let cancel = &files_cancel;
            async move {
                match f.reused {
                    Some((crc32c, size)) => Ok((
                        StoredFile {
                            key: f.key,
                            size,
                            crc32c,
                        },
                        false,
                    )),
                    None => {
                        let stored = self.store_file(&f, cancel).await;
                        if stored.is_err() {
                            cancel.cancel();
                        }
                        stored.map(|s| (s, true))
                    }
                }
            }
        }))
        .await;
        let mut stored = Vec::with_capacity(results.len());
        let mut sent = Vec::new();
        let mut cause: Option<UploadError> = None;
        for result in results {
            match result {
                Ok((file, was_sent)) => {
                    if was_sent {
                        sent.push(file.clone());
                    }
                    stored.push(file);
                }
                // The cause is the first failure that is not a cancellation
                // caused by it.
                Err(e) => {
                    if cause
                        .as_ref()
                        .is_none_or(|c| matches!(c, UploadError::Cancelled))
                    {
                        cause = Some(e);
                    }
                }
            }
        }
        if let Some(cause) = cause {
            self.remove_own(&sent).await;
            return Err(SnapshotError::upload(self.partition(), cause));
        }
        let reused_from = plan.base.filter(|_| stored.len() > sent.len());
        Ok(Uploaded {
            sent,
            stored,
            entry_keys,
            encryption,
            reused_from,
        })
    }

    /// Stores one file through the chunker and the uploader, sending it
    /// again (after the retry policy's wait) when a transient store error
    /// aborted the previous attempt.
    async fn store_file(
        &self,
        file: &PlannedFile,
        cancel: &CancellationToken,
    ) -> Result<StoredFile, UploadError> {
        let mut delays = self.repository.retry().delays();
        loop {
            let attempt = cancel.child_token();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let request = FileRequest {
                id: ulid::Ulid::new(),
                path: file.path.clone(),
                key: file.key.clone(),
                size: file.size,
                part_size: self.config.part_size,
                seal: file.seal.clone(),
                cancel: attempt.clone(),
                lease: self.lease_gate.gate(),
                uploader: self.stages.uploader.clone(),
                reply: RpcReplyPort::from(tx),
            };
            let sent = tokio::select! {
                _ = cancel.cancelled() => return Err(UploadError::Cancelled),
                sent = self.stages.chunker.send(|credit| ChunkerMsg::File(request, credit)) => sent,
            };
            sent.map_err(|_| UploadError::Stopped("chunker"))?;
            // Once handed over, the attempt always answers: the uploader
            // aborts what it started before it reports a cancellation.
            let result = rx
                .await
                .unwrap_or(Err(UploadError::Stopped("chunker or uploader")));
            match result {
                Err(UploadError::Store { source, key }) if is_transient(&source) => {
                    let Some(wait) = delays.next().filter(|_| !cancel.is_cancelled()) else {
                        return Err(UploadError::Store { source, key });
                    };
                    tracing::debug!(%key, error = %source, "file upload failed, sending it again");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(UploadError::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                result => return result,
            }
        }
    }

    /// Every object this snapshot sent has a key of its own (its folder, or
    /// a shared key named after it) that no other snapshot references, so
    /// a failed snapshot removes them all; what it reused stays.
    async fn remove_own(&self, sent: &[StoredFile]) {
        let keys: Vec<_> = sent.iter().map(|f| f.key.clone()).collect();
        if let Err(e) = self.repository.delete_objects(&keys).await {
            tracing::debug!(error = %e, "cannot remove the objects of a failed snapshot; garbage collection will");
        }
    }
}
