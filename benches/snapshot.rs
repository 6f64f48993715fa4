//! `cargo bench`: a full snapshot of about 1 GiB of incompressible values to a
//! local directory, against `cp -r` of the same exported files, and a restore
//! of it, against `cp -r` of the same snapshot files, in the same run.
//!
//! Each measured snapshot runs in a child process of this benchmark, so that
//! its peak resident memory is its own and not the dataset builder's.
//!
//! Environment: `ROCKSNAP_BENCH_BYTES` (dataset size, default 1 GiB),
//! `ROCKSNAP_BENCH_RUNS` (default 3), `ROCKSNAP_BENCH_DIR` (where the dataset
//! is kept between runs; default `<target dir>/rocksnap-bench`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::RngCore;
use rocksnap::restore::{restore, RestoreOptions, RestoreTarget};
use rocksnap::{
    Destination, Lsn, OpenMode, PartitionId, PartitionStore, PipelineConfig, Repository,
    SnapshotRequest, Supervisor, SupervisorArgs,
};

const PARTITION: PartitionId = PartitionId(0);
const VALUE: usize = 4096;

fn main() {
    // As the rocksnap binary does; see its documentation.
    rocksnap::pin_mmap_threshold();
    if let Ok(mode) = std::env::var("ROCKSNAP_BENCH_CHILD") {
        child(&mode);
        return;
    }
    let bytes: u64 = env_or("ROCKSNAP_BENCH_BYTES", 1 << 30);
    let runs: usize = env_or("ROCKSNAP_BENCH_RUNS", 3);
    let root = std::env::var_os("ROCKSNAP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("rocksnap-bench"));
    let db = root.join(format!("db-{bytes}"));
    build_dataset(&db, bytes);

    let idle = run_child("idle", &db, &root.join("unused"));
    let mut snap = Vec::new();
    let mut copy = Vec::new();
    let mut copy_sync = Vec::new();
    let mut peak = Vec::new();
    let mut restore_t = Vec::new();
    let mut restore_copy = Vec::new();
    let mut restore_copy_sync = Vec::new();
    let mut restore_peak = Vec::new();
    let mut stored = 0;
    let mut inc_full = Vec::new();
    let mut inc_inc = Vec::new();
    let (mut inc_full_bytes, mut inc_bytes) = (0, 0);
    for run in 0..runs {
        // Baseline: export the same column family, then copy its files.
        let export = root.join(format!("export-{run}"));
        let _ = std::fs::remove_dir_all(&export);
        {
            let store = PartitionStore::open_existing(&db).unwrap();
            store.export_column_family("data-0", &export).unwrap();
        }
        let (copied, synced) = copy_tree(&export, &root.join(format!("copy-{run}")));
        copy.push(copied);
        copy_sync.push(synced);
        std::fs::remove_dir_all(&export).unwrap();

        let repo = root.join(format!("repo-{run}"));
        let _ = std::fs::remove_dir_all(&repo);
        let r = run_child("snapshot", &db, &repo);
        snap.push(Duration::from_secs_f64(r.seconds));
        peak.push(r.peak_rss);
        stored = r.bytes;

        // Restore, against copying the same snapshot files.
        let partition_dir = repo.join(PARTITION.to_string());
        let folder = std::fs::read_dir(&partition_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir())
            .expect("a snapshot folder");
        let (copied, synced) = copy_tree(&folder, &root.join(format!("copy-{run}")));
        restore_copy.push(copied);
        restore_copy_sync.push(synced);
        let restored = root.join(format!("restored-{run}"));
        let _ = std::fs::remove_dir_all(&restored);
        let r = run_child("restore", &restored, &repo);
        restore_t.push(Duration::from_secs_f64(r.seconds));
        restore_peak.push(r.peak_rss);
        std::fs::remove_dir_all(&restored).unwrap();
        std::fs::remove_dir_all(&repo).unwrap();

        // Incremental (format V2) against full, on a checkpoint of the dataset.
        let v = run_child_json("incremental", &db, &repo);
        inc_full.push(Duration::from_secs_f64(v["full_seconds"].as_f64().unwrap()));
        inc_inc.push(Duration::from_secs_f64(v["inc_seconds"].as_f64().unwrap()));
        inc_full_bytes = v["full_uploaded"].as_u64().unwrap();
        inc_bytes = v["inc_uploaded"].as_u64().unwrap();
        std::fs::remove_dir_all(&repo).unwrap();
    }

    let config = PipelineConfig::default();
    let bound = config.part_size as u64 * (config.max_parts_in_flight as u64 + 1);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "\nfull snapshot of {:.0} MiB to a local directory, {runs} runs (median [min, max])",
        mib(stored)
    );
    row("rocksnap snapshot", &snap, stored);
    row("cp -r", &copy, stored);
    row("cp -r + sync", &copy_sync, stored);
    println!(
        "ratio rocksnap / cp -r         {:.2}\nratio rocksnap / cp -r + sync  {:.2}",
        ratio(&snap, &copy),
        ratio(&snap, &copy_sync)
    );
    let peak_med = median_u64(&peak);
    println!(
        "peak RSS: snapshot process {:.0} MiB, same process idle {:.0} MiB, difference {:.0} MiB (pipeline bound {:.0} MiB)",
        mib(peak_med),
        mib(idle.peak_rss),
        mib(peak_med.saturating_sub(idle.peak_rss)),
        mib(bound)
    );
    println!("\nrestore of the same snapshot from the local directory, {runs} runs");
    row("rocksnap restore", &restore_t, stored);
    row("cp -r", &restore_copy, stored);
    row("cp -r + sync", &restore_copy_sync, stored);
    println!(
        "ratio rocksnap / cp -r         {:.2}\nratio rocksnap / cp -r + sync  {:.2}",
        ratio(&restore_t, &restore_copy),
        ratio(&restore_t, &restore_copy_sync)
    );
    let restore_peak = median_u64(&restore_peak);
    println!(
        "peak RSS: restore process {:.0} MiB, difference to idle {:.0} MiB (download bound {:.0} MiB)",
        mib(restore_peak),
        mib(restore_peak.saturating_sub(idle.peak_rss)),
        mib(config.part_size as u64 * config.max_parts_in_flight as u64)
    );
    println!("\nincremental snapshot (format V2) after 1% new writes, {runs} runs");
    row("full snapshot", &inc_full, inc_full_bytes);
    row("incremental", &inc_inc, inc_bytes);
    println!(
        "bytes sent: incremental / full = {:.4} ({} of {} bytes); time: incremental / full = {:.3}",
        inc_bytes as f64 / inc_full_bytes as f64,
        inc_bytes,
        inc_full_bytes,
        ratio(&inc_inc, &inc_full)
    );
}

