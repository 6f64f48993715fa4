//! A remote-like store: `object_store`'s in-memory store behind
//! `ThrottledStore` (a wait per request, and per byte for reads), plus the
//! per-byte wait for writes that `ThrottledStore` lacks. Each request pays
//! `LATENCY` and moves its bytes at `BANDWIDTH` per connection, as one
//! connection to a remote object store does.
//!
//! A remote store holds none of the client's memory: the model copies each
//! part into memory it set aside (and touched) before the measurement,
//! within the part's request time, on the measured process's runtime as a
//! send's copy into the socket would be (see `Arena`); it keeps a multipart
//! object as those parts (the in-memory store would copy them again into
//! one buffer on completion, a copy no remote store makes the client pay),
//! and serves ranges from them, each body in pieces that come as the
//! connection moves them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

pub const LATENCY: Duration = Duration::from_millis(20);
/// Bytes per second of one connection.
pub const BANDWIDTH: f64 = 100.0 * 1024.0 * 1024.0;
/// The pieces a ranged answer's body comes in.
const PIECE: usize = 1 << 20;

fn transfer(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / BANDWIDTH)
}

/// The time the model charges one request of `bytes`.
pub fn request_time(bytes: u64) -> Duration {
    LATENCY + transfer(bytes as usize)
}

/// Seconds below which no client of the model moves `files` (their sizes)
/// in requests of at most `part` bytes over `connections` connections,
/// with `serial` more requests in a row that cannot overlap the transfer:
/// every request's time spread evenly over the connections, plus those.
/// A snapshot has three after its last byte (the last file's completion,
/// `metadata.json`, `latest.json`); a restore two before its first
/// (`latest.json`, `metadata.json`).
pub fn lower_bound(files: &[u64], part: u64, connections: usize, serial: u32) -> f64 {
    let total: f64 = files
        .iter()
        .flat_map(|&size| {
            let n = size.div_ceil(part).max(1);
            (0..n).map(move |k| (size - k * part).min(part))
        })
        .map(|b| request_time(b).as_secs_f64())
        .sum();
    total / connections as f64 + (LATENCY * serial).as_secs_f64()
}

/// The parts of each completed multipart object, in order.
type Parts = Arc<Mutex<HashMap<Path, Arc<Vec<Bytes>>>>>;

/// Memory the model receives parts into, touched before anything is
/// measured, as a server's own memory is in use already. A part is copied
/// in as its request begins and the client's buffer goes back to the
/// client when the request ends, as it does against a remote store. Kept
/// instead, every part would be read into memory the process touches for
/// the first time, and on a machine that hands freed memory back to its
/// host each of those pages costs a fault on the host: a price no client
/// of a real store pays, and the largest share of the model's spread.
#[derive(Debug, Default)]
struct Arena(Mutex<BytesMut>);

impl Arena {
    fn with_capacity(bytes: usize) -> Self {
        // Written, not only reserved: pages never written are not there yet.
        let mut touched = BytesMut::with_capacity(bytes);
        touched.resize(bytes, 1);
        touched.clear();
        Arena(Mutex::new(touched))
    }

    /// `data` as the model keeps it: copied into the arena while it has
    /// room, else the client's own buffer.
    fn keep(&self, data: PutPayload) -> Bytes {
        let mut arena = self.0.lock().unwrap();
        if arena.capacity() - arena.len() < data.content_length() {
            return Bytes::from(data);
        }
        for chunk in data.iter() {
            arena.extend_from_slice(chunk);
        }
        arena.split().freeze()
    }
}

#[derive(Debug)]
pub struct RemoteModel {
    inner: Arc<ThrottledStore<InMemory>>,
    parts: Parts,
    arena: Arc<Arena>,
}

impl RemoteModel {
    /// A model that receives parts into `arena` bytes of memory set aside
    /// (and touched) now: enough for the snapshots it will hold.
    pub fn with_arena(arena: u64) -> Self {
        RemoteModel {
            arena: Arc::new(Arena::with_capacity(arena as usize)),
            ..Self::new()
        }
    }

