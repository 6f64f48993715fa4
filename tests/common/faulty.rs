//! A wrapper around a real object store that fails, delays, holds or cuts
//! off the Nth request of a kind. "Cut off" sends the request to the store
//! and then loses the answer, as a dropped connection does; "hold" keeps the
//! request at a [`Gate`] until the test opens it, as a stalled store does.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A single put (`put_opts`) of anything but a lease.
    Put,
    /// A put of a snapshot's lease (`leases/…`): taken and renewed while
    /// snapshots run, counted apart so that `Put` counts stay those of data.
    Lease,
    /// Starting a multipart upload.
    Create,
    /// A multipart part.
    Part,
    /// Completing a multipart upload.
    Complete,
    /// Any read: get, head, ranged get.
    Get,
    /// A listing.
    List,
    /// Aborting a multipart upload.
    Abort,
    /// A delete.
    Delete,
    /// A copy inside the store.
    Copy,
}

#[derive(Debug, Clone)]
pub enum Fault {
    Fail,
    Delay(Duration),
    CutOff,
    Hold(Gate),
    /// The request panics, as a bug in a store client would.
    Panic,
    /// The request lands, and the answer is "already exists": what a store
    /// client's own retry of a create-only put meets when its first attempt
    /// landed without an answer.
    LandedThenExists,
}

/// Holds requests until opened.
#[derive(Debug, Clone)]
pub struct Gate {
    open: watch::Sender<bool>,
    waiting: Arc<AtomicUsize>,
}

impl Gate {
    pub fn closed() -> Self {
        Gate {
            open: watch::channel(false).0,
            waiting: Arc::default(),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Requests currently held at the gate (not those dropped there).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    async fn pass(&self) {
        let mut rx = self.open.subscribe();
        if *rx.borrow() {
            return;
        }
        // Counted while it waits, and no longer once it is let through or
        // dropped (its caller gave up on it).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let _ = rx.wait_for(|open| *open).await.map(|_| ());
    }
}

#[derive(Debug, Clone, Copy)]
pub enum When {
    /// Only the Nth request of the kind (1-based).
    Nth(u64),
    /// The Nth and every one after it.
    FromNth(u64),
}

#[derive(Default)]
struct State {
    /// Writes ignore their conditions, as a server without conditional
    /// writes does.
    blind: std::sync::atomic::AtomicBool,
    rules: Mutex<Vec<(Op, When, Fault)>>,
    counts: Mutex<HashMap<Op, u64>>,
    injected: AtomicU64,
}

impl State {
    fn fault_for(&self, op: Op) -> Option<Fault> {
        let n = {
            let mut counts = self.counts.lock().unwrap();
            let c = counts.entry(op).or_default();
            *c += 1;
            *c
        };
        let rules = self.rules.lock().unwrap();
        rules.iter().find_map(|(o, when, fault)| {
            let hit = *o == op
                && match *when {
                    When::Nth(k) => n == k,
                    When::FromNth(k) => n >= k,
                };
            hit.then(|| fault.clone())
        })
    }

    async fn apply<T>(&self, op: Op, request: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(fault) = self.fault_for(op) else {
            return request.await;
        };
        self.injected.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::Fail => Err(injected(op, "request failed")),
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                request.await
            }
            Fault::CutOff => {
                let _ = request.await;
                Err(injected(op, "connection cut before the answer"))
            }
            Fault::Hold(gate) => {
                gate.pass().await;
                request.await
            }
            Fault::Panic => panic!("injected panic on {op:?}"),
            Fault::LandedThenExists => {
                request.await?;
                Err(object_store::Error::AlreadyExists {
                    path: format!("{op:?}"),
                    source: "injected: the first attempt landed".into(),
                })
            }
        }
    }
}

fn injected(op: Op, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault on {op:?}: {what}").into(),
    }
}

#[derive(Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<State>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            state: Arc::default(),
        }
    }

    pub fn inject(&self, op: Op, when: When, fault: Fault) {
        self.state.rules.lock().unwrap().push((op, when, fault));
    }

    /// Holds the requests `when` picks at a new gate, closed; the gate.
    pub fn hold(&self, op: Op, when: When) -> Gate {
        let gate = Gate::closed();
        self.inject(op, when, Fault::Hold(gate.clone()));
        gate
    }

    /// From now on, every write ignores `If-None-Match` and `If-Match`.
    pub fn ignore_conditions(&self) {
        self.state.blind.store(true, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Requests of a kind seen so far.
    pub fn count(&self, op: Op) -> u64 {
        *self.state.counts.lock().unwrap().get(&op).unwrap_or(&0)
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let opts = if self.state.blind.load(Ordering::SeqCst) {
            PutOptions::from(object_store::PutMode::Overwrite)
        } else {
            opts
        };
        let op = if location.as_ref().contains("/leases/") {
            Op::Lease
        } else {
            Op::Put
        };
        self.state
            .apply(op, self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self
            .state
            .apply(Op::Create, self.inner.put_multipart_opts(location, opts))
            .await?;
        Ok(Box::new(FaultyUpload {
            inner,
            state: self.state.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.state
            .apply(Op::Get, self.inner.get_opts(location, options))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        // Each location is one delete request, failed or held on its own.
        let inner = self.inner.clone();
        let state = self.state.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let state = state.clone();
                async move {
                    let location = location?;
                    let request = async {
                        let mut deleted = inner
                            .delete_stream(futures::stream::once(async { Ok(location) }).boxed());
                        deleted.next().await.unwrap_or_else(|| {
                            Err(injected(Op::Delete, "no answer from the store"))
                        })
                    };
                    state.apply(Op::Delete, request).await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = self.state.clone();
        let inner = self.inner.list(prefix);
        futures::stream::once(async move { state.fault_for(Op::List) })
            .flat_map(move |fault| match fault {
                Some(_) => {
                    futures::stream::once(async { Err(injected(Op::List, "request failed")) })
                        .boxed()
                }
                None => futures::stream::empty().boxed(),
            })
            .chain(inner)
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.state
            .apply(Op::List, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.state
            .apply(Op::Copy, self.inner.copy_opts(from, to, options))
            .await
    }
}

struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    state: Arc<State>,
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyUpload")
    }
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let request = self.inner.put_part(data);
        let state = self.state.clone();
        Box::pin(async move { state.apply(Op::Part, request).await })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let state = self.state.clone();
        state.apply(Op::Complete, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        let state = self.state.clone();
        state.apply(Op::Abort, self.inner.abort()).await
    }
}
