//! A remote-like store: `object_store`'s in-memory store behind
//! `ThrottledStore` (a wait per request, and per byte for reads), plus the
//! per-byte wait for writes that `ThrottledStore` lacks. Each request pays
//! `LATENCY` and moves its bytes at `BANDWIDTH` per connection, as one
//! connection to a remote object store does.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

pub const LATENCY: Duration = Duration::from_millis(20);
/// Bytes per second of one connection.
pub const BANDWIDTH: f64 = 100.0 * 1024.0 * 1024.0;

fn transfer(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / BANDWIDTH)
}

/// The time the model charges one request of `bytes`.
pub fn request_time(bytes: u64) -> Duration {
    LATENCY + transfer(bytes as usize)
}

#[derive(Debug)]
pub struct RemoteModel {
    inner: Arc<ThrottledStore<InMemory>>,
}

impl RemoteModel {
    pub fn new() -> Self {
        let config = ThrottleConfig {
            wait_get_per_call: LATENCY,
            wait_get_per_byte: transfer(1),
            wait_put_per_call: LATENCY,
            wait_list_per_call: LATENCY,
            wait_list_with_delimiter_per_call: LATENCY,
            wait_delete_per_call: LATENCY,
            ..ThrottleConfig::default()
        };
        RemoteModel {
            inner: Arc::new(ThrottledStore::new(InMemory::new(), config)),
        }
    }
}

impl fmt::Display for RemoteModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteModel")
    }
}

#[async_trait]
impl ObjectStore for RemoteModel {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        tokio::time::sleep(transfer(payload.content_length())).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(ModelUpload { inner }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct ModelUpload {
    inner: Box<dyn MultipartUpload>,
}

#[async_trait]
impl MultipartUpload for ModelUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let wait = transfer(data.content_length());
        let request = self.inner.put_part(data);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            request.await
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        tokio::time::sleep(LATENCY).await;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
