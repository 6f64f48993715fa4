//! Client-side encryption, attacked: snapshots sealed with a keyring restore
//! with it (on a local directory and on S3, V2 included), and every way of
//! tampering with what is stored is refused with a clear error while the
//! live database is left as it was; key rotation keeps old snapshots
//! readable while their key is in the keyring.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::backend::Backend;
use common::{snapshot, Fixture};
use ractor::ActorRef;
use rocksnap::crypto::{stored_size, Keyring, SEGMENT_SIZE, TAG_LEN};
use rocksnap::format::{FormatVersion, SnapshotMetadata};
use rocksnap::restore::{restore, verify, RestoreError, RestoreOptions, RestoreTarget, Unusable};
use rocksnap::{Lsn, PartitionId, PartitionStore, PipelineConfig, SupervisorMsg};

const MARKER: &[u8] = b"customer-record-in-the-clear";

fn keyring(ids: &[&str]) -> (String, Arc<Keyring>) {
    let text: Vec<String> = ids.iter().map(|id| Keyring::generate_line(id)).collect();
    let text = text.join("\n");
    let ring = Keyring::parse(&text).unwrap();
    (text, Arc::new(ring))
}

/// Partition 1 with records whose keys and values carry a marker, over
/// several segments and parts.
fn write(fx: &Fixture, lsn: u64) {
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..400)
        .map(|i| {
            let mut key = MARKER.to_vec();
            key.extend_from_slice(format!("-{lsn}-{i:05}").as_bytes());
            let mut value = MARKER.to_vec();
            value.extend(common::value(lsn, i, 2000));
            (key, value)
        })
        .collect();
    fx.partitions
        .apply(PartitionId(1), Lsn(lsn), records)
        .unwrap();
}

/// A fixture whose partition 1 is snapshotted, sealed with `keys`, once
/// after each of `lsns` is written; the outcomes.
async fn sealed_snapshots(
    fx: &Fixture,
    keys: &Arc<Keyring>,
    lsns: &[u64],
) -> Vec<rocksnap::SnapshotOutcome> {
    let supervisor = fx
        .supervisor(config(fx, Some(keys.clone()), 2 * SEGMENT_SIZE))
        .await;
    let mut outcomes = Vec::new();
    for &lsn in lsns {
        write(fx, lsn);
        outcomes.push(snapshot(&supervisor, 1, None).await.unwrap());
    }
    supervisor.stop(None);
    outcomes
}

fn config(fx: &Fixture, keys: Option<Arc<Keyring>>, part_size: usize) -> PipelineConfig {
    PipelineConfig {
        part_size,
        encryption: keys,
        ..fx.config()
    }
}

fn opts(fx: &Fixture, keys: Option<Arc<Keyring>>) -> RestoreOptions {
    RestoreOptions {
        staging_dir: Some(fx.dir.path().join("restore-staging")),
        part_size: 2 * SEGMENT_SIZE,
        keyring: keys,
        ..RestoreOptions::default()
    }
}

/// Restores partition 1 of the fixture's repository into `db`.
async fn restore_into(
    fx: &Fixture,
    db: &Path,
    target: RestoreTarget,
    keys: Option<Arc<Keyring>>,
) -> Result<rocksnap::restore::RestoreOutcome, RestoreError> {
    restore(&fx.repository, db, PartitionId(1), target, &opts(fx, keys)).await
}

/// Partition 1 sealed under a fresh key `old` and snapshotted at LSNs 10
/// and 20 in `format`: the running supervisor, the keyring's text and the
/// keyring.
async fn two_sealed(
    fx: &Fixture,
    format: FormatVersion,
) -> (ActorRef<SupervisorMsg>, String, Arc<Keyring>) {
    let (text, old) = keyring(&["old"]);
    let supervisor = fx
        .supervisor(PipelineConfig {
            format,
            ..config(fx, Some(old.clone()), 2 * SEGMENT_SIZE)
        })
        .await;
    for lsn in [10, 20] {
        write(fx, lsn);
        snapshot(&supervisor, 1, None).await.unwrap();
    }
    (supervisor, text, old)
}

