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
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectStore, PutMultipartOptions, PutPayload, PutResult, Result, UploadPart,
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

wrapper_store!(DropBlocksOnAbort {
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
});

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
