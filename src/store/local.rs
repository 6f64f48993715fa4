//! A local directory's store: `object_store`'s own, with multipart uploads
//! written around the page cache.
//!
//! A snapshot writes each of its files once into the directory, and only a
//! restore reads it back, maybe never. Through the page cache, every part
//! would be copied by the kernel into pages it must first find (taking them
//! from the node's own working set: its database's blocks), then written
//! back at the fsync; a gigabyte snapshot would evict a gigabyte of what
//! the node serves from. Here each part is written with `O_DIRECT` where
//! the filesystem takes it (see [`crate::direct`]): the disk reads it
//! straight from the chunker's buffer.
//!
//! Everything else is `LocalFileSystem`'s, and so is the way an upload is
//! published: a staging file `<key>#<n>` beside the object (the name
//! garbage collection looks for open uploads by), fsynced once complete,
//! renamed over the key, its folder fsynced. A single put (a file smaller
//! than a part, `metadata.json`) goes to the inner store as it is.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    MultipartUpload, PutMultipartOptions, PutPayload, PutResult, Result, UploadPart,
};

use crate::direct::NewFile;

/// A local directory whose multipart uploads go around the page cache.
#[derive(Debug)]
pub(crate) struct LocalDirectory {
    inner: Arc<LocalFileSystem>,
}

impl LocalDirectory {
    /// `inner` must make what it writes durable (`with_fsync(true)`): its
    /// single puts are this store's.
    pub fn new(inner: LocalFileSystem) -> Self {
        LocalDirectory {
            inner: Arc::new(inner),
        }
    }
}

impl fmt::Display for LocalDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

/// Why a write into the directory failed.
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("cannot create the staging file {}: {source}", path.display())]
    Stage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot publish {} as {}: {source}", staging.display(), path.display())]
    Publish {
        staging: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove the staging file {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the upload was completed or aborted already")]
    Closed,
}

impl From<LocalError> for object_store::Error {
    fn from(e: LocalError) -> Self {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        }
    }
}

wrapper_store!(LocalDirectory {
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            // The inner store refuses them, and says why.
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let staged = tokio::task::spawn_blocking(move || Staged::create(dest))
            .await
            .expect("creating a file does not panic")?;
        Ok(Box::new(DirectUpload {
            staged: Some(Arc::new(staged)),
            offset: 0,
        }))
    }
});

/// The staging file, `None` once it is closed to be published.
type StagingFile = Arc<tokio::sync::Mutex<Option<NewFile>>>;

/// An upload's staging file and the object it becomes.
#[derive(Debug)]
struct Staged {
    /// Parts are written one at a time (concurrent writers of one file
    /// would only wait for each other on its inode's lock), and a part
    /// waits for its turn here, before it takes a blocking thread: eight
    /// parts of one file in flight hold one thread, not eight.
    file: StagingFile,
    staging: PathBuf,
    dest: PathBuf,
}