/// The keyring an operator rotates to: a new key first, then the keys of
/// `old_text`.
fn rotated(old_text: &str) -> Keyring {
    Keyring::parse(&format!("{}\n{old_text}", Keyring::generate_line("new"))).unwrap()
}

/// Every snapshot `pointer` keeps restores with `keys`.
async fn kept_restore_with(
    fx: &Fixture,
    pointer: &rocksnap::format::LatestPointer,
    keys: &Arc<Keyring>,
    what: &str,
) {
    let mut ids: Vec<_> = pointer.kept().into_iter().map(|k| k.snapshot_id).collect();
    ids.dedup();
    for (n, id) in ids.into_iter().enumerate() {
        let db = fx.dir.path().join(format!("restored-{what}-{n}"));
        restore_into(fx, &db, RestoreTarget::Snapshot(id), Some(keys.clone()))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

fn all_bytes_below(dir: &Path) -> Vec<u8> {
    common::files_below(dir)
        .iter()
        .flat_map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A database with one stale partition 1, to restore into; its entries.
fn live_db(dir: &Path) -> (std::path::PathBuf, Vec<rocksnap::partition::Entry>) {
    let db = dir.join("live");
    let store = PartitionStore::open(&db, &[PartitionId(1)]).unwrap();
    store
        .apply(PartitionId(1), Lsn(1), [(b"live".to_vec(), b"x".to_vec())])
        .unwrap();
    let entries = store.entries("data-1").unwrap();
    (db, entries)
}

fn live_entries(db: &Path) -> Vec<rocksnap::partition::Entry> {
    PartitionStore::open_existing(db)
        .unwrap()
        .entries("data-1")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_snapshots_restore_with_their_keys_and_leak_nothing() {
    let fx = Fixture::new(&[1]);
    let (_, keys) = keyring(&["k1"]);
    let published = sealed_snapshots(&fx, &keys, &[10]).await.remove(0);

    // What is stored: sealed files, no user key or value in the clear.
    let pointer = fx.latest(1);
    let meta: SnapshotMetadata = fx.metadata(1, &pointer.path);
    assert_eq!(meta.encryption.as_deref(), Some(rocksnap::crypto::SCHEME));
    for f in &meta.files {
        let e = f.encryption.as_ref().expect("every file sealed");
        assert_eq!(e.kek_id, "k1");
        assert!(f.start_key.is_empty() && f.end_key.is_empty());
        assert_eq!(f.size, stored_size(e.plaintext_size));
    }
    let stored = all_bytes_below(&fx.repo_dir);
    assert!(
        !contains(&stored, MARKER),
        "a user key or value in the clear"
    );
    assert!(
        !contains(&stored, hex::encode(MARKER).as_bytes()),
        "a key in hex"
    );

    // Restored with the keyring: the partition as it was.
    let restored = fx.dir.path().join("restored");
    let outcome = restore_into(&fx, &restored, RestoreTarget::Latest, Some(keys.clone()))
        .await
        .unwrap();
    assert_eq!(outcome.snapshot_id, published.snapshot_id);
    assert!(live_entries(&restored) == fx.partitions.entries("data-1").unwrap());

    // verify: without the keyring, the stored bytes; with it, every segment.
    let sealed = verify(
        &fx.repository,
        PartitionId(1),
        None,
        false,
        &opts(&fx, None),
    )
    .await
    .unwrap();
    assert!(sealed.encrypted && !sealed.authenticated);
    let open = verify(
        &fx.repository,
        PartitionId(1),
        None,
        true,
        &opts(&fx, Some(keys)),
    )
    .await
    .unwrap();
    assert!(open.encrypted && open.authenticated && open.deep);

    // Without a keyring, or with the wrong one: refused, nothing written.
    let (live, before) = live_db(fx.dir.path());
    let err = restore_into(&fx, &live, RestoreTarget::Latest, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::Encrypted { .. }), "{err}");
    assert!(err.to_string().contains("keyring"), "{err}");
    let (_, other_id) = keyring(&["k2"]);
    let err = restore_into(&fx, &live, RestoreTarget::LatestOrOlder, Some(other_id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"k1\""), "names the key: {err}");
    let (_, same_id_other_key) = keyring(&["k1"]);
    let err = restore_into(
        &fx,
        &live,
        RestoreTarget::LatestOrOlder,
        Some(same_id_other_key),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("wrong key"), "{err}");
    assert!(live_entries(&live) == before, "the live database changed");
}

/// Tampered stored bytes, each refused with the file (and segment) named,
/// the live database untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_sealed_files_is_refused() {
    let fx = Fixture::new(&[1]);
    let (_, keys) = keyring(&["k1"]);
    sealed_snapshots(&fx, &keys, &[10, 20]).await;
    let pointer = fx.latest(1);
    let folder = fx.repo_dir.join("1").join(&pointer.path);
    let meta = fx.metadata(1, &pointer.path);
    let big = meta
        .files
        .iter()
        .max_by_key(|f| f.size)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string();
    let path = folder.join(&big);
    let original = std::fs::read(&path).unwrap();
    assert!(
        original.len() > 2 * (SEGMENT_SIZE + TAG_LEN),
        "too small to swap segments"
    );
    let (live, before) = live_db(fx.dir.path());
    let s = SEGMENT_SIZE + TAG_LEN;

    let attacks: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "one flipped byte",
            {
                let mut b = original.clone();
                b[s + 100] ^= 0x01;
                b
            },
            "segment 1 failed authentication",
        ),
        (
            "two segments swapped",
            { [&original[s..2 * s], &original[..s], &original[2 * s..]].concat() },
            "segment 0 failed authentication",
        ),
        (
            "truncated",
            original[..original.len() - 1].to_vec(),
            "the metadata says",
        ),
        (
            "the last segment dropped",
            original[..s].to_vec(),
            "the metadata says",
        ),
    ];
    for (what, bytes, expect) in attacks {
        std::fs::write(&path, &bytes).unwrap();
        let err = restore_into(&fx, &live, RestoreTarget::Latest, Some(keys.clone()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, RestoreError::Unusable { .. }),
            "{what}: {text}"
        );
        assert!(
            text.contains(&big) && text.contains(expect),
            "{what}: {text}"
        );
        assert!(
            live_entries(&live) == before,
            "{what}: the live database changed"
        );
    }

    // A file of the older snapshot put in place of this one's (its own
    // sealed bytes, under another data key): refused.
    std::fs::write(&path, &original).unwrap();
    let older = fx
        .repository
        .list_snapshots(PartitionId(1))
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name != pointer.path)
        .unwrap();
    let older_meta = fx.metadata(1, &older.name);
    let donor = older_meta.files.iter().max_by_key(|f| f.size).unwrap();
    let donor_bytes = std::fs::read(
        fx.repo_dir
            .join("1")
            .join(&older.name)
            .join(donor.file_name().unwrap()),
    )
    .unwrap();
    let mut swapped = donor_bytes.clone();
    swapped.resize(original.len(), 0);
    swapped[..donor_bytes.len().min(original.len())]
        .copy_from_slice(&donor_bytes[..donor_bytes.len().min(original.len())]);
    std::fs::write(&path, &swapped).unwrap();
    let err = restore_into(&fx, &live, RestoreTarget::Latest, Some(keys.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RestoreError::Unusable {
                reason: Unusable::Invalid { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("failed authentication"), "{err}");
    // With fallback, the older snapshot restores instead.
    let outcome = restore_into(&fx, &live, RestoreTarget::LatestOrOlder, Some(keys))
        .await
        .unwrap();
    assert_eq!(outcome.skipped.len(), 1);
    assert_eq!(outcome.restored_lsn, Some(Lsn(10)));
}

/// New snapshots use the keyring's first key; older ones restore while
/// their key is still in the keyring, and name it when it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_keep_older_snapshots_readable() {
    let fx = Fixture::new(&[1]);
    let (old_text, old) = keyring(&["2025"]);
    let first = sealed_snapshots(&fx, &old, &[10]).await.remove(0);
    let rotated_text = format!("{}\n{old_text}", Keyring::generate_line("2026"));
    let rotated = Arc::new(Keyring::parse(&rotated_text).unwrap());
    let second = sealed_snapshots(&fx, &rotated, &[20]).await.remove(0);
    let meta = fx.metadata(1, &fx.latest(1).path);
    assert!(meta
        .files
        .iter()
        .all(|f| f.encryption.as_ref().unwrap().kek_id == "2026"));

    for (id, lsn) in [(first.snapshot_id, 10), (second.snapshot_id, 20)] {
        let db = fx.dir.path().join(format!("restored-{lsn}"));
        let outcome = restore_into(&fx, &db, RestoreTarget::Snapshot(id), Some(rotated.clone()))
            .await
            .unwrap();
        assert_eq!(outcome.restored_lsn, Some(Lsn(lsn)));
    }
    // The old key retired: its snapshot names the key it needs.
    let only_new = Arc::new(Keyring::parse(rotated_text.lines().next().unwrap()).unwrap());
    let err = restore_into(
        &fx,
        &fx.dir.path().join("restored-old"),
        RestoreTarget::Snapshot(first.snapshot_id),
        Some(only_new),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("\"2025\""), "{err}");
}

/// V2: an encrypted snapshot shares its sealed files with the next
/// encrypted one, never with a plain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_v2_shares_only_sealed_files() {
    let fx = Fixture::new(&[1]);
    write(&fx, 10);
    let (_, keys) = keyring(&["k1"]);
    let v2 = |keys: Option<Arc<Keyring>>| PipelineConfig {
        format: FormatVersion::V2,
        ..config(&fx, keys, 2 * SEGMENT_SIZE)
    };
    // A plain V2 snapshot first, then encrypted ones.
    let plain = fx.supervisor(v2(None)).await;
    snapshot(&plain, 1, None).await.unwrap();
    plain.stop(None);
    let sealed = fx.supervisor(v2(Some(keys.clone()))).await;
    let first = snapshot(&sealed, 1, None).await.unwrap();
    assert_eq!(first.uploaded_bytes, first.bytes, "a plain file was reused");
    write(&fx, 20);
    let second = snapshot(&sealed, 1, None).await.unwrap();
    sealed.stop(None);
    assert!(second.uploaded_bytes < second.bytes, "nothing was shared");
    let db = fx.dir.path().join("restored");
    restore_into(&fx, &db, RestoreTarget::Latest, Some(keys))
        .await
        .unwrap();
    assert!(live_entries(&db) == fx.partitions.entries("data-1").unwrap());
}

