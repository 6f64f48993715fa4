//! Scrubbing reads a partition's latest snapshot back from the repository
//! and checks it without importing it anywhere: a healthy snapshot passes
//! (deep or not), a flipped bit or a missing file is reported with the key
//! at fault, and nothing is left behind in the staging directory.

mod common;

use common::{snapshot, Fixture};
use rocksnap::restore::{RestoreError, RestoreOptions, Unusable};
use rocksnap::scrub::{failure_reason, scrub};
use rocksnap::{MemoryBudget, PartitionId};

/// Small ranges staged in `staging`, their memory from `budget`.
fn scrub_opts(staging: &std::path::Path, budget: &MemoryBudget) -> RestoreOptions {
    RestoreOptions {
        staging_dir: Some(staging.to_path_buf()),
        part_size: 64 * 1024,
        budget: Some(budget.clone()),
        ..RestoreOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_reads_the_latest_snapshot_back_and_names_what_is_damaged() {
    let fx = Fixture::new(&[1, 2]);
    for lsn in 1..=3 {
        fx.write(1, lsn, 300, 1000);
    }
    let supervisor = fx.supervisor(fx.config()).await;
    let published = snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let staging = fx.dir.path().join("scrub-staging");
    let budget = MemoryBudget::new(2);
    let opts = scrub_opts(&staging, &budget);

    // Healthy, shallow and deep; nothing imported, nothing left behind.
    for deep in [false, true] {
        let report = scrub(&fx.repository, PartitionId(1), deep, &opts)
            .await
            .unwrap()
            .expect("a snapshot");
        assert_eq!(report.snapshot_id, published.snapshot_id);
        assert_eq!(report.deep, deep);
        assert!(report.bytes > 0);
        assert!(common::files_below(&staging).is_empty(), "left behind");
        assert_eq!(budget.in_use(), 0, "every part returned to the budget");
    }
    // A partition with no snapshot: nothing to scrub, no error.
    assert!(scrub(&fx.repository, PartitionId(2), false, &opts)
        .await
        .unwrap()
        .is_none());

    // One flipped bit in the bucket: found, with the key at fault.
    let meta = fx.metadata(1, &fx.latest(1).path);
    let name = meta.files[0].name.trim_start_matches('/').to_string();
    let object = fx.repo_dir.join("1").join(fx.latest(1).path).join(&name);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    let err = scrub(&fx.repository, PartitionId(1), false, &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RestoreError::Unusable {
                reason: Unusable::Checksum { key, .. },
                ..
            } if key.ends_with(&name)
        ),
        "{err}"
    );
    assert_eq!(failure_reason(&err), "checksum");

    // The file gone: found too.
    std::fs::remove_file(&object).unwrap();
    let err = scrub(&fx.repository, PartitionId(1), false, &opts)
        .await
        .unwrap_err();
    assert_eq!(failure_reason(&err), "missing", "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(common::files_below(&staging).is_empty(), "left behind");
}

/// A scrub that cannot finish says so without calling the snapshot damaged,
/// and leaves nothing behind: stopped half-way (its task dropped while one
/// of its downloads is held) it leaves the staging directory empty and every
/// part back in the budget; out of disk it fails with the full disk named
/// (reason `disk_full`, not a checksum or a size). The snapshot then scrubs
/// clean. Out of disk needs the right to mount a tmpfs (root, as in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_stopped_or_out_of_disk_blames_nothing_and_leaves_nothing() {
    use common::faulty::{Op, When};
    let fx = Fixture::new(&[1]);
    fx.write(1, 10, 2000, 1024); // ~2 MiB: more than the small disk holds
    let supervisor = fx.supervisor(fx.config()).await;
    snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    let staging = fx.dir.path().join("scrub-staging");
    let budget = MemoryBudget::new(2);
    let opts = scrub_opts(&staging, &budget);

    // Stopped half-way: the pointer and the metadata are read, the files
    // staged, a range held (the fourth read), and the scrub's task dropped.
    let (store, repo) = fx.faulty_repository();
    let gate = store.hold(Op::Get, When::Nth(4));
    let task = {
        let opts = opts.clone();
        tokio::spawn(async move { scrub(&repo, PartitionId(1), false, &opts).await })
    };
    common::wait_until("a download is held", || gate.waiting() == 1).await;
    assert!(
        !common::files_below(&staging).is_empty(),
        "nothing was staged before the stop"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    common::wait_until("the stopped scrub has let go of everything", || {
        common::files_below(&staging).is_empty() && budget.in_use() == 0
    })
    .await;
    gate.open();

    if let Some(disk) = common::SmallDisk::mount(&fx.dir.path().join("small-disk")) {
        let small = RestoreOptions {
            staging_dir: Some(disk.0.clone()),
            ..opts.clone()
        };
        let err = scrub(&fx.repository, PartitionId(1), false, &small)
            .await
            .unwrap_err();
        let left = disk.unmount();
        assert!(matches!(err, RestoreError::DiskFull { .. }), "{err:?}");
        assert_eq!(failure_reason(&err), "disk_full");
        assert!(left.is_empty(), "staged files were left: {left:?}");
    } // else: the out-of-disk half cannot run here, and said so

    let report = scrub(&fx.repository, PartitionId(1), true, &opts)
        .await
        .unwrap()
        .expect("a snapshot");
    assert!(report.bytes > 1 << 20);
}
