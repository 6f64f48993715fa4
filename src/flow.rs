//! Bounded mailboxes between pipeline stages.
//!
//! ractor's mailboxes are unbounded, so the bound is built here with credits:
//! a sender takes a [`Credit`] from the receiving stage before it sends, the
//! credit travels inside the message, and it returns to the stage when the
//! message (or the part it carries) is dropped after the work is done. With
//! no credit left the sender waits, so a slow object store slows the chunker,
//! which slows the exporter, instead of filling memory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use ractor::{ActorRef, Message};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::direct::AlignedBuffer;
use crate::metrics as m;

/// Opens once a snapshot's lease is written (or is known not to be). The
/// snapshot's parts travel before: a multipart upload's parts are no
/// object yet, and a collector aborts only uploads left open longer than
/// its grace period. None of its objects may exist before its lease does,
/// so that a collector that lists one finds the lease protecting it: each
/// single put, each completion and its `metadata.json` wait here.
#[derive(Debug, Clone)]
pub(crate) struct LeaseWritten(tokio::sync::watch::Receiver<Option<bool>>);

impl LeaseWritten {
    /// Whether the lease was written, once that is known (`false` if the
    /// writer of the lease went away without saying).
    pub async fn written(&self) -> bool {
        let mut rx = self.0.clone();
        rx.wait_for(Option::is_some)
            .await
            .is_ok_and(|v| *v == Some(true))
    }
}

/// What opens a snapshot's [`LeaseWritten`] gates: the writer of its lease.
#[derive(Debug)]
pub(crate) struct LeaseGate(tokio::sync::watch::Sender<Option<bool>>);

impl LeaseGate {
    pub fn new() -> Self {
        LeaseGate(tokio::sync::watch::channel(None).0)
    }

    /// Says whether the lease was written.
    pub fn open(&self, written: bool) {
        self.0.send_replace(Some(written));
    }

    /// A gate the snapshot's objects wait at.
    pub fn gate(&self) -> LeaseWritten {
        LeaseWritten(self.0.subscribe())
    }
}

/// Parts of memory a process lets its transfers hold at once, each of up
/// to one part size: uploads (the pipeline's parts in flight), and the
/// downloads of restores, fast-forwards and scrubs. A node hands one
/// budget to all of them, so that together they stay within one bound.
///
/// Of its parts, all but one may be on the wire at once (a request each);
/// the one more is read from disk, or written to it, while the others
/// travel, so that the connections never wait for the local work. Every
/// transfer takes its part before its request, never a request before a
/// part: uploads and downloads share both, and the other order would let
/// each wait for what the other holds.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    parts: usize,
    semaphore: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    /// Downloads' buffers not in use, kept while any download runs so that
    /// its next range is read into memory already touched. Their permits
    /// go back to the budget, whose queue is fair to uploads and downloads
    /// alike; each kept buffer stands for the permit it came back with, so
    /// that whoever takes a permit without taking a buffer (an upload, a
    /// local copy) lets go of those beyond the permits left free: no more
    /// memory than the budget's parts is ever in use or kept.
    idle: IdleBuffers,
    /// Downloads running (see [`MemoryBudget::download`]).
    downloads: Arc<AtomicUsize>,
}

impl MemoryBudget {
    /// A budget of `parts` parts (at least one), `parts - 1` of them (at
    /// least one) in requests at once.
    pub fn new(parts: usize) -> Self {
        let parts = parts.max(1);
        MemoryBudget {
            parts,
            semaphore: Arc::new(Semaphore::new(parts)),
            requests: Arc::new(Semaphore::new((parts - 1).max(1))),
            idle: IdleBuffers::default(),
            downloads: Arc::default(),
        }
    }

    /// The budget for `requests` transfers at once: `requests + 1` parts.
    pub fn for_requests(requests: usize) -> Self {
        Self::new(requests.max(1) + 1)
    }

    /// Parts in all.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Parts held now.
    pub fn in_use(&self) -> usize {
        self.parts - self.semaphore.available_permits()
    }

    /// Requests on the wire at once, shared by every transfer of the budget.
    pub(crate) fn requests(&self) -> &Arc<Semaphore> {
        &self.requests
    }