/// The command line on S3 (moto): `--keyring` on snapshot, verify and
/// restore, and `ROCKSNAP_KEYRING` in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_round_trip_on_s3() {
    let backend = Backend::s3("encrypted").await;
    let fx = Fixture::new(&[1]);
    write(&fx, 10);
    let db = fx.dir.path().join("db");
    let expected = fx.partitions.entries("data-1").unwrap();
    drop(fx.partitions);
    let keyring_file = fx.dir.path().join("keyring");
    let out = common::bin::command(&["keygen", "--id", "ops-1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&keyring_file, &out.stdout).unwrap();
    let url = backend.url();
    let run = |args: &[&str], env: &[(&str, String)]| {
        let mut cmd = common::bin::command(args);
        cmd.envs(backend.env());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    };
    let key_arg = keyring_file.to_str().unwrap();
    let published = common::bin::ok_json(&mut run(
        &[
            "snapshot",
            "--db",
            db.to_str().unwrap(),
            "--partition",
            "1",
            "--to",
            &url,
            "--part-size",
            "5MiB",
            "--keyring",
            key_arg,
            "--json",
        ],
        &[],
    ));
    let report = common::bin::ok_json(&mut run(
        &["verify", "--from", &url, "--partition", "1", "--json"],
        &[],
    ));
    assert_eq!(report["authenticated"], false);
    let keyring_text = std::fs::read_to_string(&keyring_file).unwrap();
    let report = common::bin::ok_json(&mut run(
        &[
            "verify",
            "--from",
            &url,
            "--partition",
            "1",
            "--deep",
            "--json",
        ],
        &[("ROCKSNAP_KEYRING", keyring_text)],
    ));
    assert_eq!(report["authenticated"], true);
    assert_eq!(report["snapshot_id"], published["snapshot_id"]);
    let restored = fx.dir.path().join("restored");
    common::bin::fails_clearly(
        &mut run(
            &[
                "restore",
                "--from",
                &url,
                "--partition",
                "1",
                "--db",
                restored.to_str().unwrap(),
            ],
            &[],
        ),
        "is encrypted",
    );
    common::bin::ok_json(&mut run(
        &[
            "restore",
            "--from",
            &url,
            "--partition",
            "1",
            "--db",
            restored.to_str().unwrap(),
            "--keyring",
            key_arg,
            "--json",
        ],
        &[],
    ));
    assert!(live_entries(&restored) == expected);
}

/// `rekey` wraps every retained snapshot's data keys under the keyring's
/// new first key without sending data again (V2 shares the same objects,
/// V1 copies its files inside the store), moves the pointer in place, and
/// after a collection the old key can leave the keyring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_rewraps_data_keys_and_retires_the_old_key() {
    for format in [FormatVersion::V2, FormatVersion::V1] {
        let fx = Fixture::new(&[1]);
        let (supervisor, old_text, _) = two_sealed(&fx, format).await;
        supervisor.stop(None);
        let before = fx.latest(1);
        let shared_before = common::files_below(&fx.repo_dir.join("1").join("ssts"));

        let new_line = Keyring::generate_line("new");
        let both = Keyring::parse(&format!("{new_line}\n{old_text}")).unwrap();
        let report = rocksnap::rekey::rekey(&fx.repository, PartitionId(1), &both)
            .await
            .unwrap();
        let kept = if format == FormatVersion::V2 { 2 } else { 1 };
        assert_eq!(report.rekeyed.len(), kept, "{format:?}");
        let after = fx.latest(1);
        assert_eq!(
            after.min_applied_lsn, before.min_applied_lsn,
            "the pointer moved"
        );
        assert_ne!(after.snapshot_id, before.snapshot_id);
        if format == FormatVersion::V2 {
            assert_eq!(report.copied_objects, 0, "V2 shares the same objects");
            let lsns: Vec<_> = after.retained.iter().map(|r| r.min_applied_lsn).collect();
            let old_lsns: Vec<_> = before.retained.iter().map(|r| r.min_applied_lsn).collect();
            assert_eq!(lsns, old_lsns);
        } else {
            assert!(report.copied_objects > 0);
        }
        let meta = fx.metadata(1, &after.path);
        assert!(meta
            .files
            .iter()
            .all(|f| f.encryption.as_ref().unwrap().kek_id == "new"));
        // Again: nothing left to do.
        let again = rocksnap::rekey::rekey(&fx.repository, PartitionId(1), &both)
            .await
            .unwrap();
        assert!(again.rekeyed.is_empty() && again.unchanged == kept);

        // Collected: the old snapshots go, the objects the new ones use stay.
        common::collect_with_no_grace(&fx.repository, PartitionId(1)).await;
        if format == FormatVersion::V2 {
            assert!(!shared_before.is_empty());
            assert_eq!(
                common::files_below(&fx.repo_dir.join("1").join("ssts")),
                shared_before,
                "{format:?}: shared objects changed"
            );
        }
        // The old key retired: every retained snapshot restores.
        let only_new = Arc::new(Keyring::parse(&new_line).unwrap());
        kept_restore_with(&fx, &after, &only_new, &format!("{format:?}")).await;
        let db = fx.dir.path().join("restored-latest");
        restore_into(&fx, &db, RestoreTarget::Latest, Some(only_new))
            .await
            .unwrap();
        assert!(live_entries(&db) == fx.partitions.entries("data-1").unwrap());
    }
}

