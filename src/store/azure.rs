//! Azure Blob Storage: an abandoned upload's blocks dropped at once.
//!
//! A multipart upload to Azure stages blocks under the blob's name and
//! commits them with a block list. `object_store`'s abort does nothing
//! (Azure has no call for it), so the staged blocks of a failed or cancelled
//! upload stay for a week, billed and listed as an uncommitted blob. Deleting
//! the blob drops them: this wrapper's abort does that. The key is the
//! failed snapshot's own, which nothing else writes; if the commit landed
//! although its answer was lost, the snapshot failed all the same and its
//! objects are removed anyway.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// An Azure store whose aborted uploads leave no blocks behind.
#[derive(Debug)]
pub(crate) struct DropBlocksOnAbort {
    inner: Arc<dyn ObjectStore>,
}

impl DropBlocksOnAbort {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        DropBlocksOnAbort { inner }
    }
}

impl fmt::Display for DropBlocksOnAbort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DropBlocksOnAbort {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(BlockUpload {
            inner,
            store: self.inner.clone(),
            location: location.clone(),
        }))
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
struct BlockUpload {
    inner: Box<dyn MultipartUpload>,
    store: Arc<dyn ObjectStore>,
    location: Path,
}

#[async_trait]
impl MultipartUpload for BlockUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await?;
        use object_store::ObjectStoreExt;
        match self.store.delete(&self.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
