//! Uploads in progress are never collected, however long they take: a
//! snapshot holds a lease while it runs, and a collector that finds a lease
//! expired fences the snapshot off under the pointer's compare-and-swap
//! before it takes anything.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backend::Backend;
use common::faulty::{Fault, Gate, Op, When};
use common::{files_below, snapshot, wait_until, Fixture};
use object_store::ObjectStoreExt;
use rocksnap::format::Lease;
use rocksnap::format::{FormatVersion, Lsn, PartitionId, SnapshotId};
use rocksnap::gc::{collect, GcOptions};
use rocksnap::restore::{verify, RestoreOptions};
use rocksnap::{PipelineConfig, Repository};

/// A partition with one multipart file, and a repository whose
/// metadata.json write (the first single put) waits at a gate: the
/// snapshot's files are all stored, and it sits there as a long upload would.
fn held_at_metadata(fx: &Fixture) -> (Repository, Gate) {
    let (store, repo) = fx.faulty_repository();
    let gate = store.hold(Op::Put, When::Nth(1));
    (repo, gate)
}

fn config(fx: &Fixture) -> PipelineConfig {
    PipelineConfig {
        part_size: 1024 * 1024,
        ..fx.config()
    }
}

fn gc(grace: Duration) -> GcOptions {
    common::collection(grace, None)
}

async fn verify_latest(fx: &Fixture) {
    verify(
        &fx.repository,
        PartitionId(1),
        None,
        false,
        &RestoreOptions {
            staging_dir: Some(fx.dir.path().join("verify")),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the latest snapshot is not complete: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_progress_survives_collection_with_no_grace() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 1024, 4096);
    let (repo, gate) = held_at_metadata(&fx);
    let supervisor = fx.supervisor_on(config(&fx), repo, Arc::default()).await;
    let upload = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move { snapshot(&supervisor, 1, None).await })
    };
    wait_until("every file is stored and metadata.json waits", || {
        gate.waiting() == 1
    })
    .await;

    // Older than no grace at all, unreferenced: only the lease protects them.
    let report = collect(&fx.repository, PartitionId(1), &gc(Duration::ZERO))
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert!(report.leased > 0, "{report:?}");
    assert_eq!(report.in_progress.len(), 1, "{report:?}");

    gate.open();
    let outcome = upload.await.unwrap().unwrap();
    assert_eq!(report.in_progress[0], outcome.snapshot_id);
    assert_eq!(fx.latest(1).snapshot_id, outcome.snapshot_id);
    verify_latest(&fx).await;
    assert!(
        files_below(&fx.repo_dir.join("1").join("leases")).is_empty(),
        "the lease outlived its snapshot"
    );
    supervisor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_lease_expired_is_fenced_off() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 1024, 4096);
    let plain = fx.supervisor(config(&fx)).await;
    let first = snapshot(&plain, 1, None).await.unwrap();

    fx.write(1, 20, 1024, 4096);
    let (repo, gate) = held_at_metadata(&fx);
    let held = fx.supervisor_on(config(&fx), repo, Arc::default()).await;
    let stalled = {
        let held = held.clone();
        tokio::spawn(async move { snapshot(&held, 1, None).await })
    };
    wait_until("the second snapshot's files are stored", || {
        gate.waiting() == 1
    })
    .await;

    // An hour later by the collector's clock, the stalled writer's lease
    // has expired: the collector fences it off, then takes its objects.
    let later = GcOptions {
        now: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..gc(Duration::from_secs(1))
    };
    let report = collect(&fx.repository, PartitionId(1), &later)
        .await
        .unwrap();
    assert!(report.fence.is_some(), "{report:?}");
    assert!(!report.deleted.is_empty(), "{report:?}");
    assert_eq!(fx.latest(1).gc_fence, report.fence);

    // The writer wakes up: its publish is refused, in plain words.
    gate.open();
    let err = stalled.await.unwrap().unwrap_err();
    assert_eq!(err.reason(), "fenced", "{err}");
    assert!(err.to_string().contains("lease expired"), "{err}");
    assert_eq!(
        fx.latest(1).snapshot_id,
        first.snapshot_id,
        "the pointer moved"
    );
    verify_latest(&fx).await;

    // Later snapshots are not held back by the fence.
    fx.write(1, 30, 10, 100);
    let third = snapshot(&plain, 1, None).await.unwrap();
    assert_eq!(fx.latest(1).snapshot_id, third.snapshot_id);
    assert_eq!(fx.latest(1).gc_fence, report.fence, "the fence moved back");
    verify_latest(&fx).await;
    plain.stop(None);
    held.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_files_are_stored_under_keys_of_their_own() {
    let fx = Fixture::new(&[1]);
    let v2 = PipelineConfig {
        format: FormatVersion::V2,
        ..config(&fx)
    };
    let supervisor = fx.supervisor(v2).await;
    fx.write(1, 1, 200, 1000);
    let first = snapshot(&supervisor, 1, None).await.unwrap();
    fx.write(1, 2, 200, 1000);
    let second = snapshot(&supervisor, 1, None).await.unwrap();
    let folder = fx.latest(1).path.clone();
    let meta = fx.metadata(1, &folder);
    let keys: Vec<String> = meta.files.iter().map(|f| f.key.clone().unwrap()).collect();
    // The file the second snapshot sent is named after it; the one it
    // reused keeps the first snapshot's key.
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("-{}.sst", second.snapshot_id))),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("-{}.sst", first.snapshot_id))),
        "{keys:?}"
    );
    // Collection with no grace leaves every referenced object.
    collect(&fx.repository, PartitionId(1), &gc(Duration::ZERO))
        .await
        .unwrap();
    verify_latest(&fx).await;
    supervisor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_renewed_stops_the_snapshot() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 1024, 4096);
    let (store, repo) = fx.faulty_repository();
    // The lease is taken; every renewal fails.
    store.inject(Op::Lease, When::FromNth(2), Fault::Fail);
    // ~4 MiB at 1 MiB/s: the upload lasts well past the one-second lease.
    let config = PipelineConfig {
        lease_ttl: Duration::from_secs(1),
        rate_limit: Some(rocksnap::RateLimit::new(1024 * 1024)),
        ..config(&fx)
    };
    let supervisor = fx.supervisor_on(config, repo, Arc::default()).await;
    let err = snapshot(&supervisor, 1, None).await.unwrap_err();
    assert_eq!(err.reason(), "lease", "{err}");
    assert!(err.to_string().contains("lease expired"), "{err}");
    assert!(store.count(Op::Lease) > 1, "no renewal was tried");
    assert!(fx
        .repository
        .read_pointer(PartitionId(1))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        Backend::local(fx.repo_dir.clone()).open_uploads().await,
        0,
        "an upload was left open"
    );
    supervisor.stop(None);
}