/// A rekey that races a new snapshot for the pointer loses cleanly: the
/// pointer stays at the newer snapshot (never back), what the rekey wrote
/// is named by nothing and collection removes it, and every retained
/// snapshot still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_racing_a_new_snapshot_loses_without_harm() {
    use common::faulty::{Op, When};
    let fx = Fixture::new(&[1]);
    let (supervisor, old_text, old) = two_sealed(&fx, FormatVersion::V2).await;

    // The rekey is held at its first write (the first rekeyed metadata).
    let (store, repo) = fx.faulty_repository();
    let gate = store.hold(Op::Put, When::Nth(1));
    let both = Arc::new(rotated(&old_text));
    let rekey = {
        let both = both.clone();
        tokio::spawn(async move { rocksnap::rekey::rekey(&repo, PartitionId(1), &both).await })
    };
    common::wait_until("the rekey is held", || gate.waiting() == 1).await;
    // Meanwhile a new snapshot is published.
    write(&fx, 30);
    let newer = snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);
    gate.open();
    let err = rekey.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            rocksnap::rekey::RekeyError::Repository(
                rocksnap::repository::RepoError::Conflict { .. }
            )
        ),
        "{err}"
    );
    let pointer = fx.latest(1);
    assert_eq!(
        pointer.snapshot_id, newer.snapshot_id,
        "the pointer moved back"
    );
    assert_eq!(pointer.min_applied_lsn, Lsn(30));

    // What the rekey wrote is garbage; collection takes it, and every
    // retained snapshot restores as before.
    let folders_before = fx.repository.list_snapshots(PartitionId(1)).await.unwrap();
    common::collect_with_no_grace(&fx.repository, PartitionId(1)).await;
    let folders_after = fx.repository.list_snapshots(PartitionId(1)).await.unwrap();
    let kept: Vec<_> = pointer.kept().iter().map(|k| k.snapshot_id).collect();
    assert!(
        folders_after.len() < folders_before.len(),
        "the rekey's metadata stayed"
    );
    assert!(folders_after.iter().all(|f| kept.contains(&f.snapshot_id)));
    kept_restore_with(&fx, &pointer, &old, "racing").await;
}

