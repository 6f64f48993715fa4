//! A restore that dies at any instant is finished, or rolled back, by
//! whatever opens the database next, which never creates an empty column
//! family where a restore was interrupted; staging directories a killed
//! process left are swept at open.
//!
//! The crash states are built the way a restore leaves them: an intent
//! written and fsynced, then the live column family dropped (or not yet),
//! with the new and previous files in the restore's staging directory.

mod common;

use std::path::{Path, PathBuf};

use rocksnap::partition::{Entry, RestoreIntent};
use rocksnap::{ExportedColumnFamily, ImportFile, Lsn, PartitionId, PartitionStore};

fn import_files(exported: &ExportedColumnFamily) -> Vec<ImportFile> {
    exported.files.iter().map(ImportFile::from).collect()
}

struct Crash {
    _dir: tempfile::TempDir,
    db: PathBuf,
    staging: PathBuf,
    new_entries: Vec<Entry>,
    old_entries: Vec<Entry>,
}

/// A database whose partition 1 a restore was replacing when it died:
/// `dropped` says whether the live column family was already dropped.
fn crashed_restore(dropped: bool) -> Crash {
    let (dir, db, mut partitions) = crashed_restores(&[(1, dropped)]);
    let (staging, new_entries, old_entries) = partitions.remove(0);
    Crash {
        _dir: dir,
        db,
        staging,
        new_entries,
        old_entries,
    }
}

/// A database several restores were replacing partitions of at once when
/// the process died (as `restore_partitions` swaps them): for each
/// `(partition, dropped)`, its staging directory and its new and old entries.
#[allow(clippy::type_complexity)]
fn crashed_restores(
    partitions: &[(u64, bool)],
) -> (
    tempfile::TempDir,
    PathBuf,
    Vec<(PathBuf, Vec<Entry>, Vec<Entry>)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<PartitionId> = partitions.iter().map(|(p, _)| PartitionId(*p)).collect();
    // The snapshots being restored: a database of their own.
    let source = PartitionStore::open(&dir.path().join("source"), &ids).unwrap();
    let db = dir.path().join("db");
    let live = PartitionStore::open(&db, &ids).unwrap();
    let mut out = Vec::new();
    for &(p, dropped) in partitions {
        let cf = format!("data-{p}");
        let records: Vec<_> = (0..50)
            .map(|i| (common::key(9, i), common::value(9 + p, i, 100)))
            .collect();
        source.apply(PartitionId(p), Lsn(9), records).unwrap();
        let new_entries = source.entries(&cf).unwrap();
        live.apply(
            PartitionId(p),
            Lsn(3),
            [(b"old".to_vec(), b"value".to_vec())],
        )
        .unwrap();
        let old_entries = live.entries(&cf).unwrap();

        // The restore's staging directory, as it holds it at the swap.
        let staging = rocksnap::default_staging_dir(&db).join(format!("restore-{p}-crashed"));
        std::fs::create_dir_all(&staging).unwrap();
        let new = source
            .export_column_family(&cf, &staging.join("new"))
            .unwrap();
        let previous = live
            .export_column_family(&cf, &staging.join("previous"))
            .unwrap();
        let (new_files, previous_files) = (import_files(&new), import_files(&previous));
        RestoreIntent::new(
            &cf,
            &new.comparator_name,
            &new_files,
            Some((previous.comparator_name.as_str(), &previous_files)),
            &staging,
        )
        .write(&db)
        .unwrap();
        if dropped {
            live.drop_column_family(&cf).unwrap();
        }
        out.push((staging, new_entries, old_entries));
    }
    drop(live);
    (dir, db, out)
}

fn intents(db: &Path) -> Vec<String> {
    common::files_below(&rocksnap::default_staging_dir(db).join("intents"))
}

#[test]
fn a_restore_killed_after_the_drop_is_finished_at_open() {
    let crash = crashed_restore(true);
    let store = PartitionStore::open(&crash.db, &[PartitionId(1)]).unwrap();
    assert_eq!(store.entries("data-1").unwrap(), crash.new_entries);
    assert_eq!(store.applied_lsn("data-1").unwrap(), Some(Lsn(9)));
    assert!(intents(&crash.db).is_empty(), "the intent was left");
    assert!(!crash.staging.exists(), "the restore's files were left");
}

#[test]
fn a_restore_killed_before_the_drop_leaves_the_partition_as_it_was() {
    let crash = crashed_restore(false);
    let store = PartitionStore::open(&crash.db, &[PartitionId(1)]).unwrap();
    assert_eq!(store.entries("data-1").unwrap(), crash.old_entries);
    assert!(intents(&crash.db).is_empty());
    assert!(!crash.staging.exists());
}

