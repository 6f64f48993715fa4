//! `cargo bench`: rocksnap against the alternatives and the physical limit,
//! every comparison made in the same run on the same data, then the cost
//! curves (partitions, size, bucket population, part size × parts in
//! flight) and the foreground impact of a snapshot on a node's writes.
//!
//! Prints every table and the targets each is held to, and writes the same
//! figures as JSON (`results.json`) and the curves as SVG pictures into the
//! output directory. Each comparison row is the median of the runs, with
//! min and max; locally, rocksnap and its baseline alternate which goes
//! first (the remote-like child measures rocksnap, then, in its first run
//! only, the slow references).
//! Snapshots and restores run in child processes of this benchmark, so
//! that each peak resident size and CPU time is its own.
//!
//! Environment:
//! - `ROCKSNAP_BENCH_BYTES`: dataset size, all partitions together (default 1 GiB);
//! - `ROCKSNAP_BENCH_PARTITIONS`: partitions (default 4);
//! - `ROCKSNAP_BENCH_RUNS`: runs per comparison row (default 5);
//! - `ROCKSNAP_BENCH_DIR`: where datasets are built once and kept (default
//!   `<target dir>/rocksnap-bench`);
//! - `ROCKSNAP_BENCH_OUT`: where `results.json` and the pictures go
//!   (default `benches/results` in the source tree);
//! - `ROCKSNAP_BENCH_CURVES`: which curves to draw, comma-separated, of
//!   `partitions,size,population,parts,foreground` (default all; `none`);
//! - `ROCKSNAP_BENCH_SIZES_GIB`: the size curve's sizes (default `1,2,4,8`);
//! - `ROCKSNAP_BENCH_CURVE_RUNS`: runs per point of the partitions and
//!   size curves (default 5);
//! - `ROCKSNAP_BENCH_IN_FLIGHT`: parts in flight of every local snapshot
//!   child (default the pipeline's), to probe the setting by hand; the
//!   memory bound and the fixed overhead's parts follow it;
//! - `ROCKSNAP_BENCH_LOG`: a `tracing` filter for the child processes'
//!   logs on stderr (e.g. `rocksnap=debug`);
//! - `ROCKSNAP_BENCH_SKIP_4X=1`: skip the memory run on a 4× dataset (one
//!   partition);
//! - `ROCKSNAP_BENCH_RATE_MIB`: the rate limit checked (default 200 MiB/s);
//! - `ROCKSNAP_BENCH_DROP_CACHES=1` (root): empty the page cache before the
//!   comparisons and before the datasets of the partitions and size curves,
//!   so that no run starts with memory full of what ran before (whose
//!   reclaim costs CPU).

mod child;
mod curves;
mod disk;
mod foreground;
mod model;
mod plot;
mod population;
mod table;

// The binary's allocator tuning, so that child processes measure what it would.
#[path = "../../src/bin/rocksnap/alloc.rs"]
mod alloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rocksnap::{Lsn, PartitionId, PartitionStore, PipelineConfig};
use serde_json::{json, Value};

use table::{Checks, Table};

/// The name of the model's lower-bound rows, which the targets look up.
pub const LOWER_BOUND: &str = "lower bound of the model (8 connections)";

/// Bytes of each value in the datasets (incompressible).
pub const VALUE: usize = 4096;