    /// A download begins: until it ends (the guard is dropped), the
    /// buffers it is done with may be kept for its next ranges. When the
    /// last download ends they are freed, so an idle budget holds none.
    pub(crate) fn download(&self) -> Downloading {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        Downloading(self.clone())
    }

    /// Waits for one part of the budget for something that brings its own
    /// memory (a local copy's read-back buffer): a kept buffer lets go if
    /// it no longer stands for a free permit.
    pub(crate) async fn permit(&self) -> OwnedSemaphorePermit {
        let permit = self.next_permit().await;
        self.idle.trim(&self.semaphore);
        permit
    }

    /// The next permit of the budget's queue, in turn with every transfer.
    async fn next_permit(&self) -> OwnedSemaphorePermit {
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("never closed")
    }

    /// Waits for one part of the budget, with a buffer of at least
    /// `capacity` bytes: one a download kept if there is one (it stood for
    /// the permit just taken), else a new one.
    pub(crate) async fn part(&self, capacity: usize) -> BufferedPart {
        let permit = self.next_permit().await;
        let kept = self.idle.take(capacity);
        let (mut buffer, permit) = match kept {
            Some(buffer) => (buffer, permit),
            // Made (and its pages touched) off the runtime's threads, whose
            // other requests' timers would wait for it. The permit goes
            // along: if the caller gives up meanwhile, the allocation still
            // runs to its end, and the memory it holds counts against the
            // budget until it is freed with the permit.
            None => tokio::task::spawn_blocking(move || {
                (AlignedBuffer::with_capacity(capacity), permit)
            })
            .await
            .expect("allocation task"),
        };
        buffer.clear();
        BufferedPart {
            held: Some((buffer, permit)),
            budget: self.clone(),
        }
    }
}

/// Buffers downloads are done with, each standing for a free permit.
#[derive(Debug, Clone, Default)]
struct IdleBuffers(Arc<Mutex<Vec<AlignedBuffer>>>);

impl IdleBuffers {
    /// The one standing for the permit just taken: of at least `capacity`
    /// bytes if one is, else none (and one too small lets go).
    fn take(&self, capacity: usize) -> Option<AlignedBuffer> {
        let mut idle = self.0.lock().expect("not poisoned");
        match idle.iter().position(|b| b.capacity() >= capacity) {
            Some(i) => Some(idle.swap_remove(i)),
            None => idle.pop().and(None),
        }
    }

    /// Lets go of those beyond the permits left free.
    fn trim(&self, semaphore: &Semaphore) {
        let mut idle = self.0.lock().expect("not poisoned");
        let free = semaphore.available_permits();
        idle.truncate(free);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}

/// One part of a [`MemoryBudget`]: its permit and the buffer it holds.
#[derive(Debug)]
pub(crate) struct BufferedPart {
    held: Option<(AlignedBuffer, OwnedSemaphorePermit)>,
    budget: MemoryBudget,
}

impl std::ops::Deref for BufferedPart {
    type Target = AlignedBuffer;

    fn deref(&self) -> &AlignedBuffer {
        &self.held.as_ref().expect("held until dropped").0
    }
}

impl std::ops::DerefMut for BufferedPart {
    fn deref_mut(&mut self) -> &mut AlignedBuffer {
        &mut self.held.as_mut().expect("held until dropped").0
    }
}

impl Drop for BufferedPart {
    fn drop(&mut self) {
        let (buffer, permit) = self.held.take().expect("held until dropped");
        // Under the lock: whoever the permit goes to next (the first in the
        // budget's queue, woken now) finds the buffer kept beside it, and
        // takes it (a download) or lets it go (anything else).
        let mut idle = self.budget.idle.0.lock().expect("not poisoned");
        drop(permit);
        if self.budget.downloads.load(Ordering::SeqCst) > 0 {
            idle.push(buffer);
        }
    }
}

/// A download of a [`MemoryBudget`]'s under way.
#[derive(Debug)]
pub(crate) struct Downloading(MemoryBudget);

impl Drop for Downloading {
    fn drop(&mut self) {
        let mut idle = self.0.idle.0.lock().expect("not poisoned");
        if self.0.downloads.fetch_sub(1, Ordering::SeqCst) == 1 {
            idle.clear();
        }
    }
}

/// The credits of one stage: at most `capacity` messages queued or in work.
#[derive(Debug, Clone)]
pub(crate) struct Credits {
    stage: &'static str,
    capacity: usize,
    semaphore: Arc<Semaphore>,
    /// Drawn from a budget: its downloads' kept buffers, which a credit
    /// taken may leave standing for no free permit.
    idle: Option<IdleBuffers>,
}

impl Credits {
    pub fn new(stage: &'static str, capacity: usize) -> Self {
        assert!(capacity > 0, "a stage needs at least one credit");
        Credits {
            stage,
            capacity,
            semaphore: Arc::new(Semaphore::new(capacity)),
            idle: None,
        }
    }

