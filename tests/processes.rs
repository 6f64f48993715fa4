//! Several rocksnap processes on one repository, on a local directory, a
//! real S3 server and Azurite: an old and a new leader racing, and a
//! process killed with SIGKILL in the middle of an upload.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::backend::Backend;
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::PartitionStore;

fn rocksnap(backend: &Backend, args: &[&str]) -> Command {
    let mut cmd = common::bin::command(args);
    for (k, v) in backend.env() {
        cmd.env(k, v);
    }
    cmd
}

fn snapshot_cmd(backend: &Backend, db: &Path, lsn: Option<u64>, extra: &[&str]) -> Command {
    let url = backend.url();
    let part = backend.part_size().to_string();
    let mut args = vec![
        "snapshot",
        "--db",
        db.to_str().unwrap(),
        "--partition",
        "1",
        "--to",
        &url,
        "--part-size",
        &part,
    ];
    let lsn_s;
    if let Some(l) = lsn {
        lsn_s = l.to_string();
        args.extend(["--lsn", &lsn_s]);
    }
    args.extend(extra);
    let mut cmd = rocksnap(backend, &args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// A database with partition 1 holding `mib` MiB of incompressible values.
fn build_db(path: &Path, mib: usize) {
    let store = PartitionStore::open(path, &[PartitionId(1)]).unwrap();
    for lsn in 1..=mib as u64 {
        let records: Vec<_> = (0..256)
            .map(|i| (common::key(lsn, i), common::value(lsn, i, 4096)))
            .collect();
        store.apply(PartitionId(1), Lsn(lsn), records).unwrap();
    }
}

/// The pointer's LSN, after checking that its snapshot is complete: its
/// metadata parses and every file it names is stored with its size.
async fn complete_pointer(backend: &Backend) -> Option<u64> {
    let repo = backend.repository();
    let pointer = repo.read_pointer(PartitionId(1)).await.unwrap()?.pointer;
    let meta = repo
        .read_metadata(PartitionId(1), &pointer.path)
        .await
        .unwrap();
    let objects = repo
        .list_objects(PartitionId(1), &pointer.path)
        .await
        .unwrap();
    for f in &meta.files {
        let key = repo
            .layout()
            .file(PartitionId(1), &pointer.path, f.file_name().unwrap());
        let size = objects.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
        assert_eq!(size, Some(f.size), "{key} of the pointed-at snapshot");
    }
    Some(pointer.min_applied_lsn.0)
}

fn finished(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

async fn racing_leaders(backend: Backend, dir: &Path) {
    let (old, new) = (dir.join("old-leader"), dir.join("new-leader"));
    build_db(&old, 2);
    build_db(&new, 2);
    let mut last = 0;
    let (mut published, mut refused) = (0, 0);
    for round in 1..=20u64 {
        // The two leaders snapshot at once; the new one claims the higher LSN
        // in even rounds, the old one in odd rounds.
        let (a, b) = if round % 2 == 0 {
            (2 * round, 2 * round + 1)
        } else {
            (2 * round + 1, 2 * round)
        };
        let first = snapshot_cmd(&backend, &old, Some(a), &[]).spawn().unwrap();
        let second = snapshot_cmd(&backend, &new, Some(b), &[]).spawn().unwrap();
        for out in [finished(first), finished(second)] {
            if out.status.success() {
                published += 1;
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("never moves back"),
                    "round {round}: unexpected failure: {err}"
                );
                refused += 1;
            }
        }
        let lsn = complete_pointer(&backend).await.expect("a pointer");
        assert!(
            lsn >= last,
            "round {round}: the pointer moved back from {last} to {lsn}"
        );
        assert!(lsn >= 2 * round, "round {round}: pointer at {lsn}");
        last = lsn;
    }
    assert_eq!(published + refused, 40);
    assert!(published >= 20, "only {published} snapshots published");
    eprintln!(
        "{}: {published} published, {refused} refused as stale",
        backend.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_racing_leaders() {
    let dir = tempfile::tempdir().unwrap();
    racing_leaders(Backend::local(dir.path().join("repo")), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_racing_leaders() {
    let dir = tempfile::tempdir().unwrap();
    racing_leaders(Backend::s3("race").await, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_racing_leaders() {
    let dir = tempfile::tempdir().unwrap();
    racing_leaders(Backend::azure("race").await, dir.path()).await;
}

async fn killed_mid_upload(backend: Backend, dir: &Path) {
    let db = dir.join("db");
    build_db(&db, 12);
    // A first snapshot, so that there is a pointer to keep.
    let out = finished(snapshot_cmd(&backend, &db, None, &[]).spawn().unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = complete_pointer(&backend).await.unwrap();

    // A slow upload (1 MiB/s), killed once its export is staged.
    let mut child = common::bin::Running(
        snapshot_cmd(&backend, &db, Some(first + 10), &["--rate-limit", "1MiB"])
            .spawn()
            .unwrap(),
    );
    // Killed once its upload is under way: a multipart upload is open.
    let staging = rocksnap::default_staging_dir(&db);
    backend.wait_upload_under_way(&db).await;
    child.0.kill().unwrap(); // SIGKILL
    let _ = child.0.wait();
    assert_eq!(
        complete_pointer(&backend).await,
        Some(first),
        "the pointer moved"
    );

    // Started again: the next snapshot succeeds and is complete.
    let out = finished(
        snapshot_cmd(&backend, &db, Some(first + 20), &[])
            .spawn()
            .unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(complete_pointer(&backend).await, Some(first + 20));
    assert!(
        std::fs::read_dir(&staging).unwrap().next().is_none(),
        "the killed process's export was not cleaned up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_killed_mid_upload() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_upload(Backend::local(dir.path().join("repo")), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_killed_mid_upload() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_upload(Backend::s3("kill").await, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_killed_mid_upload() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_upload(Backend::azure("kill").await, dir.path()).await;
}
