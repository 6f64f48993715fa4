//! Real supervision: a pipeline stage, a publisher or a snapshot's
//! coordinator that panics fails the snapshot it was serving with a clear
//! error, is replaced, and the next snapshot succeeds; a shutdown cancels
//! requests that hang in the store and ends with nothing published and no
//! upload left open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::faulty::{Fault, FaultyStore, Op, When};
use common::{snapshot, Fixture};
use rocksnap::format::FormatVersion;
use rocksnap::{PartitionId, PipelineConfig, PipelineStats, Repository, Supervisor};

/// A partition whose SST spans several parts, on a local repository behind
/// a fault wrapper.
fn setup() -> (Fixture, FaultyStore, Repository) {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 1024, 4096); // ~4 MiB: multipart at 1 MiB parts
    let (store, dest_repo) = fx.faulty_repository();
    (fx, store, dest_repo)
}

fn config(fx: &Fixture) -> PipelineConfig {
    PipelineConfig {
        part_size: 1024 * 1024,
        ..fx.config()
    }
}

/// Injects a panic at the first request of kind `op`; `restarts` is how
/// many stages or publishers the supervisor must replace because of it.
async fn panics_then_recovers(op: Op, format: FormatVersion, expect: &str, restarts: u64) {
    let (fx, store, repo) = setup();
    store.inject(op, When::Nth(1), Fault::Panic);
    let stats = Arc::new(PipelineStats::default());
    let supervisor = fx
        .supervisor_on(
            PipelineConfig {
                format,
                ..config(&fx)
            },
            repo,
            stats.clone(),
        )
        .await;

    let err = snapshot(&supervisor, 1, None).await.unwrap_err();
    assert_eq!(store.injected(), 1, "{op:?}: the panic was not met");
    assert!(err.to_string().contains(expect), "{op:?}: {err}");
    assert!(
        fx.repository
            .read_pointer(PartitionId(1))
            .await
            .unwrap()
            .is_none(),
        "{op:?}: a pointer was published"
    );

    // The failed part is replaced (a coordinator is not: each snapshot has
    // its own), and the next snapshot goes through the new one.
    common::wait_until("the failed actor is replaced", || {
        stats.restarts() >= restarts
    })
    .await;
    assert_eq!(stats.restarts(), restarts, "{op:?}");
    fx.write(1, 11, 10, 100);
    let outcome = snapshot(&supervisor, 1, None)
        .await
        .unwrap_or_else(|e| panic!("{op:?}: the snapshot after the panic failed: {e}"));
    assert_eq!(fx.latest(1).snapshot_id, outcome.snapshot_id);
    assert_eq!(outcome.min_applied_lsn, rocksnap::Lsn(11));
    assert!(
        supervisor.get_status() == ractor::ActorStatus::Running,
        "{op:?}: the supervisor stopped"
    );
    supervisor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_uploader_is_restarted() {
    // A part request panics inside a task the uploader owns.
    panics_then_recovers(Op::Part, FormatVersion::V1, "uploader stage stopped", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_publisher_is_replaced() {
    // The first single put is metadata.json, written by the publisher.
    panics_then_recovers(Op::Put, FormatVersion::V1, "publisher stopped", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_coordinator_fails_only_its_snapshot() {
    // V2 reads the previous pointer in the coordinator itself.
    panics_then_recovers(Op::Get, FormatVersion::V2, "coordinator failed", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_requests_hanging_in_the_store() {
    let (fx, store, repo) = setup();
    // Every part hangs in the store until the end of the test.
    let gate = store.hold(Op::Part, When::FromNth(1));
    let supervisor = fx.supervisor_on(config(&fx), repo, Arc::default()).await;
    let request = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move { snapshot(&supervisor, 1, None).await })
    };
    common::wait_until("a part hangs in the store", || gate.waiting() > 0).await;

    // The deadline passes with the parts still held: the shutdown cancels
    // them instead of waiting for the store.
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        Supervisor::shutdown(&supervisor, Duration::from_millis(100)),
    )
    .await
    .expect("the shutdown waited for requests that never end")
    .expect("a report");
    assert_eq!(report.in_flight, 1);
    assert_eq!(report.cancelled, 1);
    let err = request.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(fx
        .repository
        .read_pointer(PartitionId(1))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        common::backend::Backend::local(fx.repo_dir.clone())
            .open_uploads()
            .await,
        0,
        "an upload was left open: {:?}",
        common::files_below(&fx.repo_dir)
    );
    gate.open();
    supervisor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_multipart_start_holds_up_no_other_file() {
    // Partition 1 has one multipart file, partition 2 one small file.
    let fx = Fixture::new(&[1, 2]);
    fx.write(1, 10, 700, 4096); // ~3 MiB: 3 parts of 1 MiB, fewer than the credits
    fx.write(2, 20, 10, 100);
    let (store, dest_repo) = fx.faulty_repository();
    let gate = store.hold(Op::Create, When::Nth(1));
    let supervisor = fx
        .supervisor_on(config(&fx), dest_repo, Arc::default())
        .await;
    let first = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move { snapshot(&supervisor, 1, None).await })
    };
    common::wait_until("the multipart upload's start hangs", || gate.waiting() == 1).await;

    // The other partition's file goes through the same chunker and uploader
    // while the first file's CreateMultipartUpload is still held.
    let second = tokio::time::timeout(Duration::from_secs(60), snapshot(&supervisor, 2, None))
        .await
        .expect("the small file waited behind the held multipart start")
        .unwrap();
    assert_eq!(fx.latest(2).snapshot_id, second.snapshot_id);
    assert_eq!(
        gate.waiting(),
        1,
        "the first file's start was not held throughout"
    );
    assert!(!first.is_finished());

    gate.open();
    let first = first.await.unwrap().unwrap();
    assert_eq!(fx.latest(1).snapshot_id, first.snapshot_id);
    supervisor.stop(None);
}
