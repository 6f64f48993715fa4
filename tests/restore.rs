//! Restore from a local repository into real RocksDB databases: round trips,
//! and every way a bad repository must fail without harming the database.

mod common;

use std::path::Path;

use common::{files_below, snapshot, Fixture};
use rocksnap::restore::{restore, verify, RestoreError, RestoreOptions, RestoreTarget, Unusable};
use rocksnap::{Lsn, PartitionId, PartitionStore, PipelineConfig};

type Dump = Vec<rocksnap::partition::Entry>;

fn dump(store: &PartitionStore, cf: &str) -> Dump {
    store.entries(cf).unwrap()
}

fn dump_path(db: &Path, cf: &str) -> Dump {
    dump(&PartitionStore::open_existing(db).unwrap(), cf)
}

fn opts(fx: &Fixture) -> RestoreOptions {
    RestoreOptions {
        // Small ranges, so that every file is fetched in several parallel GETs.
        part_size: 32 * 1024,
        concurrency: 4,
        staging_dir: Some(fx.dir.path().join("restore-staging")),
        ..RestoreOptions::default()
    }
}

/// Restores the latest snapshot of partition 1 from `repo` into `db` on a
/// task of its own, so that the test can act while it runs.
fn spawn_restore(
    repo: &rocksnap::Repository,
    db: &Path,
    opts: &RestoreOptions,
) -> tokio::task::JoinHandle<Result<rocksnap::restore::RestoreOutcome, RestoreError>> {
    let (repo, db, opts) = (repo.clone(), db.to_path_buf(), opts.clone());
    tokio::spawn(
        async move { restore(&repo, &db, PartitionId(1), RestoreTarget::Latest, &opts).await },
    )
}