fn main() {
    // As the rocksnap binary does; see its documentation.
    alloc::pin_mmap_threshold();
    if let Ok(mode) = std::env::var("ROCKSNAP_BENCH_CHILD") {
        child::run(&mode);
        return;
    }
    let bytes: u64 = env_or("ROCKSNAP_BENCH_BYTES", 1 << 30);
    let partitions: u64 = env_or("ROCKSNAP_BENCH_PARTITIONS", 4);
    let runs: usize = env_or("ROCKSNAP_BENCH_RUNS", 5).max(1);
    let rate_mib: u64 = env_or("ROCKSNAP_BENCH_RATE_MIB", 200);
    let root = std::env::var_os("ROCKSNAP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("rocksnap-bench"));
    let out = std::env::var_os("ROCKSNAP_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results"));
    std::fs::create_dir_all(&out).unwrap();
    let curves = std::env::var("ROCKSNAP_BENCH_CURVES").unwrap_or_else(|_| "all".into());
    let wants = |name: &str| curves == "all" || curves.split(',').any(|c| c.trim() == name);
    let config = PipelineConfig::default();
    let bound = (config.part_size * (parts_in_flight() + 1)) as u64;
    let mut checks = Checks::default();
    let started = Instant::now();

    let db = dataset(&root, bytes, partitions);
    // Nothing dirty (with ROCKSNAP_BENCH_DROP_CACHES, an empty page cache:
    // the run then starts with memory free, not with the cache of whatever
    // ran before, whose reclaim costs CPU).
    curves::settle();
    let mut t = Table::default();
    let idle = run_child("idle", &db, &root.join("unused"), &[]);
    comparisons(&mut t, &db, &root, &idle, runs, partitions, rate_mib);
    let overheads = fixed_overheads(&db, &root, &idle, runs);
    let overhead = overheads.iter().copied().max().unwrap_or(0);
    // Memory must not grow with the snapshot's size (one partition: the
    // size curve's dataset of that size), each size over its own idle
    // process (RocksDB holds more for a larger database) and less its own
    // fixed overhead.
    let four = std::env::var_os("ROCKSNAP_BENCH_SKIP_4X")
        .is_none()
        .then(|| {
            let big = dataset(&root, 4 * bytes, 1);
            curves::settle();
            let big_idle = run_child("idle", &big, &root.join("unused"), &[]);
            let big_overhead = fixed_overhead(&big, &root, &big_idle, 1);
            let repo = root.join("repo");
            let _ = std::fs::remove_dir_all(&repo);
            let snap = run_child("snapshot", &big, &repo, &[]);
            std::fs::remove_dir_all(&repo).unwrap();
            (rss(&snap).saturating_sub(rss(&big_idle)), big_overhead)
        });
    let mut results = t.print(
        &format!(
            "{} MiB in {partitions} partitions, {runs} runs; memory bound part size × (parts in flight + 1) = {} MiB",
            bytes >> 20,
            bound >> 20
        ),
        rate_mib,
    );
    println!(
        "\nfixed overhead (the 5 MiB-part snapshot less its {} MiB of parts, largest of {:.1?}): {:.0} MiB",
        5 * (parts_in_flight() + 1),
        overheads.iter().map(|&o| mib(o)).collect::<Vec<_>>(),
        mib(overhead)
    );
    t.check(&mut checks, bound, overhead);
    if let Some((peak, big_overhead)) = four {
        println!(
            "snapshot peak RSS over idle, 4S: {:.0} MiB (fixed overhead on that dataset {:.0} MiB)",
            mib(peak),
            mib(big_overhead)
        );
        results["memory_4s"] = json!({"peak_rss_over_idle": peak, "fixed_overhead": big_overhead});
        checks.memory("snapshot peak RSS over idle, 4S", peak, big_overhead, bound);
    }
    results["fixed_overhead_bytes"] = json!(overhead);

    if wants("partitions") {
        results["partitions"] = curves::partitions(&root, &out, bytes, bound, &mut checks);
    }
    if wants("size") {
        results["size"] = curves::size(&root, &out, bound, &mut checks);
    }
    if wants("population") {
        let v = run_child("population", &root, &root.join("unused"), &[]);
        results["population"] = population::report(&v, &out, &mut checks);
    }
    if wants("parts") {
        let v = run_child("grid", &db, &root.join("unused"), &[]);
        results["parts"] = curves::grid(&v, &out);
    }
    if wants("foreground") {
        let v = run_child(
            "foreground",
            &db,
            &root.join("foreground"),
            &[("ROCKSNAP_BENCH_RATE", &(rate_mib << 20).to_string())],
        );
        results["foreground"] = foreground::report(&v, rate_mib, &mut checks);
    }
    PART_PEAKS.check(&mut checks);
    results["targets"] = checks.print();
    results["bench_seconds"] = json!(started.elapsed().as_secs_f64());
    let path = out.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
    println!(
        "\nfigures written to {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
}

/// The comparison rows: local and remote-like snapshot and restore against
/// their baselines and bounds, encrypted, incremental, rate-limited.
fn comparisons(
    t: &mut Table,
    db: &Path,
    root: &Path,
    idle: &Value,
    runs: usize,
    partitions: u64,
    rate_mib: u64,
) {
    // One keyring for the encrypted rows, handed to each child.
    let keyring = rocksnap::crypto::Keyring::generate_line("bench");
    let sealed: [(&str, &str); 1] = [("ROCKSNAP_BENCH_KEYRING", &keyring)];
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        // rocksnap and each baseline alternate which goes first, so that
        // neither always meets the other's page cache.
        let baseline_first = run % 2 == 0;
        if !baseline_first {
            encrypted_local(t, db, root, &sealed, idle);
        }
        // Local directory: snapshot against copying the same exported files.
        let export = root.join("export");
        let _ = std::fs::remove_dir_all(&export);
        std::fs::create_dir_all(&export).unwrap();
        {
            let store = PartitionStore::open_existing(db).unwrap();
            for p in 0..partitions {
                let cf = rocksnap::partition::cf_name(PartitionId(p));
                store.export_column_family(&cf, &export.join(&cf)).unwrap();
            }
        }
        let repo = root.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        // The exported files are links to the database's, warmed as the
        // snapshot child's are.
        let copy_export = || {
            curves::warm(db);
            copy_tree(&export, &root.join("copy"))
        };
        let mut copied = None;
        if baseline_first {
            copied = Some(copy_export());
        }
        let snap = run_child("snapshot", db, &repo, &[]);
        let copied = copied.unwrap_or_else(copy_export);
        std::fs::remove_dir_all(&export).unwrap();
        let stored = snap["bytes"].as_u64().unwrap();
        t.add(
            "local",
            "rocksnap snapshot",
            secs(&snap),
            stored,
            cpu(&snap),
        );
        t.add(
            "local",
            "cp -r of the exported files",
            copied.0,
            stored,
            None,
        );
        t.add("local", "cp -r + sync", copied.1, stored, Some(copied.2));
        t.mem(
            "snapshot peak RSS over idle, S",
            rss(&snap).saturating_sub(rss(idle)),
        );

        // Restore every partition, against copying the same snapshot files.
        let folders: Vec<PathBuf> = (0..partitions)
            .flat_map(|p| std::fs::read_dir(repo.join(p.to_string())).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        let copy_src = root.join("copy-src");
        let restored = root.join("restored");
        let _ = std::fs::remove_dir_all(&restored);
        let copy_snapshot = || {
            let _ = std::fs::remove_dir_all(&copy_src);
            std::fs::create_dir_all(&copy_src).unwrap();
            for (i, f) in folders.iter().enumerate() {
                std::fs::rename(f, copy_src.join(i.to_string())).unwrap();
            }
            let copied = copy_tree(&copy_src, &root.join("copy"));
            for (i, f) in folders.iter().enumerate() {
                std::fs::rename(copy_src.join(i.to_string()), f).unwrap();
            }
            copied
        };
        let mut copied = None;
        if baseline_first {
            copied = Some(copy_snapshot());
        }
        let r = run_child("restore", &restored, &repo, &[]);
        let copied = copied.unwrap_or_else(copy_snapshot);
        t.add(
            "local restore",
            "rocksnap restore",
            secs(&r),
            stored,
            cpu(&r),
        );
        t.add(
            "local restore",
            "cp -r of the snapshot files",
            copied.0,
            stored,
            None,
        );
        t.add(
            "local restore",
            "cp -r + sync",
            copied.1,
            stored,
            Some(copied.2),
        );
        t.mem(
            "restore peak RSS over idle, S",
            rss(&r).saturating_sub(rss(idle)),
        );
        std::fs::remove_dir_all(&restored).unwrap();
        std::fs::remove_dir_all(&repo).unwrap();
        if baseline_first {
            encrypted_local(t, db, root, &sealed, idle);
        }

        // The remote-like store; its slow baselines once.
        let mut env = sealed.to_vec();
        if run == 0 {
            env.push(("ROCKSNAP_BENCH_BASELINES", "1"));
        }
        if !baseline_first {
            env.push(("ROCKSNAP_BENCH_SEALED_FIRST", "1"));
        }
        let m = run_child("remote", db, &repo, &env);
        // (group, row, the child's key for its seconds, and for its CPU time).
        const REMOTE_ROWS: [(&str, &str, &str, Option<&str>); 9] = [
            (
                "remote-like store",
                "rocksnap snapshot",
                "rocksnap",
                Some("rocksnap_cpu"),
            ),
            (
                "remote-like store",
                "rocksnap snapshot, encrypted",
                "rocksnap_encrypted",
                None,
            ),
            (
                "remote-like store",
                "sequential 5 MiB parts, one file at a time",
                "sequential",
                None,
            ),
            (
                "remote-like store",
                "object_store BufWriter per file",
                "bufwriter",
                None,
            ),
            ("remote-like store", LOWER_BOUND, "lower_bound", None),
            (
                "remote-like restore",
                "rocksnap restore",
                "restore",
                Some("restore_cpu"),
            ),
            (
                "remote-like restore",
                "rocksnap restore, encrypted",
                "restore_encrypted",
                None,
            ),
            (
                "remote-like restore",
                "sequential download",
                "sequential_download",
                None,
            ),
            (
                "remote-like restore",
                LOWER_BOUND,
                "restore_lower_bound",
                None,
            ),
        ];
        for (group, name, key, cpu_key) in REMOTE_ROWS {
            // The slow baselines are run once: absent from the other runs.
            if let Some(s) = m[key].as_f64() {
                let cpu = cpu_key.and_then(|k| cpu(&m[k]));
                t.add(group, name, Duration::from_secs_f64(s), stored, cpu);
            }
        }

        // Incremental after 1% new writes (format V2).
        let v = run_child("incremental", db, &repo, &[]);
        let full = v["full_uploaded"].as_u64().unwrap();
        t.add(
            "incremental (V2)",
            "full snapshot",
            Duration::from_secs_f64(v["full_seconds"].as_f64().unwrap()),
            full,
            None,
        );
        t.add(
            "incremental (V2)",
            "incremental after 1% new writes",
            Duration::from_secs_f64(v["inc_seconds"].as_f64().unwrap()),
            v["inc_uploaded"].as_u64().unwrap(),
            None,
        );
        let _ = std::fs::remove_dir_all(&repo);

        // The rate limit.
        let limited = run_child(
            "snapshot",
            db,
            &repo,
            &[("ROCKSNAP_BENCH_RATE", &(rate_mib << 20).to_string())],
        );
        t.add(
            &format!("rate limit {rate_mib} MiB/s"),
            "rocksnap snapshot",
            secs(&limited),
            limited["bytes"].as_u64().unwrap(),
            None,
        );
        std::fs::remove_dir_all(&repo).unwrap();
    }
}

/// The local snapshot and restore, encrypted.
fn encrypted_local(t: &mut Table, db: &Path, root: &Path, sealed: &[(&str, &str)], idle: &Value) {
    let repo = root.join("repo");
    let restored = root.join("restored");
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_dir_all(&restored);
    let snap = run_child("snapshot", db, &repo, sealed);
    let stored = snap["bytes"].as_u64().unwrap();
    t.add(
        "local",
        "rocksnap snapshot, encrypted",
        secs(&snap),
        stored,
        cpu(&snap),
    );
    t.mem(
        "encrypted snapshot peak RSS over idle, S",
        rss(&snap).saturating_sub(rss(idle)),
    );
    let r = run_child("restore", &restored, &repo, sealed);
    t.add(
        "local restore",
        "rocksnap restore, encrypted",
        secs(&r),
        stored,
        cpu(&r),
    );
    t.mem(
        "encrypted restore peak RSS over idle, S",
        rss(&r).saturating_sub(rss(idle)),
    );
    std::fs::remove_dir_all(&restored).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
}

/// What a snapshot process of `db` holds beside its parts: the peak over
/// `idle` of the same snapshot with 5 MiB parts instead of 8, less what
/// those parts can hold (5 MiB × (parts in flight + 1)); one figure for
/// each of `runs` runs, at least [`OVERHEAD_RUNS`].
pub fn fixed_overheads(db: &Path, root: &Path, idle: &Value, runs: usize) -> Vec<u64> {
    let parts = (5 * (parts_in_flight() as u64 + 1)) << 20;
    let repo = root.join("repo");
    (0..runs.max(OVERHEAD_RUNS))
        .map(|_| {
            let _ = std::fs::remove_dir_all(&repo);
            let s = run_child("snapshot", db, &repo, &[("ROCKSNAP_BENCH_PART_MIB", "5")]);
            let _ = std::fs::remove_dir_all(&repo);
            rss(&s).saturating_sub(rss(idle)).saturating_sub(parts)
        })
        .collect()
}

/// The fewest runs of the 5 MiB-part snapshot that measure a dataset's
/// fixed overhead.
pub const OVERHEAD_RUNS: usize = 3;

/// A dataset's fixed overhead, for rows that take the largest of `runs`
/// runs: the largest of as many of [`fixed_overheads`]. A run whose store
/// kept up with its reads never filled every part (its peak then falls a
/// part or two short, and the overhead it implies to zero), so only the
/// runs that did fill them measure it, and the largest is one of those.
/// The overhead is the largest of at least as many runs as the row, since
/// the largest of five runs tends to be above the largest of three of the
/// same process (by 1–2 MiB here, threads and allocator arenas coming and
/// going).
pub fn fixed_overhead(db: &Path, root: &Path, idle: &Value, runs: usize) -> u64 {
    fixed_overheads(db, root, idle, runs)
        .into_iter()
        .max()
        .unwrap_or(0)
}

/// CPU seconds, user and system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    fn read(who: i32) -> Cpu {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        #[allow(unsafe_code)]
        let usage = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            u
        };
        let secs = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        Cpu {
            user: secs(usage.ru_utime),
            sys: secs(usage.ru_stime),
        }
    }

    /// This process's CPU time so far.
    pub fn this_process() -> Cpu {
        Cpu::read(libc::RUSAGE_SELF)
    }

    /// CPU time of the child processes waited for so far.
    pub fn children() -> Cpu {
        Cpu::read(libc::RUSAGE_CHILDREN)
    }

    pub fn since(self, start: Cpu) -> Cpu {
        Cpu {
            user: self.user - start.user,
            sys: self.sys - start.sys,
        }
    }

    pub fn json(self) -> Value {
        json!({"user": self.user, "sys": self.sys})
    }
}

