//! Randomized rounds that attack every promise at once, with invariants
//! checked after each round.
//!
//! Two writers snapshot partition 1 into one local repository (format V2,
//! two snapshots retained), each from its own database fed the same fixed
//! log at its own pace: writer A in this process, through the fault wrapper
//! (a failed part, a lost answer, a failed read, or none), and writer B as a
//! `rocksnap snapshot` process that may be SIGKILLed at its K-th rename
//! (strace's fault injection, so that a replay kills at the same step).
//! Garbage collection with no grace period at all runs beside them, and some
//! rounds restore into a live database. After every round:
//!
//! 1. the pointer never moved back;
//! 2. it names a complete snapshot, whose restore equals the log applied up
//!    to the LSN stored in it;
//! 3. every object a retained snapshot references exists, at its size.
//!
//! At the end, a collection an hour later (every lease of a killed writer
//! expired) leaves nothing but the pointer and what it retains.
//!
//! The seed chooses every operation and kill point; it is printed, and
//! `ROCKSNAP_TORTURE_SEED=<seed>` replays it. `ROCKSNAP_TORTURE_ROUNDS`
//! (default 30, about ten seconds) sets the rounds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::faulty::{Fault, FaultyStore, Op, When};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rocksnap::format::FormatVersion;
use rocksnap::gc::{collect, GcOptions};
use rocksnap::partition::{Entry, APPLIED_LSN_KEY};
use rocksnap::restore::{restore, RestoreOptions, RestoreTarget};
use rocksnap::{
    Destination, Lsn, OpenMode, PartitionId, PartitionStore, PipelineConfig, Repository, Retention,
    Supervisor, SupervisorArgs,
};

const PARTITION: PartitionId = PartitionId(1);

/// The fixed log both writers apply: LSN `l` writes a seeded number of
/// records with keys of their own.
struct Log {
    seed: u64,
}

impl Log {
    fn records(&self, lsn: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let n = 20 + (self.seed.wrapping_mul(31).wrapping_add(lsn * 7919) % 40) as usize;
        (0..n)
            .map(|i| (common::key(lsn, i), common::value(lsn ^ self.seed, i, 2048)))
            .collect()
    }

    /// Applies LSNs `from+1..=to` to a database.
    fn apply(&self, store: &PartitionStore, from: u64, to: u64) {
        for lsn in from + 1..=to {
            store.apply(PARTITION, Lsn(lsn), self.records(lsn)).unwrap();
            if lsn % 3 == 0 {
                let db = store.db();
                db.flush_cf(&db.cf_handle("data-1").unwrap()).unwrap();
            }
        }
    }

    /// What a partition holds once the log is applied up to `lsn`: every
    /// record (no key is written twice), and the LSN under its reserved key,
    /// in key order.
    fn expected(&self, lsn: u64) -> Vec<Entry> {
        let mut entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
            (1..=lsn).flat_map(|l| self.records(l)).collect();
        entries.insert(APPLIED_LSN_KEY.to_vec(), lsn.to_be_bytes().to_vec());
        entries
            .into_iter()
            .map(|(k, v)| (k.into_boxed_slice(), v.into_boxed_slice()))
            .collect()
    }
}

fn config(staging: &Path) -> PipelineConfig {
    PipelineConfig {
        format: FormatVersion::V2,
        retention: Retention {
            keep_last: 2,
            max_age: None,
        },
        part_size: 64 * 1024,
        staging_dir: Some(staging.to_path_buf()),
        ..PipelineConfig::default()
    }
}

fn gc(now: Option<chrono::DateTime<chrono::Utc>>) -> GcOptions {
    GcOptions {
        now,
        ..common::collection(Duration::ZERO, Some(2))
    }
}

/// Writer A: one snapshot in this process, through the fault wrapper.
async fn writer_a(
    db: PartitionStore,
    repo_dir: PathBuf,
    staging: PathBuf,
    fault: Option<(Op, u64, Fault)>,
) -> String {
    let dest = Destination::open(repo_dir.to_str().unwrap(), OpenMode::MustExist).unwrap();
    let store = FaultyStore::new(dest.store().clone());
    if let Some((op, n, fault)) = fault {
        store.inject(op, When::Nth(n), fault);
    }
    let repo = Repository::new(dest.wrap_store(|_| Arc::new(store.clone())));
    let (supervisor, _) = Supervisor::start(SupervisorArgs::new(config(&staging), db, repo))
        .await
        .unwrap();
    let request = rocksnap::SnapshotRequest {
        partition: PARTITION,
        min_lsn: None,
    };
    let result = Supervisor::snapshot(&supervisor, request).await;
    supervisor.stop(None);
    match result {
        Ok(o) => format!("A published LSN {}", o.min_applied_lsn),
        Err(e) => format!("A failed ({})", e.reason()),
    }
}