    /// Credits drawn from a memory budget shared with other transfers.
    pub fn from_budget(stage: &'static str, budget: &MemoryBudget) -> Self {
        Credits {
            stage,
            capacity: budget.parts,
            semaphore: budget.semaphore.clone(),
            idle: Some(budget.idle.clone()),
        }
    }

    /// Waits for a free credit.
    pub async fn acquire(&self) -> Credit {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("stage semaphores are never closed");
        if let Some(idle) = &self.idle {
            idle.trim(&self.semaphore);
        }
        m::mailbox_depth(self.stage).set(self.in_use() as f64);
        Credit {
            stage: self.stage,
            semaphore: self.semaphore.clone(),
            capacity: self.capacity,
            _permit: permit,
        }
    }

    /// Credits currently held by messages queued or in work.
    pub fn in_use(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }
}

/// One unit of a stage's capacity, held by the message that used it.
#[derive(Debug)]
pub(crate) struct Credit {
    stage: &'static str,
    semaphore: Arc<Semaphore>,
    capacity: usize,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Credit {
    fn drop(&mut self) {
        // The permit returns right after this; report the depth it leaves.
        let in_use = self.capacity - self.semaphore.available_permits() - 1;
        m::mailbox_depth(self.stage).set(in_use as f64);
    }
}

/// An actor behind a credit bound.
#[derive(Debug)]
pub(crate) struct BoundedMailbox<M: Message> {
    actor: ActorRef<M>,
    credits: Credits,
}

impl<M: Message> Clone for BoundedMailbox<M> {
    fn clone(&self) -> Self {
        BoundedMailbox {
            actor: self.actor.clone(),
            credits: self.credits.clone(),
        }
    }
}

impl<M: Message> BoundedMailbox<M> {
    pub fn new(actor: ActorRef<M>, credits: Credits) -> Self {
        BoundedMailbox { actor, credits }
    }

    /// Waits for a credit, then sends the message built around it.
    pub async fn send(&self, build: impl FnOnce(Credit) -> M) -> Result<(), StageGone> {
        let credit = self.credits.acquire().await;
        self.actor
            .cast(build(credit))
            .map_err(|_| StageGone(self.credits.stage))
    }

    pub fn actor(&self) -> &ActorRef<M> {
        &self.actor
    }

    pub fn credits(&self) -> &Credits {
        &self.credits
    }
}

/// The receiving actor has stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {0} stage has stopped")]
pub(crate) struct StageGone(pub &'static str);

/// Counters that make the memory bound observable: how many parts were read
/// and how many bytes are held in parts that are not yet uploaded. Shared by
/// every snapshot of one supervisor; progress bars read them too.
#[derive(Debug, Default)]
pub struct PipelineStats {
    restarts: AtomicU64,
    waiting_for_room: AtomicU64,
    parts_read: AtomicU64,
    parts_alive: AtomicU64,
    parts_alive_peak: AtomicU64,
    bytes_alive: AtomicU64,
    bytes_alive_peak: AtomicU64,
    bytes_uploaded: AtomicU64,
    bytes_planned: AtomicU64,
}

impl PipelineStats {
    /// Stages and publishers the supervisor replaced after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::SeqCst)
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the chunker is waiting for a part in flight to finish before
    /// it reads the next: the pipeline is held back by the store.
    pub fn is_waiting_for_room(&self) -> bool {
        self.waiting_for_room.load(Ordering::SeqCst) > 0
    }

    /// Marks the chunker as waiting until the guard is dropped.
    pub(crate) fn waiting_for_room(&self) -> impl Drop + '_ {
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting_for_room.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting_for_room)
    }

