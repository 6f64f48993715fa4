//! Shared fixtures: a real RocksDB partition store in a temporary directory,
//! a repository in another, and a supervisor over both.
#![allow(dead_code)]

pub mod backend;
pub mod bin;
pub mod faulty;
pub mod hold;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ractor::ActorRef;
use rocksnap::format::{LatestPointer, SnapshotMetadata};
use rocksnap::PipelineStats;
use rocksnap::{
    Destination, Lsn, OpenMode, PartitionId, PartitionStore, PipelineConfig, Repository,
    SnapshotError, SnapshotOutcome, SnapshotRequest, Supervisor, SupervisorArgs, SupervisorMsg,
};
use tempfile::TempDir;

pub struct Fixture {
    pub dir: TempDir,
    pub partitions: PartitionStore,
    pub repo_dir: PathBuf,
    pub repository: Repository,
}

impl Fixture {
    /// A database with partitions `ids` and an empty local repository.
    pub fn new(ids: &[u64]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<PartitionId> = ids.iter().copied().map(PartitionId).collect();
        let partitions = PartitionStore::open(&dir.path().join("db"), &ids).unwrap();
        let repo_dir = dir.path().join("repo");
        let repository = Repository::new(
            Destination::open(repo_dir.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
        );
        Fixture {
            dir,
            partitions,
            repo_dir,
            repository,
        }
    }

    /// The fixture's repository behind a fault wrapper: the wrapper, to
    /// inject faults with, and a repository whose every request goes
    /// through it.
    pub fn faulty_repository(&self) -> (faulty::FaultyStore, Repository) {
        let store = faulty::FaultyStore::new(self.repository.store().clone());
        let wrapped = store.clone();
        let repo = Repository::new(
            Destination::open(self.repo_dir.to_str().unwrap(), OpenMode::MustExist)
                .unwrap()
                .wrap_store(|_| Arc::new(wrapped)),
        );
        (store, repo)
    }

    pub fn config(&self) -> PipelineConfig {
        PipelineConfig {
            staging_dir: Some(self.staging_dir()),
            ..PipelineConfig::default()
        }
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.dir.path().join("staging")
    }

    pub async fn supervisor(&self, config: PipelineConfig) -> ActorRef<SupervisorMsg> {
        self.supervisor_on(config, self.repository.clone(), Arc::default())
            .await
    }

    pub async fn supervisor_on(
        &self,
        config: PipelineConfig,
        repository: Repository,
        stats: Arc<PipelineStats>,
    ) -> ActorRef<SupervisorMsg> {
        let mut args = SupervisorArgs::new(config, self.partitions.clone(), repository);
        args.stats = stats;
        Supervisor::start(args).await.unwrap().0
    }

    /// Writes `count` records of `value_len` bytes (deterministic contents)
    /// to a partition at `lsn`.
    pub fn write(&self, partition: u64, lsn: u64, count: usize, value_len: usize) {
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..count)
            .map(|i| (key(lsn, i), value(lsn, i, value_len)))
            .collect();
        self.partitions
            .apply(PartitionId(partition), Lsn(lsn), records)
            .unwrap();
    }

    /// Compacts a partition whole: every file it then has is new, so the
    /// next snapshot shares none with the one before.
    pub fn compact(&self, partition: u64) {
        let db = self.partitions.db();
        let cf = db.cf_handle(&format!("data-{partition}")).unwrap();
        db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
    }

    pub fn latest(&self, partition: u64) -> LatestPointer {
        let bytes = std::fs::read(
            self.repo_dir
                .join(partition.to_string())
                .join("latest.json"),
        )
        .unwrap();
        LatestPointer::parse(&bytes).unwrap()
    }

    pub fn metadata(&self, partition: u64, folder: &str) -> SnapshotMetadata {
        let bytes = std::fs::read(
            self.repo_dir
                .join(partition.to_string())
                .join(folder)
                .join("metadata.json"),
        )
        .unwrap();
        SnapshotMetadata::parse(&bytes).unwrap()
    }
}

pub fn key(lsn: u64, i: usize) -> Vec<u8> {
    format!("key-{lsn:08}-{i:08}").into_bytes()
}

/// Incompressible-looking but reproducible bytes.
pub fn value(lsn: u64, i: usize, len: usize) -> Vec<u8> {
    let mut x = (lsn << 32) ^ i as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Collects `partition` of `repo` with no grace at all: only what a lease
/// or the pointer protects stays.
pub async fn collect_with_no_grace(
    repo: &rocksnap::Repository,
    partition: rocksnap::PartitionId,
) -> rocksnap::gc::GcReport {
    rocksnap::gc::collect(
        repo,
        partition,
        &collection(std::time::Duration::ZERO, None),
    )
    .await
    .unwrap()
}

/// A collection as the fixture's cluster runs it: this grace period and,
/// when asked, a retention of the newest `keep` snapshots.
pub fn collection(grace: std::time::Duration, keep: Option<usize>) -> rocksnap::gc::GcOptions {
    rocksnap::gc::GcOptions {
        grace,
        retention: keep.map(|keep_last| rocksnap::Retention {
            keep_last,
            max_age: None,
        }),
        cluster: Some("localcluster".into()),
        ..rocksnap::gc::GcOptions::default()
    }
}

/// Waits until `condition` holds, checking it every few milliseconds, and
/// fails the test if it does not within a minute: the test waits on the
/// condition, not on a guess of how long it takes.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// [`wait_until`] for a condition that must itself wait (a request, say).
pub async fn wait_until_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// What `attempt` yields once it yields something (a scrape that shows
/// what is awaited, an answer that is not "busy"), asked again every few
/// milliseconds; fails the test if nothing comes within a minute.
pub async fn wait_for<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(found) = attempt().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub async fn snapshot(
    supervisor: &ActorRef<SupervisorMsg>,
    partition: u64,
    min_lsn: Option<u64>,
) -> Result<SnapshotOutcome, SnapshotError> {
    Supervisor::snapshot(
        supervisor,
        SnapshotRequest {
            partition: PartitionId(partition),
            min_lsn: min_lsn.map(Lsn),
        },
    )
    .await
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// A small tmpfs, unmounted when dropped (a failing test included).
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    /// A 1 MiB disk; `None` without the right to mount (root, as in CI).
    pub fn mount(at: &Path) -> Option<SmallDisk> {
        Self::mount_sized(at, "1m")
    }

    /// A disk of `size` (as `mount -o size=` reads it: `8m`).
    pub fn mount_sized(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            cannot_run_here("cannot mount a tmpfs (needs root)");
        }
        mounted.then(|| SmallDisk(at.to_path_buf()))
    }

    /// Unmounts the disk; the files that were left on it.
    pub fn unmount(self) -> Vec<String> {
        files_below(&self.0)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A test that needs what this machine lacks (the right to mount, strace)
/// checks nothing here and says so; under CI (`CI` set, as `.ci/run` is
/// run), which installs and grants all of it, that is a failure instead.
pub fn cannot_run_here(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI must provide it (see .ci/run)");
    }
    eprintln!("skipped: {why}");
}