/// After a rekey: every snapshot the pointer retains restores with the new
/// key (`new_line`) alone, and nothing of the rekey is left but what it
/// published.
async fn rekeyed_alone(fx: &Fixture, new_line: &str, what: &str) {
    let only_new = Arc::new(Keyring::parse(new_line).unwrap());
    kept_restore_with(fx, &fx.latest(1), &only_new, what).await;
    assert!(
        fx.repository
            .read_leases(PartitionId(1))
            .await
            .unwrap()
            .is_empty(),
        "{what}: the rekey left a lease"
    );
}

/// Collects partition 1 with no grace at all while a rekey is held
/// half-way, and checks that the collection found the rekey's lease and
/// took nothing the rekey wrote (the objects not in `objects_before`).
async fn collect_beside_the_rekey(fx: &Fixture, objects_before: &[String], what: &str) {
    let written: Vec<_> = common::files_below(&fx.repo_dir.join("1"))
        .into_iter()
        .filter(|f| !objects_before.contains(f) && !f.starts_with("leases"))
        .collect();
    let report = common::collect_with_no_grace(&fx.repository, PartitionId(1)).await;
    assert!(report.leased > 0, "{what}: nothing of the rekey was leased");
    let spared = common::files_below(&fx.repo_dir.join("1"));
    assert!(
        !written.is_empty() && written.iter().all(|f| spared.contains(f)),
        "{what}: the collection took what the rekey wrote: {written:?}"
    );
}