    /// Parts read from disk so far.
    pub fn parts_read(&self) -> u64 {
        self.parts_read.load(Ordering::SeqCst)
    }
    /// Parts read from disk and not yet released by the uploader.
    pub fn parts_alive(&self) -> u64 {
        self.parts_alive.load(Ordering::SeqCst)
    }
    /// The most parts alive at once.
    pub fn parts_alive_peak(&self) -> u64 {
        self.parts_alive_peak.load(Ordering::SeqCst)
    }
    /// Bytes held in those parts.
    pub fn bytes_alive(&self) -> u64 {
        self.bytes_alive.load(Ordering::SeqCst)
    }
    /// The most bytes held in parts at once.
    pub fn bytes_alive_peak(&self) -> u64 {
        self.bytes_alive_peak.load(Ordering::SeqCst)
    }
    /// Bytes stored so far.
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes_uploaded.load(Ordering::SeqCst)
    }

    /// Bytes the snapshots planned so far will send (known once each
    /// export is done): with [`Self::bytes_uploaded`], how far they are.
    pub fn bytes_planned(&self) -> u64 {
        self.bytes_planned.load(Ordering::SeqCst)
    }

    pub(crate) fn planned(&self, bytes: u64) {
        self.bytes_planned.fetch_add(bytes, Ordering::SeqCst);
    }

    pub(crate) fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::SeqCst);
        m::uploaded_bytes().increment(bytes);
    }
}

/// Part buffers, recycled: when a part's upload ends and the store holds no
/// reference to its bytes any more, the allocation comes back here for the
/// next part. Every buffer has room for a whole part, so any of them fits
/// any part: a snapshot of any size, of files of any sizes, reuses the same
/// buffers, one per credit: no allocation, no page faults, no allocator
/// growth per part.
#[derive(Debug, Clone, Default)]
pub(crate) struct BufferPool {
    free: Arc<std::sync::Mutex<Vec<BytesMut>>>,
}

impl BufferPool {
    /// Buffers kept at most; more than the bound never come back at once.
    const MAX: usize = 64;

    /// A free buffer of at least `capacity` bytes, if one is waiting.
    pub fn take(&self, capacity: usize) -> Option<BytesMut> {
        let mut free = self.free.lock().expect("not poisoned");
        let i = free.iter().position(|b| b.capacity() >= capacity)?;
        Some(free.swap_remove(i))
    }

    /// Puts `count` buffers of `capacity` bytes in the pool, every page of
    /// them written once: made when a pipeline starts, so that no snapshot
    /// pays for fresh memory. On a virtual machine whose host took back the
    /// guest's free pages, a first write into each page faults on the host
    /// too: the 72 MiB of the default parts took 30–140 ms to touch in a
    /// new process here, paid by the first parts' reads while the disk
    /// waited for them. A pipeline holds these buffers for its life, as it
    /// would after its first snapshot anyway.
    pub async fn prepare(&self, count: usize, capacity: usize) {
        // Allocated here, on the caller's thread (see the chunker: a
        // blocking thread would grow an allocator arena of its own), and
        // written on a blocking one, off the runtime's threads.
        let buffers: Vec<BytesMut> = (0..count)
            .map(|_| BytesMut::with_capacity(capacity))
            .collect();
        let buffers = tokio::task::spawn_blocking(move || {
            let mut buffers = buffers;
            for buffer in &mut buffers {
                buffer.resize(capacity, 0);
            }
            buffers
        })
        .await
        .expect("writing a buffer does not panic");
        for buffer in buffers {
            self.give(buffer);
        }
    }

    /// Buffers waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.free.lock().expect("not poisoned").len()
    }

    fn give(&self, mut buffer: BytesMut) {
        buffer.clear();
        let mut free = self.free.lock().expect("not poisoned");
        if free.len() < Self::MAX {
            free.push(buffer);
        }
    }
}

