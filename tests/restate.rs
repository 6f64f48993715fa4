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

/// Partition 1's `latest.json` as Restate writes it, at its one snapshot.
fn restate_pointer(id: SnapshotId, lsn: u64, folder: &str) -> serde_json::Value {
    json!({
        "version": "V2", "partition_id": 1, "log_id": 1,
        "cluster_name": "restate-cluster", "cluster_fingerprint": 8_273_712_392u64,
        "node_name": "node-1", "created_at": "2026-11-20T10:00:00.000000000Z",
        "snapshot_id": id.to_string(), "min_applied_lsn": lsn, "path": folder,
        "retained_snapshots": [retained(id, lsn, folder)]
    })
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

/// Checks, field by field, that `doc` is a `latest.json` Restate v1.7
/// reads (its `LatestSnapshot`, version V2): every field it requires,
/// with its type and encoding. Returns the snapshot ids it retains.
fn assert_restate_reads_pointer(doc: &serde_json::Value, partition: u64) -> Vec<String> {
    let text = doc.to_string();
    assert_eq!(doc["version"], "V2", "{text}");
    assert_eq!(doc["partition_id"].as_u64(), Some(partition), "{text}");
    assert!(doc["log_id"].is_u64(), "V2 needs log_id: {text}");
    assert!(doc["cluster_name"].is_string(), "{text}");
    assert!(
        doc.get("cluster_fingerprint")
            .is_none_or(|f| f.as_u64().is_some_and(|f| f != 0)),
        "a fingerprint is a non-zero u64: {text}"
    );
    assert!(doc["node_name"].is_string(), "{text}");
    assert_restate_timestamp(&doc["created_at"]);
    let id = assert_restate_id(&doc["snapshot_id"]);
    let lsn = doc["min_applied_lsn"].as_u64().expect("min_applied_lsn");
    assert_eq!(doc["path"], format!("lsn_{lsn:020}-{id}"), "{text}");
    assert!(
        doc.get("retained").is_none(),
        "rocksnap's name for the list: {text}"
    );
    let retained = doc["retained_snapshots"]
        .as_array()
        .expect("retained_snapshots");
    assert_eq!(retained[0]["snapshot_id"], id.as_str(), "newest first");
    let mut previous = u64::MAX;
    retained
        .iter()
        .map(|r| {
            let rid = assert_restate_id(&r["snapshot_id"]);
            let rlsn = r["min_applied_lsn"].as_u64().expect("min_applied_lsn");
            assert!(rlsn <= previous, "ordered by descending LSN: {text}");
            previous = rlsn;
            assert_restate_timestamp(&r["created_at"]);
            assert_eq!(r["path"], format!("lsn_{rlsn:020}-{rid}"), "{text}");
            rid
        })
        .collect()
}

/// Checks, field by field, that `doc` is a `metadata.json` Restate v1.7
/// reads (its `PartitionSnapshotMetadata`, version V1, files as RocksDB's
/// `LiveFile`), and that every file it names is in `folder` with its size.
fn assert_restate_reads_metadata(doc: &serde_json::Value, partition: u64, folder: &Path) {
    let text = doc.to_string();
    assert_eq!(
        doc["version"], "V1",
        "Restate knows metadata V1 only: {text}"
    );
    assert!(doc["cluster_name"].is_string(), "{text}");
    assert_eq!(doc["partition_id"].as_u64(), Some(partition), "{text}");
    assert!(doc["node_name"].is_string(), "{text}");
    assert_restate_timestamp(&doc["created_at"]);
    assert_restate_id(&doc["snapshot_id"]);
    let (start, end) = (
        doc["key_range"]["start"].as_u64().expect("key_range.start"),
        doc["key_range"]["end"].as_u64().expect("key_range.end"),
    );
    assert!(start <= end, "{text}");
    assert!(doc["log_id"].is_u64(), "{text}");
    assert!(doc["min_applied_lsn"].is_u64(), "{text}");
    assert!(doc["db_comparator_name"].is_string(), "{text}");
    let files = doc["files"].as_array().expect("files");
    assert!(!files.is_empty());
    for f in files {
        for field in ["column_family_name", "name", "directory"] {
            assert!(f[field].is_string(), "{field}: {f}");
        }
        for field in [
            "size",
            "smallest_seqno",
            "largest_seqno",
            "num_entries",
            "num_deletions",
        ] {
            assert!(f[field].is_u64(), "{field}: {f}");
        }
        assert!(
            f["level"].as_i64().is_some_and(|l| (0..=6).contains(&l)),
            "{f}"
        );
        for field in ["start_key", "end_key"] {
            let key = &f[field];
            assert!(
                key.is_null()
                    || key.as_str().is_some_and(
                        |k| k.len() % 2 == 0 && k.bytes().all(|b| b.is_ascii_hexdigit())
                    ),
                "{field} is hex: {f}"
            );
        }
        // Restate strips one leading `/` and joins the rest to the folder.
        let name = f["name"].as_str().unwrap();
        let name = name.strip_prefix('/').unwrap_or(name);
        let stored = std::fs::metadata(folder.join(name)).expect("the file is in the folder");
        assert_eq!(Some(stored.len()), f["size"].as_u64(), "{f}");
    }
}

/// Restate's id: `snap_1` and 22 base62 digits, which rocksnap decodes
/// and encodes back to the same text.
fn assert_restate_id(value: &serde_json::Value) -> String {
    let text = value.as_str().expect("an id is a string");
    let digits = text.strip_prefix("snap_1").expect("snap_1 prefix");
    assert_eq!(digits.len(), 22, "{text}");
    assert!(digits.bytes().all(|b| b.is_ascii_alphanumeric()), "{text}");
    let id: SnapshotId = text.parse().unwrap();
    assert_eq!(id.encoding(), IdEncoding::Restate);
    assert_eq!(id.to_string(), text);
    text.to_string()
}

/// Restate reads timestamps with `jiff::Timestamp`'s parser: RFC 3339 in UTC.
fn assert_restate_timestamp(value: &serde_json::Value) {
    let text = value.as_str().expect("a timestamp is a string");
    let parsed = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    assert!(
        text.ends_with('Z') && parsed.offset().local_minus_utc() == 0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restate_dialect_writes_what_restate_reads() {
    // The seed's id decodes to its ULID and encodes back.
    let seed: SnapshotId = "snap_17IyaexCTaiY7ZvMJcsPdg5".parse().unwrap();
    let at = chrono::DateTime::from_timestamp_millis(seed.ulid().timestamp_ms() as i64).unwrap();
    assert_eq!(
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "2024-11-21T19:17:15.751Z"
    );
    assert_eq!(
        format!("snap_{}", seed.ulid())
            .parse::<SnapshotId>()
            .unwrap()
            .encoded(IdEncoding::Restate)
            .to_string(),
        "snap_17IyaexCTaiY7ZvMJcsPdg5"
    );

    // A Restate repository: one snapshot Restate wrote, with its fingerprint.
    let fx = common::Fixture::new(&[1]);
    write(&fx.partitions, 10);
    let (theirs, theirs_folder) = restate_snapshot(&fx.partitions, &fx.repo_dir, 10, fx.dir.path());
    let pointer = restate_pointer(theirs, 10, &theirs_folder);
    let latest = fx.repo_dir.join("1").join("latest.json");
    std::fs::write(&latest, serde_json::to_vec_pretty(&pointer).unwrap()).unwrap();
    write(&fx.partitions, 20);

    // rocksnap's own dialect is not published onto it.
    let native = fx
        .supervisor(rocksnap::PipelineConfig {
            cluster_name: "restate-cluster".into(),
            ..fx.config()
        })
        .await;
    let err = common::snapshot(&native, 1, None).await.unwrap_err();
    assert!(err.to_string().contains("dialect"), "{err}");
    native.stop(None);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&latest).unwrap()).unwrap(),
        pointer
    );

    // The Restate dialect is: Restate's documents, field by field.
    let config = rocksnap::PipelineConfig {
        cluster_name: "restate-cluster".into(),
        node_name: "node-1".into(),
        dialect: rocksnap::format::Dialect::Restate,
        ..fx.config()
    };
    let supervisor = fx.supervisor(config.clone()).await;
    let ours = common::snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    let kept = assert_restate_reads_pointer(&doc, 1);
    assert_eq!(kept, [ours.snapshot_id.to_string(), theirs.to_string()]);
    assert_eq!(doc["snapshot_id"], ours.snapshot_id.to_string());
    assert_eq!(doc["min_applied_lsn"], 20);
    assert_eq!(doc["log_id"], 1, "the partition's default log");
    assert_eq!(doc["cluster_name"], "restate-cluster");
    assert_eq!(
        doc["cluster_fingerprint"], 8_273_712_392u64,
        "the cluster's fingerprint is kept"
    );
    let folder = fx.repo_dir.join("1").join(doc["path"].as_str().unwrap());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("metadata.json")).unwrap()).unwrap();
    assert_restate_reads_metadata(&meta, 1, &folder);
    assert_eq!(meta["snapshot_id"], doc["snapshot_id"]);
    assert!(
        !fx.repo_dir.join("1").join("ssts").exists(),
        "nothing outside the snapshot's folder"
    );
    // rocksnap reads it back like any other, and restores it.
    let restored = fx.dir.path().join("restored");
    let outcome = restore(
        &fx.repository,
        &restored,
        PartitionId(1),
        RestoreTarget::Latest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.snapshot_id.to_string(),
        ours.snapshot_id.to_string()
    );
    assert!(
        PartitionStore::open_existing(&restored)
            .unwrap()
            .entries("data-1")
            .unwrap()
            == fx.partitions.entries("data-1").unwrap()
    );

    // Format V2 (shared files) in the Restate dialect: refused at start.
    let mut v2 = config;
    v2.format = rocksnap::format::FormatVersion::V2;
    assert!(v2.check(&fx.repository).unwrap_err().contains("V1"));

    // A rocksnap repository does not take the Restate dialect either.
    let other = common::Fixture::new(&[1]);
    other.write(1, 5, 10, 10);
    let first = other.supervisor(other.config()).await;
    common::snapshot(&first, 1, None).await.unwrap();
    first.stop(None);
    let restate = other
        .supervisor(rocksnap::PipelineConfig {
            dialect: rocksnap::format::Dialect::Restate,
            ..other.config()
        })
        .await;
    let err = common::snapshot(&restate, 1, None).await.unwrap_err();
    assert!(err.to_string().contains("dialect"), "{err}");
    restate.stop(None);
}