/// A rekey is a writer like a snapshot: a collection that runs while it is
/// half-way (held at its second rekeyed metadata in V2, at its second
/// server-side copy in V1; collected with no grace at all) never takes what
/// it already wrote, so the pointer it then moves names only complete
/// snapshots, and each restores with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_beside_a_rekey_takes_nothing_it_wrote() {
    use common::faulty::{Op, When};
    for (format, op) in [(FormatVersion::V2, Op::Put), (FormatVersion::V1, Op::Copy)] {
        let fx = Fixture::new(&[1]);
        let (supervisor, old_text, _) = two_sealed(&fx, format).await;
        supervisor.stop(None);
        let objects_before = common::files_below(&fx.repo_dir.join("1"));

        let (store, repo) = fx.faulty_repository();
        let gate = store.hold(op, When::Nth(2));
        let new_line = Keyring::generate_line("new");
        let both = Arc::new(Keyring::parse(&format!("{new_line}\n{old_text}")).unwrap());
        let rekey = {
            let both = both.clone();
            tokio::spawn(async move { rocksnap::rekey::rekey(&repo, PartitionId(1), &both).await })
        };
        common::wait_until("the rekey is half-way", || gate.waiting() == 1).await;
        collect_beside_the_rekey(&fx, &objects_before, &format!("{format:?}")).await;
        gate.open();
        let rekeyed = rekey.await.unwrap().unwrap();
        assert!(!rekeyed.rekeyed.is_empty());

        rekeyed_alone(&fx, &new_line, &format!("{format:?}")).await;
    }
}