/// Writer B: `rocksnap snapshot` in a process of its own, SIGKILLed at its
/// `kill_at`-th rename when asked (and when strace is there to do it).
async fn writer_b(db: PathBuf, repo_dir: PathBuf, kill_at: Option<u32>) -> String {
    let rocksnap = common::bin::command(&[
        "snapshot",
        "--db",
        db.to_str().unwrap(),
        "--partition",
        "1",
        "--to",
        repo_dir.to_str().unwrap(),
        "--format",
        "V2",
        "--keep",
        "2",
        "--part-size",
        "64KiB",
    ]);
    let cmd = match kill_at {
        // The same command, under strace, which kills it at its k-th rename.
        Some(k) => {
            let mut strace = std::process::Command::new("strace");
            strace
                .args([
                    "-f",
                    "-qq",
                    "-o",
                    "/dev/null",
                    "-e",
                    "trace=rename,renameat,renameat2",
                    "-e",
                ])
                .arg(format!(
                    "inject=rename,renameat,renameat2:signal=KILL:when={k}"
                ))
                .arg(rocksnap.get_program())
                .args(rocksnap.get_args());
            for (key, value) in rocksnap.get_envs() {
                match value {
                    Some(v) => strace.env(key, v),
                    None => strace.env_remove(key),
                };
            }
            strace
        }
        None => rocksnap,
    };
    let out = tokio::process::Command::from(cmd)
        .stdin(Stdio::null())
        // Killed if the round fails before it ends.
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    match out.status.code() {
        Some(0) => "B published".into(),
        Some(_) => format!("B failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        None => "B killed".into(),
    }
}

fn strace_works() -> bool {
    std::process::Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The invariants every round ends with.
async fn check(repo: &Repository, log: &Log, dir: &Path, max_lsn: &mut u64, round: u64) {
    let Some(pointer) = repo.read_pointer(PARTITION).await.unwrap() else {
        return;
    };
    let lsn = pointer.pointer.min_applied_lsn.0;
    assert!(
        lsn >= *max_lsn,
        "round {round}: the pointer moved back from LSN {max_lsn} to {lsn}"
    );
    *max_lsn = lsn;
    // Every object a retained snapshot references exists, at its size.
    for kept in pointer.pointer.kept() {
        let meta = repo
            .read_metadata(PARTITION, &kept.path)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: retained snapshot {} lost its metadata: {e}",
                    kept.path
                )
            });
        for f in &meta.files {
            let key = repo.layout().object(PARTITION, &kept.path, f).unwrap();
            let head = repo.store().head(&key).await.unwrap_or_else(|e| {
                panic!(
                    "round {round}: {key}, referenced by retained {}, is gone: {e}",
                    kept.path
                )
            });
            assert_eq!(head.size, f.size, "round {round}: {key} changed size");
        }
    }
    // The pointer's snapshot restores to exactly the log at its LSN.
    let target = dir.join(format!("check-{round}"));
    let outcome = restore(
        repo,
        &target,
        PARTITION,
        RestoreTarget::Latest,
        &RestoreOptions {
            staging_dir: Some(dir.join("check-staging")),
            ..RestoreOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("round {round}: the latest snapshot does not restore: {e}"));
    let restored_lsn = outcome.restored_lsn.expect("the LSN travels in the data").0;
    assert!(restored_lsn >= lsn);
    let restored = PartitionStore::open_existing(&target)
        .unwrap()
        .entries("data-1")
        .unwrap();
    assert!(
        restored == log.expected(restored_lsn),
        "round {round}: the restore of LSN {restored_lsn} differs from the log"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

/// The pointer and every object the snapshots it retains reference, sorted.
async fn needed(repo: &Repository) -> Vec<String> {
    let mut needed: Vec<String> = Vec::new();
    if let Some(pointer) = repo.read_pointer(PARTITION).await.unwrap() {
        needed.push(repo.layout().latest(PARTITION).to_string());
        for kept in pointer.pointer.kept() {
            needed.push(repo.layout().metadata(PARTITION, &kept.path).to_string());
            for f in repo
                .read_metadata(PARTITION, &kept.path)
                .await
                .unwrap()
                .files
            {
                needed.push(
                    repo.layout()
                        .object(PARTITION, &kept.path, &f)
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    needed.sort();
    needed.dedup();
    needed
}

/// Every object of the partition, sorted.
async fn listed(repo: &Repository) -> Vec<String> {
    let mut left: Vec<String> = repo
        .store()
        .list(Some(&repo.layout().partition_dir(PARTITION)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    left.sort();
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture() {
    let seed = std::env::var("ROCKSNAP_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let rounds: u64 = std::env::var("ROCKSNAP_TORTURE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    println!("torture seed {seed}, {rounds} rounds (replay: ROCKSNAP_TORTURE_SEED={seed})");
    let can_kill = strace_works();
    if !can_kill {
        common::cannot_run_here("strace cannot run here: writer B is never killed");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let log = Log { seed };
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = Repository::new(
        Destination::open(repo_dir.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
    );
    let db_a = dir.path().join("a");
    let db_b = dir.path().join("b");
    let live = dir.path().join("live");
    let store_a = PartitionStore::open(&db_a, &[PARTITION]).unwrap();
    drop(PartitionStore::open(&db_b, &[PARTITION]).unwrap());
    let (mut lsn_a, mut lsn_b, mut max_lsn) = (0u64, 0u64, 0u64);
    let mut kills = 0;

    for round in 0..rounds {
        let to_a = lsn_a + rng.random_range(1..=3);
        log.apply(&store_a, lsn_a, to_a);
        lsn_a = to_a;
        let to_b = lsn_b + rng.random_range(0..=3);
        log.apply(&PartitionStore::open_existing(&db_b).unwrap(), lsn_b, to_b);
        lsn_b = to_b;

        let fault = match rng.random_range(0..4) {
            0 => Some((Op::Part, rng.random_range(1..=4), Fault::Fail)),
            1 => Some((Op::Put, rng.random_range(1..=3), Fault::CutOff)),
            2 => Some((Op::Get, rng.random_range(1..=3), Fault::Fail)),
            _ => None,
        };
        // Drawn whether or not strace can act on it, so that a seed replays
        // the same operations everywhere.
        let kill_at = rng.random_bool(0.6).then(|| rng.random_range(1..=8));
        let kill_at = kill_at.filter(|_| can_kill);
        let collections = rng.random_range(1..=3);
        let a = writer_a(
            store_a.clone(),
            repo_dir.clone(),
            dir.path().join("a-staging"),
            fault.clone(),
        );
        let b = writer_b(db_b.clone(), repo_dir.clone(), kill_at);
        let c = async {
            let mut reports = Vec::new();
            for _ in 0..collections {
                reports.push(
                    collect(&repo, PARTITION, &gc(None))
                        .await
                        .map(|r| r.deleted.len()),
                );
            }
            reports
        };
        let (a, b, c) = tokio::join!(a, b, c);
        if b == "B killed" {
            kills += 1;
        }
        println!("round {round}: {a}; {b} (kill at rename {kill_at:?}); fault {fault:?}; collections {c:?}");

        if rng.random_bool(0.3) && repo.read_pointer(PARTITION).await.unwrap().is_some() {
            let outcome = restore(
                &repo,
                &live,
                PARTITION,
                RestoreTarget::LatestOrOlder,
                &RestoreOptions::default(),
            )
            .await
            .unwrap_or_else(|e| {
                panic!("round {round}: restore into the live database failed: {e}")
            });
            let restored = PartitionStore::open_existing(&live)
                .unwrap()
                .entries("data-1")
                .unwrap();
            let at = outcome.restored_lsn.unwrap().0;
            assert!(
                restored == log.expected(at),
                "round {round}: the live restore of LSN {at} differs from the log"
            );
        }
        check(&repo, &log, dir.path(), &mut max_lsn, round).await;
        // After the next collection, nothing is left that no retained
        // snapshot and no live lease needs (without a pointer, collection
        // keeps every complete snapshot: nothing to compare with).
        if repo.read_pointer(PARTITION).await.unwrap().is_none() {
            continue;
        }
        collect(&repo, PARTITION, &gc(None)).await.unwrap();
        let leases: Vec<rocksnap::SnapshotId> = repo
            .read_leases(PARTITION)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let needed = needed(&repo).await;
        let dir_key = repo.layout().partition_dir(PARTITION).to_string();
        for key in listed(&repo).await {
            let relative = key.strip_prefix(&format!("{dir_key}/")).unwrap_or(&key);
            let leased = rocksnap::format::owner(relative).is_some_and(|id| leases.contains(&id));
            assert!(
                needed.contains(&key) || leased,
                "round {round}: {key} is needed by no retained snapshot and no lease"
            );
        }
    }

    // An hour later every killed writer's lease has expired: collection
    // leaves the pointer and what it retains, and nothing else.
    let later = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    collect(&repo, PARTITION, &gc(later)).await.unwrap();
    assert_eq!(
        listed(&repo).await,
        needed(&repo).await,
        "collection left objects nothing needs"
    );
    let staging_files = common::files_below(&repo_dir)
        .into_iter()
        .filter(|f| f.contains('#'))
        .collect::<Vec<_>>();
    assert!(
        staging_files.is_empty(),
        "open uploads left: {staging_files:?}"
    );
    println!(
        "torture seed {seed}: {rounds} rounds, {kills} writers killed, pointer at LSN {max_lsn}"
    );
}