#[test]
fn the_restate_format_needs_an_lsn_from_the_host() {
    let fx = common::Fixture::new(&[1]);
    fx.write(1, 5, 10, 10);
    let db = fx.dir.path().join("db");
    drop(fx.partitions);
    let repo = fx.repo_dir.to_str().unwrap();
    let base = [
        "snapshot",
        "--db",
        db.to_str().unwrap(),
        "--partition",
        "1",
        "--to",
        repo,
    ];
    common::bin::fails_clearly(
        &mut common::bin::command(&[&base[..], &["--format", "restate"]].concat()),
        "--format restate needs --lsn",
    );
    common::bin::fails_clearly(
        &mut common::bin::command(&[&base[..], &["--log-id", "3"]].concat()),
        "--log-id is written only with --format restate",
    );
    let out = common::bin::output(&mut common::bin::command(
        &[&base[..], &["--format", "V3"]].concat(),
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("V1, V2 or restate"));
    // With an LSN and a log id: Restate's documents.
    let out = common::bin::ok_json(&mut common::bin::command(
        &[
            &base[..],
            &[
                "--format", "restate", "--lsn", "4", "--log-id", "7", "--json",
            ],
        ]
        .concat(),
    ));
    let id = out["snapshot_id"].as_str().unwrap();
    assert!(id.starts_with("snap_1"), "{out}");
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.repo_dir.join("1").join("latest.json")).unwrap())
            .unwrap();
    assert_eq!(pointer["log_id"], 7);
    assert_eq!(pointer["min_applied_lsn"], 4);
}

