//! Format V2: incremental snapshots, retention and garbage collection, on a
//! local directory and a real RocksDB.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::faulty::{Op, When};
use common::{files_below, snapshot, wait_until, Fixture};
use rocksnap::format::{FormatVersion, PartitionId};
use rocksnap::gc::{collect, GcOptions};
use rocksnap::restore::{restore, RestoreOptions, RestoreTarget};
use rocksnap::{PipelineConfig, Repository, Retention};

fn v2(fx: &Fixture, keep_last: usize) -> PipelineConfig {
    PipelineConfig {
        part_size: 256 * 1024,
        format: FormatVersion::V2,
        retention: Retention {
            keep_last,
            max_age: None,
        },
        ..fx.config()
    }
}

fn flush(fx: &Fixture, p: u64) {
    let db = fx.partitions.db();
    db.flush_cf(&db.cf_handle(&format!("data-{p}")).unwrap())
        .unwrap();
}

/// Every file below the repository with its contents.
fn objects(fx: &Fixture) -> BTreeMap<String, Vec<u8>> {
    files_below(&fx.repo_dir)
        .into_iter()
        .filter(|f| !f.starts_with(".locks"))
        .map(|f| {
            let bytes = std::fs::read(fx.repo_dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

async fn restored_equals_source(fx: &Fixture, repo: &Repository, name: &str) {
    let db = fx.dir.path().join(name);
    restore(
        repo,
        &db,
        PartitionId(1),
        RestoreTarget::Latest,
        &RestoreOptions::default(),
    )
    .await
    .unwrap();
    let restored = rocksnap::PartitionStore::open_existing(&db)
        .unwrap()
        .entries("data-1")
        .unwrap();
    assert!(
        restored == fx.partitions.entries("data-1").unwrap(),
        "{name}: restored data differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_snapshot_uploads_only_new_files() {
    let fx = Fixture::new(&[1]);
    for lsn in 1..=3 {
        fx.write(1, lsn, 1200, 4096); // ~5 MiB per file, three files
        flush(&fx, 1);
    }
    let supervisor = fx.supervisor(v2(&fx, 10)).await;
    let full = snapshot(&supervisor, 1, None).await.unwrap();
    assert_eq!(full.uploaded_bytes, full.bytes);

    // 1% new data, flushed into a new file.
    fx.write(1, 4, 36, 4096);
    flush(&fx, 1);
    let incremental = snapshot(&supervisor, 1, None).await.unwrap();
    let meta = fx.metadata(1, &format!("lsn_{:020}-{}", 4, incremental.snapshot_id));
    assert_eq!(meta.version, FormatVersion::V2);
    assert_eq!(meta.files.len(), 4);
    let newest = meta.files.iter().max_by_key(|f| f.largest_seqno).unwrap();
    assert_eq!(
        incremental.uploaded_bytes, newest.size,
        "only the new SST is sent"
    );
    assert!(
        incremental.uploaded_bytes * 50 < incremental.bytes,
        "{incremental:?}"
    );
    // Every file is stored once, under its identity, shared by both snapshots.
    let shared: Vec<String> = files_below(&fx.repo_dir.join("1").join("ssts"));
    assert_eq!(shared.len(), 4, "{shared:?}");
    for f in &meta.files {
        assert!(f.key.as_deref().unwrap().starts_with("ssts/"));
        assert!(f.identity.is_some());
    }
    // The pointer keeps both, newest first; the trim point is the oldest.
    let latest = fx.latest(1);
    assert_eq!(latest.retained.len(), 2);
    assert_eq!(latest.retained[0].snapshot_id, incremental.snapshot_id);
    assert_eq!(latest.retained[1].snapshot_id, full.snapshot_id);
    assert_eq!(
        fx.repository.safe_trim_point(PartitionId(1)).await.unwrap(),
        Some(full.min_applied_lsn)
    );
    restored_equals_source(&fx, &fx.repository, "restored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_what_is_referenced_even_during_an_upload() {
    let fx = Fixture::new(&[1]);
    let supervisor = fx.supervisor(v2(&fx, 2)).await;
    // Three snapshots, each after a compaction that rewrites every file: the
    // first one's files are referenced by no kept snapshot after the third.
    let mut ids = Vec::new();
    for lsn in 1..=3u64 {
        fx.write(1, lsn, 300, 4096);
        fx.compact(1);
        ids.push(snapshot(&supervisor, 1, None).await.unwrap());
    }
    let latest = fx.latest(1);
    assert_eq!(latest.retained.len(), 2, "keep_last = 2");

    // A dry run deletes nothing but says what it would.
    let before = objects(&fx);
    let dry = collect(
        &fx.repository,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            dry_run: true,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!dry.deleted.is_empty());
    assert_eq!(objects(&fx), before, "a dry run changed the repository");

    // A fourth snapshot whose metadata write hangs: its files are stored,
    // unreferenced, while the collector runs.
    fx.write(1, 4, 300, 4096);
    flush(&fx, 1);
    let (faulty, slow_repo) = fx.faulty_repository();
    // The files are multipart uploads, so the first single put is metadata.json.
    let gate = faulty.hold(Op::Put, When::Nth(1));
    let slow = fx
        .supervisor_on(v2(&fx, 2), slow_repo, Arc::default())
        .await;
    let upload = tokio::spawn(async move { snapshot(&slow, 1, None).await });
    wait_until("the metadata write is held", || gate.waiting() == 1).await;
    let report = collect(
        &fx.repository,
        PartitionId(1),
        &GcOptions {
            grace: Duration::from_secs(3600),
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(
        report.deleted.is_empty(),
        "young objects were deleted: {:?}",
        report.deleted
    );
    assert!(
        report.spared > 0,
        "the upload in progress left nothing to spare"
    );
    gate.open();
    let fourth = upload.await.unwrap().unwrap();

    // Now collect with no grace: only what no kept snapshot references goes.
    let report = collect(
        &fx.repository,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!report.deleted.is_empty());
    let first_folder = format!("lsn_{:020}-{}", 1, ids[0].snapshot_id);
    assert!(
        report.deleted.iter().any(|d| d.key.contains(&first_folder)),
        "{report:?}"
    );
    let repo = &fx.repository;
    let kept = fx.latest(1).retained;
    assert_eq!(kept[0].snapshot_id, fourth.snapshot_id);
    for r in &kept {
        let meta = repo.read_metadata(PartitionId(1), &r.path).await.unwrap();
        for f in &meta.files {
            let key = repo.layout().object(PartitionId(1), &r.path, f).unwrap();
            assert!(
                fx.repo_dir.join(key.as_ref()).exists(),
                "{key} of a kept snapshot was deleted"
            );
        }
    }
    restored_equals_source(&fx, repo, "after-gc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_without_a_pointer_keeps_complete_snapshots_and_never_rewrites_a_foreign_pointer() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 1, 100, 1024);
    let supervisor = fx.supervisor(v2(&fx, 5)).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    fx.write(1, 2, 100, 1024);
    snapshot(&supervisor, 1, None).await.unwrap();

    // Another cluster's pointer: retention may not rewrite it.
    let err = collect(
        &fx.repository,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            retention: Some(Retention {
                keep_last: 1,
                max_age: None,
            }),
            cluster: Some("another".into()),
            ..GcOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("localcluster"), "{err}");
    assert_eq!(fx.latest(1).retained.len(), 2);

    // No pointer at all: complete snapshots are kept.
    let before = objects(&fx);
    std::fs::remove_file(fx.repo_dir.join("1").join("latest.json")).unwrap();
    let report = collect(
        &fx.repository,
        PartitionId(1),
        &GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.kept.len(), 2);
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    let after = objects(&fx);
    assert_eq!(after.len() + 1, before.len());
}