/// A database whose partition 1 holds data of its own, to be replaced (or not).
fn target_db(fx: &Fixture) -> (std::path::PathBuf, Dump) {
    let path = fx.dir.path().join("target-db");
    let store = PartitionStore::open(&path, &[PartitionId(1)]).unwrap();
    store
        .apply(
            PartitionId(1),
            Lsn(3),
            [(b"old-key".to_vec(), b"old-value".to_vec())],
        )
        .unwrap();
    let before = dump(&store, "data-1");
    (path, before)
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = (at as usize).min(bytes.len() - 1);
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Object paths of the snapshot's SSTs in the local repository.
fn ssts(fx: &Fixture, partition: u64, folder: &str) -> Vec<std::path::PathBuf> {
    let dir = fx.repo_dir.join(partition.to_string()).join(folder);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_for_several_partitions_and_sizes() {
    let fx = Fixture::new(&[1, 2, 3, 4]);
    // 1: a few small records; 2: three SST files (below the L0 compaction
    // trigger); 3: larger values; 4: empty.
    fx.write(1, 7, 20, 16);
    for lsn in 10..13 {
        fx.write(2, lsn, 1_500, 512);
        let db = fx.partitions.db();
        db.flush_cf(&db.cf_handle("data-2").unwrap()).unwrap();
    }
    fx.write(3, 99, 300, 16 * 1024);
    let supervisor = fx
        .supervisor(PipelineConfig {
            part_size: 64 * 1024,
            ..fx.config()
        })
        .await;
    for p in 1..=4 {
        snapshot(&supervisor, p, None).await.unwrap();
    }

    let restored_db = fx.dir.path().join("restored");
    for (p, lsn) in [(1u64, Some(7)), (2, Some(12)), (3, Some(99)), (4, None)] {
        let outcome = restore(
            &fx.repository,
            &restored_db,
            PartitionId(p),
            RestoreTarget::LatestOrOlder,
            &opts(&fx),
        )
        .await
        .unwrap();
        assert_eq!(outcome.restored_lsn, lsn.map(Lsn), "partition {p}");
        assert!(outcome.skipped.is_empty());
        if p == 2 {
            assert!(
                outcome.files >= 3,
                "expected several files, got {}",
                outcome.files
            );
        }
        let cf = format!("data-{p}");
        assert_eq!(
            dump_path(&restored_db, &cf),
            dump(&fx.partitions, &cf),
            "partition {p}"
        );
    }
    // Restoring again replaces the column family with the same contents.
    restore(
        &fx.repository,
        &restored_db,
        PartitionId(2),
        RestoreTarget::Latest,
        &opts(&fx),
    )
    .await
    .unwrap();
    assert_eq!(
        dump_path(&restored_db, "data-2"),
        dump(&fx.partitions, "data-2")
    );
    assert!(files_below(&fx.dir.path().join("restore-staging")).is_empty());

    // verify --deep reads every entry and agrees.
    let report = verify(&fx.repository, PartitionId(2), None, true, &opts(&fx))
        .await
        .unwrap();
    assert!(report.deep);
    assert_eq!(report.restored_lsn, Some(Lsn(12)));
}

/// Runs a restore that must fail, and checks that the target database still
/// holds exactly what it held, and that nothing was left in staging.
async fn restore_fails(fx: &Fixture, target: RestoreTarget) -> RestoreError {
    let (db, before) = target_db(fx);
    let err = restore(&fx.repository, &db, PartitionId(1), target, &opts(fx))
        .await
        .unwrap_err();
    assert_eq!(
        dump_path(&db, "data-1"),
        before,
        "the live database changed"
    );
    assert!(
        files_below(&fx.dir.path().join("restore-staging")).is_empty(),
        "staging left behind"
    );
    err
}

async fn one_snapshot(fx: &Fixture) -> String {
    fx.write(1, 10, 400, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    let o = snapshot(&supervisor, 1, None).await.unwrap();
    format!("lsn_{:020}-{}", o.min_applied_lsn.0, o.snapshot_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_is_found_and_named() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let sst = ssts(&fx, 1, &folder).remove(0);
    flip_byte(&sst, 1000);
    let err = restore_fails(&fx, RestoreTarget::LatestOrOlder).await;
    let name = sst.file_name().unwrap().to_str().unwrap();
    assert!(
        matches!(&err, RestoreError::Unusable { reason: Unusable::Checksum { key, .. }, .. } if key.ends_with(name)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(name) && err.to_string().contains("corrupt"),
        "{err}"
    );
    // verify finds it too.
    let err = verify(&fx.repository, PartitionId(1), None, false, &opts(&fx))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(name), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sst_is_named() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let sst = ssts(&fx, 1, &folder).remove(0);
    std::fs::remove_file(&sst).unwrap();
    let err = restore_fails(&fx, RestoreTarget::Latest).await;
    let name = sst.file_name().unwrap().to_str().unwrap();
    assert!(
        matches!(&err, RestoreError::Unusable { reason: Unusable::Missing { key }, .. } if key.ends_with(name)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_sst_is_named() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let sst = ssts(&fx, 1, &folder).remove(0);
    let len = std::fs::metadata(&sst).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sst)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = restore_fails(&fx, RestoreTarget::Latest).await;
    assert!(
        matches!(&err, RestoreError::Unusable { reason: Unusable::Size { expected, actual, .. }, .. }
            if *expected == len && *actual == len / 2),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_name_escaping_staging_is_refused() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let meta_path = fx.repo_dir.join("1").join(&folder).join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["files"][0]["name"] = "../escape.sst".into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let err = restore_fails(&fx, RestoreTarget::LatestOrOlder).await;
    assert!(
        matches!(
            &err,
            RestoreError::Unusable {
                reason: Unusable::Metadata(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("../escape.sst"), "{err}");
    let escaped: Vec<String> = files_below(fx.dir.path())
        .into_iter()
        .filter(|f| f.ends_with("escape.sst"))
        .collect();
    assert!(escaped.is_empty(), "written outside staging: {escaped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_version_and_bad_json_are_refused() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let meta_path = fx.repo_dir.join("1").join(&folder).join("metadata.json");
    let original = std::fs::read(&meta_path).unwrap();
    let v9 = String::from_utf8(original.clone())
        .unwrap()
        .replace("\"V1\"", "\"V9\"");
    std::fs::write(&meta_path, v9).unwrap();
    let err = restore_fails(&fx, RestoreTarget::Latest).await;
    assert!(err.to_string().contains("V9"), "{err}");
    std::fs::write(&meta_path, &original[..original.len() / 2]).unwrap();
    let err = restore_fails(&fx, RestoreTarget::Latest).await;
    assert!(err.to_string().contains("metadata.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_newest_falls_back_to_an_older_intact_snapshot() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 300, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    let first = snapshot(&supervisor, 1, None).await.unwrap();
    let at_first = dump(&fx.partitions, "data-1");
    fx.write(1, 20, 300, 1024);
    let second = snapshot(&supervisor, 1, None).await.unwrap();
    let folder = format!("lsn_{:020}-{}", 20, second.snapshot_id);
    for sst in ssts(&fx, 1, &folder) {
        flip_byte(&sst, 4096);
    }

    // Without fallback: refused, database untouched.
    restore_fails(&fx, RestoreTarget::Latest).await;
    // At least LSN 20: only the corrupt one qualifies.
    restore_fails(&fx, RestoreTarget::MinLsn(Lsn(20))).await;

    let (db, _) = target_db(&fx);
    let outcome = restore(
        &fx.repository,
        &db,
        PartitionId(1),
        RestoreTarget::LatestOrOlder,
        &opts(&fx),
    )
    .await
    .unwrap();
    assert_eq!(outcome.snapshot_id, first.snapshot_id);
    assert_eq!(outcome.restored_lsn, Some(Lsn(10)));
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.skipped[0].snapshot_id, second.snapshot_id);
    assert_eq!(dump_path(&db, "data-1"), at_first);
    // "At least LSN 5" falls back the same way.
    let outcome = restore(
        &fx.repository,
        &db,
        PartitionId(1),
        RestoreTarget::MinLsn(Lsn(5)),
        &opts(&fx),
    )
    .await
    .unwrap();
    assert_eq!(outcome.snapshot_id, first.snapshot_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_verify_reads_what_sizes_cannot_see() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    // A snapshot written without checksums (as older writers do): only sizes
    // can be checked, so a flipped byte passes the plain verify...
    let meta_path = fx.repo_dir.join("1").join(&folder).join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("checksum_algorithm");
    for f in meta["files"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("checksum");
    }
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let sst = ssts(&fx, 1, &folder).remove(0);
    // In the middle of the file: a data block that import does not read.
    flip_byte(&sst, std::fs::metadata(&sst).unwrap().len() / 2);
    verify(&fx.repository, PartitionId(1), None, false, &opts(&fx))
        .await
        .unwrap();
    // ...and the deep one reads every block and finds it.
    let err = verify(&fx.repository, PartitionId(1), None, true, &opts(&fx))
        .await
        .unwrap_err();
    let name = sst.file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(name), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("corrupt") || err.to_string().contains("checksum"),
        "{err}"
    );
}

/// A fallback never goes below the snapshots the pointer retains: an older
/// folder that retention dropped (and collection has not deleted yet) may
/// hold an LSN whose log the host has already trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_stays_within_the_retained_snapshots() {
    // Two retained, and one alone (a retained list of one names no
    // fallback: the partition is not listed for one either).
    for keep_last in [2, 1] {
        let fx = Fixture::new(&[1]);
        let supervisor = fx
            .supervisor(PipelineConfig {
                format: rocksnap::format::FormatVersion::V2,
                retention: rocksnap::Retention {
                    keep_last,
                    max_age: None,
                },
                ..fx.config()
            })
            .await;
        let mut ids = Vec::new();
        for lsn in [10, 20, 30] {
            fx.write(1, lsn, 200, 1000);
            // Compacted: each snapshot's files are its own.
            fx.compact(1);
            ids.push(snapshot(&supervisor, 1, None).await.unwrap());
        }
        supervisor.stop(None);
        let latest = fx.latest(1);
        assert_eq!(latest.retained.len(), keep_last);
        // Every retained snapshot is damaged; the dropped first one is intact.
        for r in &latest.retained {
            for f in fx.metadata(1, &r.path).files {
                flip_byte(&fx.repo_dir.join("1").join(f.key.unwrap()), 100);
            }
        }
        let err = restore_fails(&fx, RestoreTarget::LatestOrOlder).await;
        assert!(matches!(err, RestoreError::Unusable { .. }), "{err}");
        assert!(
            !err.to_string().contains(&ids[0].snapshot_id.to_string()),
            "fell back to a snapshot the pointer no longer retains: {err}"
        );
    }
}

/// Sequence numbers become the database's own on import: metadata that
/// understates them would hide the host's next writes under imported
/// entries, so each file's own record of them is checked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn understated_sequence_numbers_are_refused() {
    let fx = Fixture::new(&[1]);
    let folder = one_snapshot(&fx).await;
    let path = fx.repo_dir.join("1").join(&folder).join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for f in meta["files"].as_array_mut().unwrap() {
        let smallest = f["smallest_seqno"].as_u64().unwrap();
        f["largest_seqno"] = serde_json::json!(smallest);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    let err = restore_fails(&fx, RestoreTarget::Latest).await;
    assert!(err.to_string().contains("sequence numbers"), "{err}");
}

/// A staging disk that fills up stops the restore with an error that says
/// so, without falling back (a full disk says nothing of the snapshot) and
/// without touching the database. The staging directory is a 1 MiB tmpfs,
/// which needs the right to mount (root, as in CI); without it the test
/// says so and checks nothing (under CI it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_staging_disk_is_a_clear_error() {
    let fx = Fixture::new(&[1]);
    one_snapshot(&fx).await; // ~400 KiB in one file
    fx.write(1, 20, 2000, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap(); // ~2.4 MiB: more than fits
    let Some(disk) = common::SmallDisk::mount(&fx.dir.path().join("small-disk")) else {
        return; // SmallDisk said why
    };
    let small = disk.0.clone();
    let (db, before) = target_db(&fx);
    let result = restore(
        &fx.repository,
        &db,
        PartitionId(1),
        RestoreTarget::LatestOrOlder,
        &RestoreOptions {
            staging_dir: Some(small.clone()),
            ..opts(&fx)
        },
    )
    .await;
    let left = disk.unmount();
    let err = result.unwrap_err();
    assert!(matches!(err, RestoreError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(dump_path(&db, "data-1"), before, "the database was touched");
    assert!(left.is_empty(), "staged files were left: {left:?}");
}

/// The database's own disk has no room for a verified snapshot staged on
/// another disk: the error says the database's disk is full, the column
/// family is as it was (its files are copied beside the database before it
/// is dropped, so that the import cannot fail half-way for want of room),
/// nothing of the copy is left, and the database opens and takes writes. Needs the right
/// to mount a tmpfs (root, as in CI); without it the test says so and
/// checks nothing (under CI it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_disk_under_the_swap_leaves_the_database_as_it_was() {
    let fx = Fixture::new(&[1]);
    fx.write(1, 20, 4000, 1024); // ~4 MiB: more than the database's disk holds
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let Some(disk) = common::SmallDisk::mount_sized(&fx.dir.path().join("db-disk"), "3m") else {
        return; // SmallDisk said why
    };
    let db = disk.0.join("db");
    let before = {
        let store = PartitionStore::open(&db, &[PartitionId(1)]).unwrap();
        store
            .apply(
                PartitionId(1),
                Lsn(3),
                [(b"old-key".to_vec(), b"old".to_vec())],
            )
            .unwrap();
        dump(&store, "data-1")
    };
    let err = restore(
        &fx.repository,
        &db,
        PartitionId(1),
        RestoreTarget::LatestOrOlder,
        &opts(&fx),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RestoreError::DatabaseDiskFull { .. }),
        "{err:?}"
    );
    assert!(err.is_disk_full());
    assert!(err.to_string().contains("no space left"), "{err}");
    assert_eq!(rocksnap::scrub::failure_reason(&err), "disk_full");
    let left = files_below(&rocksnap::default_staging_dir(&db));
    assert!(
        left.iter().all(|f| !f.contains("swap")),
        "the copy was left: {left:?}"
    );
    let store = PartitionStore::open_existing(&db).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dump(&store, "data-1"), before, "the database was touched");
    store
        .apply(
            PartitionId(1),
            Lsn(4),
            [(b"new-key".to_vec(), b"new".to_vec())],
        )
        .unwrap_or_else(|e| panic!("the database takes no write after the failed swap: {e}"));
    drop(store);
    drop(disk);
}

/// A snapshot staged on another disk than the database's is copied beside
/// the database before the swap (the library says so, and the test sees
/// it) and restores whole, with nothing of either staging left. Needs the
/// right to mount a tmpfs (root, as in CI); without it the test says so and
/// checks nothing (under CI it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_staged_on_another_disk_restores_whole() {
    let seen = common::hold::Hold::installed();
    // A partition of its own: the events are the process's.
    let fx = Fixture::new(&[5]);
    fx.write(5, 10, 400, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 5, None).await.unwrap();
    supervisor.stop(None);
    let Some(disk) = common::SmallDisk::mount_sized(&fx.dir.path().join("staging-disk"), "16m")
    else {
        return; // SmallDisk said why
    };
    let db = fx.dir.path().join("target-db");
    restore(
        &fx.repository,
        &db,
        PartitionId(5),
        RestoreTarget::Latest,
        &RestoreOptions {
            staging_dir: Some(disk.0.clone()),
            ..opts(&fx)
        },
    )
    .await
    .unwrap();
    let left = disk.unmount();
    assert!(
        seen.has_seen(
            "copying the staged files beside the database before the swap",
            "data-5"
        ),
        "the files were not copied beside the database"
    );
    assert_eq!(dump_path(&db, "data-5"), dump(&fx.partitions, "data-5"));
    assert!(left.is_empty(), "staged files were left: {left:?}");
    let beside = files_below(&rocksnap::default_staging_dir(&db));
    assert!(
        beside.iter().all(|f| !f.contains("swap")),
        "the copy was left: {beside:?}"
    );
}

/// A staging disk that fills up part-way through a batch of partitions
/// restored together: each partition ends all or nothing (restored whole, or
/// failed with the full disk named and its column family as it was), the
/// one too large for the disk fails, nothing staged is left, and the batch
/// run again with room completes every partition. Needs the right to mount
/// a tmpfs (root, as in CI); without it the test says so and checks nothing (under CI it fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_part_way_through_a_batch_leaves_each_partition_whole() {
    let fx = Fixture::new(&[1, 2, 3]);
    fx.write(1, 10, 20, 500);
    fx.write(2, 10, 20, 500);
    fx.write(3, 10, 2000, 1024); // ~2 MiB: more than the disk holds
    let supervisor = fx.supervisor(fx.config()).await;
    for p in 1..=3 {
        snapshot(&supervisor, p, None).await.unwrap();
    }
    supervisor.stop(None);
    let Some(disk) = common::SmallDisk::mount(&fx.dir.path().join("small-disk")) else {
        return; // SmallDisk said why
    };
    let small = disk.0.clone();
    // The database holds data of its own in partitions 1 and 3.
    let db = fx.dir.path().join("target-db");
    let before: Vec<Dump> = {
        let store =
            PartitionStore::open(&db, &[PartitionId(1), PartitionId(2), PartitionId(3)]).unwrap();
        for p in [1, 3] {
            store
                .apply(
                    PartitionId(p),
                    Lsn(3),
                    [(b"old-key".to_vec(), b"old".to_vec())],
                )
                .unwrap();
        }
        (1..=3)
            .map(|p| dump(&store, &format!("data-{p}")))
            .collect()
    };
    let ids: Vec<PartitionId> = (1..=3).map(PartitionId).collect();
    let results = rocksnap::restore::restore_partitions(
        &fx.repository,
        &db,
        &ids,
        RestoreTarget::Latest,
        &RestoreOptions {
            staging_dir: Some(small.clone()),
            ..opts(&fx)
        },
    )
    .await
    .unwrap();
    let left = disk.unmount();
    assert!(left.is_empty(), "staged files were left: {left:?}");
    assert_eq!(results.len(), 3);
    for (p, result) in (1..=3u64).zip(&results) {
        let cf = format!("data-{p}");
        match result {
            Ok(_) => assert!(
                dump_path(&db, &cf) == dump(&fx.partitions, &cf),
                "partition {p} is not its snapshot"
            ),
            Err(e) => {
                assert!(
                    matches!(e, RestoreError::DiskFull { .. }),
                    "partition {p}: {e:?}"
                );
                assert!(
                    dump_path(&db, &cf) == before[p as usize - 1],
                    "partition {p} was touched"
                );
            }
        }
    }
    assert!(results[2].is_err(), "partition 3 fitted on the full disk");

    let again = rocksnap::restore::restore_partitions(
        &fx.repository,
        &db,
        &ids,
        RestoreTarget::Latest,
        &opts(&fx),
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 3);
    for (p, result) in (1..=3u64).zip(&again) {
        let cf = format!("data-{p}");
        assert!(result.is_ok(), "partition {p}: {result:?}");
        assert!(
            dump_path(&db, &cf) == dump(&fx.partitions, &cf),
            "partition {p}"
        );
    }
}

/// Several partitions restored together into one database: each ends equal
/// to its snapshot (or, with a damaged newest one, to its older one), a
/// partition with no snapshot fails alone, and a partition the database
/// already held is replaced as one restore would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_restore_together_each_on_its_own() {
    let fx = Fixture::new(&[1, 2, 3, 4]);
    for p in 1..=3 {
        fx.write(p, 10, 300, 500);
    }
    let supervisor = fx.supervisor(fx.config()).await;
    for p in 1..=3 {
        snapshot(&supervisor, p, None).await.unwrap();
    }
    let older = fx.partitions.entries("data-3").unwrap();
    fx.write(3, 20, 300, 500);
    snapshot(&supervisor, 3, None).await.unwrap();
    supervisor.stop(None);
    // Partition 3's newest snapshot loses a file.
    let latest = fx.latest(3);
    let meta = fx.metadata(3, &latest.path);
    std::fs::remove_file(
        fx.repo_dir
            .join("3")
            .join(&latest.path)
            .join(meta.files[0].file_name().unwrap()),
    )
    .unwrap();
    let (db, _) = target_db(&fx);
    let ids: Vec<PartitionId> = (1..=4).map(PartitionId).collect();
    let results = rocksnap::restore::restore_partitions(
        &fx.repository,
        &db,
        &ids,
        RestoreTarget::LatestOrOlder,
        &opts(&fx),
    )
    .await
    .unwrap();
    assert_eq!(results.len(), 4);
    for (p, result) in (1..=4u64).zip(&results) {
        match p {
            1 | 2 => {
                let o = result.as_ref().unwrap();
                assert_eq!(o.restored_lsn, Some(Lsn(10)));
                assert!(o.skipped.is_empty());
            }
            3 => {
                let o = result.as_ref().unwrap();
                assert_eq!(o.restored_lsn, Some(Lsn(10)), "fell back");
                assert_eq!(o.skipped.len(), 1);
            }
            _ => assert!(
                matches!(result, Err(RestoreError::NoSnapshot { .. })),
                "{result:?}"
            ),
        }
    }
    for p in 1..=2u64 {
        let cf = format!("data-{p}");
        assert!(
            dump_path(&db, &cf) == dump(&fx.partitions, &cf),
            "partition {p}"
        );
    }
    assert!(dump_path(&db, "data-3") == older);
}

/// Starting a restore costs the same requests however many snapshots the
/// partition has: the pointer names what to try, and the folder is listed
/// only when the pointer's own snapshot (V1: no retained list) is unusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_lists_the_bucket_only_to_fall_back() {
    use common::faulty::Op;
    for format in [
        rocksnap::format::FormatVersion::V1,
        rocksnap::format::FormatVersion::V2,
    ] {
        let fx = Fixture::new(&[1]);
        let supervisor = fx
            .supervisor(PipelineConfig {
                format,
                ..fx.config()
            })
            .await;
        for lsn in 1..=12 {
            fx.write(1, lsn, 20, 100);
            snapshot(&supervisor, 1, None).await.unwrap();
        }
        supervisor.stop(None);
        let (store, repo) = fx.faulty_repository();
        let db = fx.dir.path().join(format!("restored-{format:?}"));
        let outcome = restore(
            &repo,
            &db,
            PartitionId(1),
            RestoreTarget::LatestOrOlder,
            &opts(&fx),
        )
        .await
        .unwrap();
        assert_eq!(outcome.restored_lsn, Some(Lsn(12)));
        assert_eq!(
            store.count(Op::List),
            0,
            "{format:?}: listed to start a restore"
        );

        // The newest snapshot's metadata gone: the next older one, listed for (V1)
        // or named by the retained list (V2).
        let latest = fx.latest(1);
        std::fs::remove_file(
            fx.repo_dir
                .join("1")
                .join(&latest.path)
                .join("metadata.json"),
        )
        .unwrap();
        let lists_before = store.count(Op::List);
        let db = fx.dir.path().join(format!("fallback-{format:?}"));
        let outcome = restore(
            &repo,
            &db,
            PartitionId(1),
            RestoreTarget::LatestOrOlder,
            &opts(&fx),
        )
        .await
        .unwrap();
        assert_eq!(outcome.restored_lsn, Some(Lsn(11)), "{format:?}");
        assert_eq!(outcome.skipped.len(), 1);
        let listed = store.count(Op::List) - lists_before;
        match format {
            rocksnap::format::FormatVersion::V1 => assert_eq!(listed, 1, "listed once"),
            rocksnap::format::FormatVersion::V2 => {
                assert_eq!(listed, 0, "the retained list names it")
            }
        }
    }
}

/// Uploads and downloads that share one memory budget (as a node's
/// snapshots, restores and scrubs do) both finish: each takes its part
/// before its request, so neither waits for what the other holds. A budget
/// of two parts and one request; the restore's first ranged GET is held on
/// the wire while the snapshot takes every part it can and waits for the
/// request; then the GET is answered. (A download that took its request
/// first would find no part left to write its answer into, and the upload
/// holding the parts would wait for its request forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_downloads_sharing_one_budget_both_finish() {
    use common::faulty::{Op, When};
    let fx = Fixture::new(&[1, 2]);
    fx.write(1, 10, 300, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    fx.write(2, 10, 300, 1024);

    let budget = rocksnap::MemoryBudget::new(2);
    let config = PipelineConfig {
        part_size: 64 * 1024,
        ..fx.config()
    };
    let mut args =
        rocksnap::SupervisorArgs::new(config, fx.partitions.clone(), fx.repository.clone());
    args.budget = Some(budget.clone());
    let shared = rocksnap::Supervisor::start(args).await.unwrap().0;
    // Behind a wrapper, so that the restore fetches ranges (a plain local
    // directory's are copied in the kernel, under no request).
    let (faults, repo) = fx.faulty_repository();
    let gate = faults.hold(Op::Get, When::Nth(3)); // after the pointer and the metadata
    let opts = RestoreOptions {
        budget: Some(budget.clone()),
        ..opts(&fx)
    };
    let db = fx.dir.path().join("restored");
    let restoring = spawn_restore(&repo, &db, &opts);
    common::wait_until("the restore's first range is on the wire", || {
        gate.waiting() == 1
    })
    .await;
    let snapshotting = {
        let shared = shared.clone();
        tokio::spawn(async move { snapshot(&shared, 2, None).await })
    };
    common::wait_until("the snapshot holds every part left", || {
        budget.in_use() == 2
    })
    .await;
    gate.open();
    let both = async { (restoring.await.unwrap(), snapshotting.await.unwrap()) };
    let (restored, snapshotted) = tokio::time::timeout(std::time::Duration::from_secs(60), both)
        .await
        .expect("the restore and the snapshot wait for each other");
    restored.unwrap();
    snapshotted.unwrap();
    assert!(dump_path(&db, "data-1") == dump(&fx.partitions, "data-1"));
    assert_eq!(budget.in_use(), 0, "parts left held");
    shared.stop(None);
}

/// A restore that fails leaves nothing of its downloads running: each
/// range is a task of its own, and the range whose GET is still on the
/// wire when another fails is dropped before the restore returns, with
/// the memory it held. The first range's GET is held at a gate; every
/// later read fails; once the restore has given up, that GET is no longer
/// waiting anywhere and no part of the budget is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_no_range_running_and_no_part_held() {
    use common::faulty::{Fault, Op, When};
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 300, 1024);
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);

    let (faults, repo) = fx.faulty_repository();
    let gate = faults.hold(Op::Get, When::Nth(3)); // after the pointer and the metadata
    faults.inject(Op::Get, When::FromNth(4), Fault::Fail);
    let budget = rocksnap::MemoryBudget::new(4);
    let opts = RestoreOptions {
        budget: Some(budget.clone()),
        ..opts(&fx)
    };
    let db = fx.dir.path().join("restored");
    let restoring = spawn_restore(&repo, &db, &opts);
    common::wait_until("a range's GET is held on the wire", || gate.waiting() == 1).await;
    let err = tokio::time::timeout(std::time::Duration::from_secs(60), restoring)
        .await
        .expect("the failed restore waits for the range held on the wire")
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(budget.in_use(), 0, "a range still holds its part: {err}");
    assert_eq!(gate.waiting(), 0, "the held GET outlived the restore");
    assert!(!db.exists(), "the failed restore left {}", db.display());
    gate.open();
}