/// A folder whose metadata.json is younger than the grace period (written
/// at the end of a long upload) keeps its older files too: deleting them
/// would leave a folder that looks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_metadata_keeps_its_folder_whole() {
    let fx = Fixture::new(&[1]);
    let supervisor = fx.supervisor(fx.config()).await;
    fx.write(1, 1, 200, 1000);
    let first = snapshot(&supervisor, 1, None).await.unwrap();
    fx.write(1, 2, 200, 1000);
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    // The first snapshot's files are a day old; its metadata.json is new.
    let folder = fx
        .repo_dir
        .join("1")
        .join(rocksnap::format::snapshot_folder(
            first.min_applied_lsn,
            first.snapshot_id,
        ));
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for f in files_below(&folder) {
        if f.ends_with(".sst") {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(folder.join(&f))
                .unwrap();
            file.set_modified(day_ago).unwrap();
        }
    }
    let opts = common::collection(Duration::from_secs(3600), Some(1));
    let report = collect(&fx.repository, PartitionId(1), &opts)
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert!(folder.join("metadata.json").exists());
    assert!(
        files_below(&folder).iter().any(|f| f.ends_with(".sst")),
        "its files went"
    );
}

/// A snapshot's parts travel while its lease is still on the way, but none
/// of its objects exists before the lease does: with the lease's write held,
/// parts are sent and nothing is stored; released, the snapshot completes.
/// A lease that cannot be written stops the snapshot with the reason, the
/// pointer where it was, nothing stored and no upload left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_before_its_lease_and_none_without_one() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 1024, 4096); // ~4 MiB: a multipart file of 1 MiB parts
    let (store, repo) = fx.faulty_repository();
    let gate = store.hold(Op::Lease, When::Nth(1));
    let supervisor = fx.supervisor_on(config(&fx), repo, Arc::default()).await;
    let request = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move { snapshot(&supervisor, 1, None).await })
    };
    wait_until("parts travel before the lease is written", || {
        store.count(Op::Part) >= 2
    })
    .await;
    let objects = |fx: &Fixture| -> Vec<String> {
        files_below(&fx.repo_dir)
            .into_iter()
            .filter(|f| !f.contains('#'))
            .collect()
    };
    assert!(
        objects(&fx).is_empty(),
        "stored before its lease: {:?}",
        objects(&fx)
    );
    assert_eq!(store.count(Op::Complete) + store.count(Op::Put), 0);
    gate.open();
    let published = request.await.unwrap().unwrap();
    verify_latest(&fx).await;
    let before = objects(&fx);

    // Every write of the next snapshot's lease fails.
    store.inject(Op::Lease, When::FromNth(2), Fault::Fail);
    fx.write(1, 20, 1024, 4096);
    let creates = store.count(Op::Create);
    let err = snapshot(&supervisor, 1, None).await.unwrap_err();
    supervisor.stop(None);
    assert!(
        store.count(Op::Create) > creates,
        "no upload was started to be left open or not"
    );
    assert_eq!(err.reason(), "lease", "{err}");
    assert!(err.to_string().contains("cannot write its lease"), "{err}");
    assert_eq!(fx.latest(1).snapshot_id, published.snapshot_id);
    assert_eq!(
        objects(&fx),
        before,
        "the snapshot without a lease stored something"
    );
    assert_eq!(
        Backend::local(fx.repo_dir.clone()).open_uploads().await,
        0,
        "an upload was left open"
    );
}

