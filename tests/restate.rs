//! Repositories Restate writes (v1.7's layout: `lsn_<020>-<snapshot_id>`
//! folders, base62 snapshot ids, `latest.json` V2 with
//! `retained_snapshots`, `log_id`, `cluster_fingerprint`, no checksums),
//! built here from real SST files: rocksnap lists, shows, verifies and
//! restores them, collects what Restate no longer retains, and never
//! rewrites Restate's pointer.

mod common;

use std::path::Path;
use std::time::Duration;

use rocksnap::format::{IdEncoding, PartitionId, SnapshotId};
use rocksnap::gc::{collect, GcError, GcOptions};
use rocksnap::partition::Entry;
use rocksnap::restore::{restore, verify, RestoreOptions, RestoreTarget};
use rocksnap::{Destination, Lsn, OpenMode, PartitionStore, Repository, Retention};
use serde_json::json;

/// One Restate snapshot of partition 1 at `lsn`, from the source database
/// as it is now; returns its id and folder.
fn restate_snapshot(
    source: &PartitionStore,
    repo: &Path,
    lsn: u64,
    work: &Path,
) -> (SnapshotId, String) {
    let id = SnapshotId::new().encoded(IdEncoding::Restate);
    let folder = rocksnap::format::snapshot_folder(Lsn(lsn), id);
    let export = work.join(format!("export-{lsn}"));
    let exported = source.export_column_family("data-1", &export).unwrap();
    let dir = repo.join("1").join(&folder);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for f in &exported.files {
        let name = f.name.trim_start_matches('/');
        std::fs::copy(Path::new(&f.directory).join(name), dir.join(name)).unwrap();
        files.push(json!({
            "column_family_name": "",
            "name": f.name,
            "directory": format!("/restate-data/node-1/db-snapshots/1/{id}"),
            "size": f.size,
            "level": f.level,
            "start_key": hex::encode(&f.smallest_key),
            "end_key": hex::encode(&f.largest_key),
            "smallest_seqno": f.smallest_seqno,
            "largest_seqno": f.largest_seqno,
            "num_entries": 0,
            "num_deletions": 0
        }));
    }
    let metadata = json!({
        "version": "V1",
        "cluster_name": "restate-cluster",
        "cluster_fingerprint": 8_273_712_392u64,
        "partition_id": 1,
        "node_name": "node-1",
        "created_at": "2026-11-20T10:00:00.000000000Z",
        "snapshot_id": id.to_string(),
        "key_range": { "start": 0, "end": 9_223_372_036_854_775_807u64 },
        "log_id": 1,
        "min_applied_lsn": lsn,
        "db_comparator_name": "leveldb.BytewiseComparator",
        "files": files
    });
    std::fs::write(
        dir.join("metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    (id, folder)
}

fn retained(id: SnapshotId, lsn: u64, folder: &str) -> serde_json::Value {
    json!({
        "snapshot_id": id.to_string(),
        "min_applied_lsn": lsn,
        "created_at": "2026-11-20T10:00:00.000000000Z",
        "path": folder
    })
}

fn write(store: &PartitionStore, lsn: u64) {
    let records: Vec<_> = (0..200)
        .map(|i| (common::key(lsn, i), common::value(lsn, i, 500)))
        .collect();
    store.apply(PartitionId(1), Lsn(lsn), records).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restate_repository_is_read_collected_and_left_as_restate_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let source = PartitionStore::open(&dir.path().join("source"), &[PartitionId(1)]).unwrap();
    // Three snapshots; Restate retains the newest two.
    write(&source, 10);
    let (_dropped, dropped_folder) = restate_snapshot(&source, &repo_dir, 10, dir.path());
    write(&source, 20);
    let (older, older_folder) = restate_snapshot(&source, &repo_dir, 20, dir.path());
    write(&source, 30);
    let (newest, newest_folder) = restate_snapshot(&source, &repo_dir, 30, dir.path());
    let expected: Vec<Entry> = source.entries("data-1").unwrap();
    let pointer = json!({
        "version": "V2",
        "partition_id": 1,
        "log_id": 1,
        "cluster_name": "restate-cluster",
        "cluster_fingerprint": 8_273_712_392u64,
        "node_name": "node-1",
        "created_at": "2026-11-20T10:00:00.000000000Z",
        "snapshot_id": newest.to_string(),
        "min_applied_lsn": 30,
        "path": newest_folder,
        "retained_snapshots": [retained(newest, 30, &newest_folder), retained(older, 20, &older_folder)]
    });
    let pointer_bytes = serde_json::to_vec_pretty(&pointer).unwrap();
    std::fs::write(repo_dir.join("1").join("latest.json"), &pointer_bytes).unwrap();
    let repo = Repository::new(
        Destination::open(repo_dir.to_str().unwrap(), OpenMode::MustExist).unwrap(),
    );

    // list and show, as an operator runs them.
    let listed = common::bin::ok_json(&mut common::bin::command(&[
        "list",
        "--from",
        repo_dir.to_str().unwrap(),
        "--json",
    ]));
    let text = listed.to_string();
    for id in [newest, older] {
        assert!(text.contains(&id.to_string()), "{id} missing from {text}");
    }
    let shown = common::bin::ok_json(&mut common::bin::command(&[
        "show",
        "--from",
        repo_dir.to_str().unwrap(),
        "--partition",
        "1",
        "--json",
    ]));
    assert!(shown.to_string().contains(&newest.to_string()), "{shown}");

    // verify (sizes: Restate writes no checksums) and restore.
    let opts = RestoreOptions {
        staging_dir: Some(dir.path().join("staging")),
        ..RestoreOptions::default()
    };
    let report = verify(&repo, PartitionId(1), None, false, &opts)
        .await
        .unwrap();
    assert_eq!(report.snapshot_id, newest);
    let target = dir.path().join("restored");
    let outcome = restore(
        &repo,
        &target,
        PartitionId(1),
        RestoreTarget::LatestOrOlder,
        &opts,
    )
    .await
    .unwrap();
    assert_eq!(outcome.snapshot_id, newest);
    assert_eq!(
        outcome.snapshot_id.to_string(),
        newest.to_string(),
        "the id changed encoding"
    );
    let restored = PartitionStore::open_existing(&target)
        .unwrap()
        .entries("data-1")
        .unwrap();
    assert!(
        restored == expected,
        "the restored partition differs from the source"
    );

    // Collection honours retained_snapshots: the dropped snapshot goes,
    // the retained ones stay, and latest.json is not touched.
    let gc = GcOptions {
        grace: Duration::ZERO,
        cluster: Some("restate-cluster".into()),
        ..GcOptions::default()
    };
    let report = collect(&repo, PartitionId(1), &gc).await.unwrap();
    assert!(
        report
            .deleted
            .iter()
            .all(|d| d.key.contains(&dropped_folder)),
        "{:?}",
        report.deleted
    );
    assert!(!repo_dir.join("1").join(&dropped_folder).exists());
    assert!(repo_dir
        .join("1")
        .join(&older_folder)
        .join("metadata.json")
        .exists());
    assert_eq!(
        std::fs::read(repo_dir.join("1").join("latest.json")).unwrap(),
        pointer_bytes
    );
    // Retention would rewrite Restate's pointer: refused, by name.
    let rewrite = GcOptions {
        retention: Some(Retention {
            keep_last: 1,
            max_age: None,
        }),
        ..gc
    };
    let err = collect(&repo, PartitionId(1), &rewrite).await.unwrap_err();
    assert!(matches!(err, GcError::RestatePointer), "{err}");
    assert_eq!(
        std::fs::read(repo_dir.join("1").join("latest.json")).unwrap(),
        pointer_bytes
    );
}

/// The layout of Restate's first snapshots, from the documents its change
/// printed (`tests/fixtures/restate-seed/`, unchanged but for the files,
/// which are real SSTs made here): `lsn_<n>` folders without an id, a
/// pointer with `lsn` and no cluster, file names starting with `/`, a
/// writer's absolute `directory` that means nothing to a reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_layout_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let source = PartitionStore::open(&dir.path().join("source"), &[PartitionId(1)]).unwrap();
    write(&source, 96);
    let expected = source.entries("data-1").unwrap();
    let exported = source
        .export_column_family("data-1", &dir.path().join("export"))
        .unwrap();
    let folder = repo_dir.join("1").join("lsn_96");
    std::fs::create_dir_all(&folder).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/restate-seed");
    let mut metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("metadata.json")).unwrap()).unwrap();
    let template = metadata["files"][0].clone();
    let mut files = Vec::new();
    for f in &exported.files {
        let name = f.name.trim_start_matches('/');
        std::fs::copy(Path::new(&f.directory).join(name), folder.join(name)).unwrap();
        let mut entry = template.clone();
        entry["name"] = json!(f.name);
        entry["size"] = json!(f.size);
        entry["level"] = json!(f.level);
        entry["start_key"] = json!(hex::encode(&f.smallest_key));
        entry["end_key"] = json!(hex::encode(&f.largest_key));
        entry["smallest_seqno"] = json!(f.smallest_seqno);
        entry["largest_seqno"] = json!(f.largest_seqno);
        files.push(entry);
    }
    metadata["files"] = json!(files);
    std::fs::write(
        folder.join("metadata.json"),
        serde_json::to_vec_pretty(&metadata).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("latest.json"),
        repo_dir.join("1").join("latest.json"),
    )
    .unwrap();
    let repo = Repository::new(
        Destination::open(repo_dir.to_str().unwrap(), OpenMode::MustExist).unwrap(),
    );

    let listed = repo.list_snapshots(PartitionId(1)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "lsn_96");
    assert_eq!(
        listed[0].snapshot_id.to_string(),
        "snap_17IyaexCTaiY7ZvMJcsPdg5"
    );
    let shown = common::bin::ok_json(&mut common::bin::command(&[
        "show",
        "--from",
        repo_dir.to_str().unwrap(),
        "--partition",
        "1",
        "--json",
    ]));
    assert!(
        shown.to_string().contains("snap_17IyaexCTaiY7ZvMJcsPdg5"),
        "{shown}"
    );
    let opts = RestoreOptions {
        staging_dir: Some(dir.path().join("staging")),
        ..RestoreOptions::default()
    };
    verify(&repo, PartitionId(1), None, false, &opts)
        .await
        .unwrap();
    let target = dir.path().join("restored");
    let outcome = restore(&repo, &target, PartitionId(1), RestoreTarget::Latest, &opts)
        .await
        .unwrap();
    assert_eq!(outcome.min_applied_lsn, Lsn(96));
    let restored = PartitionStore::open_existing(&target)
        .unwrap()
        .entries("data-1")
        .unwrap();
    assert!(
        restored == expected,
        "the restored partition differs from the source"
    );
    // Collection keeps it and leaves the pointer as it is.
    let before = std::fs::read(repo_dir.join("1").join("latest.json")).unwrap();
    let report = collect(
        &repo,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert_eq!(
        std::fs::read(repo_dir.join("1").join("latest.json")).unwrap(),
        before
    );
}