/// A rekey keeps its leases alive while one request of its own outlasts
/// them: its second V1 server-side copy is held at a gate for longer than
/// the lease's time to live (3 s here). The lease is renewed while the copy
/// waits (its expiry moves a whole time to live past the first one's, so
/// without renewals it would have lapsed), a collection with no grace at
/// all then takes nothing the rekey wrote, and the rekey completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_keeps_its_lease_through_a_copy_that_outlasts_it() {
    use common::faulty::{Op, When};
    let fx = Fixture::new(&[1]);
    let (supervisor, old_text, _) = two_sealed(&fx, FormatVersion::V1).await;
    supervisor.stop(None);
    let objects_before = common::files_below(&fx.repo_dir.join("1"));

    let (store, repo) = fx.faulty_repository();
    let gate = store.hold(Op::Copy, When::Nth(2));
    let new_line = Keyring::generate_line("new");
    let both = Arc::new(Keyring::parse(&format!("{new_line}\n{old_text}")).unwrap());
    let ttl = std::time::Duration::from_secs(3);
    let rekey = {
        let both = both.clone();
        let opts = rocksnap::rekey::RekeyOptions { lease_ttl: ttl };
        tokio::spawn(async move {
            rocksnap::rekey::rekey_with(&repo, PartitionId(1), &both, &opts).await
        })
    };
    common::wait_until("the rekey's second copy is held", || gate.waiting() == 1).await;
    // The earliest expiry of the rekey's leases.
    let expiry = || async {
        let leases = fx.repository.read_leases(PartitionId(1)).await.unwrap();
        leases
            .iter()
            .map(|(_, l)| l.as_ref().unwrap().expires_at)
            .min()
            .expect("the rekey holds a lease")
    };
    let first = expiry().await;
    common::wait_until_async("the lease is renewed past its first expiry", || async {
        let expires = expiry().await;
        assert!(
            expires > chrono::Utc::now(),
            "the lease lapsed at {expires}"
        );
        expires >= first + ttl
    })
    .await;
    assert_eq!(gate.waiting(), 1, "the copy was let through");

    collect_beside_the_rekey(&fx, &objects_before, "long copy").await;
    gate.open();
    let rekeyed = rekey.await.unwrap().unwrap();
    assert!(!rekeyed.rekeyed.is_empty());
    rekeyed_alone(&fx, &new_line, "long copy").await;
}