/// `cp -r src dest`, then `sync` of every copied file (rocksnap makes every
/// file it writes durable, so the fair baseline does too). Returns the time
/// of the copy alone and of the copy with the sync; removes `dest`.
fn copy_tree(src: &Path, dest: &Path) -> (Duration, Duration) {
    let _ = std::fs::remove_dir_all(dest);
    let t = Instant::now();
    let status = Command::new("cp")
        .arg("-r")
        .arg(src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r failed");
    let copied = t.elapsed();
    let files: Vec<PathBuf> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let status = Command::new("sync")
        .args(&files)
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "sync failed");
    let synced = t.elapsed();
    std::fs::remove_dir_all(dest).unwrap();
    (copied, synced)
}

fn run_child_json(mode: &str, db: &Path, repo: &Path) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("ROCKSNAP_BENCH_CHILD", mode)
        .env("ROCKSNAP_BENCH_DB", db)
        .env("ROCKSNAP_BENCH_REPO", repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct ChildReport {
    seconds: f64,
    bytes: u64,
    peak_rss: u64,
}

fn run_child(mode: &str, db: &Path, repo: &Path) -> ChildReport {
    let v = run_child_json(mode, db, repo);
    ChildReport {
        seconds: v["seconds"].as_f64().unwrap(),
        bytes: v["bytes"].as_u64().unwrap(),
        peak_rss: v["peak_rss"].as_u64().unwrap(),
    }
}

/// One measured snapshot or restore (or nothing, for `idle`) in a fresh process.
fn child(mode: &str) {
    let db = PathBuf::from(std::env::var_os("ROCKSNAP_BENCH_DB").unwrap());
    let repo = PathBuf::from(std::env::var_os("ROCKSNAP_BENCH_REPO").unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    if mode == "incremental" {
        let report = rt.block_on(incremental(&db, &repo));
        println!("{report}");
        return;
    }
    if mode == "restore" {
        let (seconds, bytes) = rt.block_on(async {
            let repository = Repository::new(
                Destination::open(repo.to_str().unwrap(), OpenMode::MustExist).unwrap(),
            );
            let t = Instant::now();
            let o = restore(
                &repository,
                &db,
                PARTITION,
                RestoreTarget::Latest,
                &RestoreOptions::default(),
            )
            .await
            .unwrap();
            (t.elapsed().as_secs_f64(), o.bytes)
        });
        println!(
            "{}",
            serde_json::json!({"seconds": seconds, "bytes": bytes, "peak_rss": peak_rss()})
        );
        return;
    }
    let (seconds, bytes) = rt.block_on(async {
        let partitions = PartitionStore::open_existing(&db).unwrap();
        let repository = Repository::new(
            Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
        );
        let (sup, _) = Supervisor::start(SupervisorArgs::new(
            PipelineConfig::default(),
            partitions,
            repository,
        ))
        .await
        .unwrap();
        let mut result = (0.0, 0);
        if mode == "snapshot" {
            let t = Instant::now();
            let o = Supervisor::snapshot(
                &sup,
                SnapshotRequest {
                    partition: PARTITION,
                    min_lsn: None,
                },
            )
            .await
            .unwrap();
            result = (t.elapsed().as_secs_f64(), o.bytes);
        }
        sup.stop(None);
        result
    });
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "bytes": bytes, "peak_rss": peak_rss()})
    );
}

