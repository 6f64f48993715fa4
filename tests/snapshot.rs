//! The snapshot pipeline end to end on a real RocksDB and a local directory.

mod common;

use common::{files_below, snapshot, Fixture};
use rocksnap::format::{FormatVersion, KeyRange, Lsn, PartitionId};
use rocksnap::repository::RepoError;
use rocksnap::PublishError;
use rocksnap::SnapshotError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_has_the_documented_layout_and_the_exported_bytes() {
    let fx = Fixture::new(&[1, 2]);
    fx.write(1, 41, 500, 700);
    fx.write(1, 42, 300, 900);
    fx.write(2, 7, 10, 10); // another partition's data must not appear
    let supervisor = fx.supervisor(fx.config()).await;

    let outcome = snapshot(&supervisor, 1, None).await.unwrap();
    assert_eq!(outcome.partition_id, PartitionId(1));
    assert_eq!(outcome.min_applied_lsn, Lsn(42));

    // latest.json points at the snapshot.
    let latest = fx.latest(1);
    assert_eq!(latest.version, FormatVersion::V1);
    assert_eq!(latest.snapshot_id, outcome.snapshot_id);
    assert_eq!(latest.min_applied_lsn, Lsn(42));
    assert_eq!(latest.cluster_name, "localcluster");
    let folder = format!("lsn_{:020}-{}", 42, outcome.snapshot_id);
    assert_eq!(latest.path, folder);
    assert_eq!(outcome.key, format!("1/{folder}/metadata.json"));

    // metadata.json describes the export.
    let meta = fx.metadata(1, &folder);
    assert_eq!(meta.snapshot_id, outcome.snapshot_id);
    assert_eq!(meta.partition_id, PartitionId(1));
    assert_eq!(meta.min_applied_lsn, Lsn(42));
    assert_eq!(meta.key_range, KeyRange::FULL);
    assert_eq!(meta.db_comparator_name, "leveldb.BytewiseComparator");
    assert_eq!(meta.checksum_algorithm.as_deref(), Some("crc32c"));
    assert!(!meta.files.is_empty());
    assert_eq!(outcome.files, meta.files.len());
    assert_eq!(outcome.bytes, meta.total_bytes());
    for f in &meta.files {
        assert!(f.size > 0 && f.smallest_seqno <= f.largest_seqno, "{f:?}");
        assert!(f.start_key <= f.end_key, "{f:?}");
    }

    // The raw JSON has the documented field names.
    let raw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fx.repo_dir.join("1").join(&folder).join("metadata.json")).unwrap(),
    )
    .unwrap();
    for field in [
        "version",
        "cluster_name",
        "partition_id",
        "node_name",
        "created_at",
        "snapshot_id",
        "key_range",
        "min_applied_lsn",
        "db_comparator_name",
        "files",
    ] {
        assert!(raw.get(field).is_some(), "metadata.json lacks {field}");
    }
    for field in [
        "column_family_name",
        "name",
        "directory",
        "size",
        "level",
        "start_key",
        "end_key",
        "smallest_seqno",
        "largest_seqno",
        "num_entries",
        "num_deletions",
        "checksum",
    ] {
        assert!(
            raw["files"][0].get(field).is_some(),
            "file entry lacks {field}"
        );
    }

    // Exactly the documented objects, nothing else.
    let mut expected: Vec<String> = meta
        .files
        .iter()
        .map(|f| format!("1/{folder}/{}", f.file_name().unwrap()))
        .collect();
    expected.push(format!("1/{folder}/metadata.json"));
    expected.push("1/latest.json".into());
    expected.sort();
    let stored: Vec<String> = files_below(&fx.repo_dir)
        .into_iter()
        .filter(|f| !f.starts_with(".locks"))
        .collect();
    assert_eq!(stored, expected);

    // Every object equals the database's own SST of that name, and its checksum matches.
    let checkpoint = fx.dir.path().join("checkpoint");
    rocksdb::checkpoint::Checkpoint::new(fx.partitions.db())
        .unwrap()
        .create_checkpoint(&checkpoint)
        .unwrap();
    for f in &meta.files {
        let name = f.file_name().unwrap();
        let object = std::fs::read(fx.repo_dir.join("1").join(&folder).join(name)).unwrap();
        let original = std::fs::read(checkpoint.join(name)).unwrap();
        assert!(object == original, "{name} differs from the exported file");
        assert_eq!(object.len() as u64, f.size);
        assert_eq!(
            f.checksum.as_deref(),
            Some(format!("{:08x}", crc32c::crc32c(&original)).as_str())
        );
    }

    // The staging directory is gone.
    assert!(files_below(&fx.staging_dir()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_snapshot_moves_the_pointer_forward_and_leaves_the_first_alone() {
    let fx = Fixture::new(&[3]);
    fx.write(3, 10, 200, 512);
    let supervisor = fx.supervisor(fx.config()).await;
    let first = snapshot(&supervisor, 3, None).await.unwrap();
    let first_objects: Vec<(String, Vec<u8>)> = files_below(&fx.repo_dir)
        .into_iter()
        .filter(|f| f.contains(&first.snapshot_id.to_string()))
        .map(|f| {
            let bytes = std::fs::read(fx.repo_dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert!(first_objects.len() >= 2);

    fx.write(3, 20, 200, 512);
    let second = snapshot(&supervisor, 3, None).await.unwrap();
    assert_eq!(second.min_applied_lsn, Lsn(20));
    assert_ne!(second.snapshot_id, first.snapshot_id);
    let latest = fx.latest(3);
    assert_eq!(latest.snapshot_id, second.snapshot_id);
    assert!(latest.min_applied_lsn > first.min_applied_lsn);

    for (f, bytes) in &first_objects {
        assert!(
            std::fs::read(fx.repo_dir.join(f)).unwrap() == *bytes,
            "{f} changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_lsn_above_applied_is_refused_and_nothing_is_published() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 5, 10, 100);
    let supervisor = fx.supervisor(fx.config()).await;
    let err = snapshot(&supervisor, 1, Some(6)).await.unwrap_err();
    match err {
        SnapshotError::LsnBelowMinimum {
            partition,
            applied,
            requested,
        } => {
            assert_eq!(
                (partition, applied, requested),
                (PartitionId(1), Lsn(5), Lsn(6))
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(files_below(&fx.repo_dir).is_empty());
    // At the applied LSN it succeeds.
    snapshot(&supervisor, 1, Some(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_latest_json_is_not_overwritten() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 5, 10, 100);
    let pointer = fx.repo_dir.join("1").join("latest.json");
    std::fs::create_dir_all(pointer.parent().unwrap()).unwrap();
    std::fs::write(&pointer, b"{\"version\": \"V1\", \"trunc").unwrap();
    let supervisor = fx.supervisor(fx.config()).await;

    let err = snapshot(&supervisor, 1, None).await.unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Publish { source, .. }
            if matches!(**source, PublishError::Repository(RepoError::Malformed { .. }))),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("1/latest.json") && message.contains("malformed"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(&pointer).unwrap(),
        b"{\"version\": \"V1\", \"trunc"
    );
    assert!(
        !files_below(&fx.repo_dir)
            .iter()
            .any(|f| f.ends_with("metadata.json")),
        "a snapshot that cannot be published leaves no metadata"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointer_never_moves_back() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 50, 10, 100);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    // A stale leader, whose own database is at a lower LSN, snapshots into
    // the same repository: the newer pointer stays.
    let stale = Fixture::new(&[1]);
    stale.write(1, 40, 10, 100);
    let stale_supervisor = stale
        .supervisor_on(stale.config(), fx.repository.clone(), Default::default())
        .await;
    let err = snapshot(&stale_supervisor, 1, None).await.unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Publish { source, .. }
            if matches!(**source, PublishError::Stale { current: Lsn(50), new: Lsn(40) })),
        "{err:?}"
    );
    assert_eq!(fx.latest(1).min_applied_lsn, Lsn(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_partition_is_a_clear_error() {
    let fx = Fixture::new(&[1]);
    let supervisor = fx.supervisor(fx.config()).await;
    let err = snapshot(&supervisor, 99, None).await.unwrap_err();
    assert!(matches!(
        err,
        SnapshotError::UnknownPartition {
            partition: PartitionId(99),
            ..
        }
    ));
    assert!(err.to_string().contains("data-99"), "{err}");
    assert!(files_below(&fx.repo_dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_snapshot_at_once_and_one_partition_once_at_a_time() {
    let ids = [0u64, 1, 2, 3];
    let fx = Fixture::new(&ids);
    for &p in &ids {
        fx.write(p, 100 + p, 2_000, 1024);
    }
    // Small parts so that every file is a multipart upload sharing the bound.
    let config = rocksnap::PipelineConfig {
        part_size: 64 * 1024,
        max_parts_in_flight: 3,
        ..fx.config()
    };
    let supervisor = fx.supervisor(config).await;
    let (a, b, c, d, again) = tokio::join!(
        snapshot(&supervisor, 0, None),
        snapshot(&supervisor, 1, None),
        snapshot(&supervisor, 2, None),
        snapshot(&supervisor, 3, None),
        snapshot(&supervisor, 3, None),
    );
    for (p, outcome) in [a, b, c, d].into_iter().enumerate() {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.min_applied_lsn, Lsn(100 + p as u64));
        assert_eq!(fx.latest(p as u64).snapshot_id, outcome.snapshot_id);
    }
    assert!(
        matches!(again, Err(SnapshotError::InProgress(PartitionId(3)))),
        "{again:?}"
    );
}