/// A rekey that fails half-way (V1: the store refuses its second
/// server-side copy) or is killed half-way (V2: its task dropped while its
/// second rekeyed metadata is on the way) has moved nothing: the pointer is
/// where it was, the latest snapshot restores with the old key alone,
/// collection removes what the rekey wrote, and the rekey run again
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_failed_or_killed_half_way_moves_nothing() {
    use common::faulty::{Fault, Op, When};
    for format in [FormatVersion::V1, FormatVersion::V2] {
        let fx = Fixture::new(&[1]);
        let (supervisor, old_text, old) = two_sealed(&fx, format).await;
        supervisor.stop(None);
        let before = fx.latest(1);
        let objects_before = common::files_below(&fx.repo_dir.join("1"));

        let (store, repo) = fx.faulty_repository();
        let both = Arc::new(rotated(&old_text));
        if format == FormatVersion::V1 {
            store.inject(Op::Copy, When::Nth(2), Fault::Fail);
            let err = rocksnap::rekey::rekey(&repo, PartitionId(1), &both)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("copy"), "{err}");
        } else {
            let gate = store.hold(Op::Put, When::Nth(2));
            let rekey = {
                let both = both.clone();
                tokio::spawn(
                    async move { rocksnap::rekey::rekey(&repo, PartitionId(1), &both).await },
                )
            };
            common::wait_until("the rekey is half-way", || gate.waiting() == 1).await;
            rekey.abort();
            assert!(rekey.await.unwrap_err().is_cancelled());
            gate.open();
        }
        let written: Vec<_> = common::files_below(&fx.repo_dir.join("1"))
            .into_iter()
            .filter(|f| !objects_before.contains(f) && !f.starts_with("leases"))
            .collect();
        assert!(
            !written.is_empty(),
            "{format:?}: the rekey wrote nothing before it stopped"
        );
        assert_eq!(fx.latest(1), before, "{format:?}: the pointer moved");
        let db = fx.dir.path().join("restored-old-key");
        restore_into(&fx, &db, RestoreTarget::Latest, Some(old.clone()))
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(live_entries(&db) == fx.partitions.entries("data-1").unwrap());

        // A killed rekey leaves its lease behind, and collection spares its
        // objects while the lease lives; once it is gone, they go.
        let collection = common::collection(std::time::Duration::ZERO, None);
        let first = rocksnap::gc::collect(&fx.repository, PartitionId(1), &collection)
            .await
            .unwrap();
        let leases = fx.repository.read_leases(PartitionId(1)).await.unwrap();
        assert_eq!(first.leased > 0, format == FormatVersion::V2, "{format:?}");
        if format == FormatVersion::V2 {
            let spared = common::files_below(&fx.repo_dir.join("1"));
            assert!(
                written.iter().all(|f| spared.contains(f)),
                "a live lease did not spare what the killed rekey wrote"
            );
        }
        // A failed rekey gives its leases back; a killed one cannot, and
        // collection counts what it left as in progress.
        if format == FormatVersion::V1 {
            assert!(leases.is_empty(), "the failed rekey kept its lease");
        } else {
            assert!(!leases.is_empty(), "the killed rekey left no lease");
        }
        assert_eq!(leases.len(), first.in_progress.len(), "{format:?}");
        for (id, _) in &leases {
            fx.repository
                .delete_lease(PartitionId(1), *id)
                .await
                .unwrap();
        }
        rocksnap::gc::collect(&fx.repository, PartitionId(1), &collection)
            .await
            .unwrap();
        let left = common::files_below(&fx.repo_dir.join("1"));
        assert!(
            written.iter().all(|f| !left.contains(f)),
            "{format:?}: collection left what the rekey wrote"
        );

        let report = rocksnap::rekey::rekey(&fx.repository, PartitionId(1), &both)
            .await
            .unwrap();
        assert!(!report.rekeyed.is_empty());
        assert_eq!(fx.latest(1).min_applied_lsn, before.min_applied_lsn);
    }
}

/// A fence already at or past the rekey's start (a collector whose clock
/// runs ahead wrote it, and would write the same bytes again, which no
/// version compare tells from no change) stops the rekey before its swap:
/// the pointer stays byte for byte what it was, and every snapshot it keeps
/// restores with the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_under_a_fence_ahead_of_it_moves_nothing() {
    let fx = Fixture::new(&[1]);
    let (supervisor, old_text, old) = two_sealed(&fx, FormatVersion::V2).await;
    supervisor.stop(None);
    let current = fx
        .repository
        .read_pointer(PartitionId(1))
        .await
        .unwrap()
        .unwrap();
    let mut fenced = current.pointer.clone();
    fenced.gc_fence = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    fx.repository
        .swap_pointer(Some(&current.version), &fenced)
        .await
        .unwrap();
    let latest = fx.repo_dir.join("1").join("latest.json");
    let before = std::fs::read(&latest).unwrap();

    let both = rotated(&old_text);
    let err = rocksnap::rekey::rekey(&fx.repository, PartitionId(1), &both)
        .await
        .unwrap_err();
    assert!(
        matches!(err, rocksnap::rekey::RekeyError::Fenced { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&latest).unwrap(), before, "the pointer moved");
    assert!(
        common::files_below(&fx.repo_dir.join("1").join("leases")).is_empty(),
        "the rekey kept a lease"
    );
    kept_restore_with(&fx, &fenced, &old, "fenced").await;
}