/// The CPU time a child reported (`{"cpu": {"user", "sys"}}` or the object itself).
pub fn cpu(v: &Value) -> Option<Cpu> {
    let c = v.get("cpu").unwrap_or(v);
    Some(Cpu {
        user: c["user"].as_f64()?,
        sys: c["sys"].as_f64()?,
    })
}

pub fn secs(v: &Value) -> Duration {
    Duration::from_secs_f64(v["seconds"].as_f64().unwrap())
}

pub fn rss(v: &Value) -> u64 {
    v["peak_rss"].as_u64().unwrap()
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// `cp -r src dest`, then `sync` of every copied file (rocksnap makes every
/// file it writes durable, so the fair baseline does too). Returns the time
/// of the copy alone, of the copy with the sync, and the CPU time of both
/// commands; removes `dest`.
fn copy_tree(src: &Path, dest: &Path) -> (Duration, Duration, Cpu) {
    let _ = std::fs::remove_dir_all(dest);
    quiet_disk();
    let cpu = Cpu::children();
    let t = Instant::now();
    let status = Command::new("cp")
        .arg("-r")
        .arg(src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r failed");
    let copied = t.elapsed();
    let mut files = Vec::new();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            files.push(p);
        }
    }
    let status = Command::new("sync")
        .args(&files)
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "sync failed");
    let synced = t.elapsed();
    let cpu = Cpu::children().since(cpu);
    std::fs::remove_dir_all(dest).unwrap();
    (copied, synced, cpu)
}

