//! Scrubbing reads a partition's latest snapshot back from the repository
//! and checks it without importing it anywhere: a healthy snapshot passes
//! (deep or not), a flipped bit or a missing file is reported with the key
//! at fault, and nothing is left behind in the staging directory.

mod common;

use common::{snapshot, Fixture};
use rocksnap::restore::{RestoreError, RestoreOptions, Unusable};
use rocksnap::scrub::{failure_reason, scrub};
use rocksnap::{MemoryBudget, PartitionId};

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
    let opts = RestoreOptions {
        staging_dir: Some(staging.clone()),
        part_size: 64 * 1024,
        budget: Some(budget.clone()),
        ..RestoreOptions::default()
    };

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