/// The pointer never moves back, Restate's own included: a snapshot in the
/// Restate dialect at LSN 20, over a `latest.json` Restate wrote at LSN 30,
/// is refused, Restate's pointer stays byte for byte as it was, and no
/// object of the refused snapshot (its files, metadata, lease) is left
/// beside Restate's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_behind_restates_pointer_is_refused() {
    let fx = common::Fixture::new(&[1]);
    write(&fx.partitions, 10);
    let (theirs, theirs_folder) = restate_snapshot(&fx.partitions, &fx.repo_dir, 30, fx.dir.path());
    let pointer = restate_pointer(theirs, 30, &theirs_folder);
    let latest = fx.repo_dir.join("1").join("latest.json");
    let written = serde_json::to_vec_pretty(&pointer).unwrap();
    std::fs::write(&latest, &written).unwrap();
    write(&fx.partitions, 20);

    let supervisor = fx
        .supervisor(rocksnap::PipelineConfig {
            cluster_name: "restate-cluster".into(),
            node_name: "node-1".into(),
            dialect: rocksnap::format::Dialect::Restate,
            ..fx.config()
        })
        .await;
    let err = common::snapshot(&supervisor, 1, None).await.unwrap_err();
    supervisor.stop(None);
    assert!(err.to_string().contains("never moves back"), "{err}");
    assert_eq!(
        std::fs::read(&latest).unwrap(),
        written,
        "Restate's pointer changed"
    );
    // Objects, that is files: an empty folder (the local leases folder,
    // kept for the next lease) is no object, and Restate lists none.
    let left: Vec<String> = common::files_below(&fx.repo_dir.join("1"))
        .into_iter()
        .filter(|f| f != "latest.json" && !f.starts_with(&format!("{theirs_folder}/")))
        .collect();
    assert!(left.is_empty(), "left beside Restate's: {left:?}");
}