impl Staged {
    /// Creates the first free `<dest>#<n>`, and `dest`'s missing folders
    /// durably, as `LocalFileSystem` names and makes them.
    fn create(dest: PathBuf) -> Result<Self, LocalError> {
        let mut n = 1u32;
        let mut made = false;
        loop {
            let mut staging = dest.clone().into_os_string();
            staging.push(format!("#{n}"));
            let staging = PathBuf::from(staging);
            let stage_err = |source| LocalError::Stage {
                path: staging.clone(),
                source,
            };
            // Written from its parts' offsets on; it grows as they land.
            match NewFile::create_new(&staging, 0) {
                Ok(file) => {
                    return Ok(Staged {
                        file: Arc::new(tokio::sync::Mutex::new(Some(file))),
                        staging,
                        dest,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                // Made once; missing again (a dangling link where the
                // folder should be), it will not appear by trying on.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !made => {
                    let folder = dest.parent().expect("an object has a folder");
                    create_dirs_durably(folder).map_err(stage_err)?;
                    made = true;
                }
                Err(e) => return Err(stage_err(e)),
            }
        }
    }

    /// Bytes the disk took straight from memory so far.
    #[cfg(test)]
    async fn direct_bytes(&self) -> u64 {
        let file = self.file.lock().await;
        file.as_ref().map_or(0, NewFile::direct_bytes)
    }

    /// Writes `payload` at `at`, once the file's earlier writes are done.
    async fn write(&self, payload: PutPayload, mut at: u64) -> Result<(), LocalError> {
        let file = self.file.clone().lock_owned().await;
        let staging = self.staging.clone();
        tokio::task::spawn_blocking(move || {
            let file = file.as_ref().ok_or(LocalError::Closed)?;
            for chunk in payload.iter() {
                file.write_all_at(chunk, at)
                    .map_err(|source| LocalError::Write {
                        path: staging.clone(),
                        source,
                    })?;
                at += chunk.len() as u64;
            }
            Ok(())
        })
        .await
        .expect("a write does not panic")
    }

    /// Removes the staging file (gone already counts as removed).
    fn remove(&self) -> Result<(), LocalError> {
        match std::fs::remove_file(&self.staging) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LocalError::Remove {
                path: self.staging.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Makes the staging file durable, closes it (a network filesystem
    /// may commit on close), renames it over the object and makes the
    /// rename durable.
    async fn publish(&self) -> Result<PutResult, LocalError> {
        let file = self.file.clone().lock_owned().await;
        let (staging, dest) = (self.staging.clone(), self.dest.clone());
        tokio::task::spawn_blocking(move || {
            let publish_err = |source| LocalError::Publish {
                staging: staging.clone(),
                path: dest.clone(),
                source,
            };
            let mut file = file;
            let file = file.take().ok_or(LocalError::Closed)?;
            file.sync_all().map_err(publish_err)?;
            let meta = file.metadata().map_err(publish_err)?;
            tracing::trace!(path = %dest.display(), direct = file.direct_bytes(), "object written");
            drop(file);
            std::fs::rename(&staging, &dest).map_err(publish_err)?;
            let folder = dest.parent().expect("an object has a folder");
            std::fs::File::open(folder)
                .and_then(|f| f.sync_all())
                .map_err(publish_err)?;
            Ok(PutResult {
                e_tag: Some(e_tag(&meta)),
                version: None,
                extensions: Default::default(),
            })
        })
        .await
        .expect("a publish does not panic")
    }
}

/// The entity tag `LocalFileSystem` gives the same file (a rename keeps
/// the inode, the modification time and the size).
fn e_tag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{mtime:x}-{:x}\"", meta.ino(), meta.len())
}

/// One multipart upload into the directory.
#[derive(Debug)]
struct DirectUpload {
    /// `None` once completed or aborted.
    staged: Option<Arc<Staged>>,
    /// Where the next part goes.
    offset: u64,
}

impl DirectUpload {
    fn staged(&self) -> Result<Arc<Staged>, LocalError> {
        self.staged.clone().ok_or(LocalError::Closed)
    }
}

#[async_trait]
impl MultipartUpload for DirectUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let at = self.offset;
        self.offset += data.content_length() as u64;
        let staged = self.staged();
        async move { Ok(staged?.write(data, at).await?) }.boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let done = self.staged()?.publish().await?;
        self.staged = None;
        Ok(done)
    }

    async fn abort(&mut self) -> Result<()> {
        let staged = self.staged()?;
        self.staged = None;
        tokio::task::spawn_blocking(move || staged.remove())
            .await
            .expect("a removal does not panic")?;
        Ok(())
    }
}

impl Drop for DirectUpload {
    /// An upload dropped unfinished leaves no staging file, as
    /// `LocalFileSystem`'s does not: one unlink, done at once. (A part
    /// waiting for its turn is dropped unwritten; one already on a
    /// blocking thread runs to its end, into the unlinked file: see
    /// [`NewFile`] for why it never lands in a new file under the same
    /// name.)
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            let _ = staged.remove();
        }
    }
}

