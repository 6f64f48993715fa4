//! A store that stalls: the chunker must stop reading instead of filling memory.

mod common;

use std::sync::Arc;

use common::faulty::{Fault, FaultyStore, Gate, Op, When};
use common::{snapshot, wait_until, Fixture};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rocksnap::PipelineStats;
use rocksnap::{Lsn, PipelineConfig, Repository};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_store_stops_the_chunker_and_bounds_memory() {
    const PART: usize = 64 * 1024;
    const IN_FLIGHT: usize = 3;
    let fx = Fixture::new(&[1]);
    // About 6 MiB of incompressible values: ~100 parts.
    fx.write(1, 9, 6_000, 1024);
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let gate = Gate::closed();
    // Every data write (single puts and multipart parts) waits at the gate.
    let store = FaultyStore::new(inner.clone());
    store.inject(Op::Put, When::FromNth(1), Fault::Hold(gate.clone()));
    store.inject(Op::Part, When::FromNth(1), Fault::Hold(gate.clone()));
    let store = Arc::new(store);
    let repository = Repository::with_store(store, Path::from("repo"));
    let stats = Arc::new(PipelineStats::default());
    let config = PipelineConfig {
        part_size: PART,
        max_parts_in_flight: IN_FLIGHT,
        ..fx.config()
    };
    let supervisor = fx.supervisor_on(config, repository, stats.clone()).await;
    let request = tokio::spawn(async move { snapshot(&supervisor, 1, None).await });

    // Wait until the store holds every request the bound allows, and the
    // chunker has read the one part more the bound allows (the next one,
    // ready when a request ends) and stopped to wait for room rather than
    // read on.
    wait_until(
        "the store holds the bound's requests and the chunker waits",
        || gate.waiting() >= IN_FLIGHT && stats.is_waiting_for_room(),
    )
    .await;
    assert_eq!(
        gate.waiting(),
        IN_FLIGHT,
        "more requests than the bound reached the store"
    );
    assert_eq!(
        stats.parts_read(),
        IN_FLIGHT as u64 + 1,
        "the chunker read further ahead of a stalled store than one part"
    );
    assert!(stats.bytes_alive() <= (PART * (IN_FLIGHT + 1)) as u64);

    gate.open();
    let outcome = request.await.unwrap().unwrap();
    assert_eq!(outcome.min_applied_lsn, Lsn(9));
    assert!(
        outcome.bytes > 5 * 1024 * 1024,
        "expected a multi-part snapshot, got {} bytes",
        outcome.bytes
    );
    assert!(stats.parts_read() > 50);
    assert!(stats.parts_alive_peak() <= IN_FLIGHT as u64 + 1);
    assert!(stats.bytes_alive_peak() <= (PART * (IN_FLIGHT + 1)) as u64);
    assert_eq!(stats.parts_alive(), 0);
    assert_eq!(stats.bytes_uploaded(), outcome.bytes);
    // The store got every byte.
    let pointer = inner.get(&Path::from("repo/1/latest.json")).await;
    assert!(pointer.is_ok());
}