/// A part of a file on its way to the store. It holds the uploader credit it
/// was read under; dropping it (after the upload) frees both the memory and
/// the credit, and hands the buffer back to the pool.
#[derive(Debug)]
pub(crate) struct Part {
    bytes: Bytes,
    stats: Arc<PipelineStats>,
    pool: BufferPool,
    _credit: Credit,
}

impl Part {
    pub fn new(bytes: Bytes, credit: Credit, stats: Arc<PipelineStats>, pool: BufferPool) -> Self {
        let len = bytes.len() as u64;
        stats.parts_read.fetch_add(1, Ordering::SeqCst);
        let parts = stats.parts_alive.fetch_add(1, Ordering::SeqCst) + 1;
        stats.parts_alive_peak.fetch_max(parts, Ordering::SeqCst);
        let alive = stats.bytes_alive.fetch_add(len, Ordering::SeqCst) + len;
        stats.bytes_alive_peak.fetch_max(alive, Ordering::SeqCst);
        m::parts_in_flight().set(parts as f64);
        Part {
            bytes,
            stats,
            pool,
            _credit: credit,
        }
    }

    /// A cheap reference-counted handle on the part's bytes.
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        let parts = self.stats.parts_alive.fetch_sub(1, Ordering::SeqCst) - 1;
        self.stats
            .bytes_alive
            .fetch_sub(self.bytes.len() as u64, Ordering::SeqCst);
        m::parts_in_flight().set(parts as f64);
        if let Ok(buffer) = std::mem::take(&mut self.bytes).try_into_mut() {
            self.pool.give(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credits_bound_and_return() {
        let credits = Credits::new("test", 2);
        let a = credits.acquire().await;
        let _b = credits.acquire().await;
        assert_eq!(credits.in_use(), 2);
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), credits.acquire());
        assert!(third.await.is_err(), "a third credit was handed out");
        drop(a);
        assert_eq!(credits.in_use(), 1);
        let _c = credits.acquire().await;
    }

    #[tokio::test]
    async fn a_prepared_pool_serves_whole_parts_before_any_comes_back() {
        let pool = BufferPool::default();
        pool.prepare(3, 3 * 4096).await;
        let taken: Vec<BytesMut> = (0..3)
            .map(|i| {
                pool.take(2 * 4096)
                    .unwrap_or_else(|| panic!("buffer {i} was not made"))
            })
            .collect();
        assert!(taken
            .iter()
            .all(|b| b.is_empty() && b.capacity() >= 3 * 4096));
        assert!(pool.take(1).is_none(), "more buffers than asked for");
    }