/// Creates `dir` and its missing parents, fsyncing the parent of each one
/// made, so that a power cut cannot take a folder whose files were synced.
pub(crate) fn create_dirs_durably(dir: &std::path::Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        at = match at.parent() {
            Some(parent) => parent,
            None => break,
        };
    }
    for new in missing.into_iter().rev() {
        match std::fs::create_dir(new) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        if let Some(parent) = new.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::ALIGN;
    use object_store::ObjectStoreExt;

    fn store(dir: &std::path::Path) -> LocalDirectory {
        LocalDirectory::new(
            LocalFileSystem::new_with_prefix(dir)
                .unwrap()
                .with_fsync(true),
        )
    }

    /// A staged upload to `dest`, made as the store makes one.
    async fn staged(dest: PathBuf) -> Staged {
        tokio::task::spawn_blocking(move || Staged::create(dest))
            .await
            .unwrap()
            .unwrap()
    }

    /// `len` bytes of `byte` starting on a page, as the chunker's parts do.
    fn aligned(byte: u8, len: usize) -> bytes::Bytes {
        let mut raw = bytes::BytesMut::zeroed(len + ALIGN);
        let skip = raw.as_ptr().align_offset(ALIGN);
        raw[skip..skip + len].fill(byte);
        raw.split_off(skip).split_to(len).freeze()
    }

    #[tokio::test]
    async fn a_multipart_upload_is_seen_whole_and_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = Path::from("p/1/file.sst");
        let mut upload = store.put_multipart(&key).await.unwrap();
        let staging = dir.path().join("p/1/file.sst#1");
        assert!(
            staging.exists(),
            "the staging file is named as LocalFileSystem names it"
        );
        let first = aligned(1, 2 * ALIGN);
        let unaligned = bytes::Bytes::from(vec![2u8; ALIGN + 7]).slice(1..);
        let last = aligned(3, ALIGN + 100);
        upload.put_part(first.clone().into()).await.unwrap();
        upload.put_part(unaligned.clone().into()).await.unwrap();
        upload.put_part(last.clone().into()).await.unwrap();
        assert!(
            matches!(
                store.head(&key).await,
                Err(object_store::Error::NotFound { .. })
            ),
            "visible before it was complete"
        );
        let put = upload.complete().await.unwrap();
        assert!(!staging.exists());
        let meta = store.head(&key).await.unwrap();
        assert_eq!(
            put.e_tag, meta.e_tag,
            "the e-tag the store gives the object"
        );
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        let want = [&first[..], &unaligned[..], &last[..]].concat();
        assert_eq!(&got[..], &want[..]);
    }

    #[tokio::test]
    async fn aligned_parts_go_around_the_page_cache_where_the_filesystem_allows() {
        let dir = tempfile::tempdir().unwrap();
        let staged = staged(dir.path().join("a/b/object")).await;
        // The first part is whole pages; the second, the object's end,
        // has a partial last page, which goes through the page cache.
        staged.write(aligned(1, 4 * ALIGN).into(), 0).await.unwrap();
        staged
            .write(aligned(2, ALIGN + 10).into(), 4 * ALIGN as u64)
            .await
            .unwrap();
        let direct = crate::direct::takes_direct_io(&dir.path().join("a/b"));
        let expected = if direct { 5 * ALIGN as u64 } else { 0 };
        assert_eq!(
            staged.direct_bytes().await,
            expected,
            "direct I/O here: {direct}"
        );
        staged.publish().await.unwrap();
        let back = std::fs::read(dir.path().join("a/b/object")).unwrap();
        assert_eq!(back.len(), 5 * ALIGN + 10);
        assert!(back[..4 * ALIGN].iter().all(|&b| b == 1));
        assert!(back[4 * ALIGN..].iter().all(|&b| b == 2));
    }

    #[tokio::test]
    async fn parts_land_at_their_offsets_whatever_order_they_finish_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = Path::from("file");
        let mut upload = store.put_multipart(&key).await.unwrap();
        let parts: Vec<_> = (0..4u8).map(|i| aligned(i + 1, 2 * ALIGN)).collect();
        let mut pending: Vec<_> = parts
            .iter()
            .map(|p| upload.put_part(p.clone().into()))
            .collect();
        while let Some(part) = pending.pop() {
            part.await.unwrap();
        }
        upload.complete().await.unwrap();
        let got = store.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], &parts.concat()[..]);
    }

    #[test]
    fn a_full_disk_is_still_seen_under_the_store_error() {
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let e: object_store::Error = LocalError::Write {
            path: PathBuf::from("x"),
            source: full,
        }
        .into();
        assert!(crate::disk_full::caused(&e), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_made_fails_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone/deeper"), dir.path().join("p")).unwrap();
        let store = store(dir.path());
        let key = Path::from("p/file");
        let upload = store.put_multipart(&key);
        let err = tokio::time::timeout(std::time::Duration::from_secs(30), upload)
            .await
            .expect("an answer, not a loop")
            .expect_err("an upload under a dangling link");
        assert!(err.to_string().contains("staging file"), "{err}");
    }

    #[tokio::test]
    async fn a_part_waiting_for_its_turn_is_dropped_unwritten() {
        let dir = tempfile::tempdir().unwrap();
        let staged = staged(dir.path().join("object")).await;
        // Another part's write under way.
        let turn = staged.file.clone().lock_owned().await;
        let mut waiting = Box::pin(staged.write(aligned(7, ALIGN).into(), 0));
        assert!(futures::poll!(&mut waiting).is_pending());
        drop(waiting);
        drop(turn);
        staged.publish().await.unwrap();
        let back = std::fs::read(dir.path().join("object")).unwrap();
        assert!(
            back.is_empty(),
            "a dropped part was written: {} bytes",
            back.len()
        );
    }

    #[tokio::test]
    async fn an_aborted_or_dropped_upload_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let key = Path::from("p/file");
        let mut aborted = store.put_multipart(&key).await.unwrap();
        aborted.put_part(aligned(1, ALIGN).into()).await.unwrap();
        let mut dropped = store.put_multipart(&key).await.unwrap();
        dropped.put_part(aligned(1, ALIGN).into()).await.unwrap();
        assert!(dir.path().join("p/file#1").exists());
        assert!(
            dir.path().join("p/file#2").exists(),
            "a second upload of one key"
        );
        aborted.abort().await.unwrap();
        assert!(
            aborted.complete().await.is_err(),
            "completed after its abort"
        );
        drop(dropped);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("p")).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        assert!(matches!(
            store.head(&key).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