/// A full V2 snapshot of a checkpoint of the dataset, 1% new writes and a
/// flush, then an incremental snapshot: bytes sent and time of each.
async fn incremental(dataset: &Path, repo: &Path) -> serde_json::Value {
    let work = repo.with_extension("db");
    let _ = std::fs::remove_dir_all(&work);
    {
        let store = PartitionStore::open_existing(dataset).unwrap();
        rocksdb::checkpoint::Checkpoint::new(store.db())
            .unwrap()
            .create_checkpoint(&work)
            .unwrap();
    }
    let partitions = PartitionStore::open_existing(&work).unwrap();
    let repository = Repository::new(
        Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
    );
    let config = PipelineConfig {
        format: rocksnap::format::FormatVersion::V2,
        ..PipelineConfig::default()
    };
    let (sup, _) = Supervisor::start(SupervisorArgs::new(config, partitions.clone(), repository))
        .await
        .unwrap();
    let request = SnapshotRequest {
        partition: PARTITION,
        min_lsn: None,
    };
    let t = Instant::now();
    let full = Supervisor::snapshot(&sup, request).await.unwrap();
    let full_s = t.elapsed().as_secs_f64();
    // 1% new data.
    let lsn = partitions.applied_lsn("data-0").unwrap().unwrap().0 + 1;
    let mut rng = rand::rng();
    let records = (full.bytes / 100 / VALUE as u64).max(1);
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..records)
        .map(|k| {
            let mut v = vec![0u8; VALUE];
            rng.fill_bytes(&mut v);
            (format!("new-{k:012}").into_bytes(), v)
        })
        .collect();
    partitions.apply(PARTITION, Lsn(lsn), batch).unwrap();
    let cf = partitions.db().cf_handle("data-0").unwrap();
    partitions.db().flush_cf(&cf).unwrap();
    drop(cf);
    let t = Instant::now();
    let inc = Supervisor::snapshot(&sup, request).await.unwrap();
    let inc_s = t.elapsed().as_secs_f64();
    sup.stop(None);
    drop(partitions);
    let _ = std::fs::remove_dir_all(&work);
    serde_json::json!({
        "full_seconds": full_s, "full_uploaded": full.uploaded_bytes,
        "inc_seconds": inc_s, "inc_uploaded": inc.uploaded_bytes, "inc_bytes": inc.bytes,
        "seconds": 0.0, "bytes": 0, "peak_rss": peak_rss(),
    })
}

fn build_dataset(db: &Path, bytes: u64) {
    let done = db.with_extension("complete");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(db);
    eprintln!(
        "building a {} MiB dataset at {} (once)",
        bytes >> 20,
        db.display()
    );
    let store = PartitionStore::open(db, &[PARTITION]).unwrap();
    let mut rng = rand::rng();
    let records = bytes / VALUE as u64;
    let mut lsn = 0;
    let mut i = 0u64;
    while i < records {
        lsn += 1;
        let batch: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + 256).min(records))
            .map(|k| {
                let mut v = vec![0u8; VALUE];
                rng.fill_bytes(&mut v);
                (format!("key-{k:012}").into_bytes(), v)
            })
            .collect();
        i += batch.len() as u64;
        store.apply(PARTITION, Lsn(lsn), batch).unwrap();
    }
    let cf = store.db().cf_handle("data-0").unwrap();
    store.db().flush_cf(&cf).unwrap();
    drop(cf);
    drop(store);
    std::fs::write(done, b"").unwrap();
}

/// Peak resident set size of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sorted(d: &[Duration]) -> Vec<Duration> {
    let mut v = d.to_vec();
    v.sort();
    v
}

fn median(d: &[Duration]) -> Duration {
    sorted(d)[d.len() / 2]
}

fn median_u64(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: &[Duration], b: &[Duration]) -> f64 {
    median(a).as_secs_f64() / median(b).as_secs_f64()
}

fn row(name: &str, d: &[Duration], bytes: u64) {
    let s = sorted(d);
    let med = median(d);
    println!(
        "{name:<20} {:>8.2} s [{:.2}, {:.2}]  {:>7.0} MiB/s",
        med.as_secs_f64(),
        s[0].as_secs_f64(),
        s[s.len() - 1].as_secs_f64(),
        bytes as f64 / (1 << 20) as f64 / med.as_secs_f64()
    );
}