    /// Touches the memory the next measurement will use: the arena's free
    /// room (written) and every part the model keeps (read). This
    /// machine's host takes back guest memory left idle for a few seconds,
    /// and the next access to each page faults on the host: a 512 MiB copy
    /// into memory written 5 s before took 0.32–0.87 s against 0.16 s at
    /// once. Left to that, whichever measurement of a process came first
    /// paid for the arena's pages, and a restore for the parts a snapshot
    /// kept a while before: a remote store's memory, which is none of its
    /// client's cost. So each measurement starts with the model's memory
    /// in use, as a server's is.
    pub fn warm(&self) {
        const PAGE: usize = 4096;
        {
            let mut arena = self.arena.0.lock().unwrap();
            for page in arena.spare_capacity_mut().iter_mut().step_by(PAGE) {
                page.write(1);
            }
        }
        let mut sum = 0u8;
        for parts in self.parts.lock().unwrap().values() {
            for part in parts.iter() {
                for byte in part.iter().step_by(PAGE) {
                    sum = sum.wrapping_add(*byte);
                }
            }
        }
        std::hint::black_box(sum);
    }

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
            parts: Parts::default(),
            arena: Arc::default(),
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
        Ok(Box::new(ModelUpload {
            store: self.inner.clone(),
            arena: self.arena.clone(),
            index: self.parts.clone(),
            location: location.clone(),
            opts: PutOptions {
                attributes: opts.attributes,
                tags: opts.tags,
                ..PutOptions::default()
            },
            parts: Arc::default(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let parts = self.parts.lock().unwrap().get(location).cloned();
        let Some(parts) = parts.filter(|_| !options.head) else {
            return self.inner.get_opts(location, options).await;
        };
        // The stored object only stands in for the parts: its answer (after
        // the request's latency) gives the metadata, the checked
        // preconditions and the range.
        let asked = tokio::time::Instant::now();
        let stand_in = self.inner.get_opts(location, options).await?;
        let range = stand_in.range.clone();
        let data = slice(&parts, range.start as usize, range.end as usize);
        // The body comes as over one connection: each piece once the bytes
        // up to its end have moved, so that a client handles a piece while
        // the next travels (as an upload's part is copied within its
        // request's time); the last at the same time as the whole would.
        let pieces = (0..data.len()).step_by(PIECE).map(move |at| {
            let end = (at + PIECE).min(data.len());
            (asked + LATENCY + transfer(end), data.slice(at..end))
        });
        let body = futures::stream::iter(pieces).then(|(due, piece)| async move {
            tokio::time::sleep_until(due).await;
            Ok(piece)
        });
        Ok(GetResult {
            payload: GetResultPayload::Stream(body.boxed()),
            ..stand_in
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let index = self.parts.clone();
        let locations = locations
            .map(move |l| {
                if let Ok(path) = &l {
                    index.lock().unwrap().remove(path);
                }
                l
            })
            .boxed();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        let mut index = self.parts.lock().unwrap();
        match index.get(from).cloned() {
            Some(parts) => index.insert(to.clone(), parts),
            None => index.remove(to),
        };
        Ok(())
    }
}

/// Bytes `start..end` of an object stored as `parts`: a slice of one part
/// where the range lies in one (no copy), else the pieces joined.
fn slice(parts: &[Bytes], start: usize, end: usize) -> Bytes {
    let mut offset = 0;
    let mut pieces = Vec::new();
    for p in parts {
        let (lo, hi) = (start.max(offset), end.min(offset + p.len()));
        if lo < hi {
            pieces.push(p.slice(lo - offset..hi - offset));
        }
        offset += p.len();
    }
    match pieces.len() {
        1 => pieces.pop().unwrap(),
        _ => pieces.concat().into(),
    }
}

/// A multipart upload of the model: parts kept as sent, the object stored
/// on completion as an untouched stand-in of its size (zeroed pages the
/// kernel does not back until read) beside the index of its parts.
#[derive(Debug)]
struct ModelUpload {
    store: Arc<ThrottledStore<InMemory>>,
    arena: Arc<Arena>,
    index: Parts,
    location: Path,
    opts: PutOptions,
    parts: Arc<Mutex<Vec<Option<Bytes>>>>,
}

#[async_trait]
impl MultipartUpload for ModelUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let wait = LATENCY + transfer(data.content_length());
        let parts = self.parts.clone();
        let slot = {
            let mut parts = parts.lock().unwrap();
            parts.push(None);
            parts.len() - 1
        };
        let arena = self.arena.clone();
        Box::pin(async move {
            // The copy is the part's sending: within the request's time.
            let until = tokio::time::Instant::now() + wait;
            let kept = arena.keep(data);
            tokio::time::sleep_until(until).await;
            parts.lock().unwrap()[slot] = Some(kept);
            Ok(())
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let parts: Vec<Bytes> = std::mem::take(&mut *self.parts.lock().unwrap())
            .into_iter()
            .map(|p| p.expect("every part was stored before completion"))
            .collect();
        let size: usize = parts.iter().map(Bytes::len).sum();
        self.index
            .lock()
            .unwrap()
            .insert(self.location.clone(), Arc::new(parts));
        // The stored put pays the request's latency.
        let stand_in = PutPayload::from(vec![0u8; size]);
        self.store
            .put_opts(&self.location, stand_in, self.opts.clone())
            .await
    }

    async fn abort(&mut self) -> Result<()> {
        self.parts.lock().unwrap().clear();
        Ok(())
    }
}