/// Writes back whatever is dirty, and lets the filesystem finish what the
/// last removal started (ext4 mounted with `discard` trims at its next
/// commit), so that no measurement pays for the one before it.
pub fn quiet_disk() {
    let status = Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed");
}

/// Runs one measurement in a child process of this benchmark; its JSON.
pub fn run_child(mode: &str, db: &Path, repo: &Path, env: &[(&str, &str)]) -> Value {
    quiet_disk();
    // Every child but a restore (which writes the database) and an idle one
    // (which only opens it, and whose page cache is not its memory) reads
    // the database.
    if !matches!(mode, "restore" | "idle") && db.is_dir() {
        curves::warm(db);
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("ROCKSNAP_BENCH_CHILD", mode)
        .env("ROCKSNAP_BENCH_DB", db)
        .env("ROCKSNAP_BENCH_REPO", repo);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Its logs (`ROCKSNAP_BENCH_LOG`) and progress go straight to stderr.
    let out = cmd.stderr(std::process::Stdio::inherit()).output().unwrap();
    assert!(
        out.status.success(),
        "child {mode} failed ({}); its stderr is above",
        out.status
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for peak in v["part_peaks"].as_array().into_iter().flatten() {
        let (bytes, bound) = (
            peak["bytes"].as_u64().unwrap(),
            peak["bound"].as_u64().unwrap(),
        );
        PART_PEAKS.snapshots.fetch_add(1, Ordering::Relaxed);
        if bytes > bound {
            PART_PEAKS.over.fetch_add(1, Ordering::Relaxed);
        }
        // In thousandths of the bound, so that runs of any bound compare.
        PART_PEAKS
            .most
            .fetch_max(bytes * 1000 / bound.max(1), Ordering::Relaxed);
    }
    v
}

/// What the children's own counts say of their parts, over the whole run:
/// every snapshot made, those whose parts held more than their bound at
/// once, and the most any held, in thousandths of its bound.
pub struct PartPeaks {
    snapshots: AtomicU64,
    over: AtomicU64,
    most: AtomicU64,
}

pub static PART_PEAKS: PartPeaks = PartPeaks {
    snapshots: AtomicU64::new(0),
    over: AtomicU64::new(0),
    most: AtomicU64::new(0),
};

impl PartPeaks {
    /// Prints and checks the run's count.
    pub fn check(&self, checks: &mut Checks) {
        let (n, over, most) = (
            self.snapshots.load(Ordering::Relaxed),
            self.over.load(Ordering::Relaxed),
            self.most.load(Ordering::Relaxed),
        );
        println!(
            "
parts held at once, by the pipeline's own count: {n} snapshots in child processes; the most any held, {:.1}% of its bound",
            most as f64 / 10.0
        );
        if n == 0 {
            // No count to hold to the bound: the check cannot pass.
            checks.missing("parts held at once, by the pipeline's own count");
            return;
        }
        checks.at_most(
            &format!("snapshots whose parts held more than their bound at once (of {n})"),
            over as f64,
            0.0,
        );
    }
}

/// How far a peak resident size (`VmHWM`) may be off: the kernel counts a
/// process's resident pages per CPU and folds them into the total in
/// batches of `max(32, 2 × CPUs)` pages, for each of its three counters
/// (anonymous, file, shared memory), and the high-water mark is taken from
/// that folded total.
pub fn rss_resolution() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // SAFETY: sysconf only reads a system parameter.
    #[allow(unsafe_code)]
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    3 * cpus * (2 * cpus).max(32) * page
}

/// A database of `partitions` column families holding `bytes` of
/// incompressible values in all, built once under `root` and kept, each
/// column family compacted whole, so that no compaction runs (and writes)
/// while it is measured.
pub fn dataset(root: &Path, bytes: u64, partitions: u64) -> PathBuf {
    let db = root.join(format!("db-{bytes}-{partitions}"));
    let done = db.with_extension("complete");
    match std::fs::read(&done) {
        Ok(marker) if marker == b"compacted" => return db,
        Ok(_) => {
            compact(&db);
            std::fs::write(done, b"compacted").unwrap();
            return db;
        }
        Err(_) => {}
    }
    let _ = std::fs::remove_dir_all(&db);
    eprintln!(
        "building a {} MiB dataset in {partitions} partitions at {} (once)",
        bytes >> 20,
        db.display()
    );
    let t = Instant::now();
    let ids: Vec<PartitionId> = (0..partitions).map(PartitionId).collect();
    let store = PartitionStore::open(&db, &ids).unwrap();
    let per_partition = bytes / partitions / VALUE as u64;
    std::thread::scope(|s| {
        // Two writers: the values are random, and drawing them is the cost.
        for half in 0..2 {
            let (store, ids) = (&store, &ids);
            s.spawn(move || {
                let mut rng = rand::rng();
                for &p in ids.iter().skip(half).step_by(2) {
                    let mut i = 0u64;
                    let mut lsn = 0;
                    while i < per_partition {
                        lsn += 1;
                        let batch: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + 256).min(per_partition))
                            .map(|k| {
                                let mut v = vec![0u8; VALUE];
                                rand::RngCore::fill_bytes(&mut rng, &mut v);
                                (format!("key-{k:012}").into_bytes(), v)
                            })
                            .collect();
                        i += batch.len() as u64;
                        store.apply(p, Lsn(lsn), batch).unwrap();
                    }
                    let cf = store
                        .db()
                        .cf_handle(&rocksnap::partition::cf_name(p))
                        .unwrap();
                    store.db().flush_cf(&cf).unwrap();
                }
            });
        }
    });
    drop(store);
    compact(&db);
    std::fs::write(done, b"compacted").unwrap();
    eprintln!("  built in {:.0} s", t.elapsed().as_secs_f64());
    db
}

/// Every column family of `db` compacted whole.
fn compact(db: &Path) {
    eprintln!("compacting {} (once)", db.display());
    let store = PartitionStore::open_existing(db).unwrap();
    for name in rocksdb::DB::list_cf(&rocksdb::Options::default(), db).unwrap() {
        let cf = store.db().cf_handle(&name).unwrap();
        store
            .db()
            .compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
    }
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Parts in flight of every local snapshot child: the pipeline's default,
/// or `ROCKSNAP_BENCH_IN_FLIGHT`.
pub fn parts_in_flight() -> usize {
    env_or(
        "ROCKSNAP_BENCH_IN_FLIGHT",
        PipelineConfig::default().max_parts_in_flight,
    )
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