/// Partitions restored together die together: each one's intent is
/// settled on its own at the next open, finished where its column family
/// was dropped and left as it was where it was not.
#[test]
fn restores_killed_together_are_each_settled_at_open() {
    let (_dir, db, partitions) = crashed_restores(&[(1, true), (2, false), (3, true)]);
    assert_eq!(intents(&db).len(), 3);
    let ids: Vec<PartitionId> = (1..=3).map(PartitionId).collect();
    let store = PartitionStore::open(&db, &ids).unwrap();
    for (p, (staging, new_entries, old_entries)) in (1..=3u64).zip(&partitions) {
        let expected = if p == 2 { old_entries } else { new_entries };
        assert_eq!(
            &store.entries(&format!("data-{p}")).unwrap(),
            expected,
            "partition {p}"
        );
        assert!(!staging.exists(), "partition {p}: its files were left");
    }
    assert!(intents(&db).is_empty(), "an intent was left");
}

#[test]
fn a_restore_whose_new_files_are_gone_is_rolled_back() {
    let crash = crashed_restore(true);
    std::fs::remove_dir_all(crash.staging.join("new")).unwrap();
    let store = PartitionStore::open(&crash.db, &[PartitionId(1)]).unwrap();
    assert_eq!(store.entries("data-1").unwrap(), crash.old_entries);
    assert!(intents(&crash.db).is_empty());
}

#[test]
fn a_restore_that_cannot_be_finished_never_becomes_an_empty_partition() {
    let crash = crashed_restore(true);
    std::fs::remove_dir_all(crash.staging.join("new")).unwrap();
    std::fs::remove_dir_all(crash.staging.join("previous")).unwrap();
    let err = PartitionStore::open(&crash.db, &[PartitionId(1)]).unwrap_err();
    assert!(err.to_string().contains("cannot be finished"), "{err}");
    // Nothing was created, and the intent is still there for an operator.
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &crash.db).unwrap();
    assert!(!names.contains(&"data-1".to_string()), "{names:?}");
    assert_eq!(intents(&crash.db).len(), 1);
}

#[test]
fn stale_staging_directories_are_swept_at_open_but_not_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    drop(PartitionStore::open(&db, &[PartitionId(1)]).unwrap());
    let root = rocksnap::default_staging_dir(&db);
    let stale_restore = root.join("restore-1-stale");
    let stale_export = root.join("export-1-stale");
    let live_restore = root.join("restore-1-live");
    for d in [&stale_restore, &stale_export, &live_restore] {
        std::fs::create_dir_all(d.join("download")).unwrap();
        std::fs::write(d.join("download").join("000007.sst"), b"pinned bytes").unwrap();
    }
    std::fs::write(stale_restore.join(".lock"), b"").unwrap();
    // A restore still running holds its directory's lock.
    let held = std::fs::File::create(live_restore.join(".lock")).unwrap();
    held.lock().unwrap();

    let store = PartitionStore::open(&db, &[PartitionId(1)]).unwrap();
    let report = store.recover().unwrap();
    assert!(
        report.swept.is_empty(),
        "the second sweep found {:?}",
        report.swept
    );
    assert!(
        !stale_restore.exists(),
        "a killed restore's files stay for ever"
    );
    assert!(!stale_export.exists());
    assert!(
        live_restore.exists(),
        "a running restore's directory was swept"
    );
}

/// A pipeline started on a database whose restore intent is not settled
/// yet (a host that opens RocksDB itself and calls `recover()` later, or a
/// restore whose way back failed) sweeps only the exports left in the
/// staging root: the restore directory the intent names, the only copy of
/// the partition's files once its column family is dropped, is still there
/// for the recovery that follows, which finishes the restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_started_before_recovery_leaves_an_intents_files_alone() {
    use std::sync::Arc;

    use rocksnap::{Destination, OpenMode, PipelineConfig, Repository, Supervisor, SupervisorArgs};

    let crash = crashed_restore(true);
    let stale_export = rocksnap::default_staging_dir(&crash.db).join("export-1-stale");
    std::fs::create_dir_all(&stale_export).unwrap();
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), &crash.db).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &crash.db, &cfs).unwrap();
    let store = PartitionStore::from_db(Arc::new(db));
    let repo_dir = tempfile::tempdir().unwrap();
    let repository = Repository::new(
        Destination::open(repo_dir.path().to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
    );
    let (supervisor, done) = Supervisor::start(SupervisorArgs::new(
        PipelineConfig::default(),
        store.clone(),
        repository,
    ))
    .await
    .unwrap();
    // The exporter has started, and swept what is its own.
    assert!(!stale_export.exists(), "the exporter swept nothing");
    assert!(
        crash.staging.join("new").exists() && crash.staging.join("previous").exists(),
        "the files an unsettled intent names were swept"
    );
    supervisor.stop(None);
    done.await.unwrap();

    store.recover().unwrap();
    assert_eq!(store.entries("data-1").unwrap(), crash.new_entries);
    assert!(intents(&crash.db).is_empty());
}