/// In a plain local directory a lease is written beside the store (its
/// bytes fsynced before a rename, its folder made and removed without
/// fsync): a collection sees it the moment it is written, a renewal
/// replaces it whole, and once deleted nothing of it is left, its folder
/// included; a partition left with nothing is no partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_lease_is_seen_at_once_and_leaves_nothing() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 64, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let repo = &fx.repository;
    let partition = PartitionId(1);

    let id = SnapshotId::new();
    let lease = Lease::new(partition, id, "node".into(), Duration::from_secs(60));
    repo.put_lease(&lease).await.unwrap();
    // An object of that snapshot, unreferenced and older than no grace.
    let folder = rocksnap::format::snapshot_folder(Lsn(20), id);
    let key = repo.layout().file(partition, &folder, "000099.sst");
    repo.store().put(&key, "sst".into()).await.unwrap();
    let report = collect(repo, partition, &gc(Duration::ZERO)).await.unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(report.in_progress, vec![id], "{report:?}");

    let renewed = lease.renewed(Duration::from_secs(120));
    repo.put_lease(&renewed).await.unwrap();
    let leases = repo.read_leases(partition).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].0, id);
    assert_eq!(leases[0].1.as_ref().unwrap().expires_at, renewed.expires_at);

    repo.delete_lease(partition, id).await.unwrap();
    repo.delete_lease(partition, id).await.unwrap(); // gone counts as deleted
    let leases_dir = fx.repo_dir.join("1").join("leases");
    assert!(!leases_dir.exists(), "the empty leases folder was left");
    let scratch = files_below(&fx.repo_dir.join(".locks"));
    assert!(
        scratch.iter().all(|f| !f.starts_with(".tmp")),
        "a lease's temporary file was left: {scratch:?}"
    );
    // Without its lease, the object is the collection's.
    let report = collect(repo, partition, &gc(Duration::ZERO)).await.unwrap();
    assert!(
        report.deleted.iter().any(|d| d.key == key.as_ref()),
        "{report:?}"
    );

    // A partition whose only snapshot never got past its lease: once the
    // lease is given back, nothing names the partition.
    let lonely = PartitionId(7);
    let id = SnapshotId::new();
    repo.put_lease(&Lease::new(
        lonely,
        id,
        "node".into(),
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    assert!(repo.list_partitions().await.unwrap().contains(&lonely));
    repo.delete_lease(lonely, id).await.unwrap();
    assert!(
        !fx.repo_dir.join("7").exists(),
        "an empty partition folder was left"
    );
    assert!(!repo.list_partitions().await.unwrap().contains(&lonely));
}
