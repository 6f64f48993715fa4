//! The compare-and-swap of `latest.json` on a local directory: the version
//! is the pointer's content, and a writer does not wait for ever for the lock.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::{snapshot, Fixture};
use rocksnap::repository::RepoError;
use rocksnap::PartitionId;

/// Another writer rewrites the pointer in place with as many bytes and puts
/// its modification time back: same inode, same size, same mtime. The swap
/// of a writer that read the old pointer must still fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_rewritten_in_place_is_a_conflict() {
    let fx = Fixture::new(&[1]);
    let supervisor = fx.supervisor(fx.config()).await;
    fx.write(1, 5, 10, 100);
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let read = fx
        .repository
        .read_pointer(PartitionId(1))
        .await
        .unwrap()
        .unwrap();

    let path = fx.repo_dir.join("1").join("latest.json");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replacen("\"node\"", "\"edon\"", 1);
    assert_ne!(text, changed);
    assert_eq!(text.len(), changed.len());
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(changed.as_bytes()).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);

    let mut pointer = read.pointer.clone();
    pointer.node_name = "racer".into();
    let err = fx
        .repository
        .swap_pointer(Some(&read.version), &pointer)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Conflict { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        changed,
        "overwritten blindly"
    );
}

/// A writer whose lock another process holds gives up after the timeout
/// with an error that says so (on a paused clock: no real waiting).
#[tokio::test(start_paused = true)]
async fn a_held_lock_times_out_with_a_clear_error() {
    let fx = Fixture::new(&[1]);
    let locks = fx.repo_dir.join(".locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join("1%2Flatest.json"))
        .unwrap();
    held.lock().unwrap();

    let pointer = rocksnap::format::LatestPointer::parse(
        br#"{"version":"V1","partition_id":1,"cluster_name":"c","node_name":"n",
            "created_at":"2026-11-29T00:00:00Z","snapshot_id":"snap_01KB0000000000000000000000",
            "min_applied_lsn":1,"path":"lsn_00000000000000000001-snap_01KB0000000000000000000000"}"#,
    )
    .unwrap();
    let err = fx
        .repository
        .swap_pointer(None, &pointer)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains("stayed locked"), "{err}");
    assert!(!fx.repo_dir.join("1").join("latest.json").exists());
}

/// What a writer killed between a pointer's (or a lease's) write and its
/// rename leaves beside the locks, a temporary file nothing names, goes
/// with the next collection once it is an hour old; a younger one may be
/// a live writer's, and a lock file is not scratch: both stay.
#[tokio::test]
async fn a_collection_sweeps_what_killed_writers_left_beside_the_locks() {
    let fx = Fixture::new(&[1]);
    let locks = fx.repo_dir.join(".locks");
    std::fs::create_dir_all(&locks).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    let left = locks.join(".tmpKILLED");
    let file = std::fs::File::create(&left).unwrap();
    file.set_modified(two_hours_ago).unwrap();
    let lock = locks.join("1%2Flatest.json");
    std::fs::File::create(&lock)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let live = locks.join(".tmpLIVE");
    std::fs::File::create(&live).unwrap();

    common::collect_with_no_grace(&fx.repository, PartitionId(1)).await;
    assert!(!left.exists(), "the killed writer's file stayed");
    assert!(live.exists(), "a live writer's file was removed");
    assert!(lock.exists(), "a lock file was removed");
}