    #[tokio::test]
    async fn a_part_returns_its_buffer_unless_still_referenced() {
        let credits = Credits::new("test", 2);
        let pool = BufferPool::default();
        let stats = Arc::new(PipelineStats::default());
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(&[7u8; 1024]);
        let part = Part::new(
            buf.split().freeze(),
            credits.acquire().await,
            stats.clone(),
            pool.clone(),
        );
        let held = part.bytes(); // the store still holds the payload
        drop(part);
        assert!(
            pool.take(1024).is_none(),
            "a buffer still in use was recycled"
        );
        drop(held);

        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(&[7u8; 1024]);
        let ptr = buf.as_ptr();
        let bytes = buf.split().freeze();
        drop(buf); // the chunker's buffer moves on to another allocation
        let part = Part::new(bytes, credits.acquire().await, stats.clone(), pool.clone());
        drop(part);
        let recycled = pool.take(1024).expect("the buffer came back");
        assert_eq!(recycled.as_ptr(), ptr, "not the same allocation");
        assert!(recycled.is_empty());
        assert_eq!(stats.parts_alive(), 0);
        assert_eq!(credits.in_use(), 0);
    }
    #[tokio::test]
    async fn a_budgets_buffers_are_reused_while_it_downloads_and_never_outnumber_its_parts() {
        let budget = MemoryBudget::new(3);
        let kept = |b: &MemoryBudget| b.idle.len();
        let download = budget.download();
        let first = budget.part(8192).await;
        let busy = budget.part(8192).await;
        let (a, b) = (first.as_slice().as_ptr(), busy.as_slice().as_ptr());
        assert_eq!(a.align_offset(crate::direct::ALIGN), 0);
        drop((first, busy));
        assert_eq!(kept(&budget), 2, "kept while the download runs");
        assert_eq!(budget.in_use(), 0, "their permits back to the budget");
        let again = budget.part(4096).await;
        assert!([a, b].contains(&again.as_slice().as_ptr()), "not reused");
        assert!(again.as_slice().is_empty());
        assert_eq!(kept(&budget), 1);
        // An upload takes a permit the kept buffer stood for: it lets go
        // (two parts held, one free, one kept).
        let upload = Credits::from_budget("test", &budget);
        let credit = upload.acquire().await;
        assert_eq!((budget.in_use(), kept(&budget)), (2, 1));
        let other = upload.acquire().await;
        assert_eq!(
            (budget.in_use(), kept(&budget)),
            (3, 0),
            "more memory than parts"
        );
        drop(other);
        // So does a local copy's permit.
        drop(again);
        assert_eq!((budget.in_use(), kept(&budget)), (1, 1));
        let copy = budget.permit().await;
        let third = budget.permit().await;
        assert_eq!((budget.in_use(), kept(&budget)), (3, 0));
        drop((copy, third, credit));
        assert_eq!((budget.in_use(), kept(&budget)), (0, 0));
        drop(budget.part(8192).await);
        assert_eq!(kept(&budget), 1);
        // A larger part size: a kept buffer too small lets go.
        let larger = budget.part(3 * 8192).await;
        assert!(larger.capacity() >= 3 * 8192);
        assert_eq!(kept(&budget), 0);
        drop(larger);
        assert_eq!(kept(&budget), 1);
        let second = budget.download();
        drop(download);
        assert_eq!(kept(&budget), 1, "another download still runs");
        drop(second);
        assert_eq!(kept(&budget), 0, "an idle budget holds no buffer");
        // A part returned with no download running is not kept.
        drop(budget.part(8192).await);
        assert_eq!((kept(&budget), budget.in_use()), (0, 0));
    }

    /// A part given up while its buffer is being made keeps its permit
    /// until that buffer is freed: the budget never stands for less memory
    /// than is held. The one blocking thread is held busy, so the
    /// allocation waits in its queue when the part is given up.
    #[test]
    fn a_part_given_up_during_its_allocation_holds_its_permit_until_freed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let budget = MemoryBudget::new(1);
            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let part = tokio::spawn({
                let budget = budget.clone();
                async move { budget.part(8192).await }
            });
            // On a current-thread runtime the part runs up to its wait
            // for the allocation, queued behind the busy thread.
            tokio::task::yield_now().await;
            assert_eq!(budget.in_use(), 1);
            part.abort();
            assert!(part.await.unwrap_err().is_cancelled());
            assert_eq!(budget.in_use(), 1, "given up before its buffer was made");
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            // The blocking queue is first in, first out: once this ran, so
            // did the allocation, and its buffer and permit are gone.
            tokio::task::spawn_blocking(|| ()).await.unwrap();
            assert_eq!(budget.in_use(), 0);
        });
    }

    #[tokio::test]
    async fn a_returned_buffer_goes_to_whoever_waits_for_its_permit() {
        let budget = MemoryBudget::new(1);
        let _download = budget.download();
        // A download waiting: it reads into the same memory.
        let held = budget.part(8192).await;
        let at = held.as_slice().as_ptr() as usize;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.part(8192).await.as_slice().as_ptr() as usize }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(
            waiting.await.unwrap(),
            at,
            "a waiting download got new memory"
        );
        // An upload waiting: the buffer lets go.
        let held = budget.part(8192).await;
        let upload = Credits::from_budget("test", &budget);
        let waiting = tokio::spawn(async move { upload.acquire().await });
        tokio::task::yield_now().await;
        drop(held);
        let credit = waiting.await.unwrap();
        assert_eq!((budget.in_use(), budget.idle.len()), (1, 0));
        drop(credit);
    }
}
