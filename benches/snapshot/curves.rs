//! Cost curves: how a snapshot's time and memory grow with the number of
//! partitions, with one partition's size, and with the part size and the
//! parts in flight.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;
use rocksnap::{PartitionId, PartitionStore, PipelineConfig};
use serde_json::{json, Value};

use crate::child::snapshot_into_model;
use crate::plot::{self, Axis, Series};
use crate::table::Checks;
use crate::{dataset, env_or, fixed_overhead, median, mib, model, rss, run_child, secs};

const GIB: u64 = 1 << 30;

/// Runs per point of the partitions and size curves.
fn curve_runs() -> usize {
    env_or("ROCKSNAP_BENCH_CURVE_RUNS", 5).max(1)
}

/// 1 to 256 partitions holding `bytes` together, snapshotted at once by one
/// supervisor (a node's export concurrency): into a local directory (time,
/// peak memory) and into the remote-like store (time, the model's bound).
///
/// Each run visits every count in turn, as the comparisons alternate their
/// rows: a stretch of the machine's noise (another tenant, reclaim) then
/// falls on every count alike instead of on whichever it was measuring.
pub fn partitions(root: &Path, out: &Path, bytes: u64, bound: u64, checks: &mut Checks) -> Value {
    let runs = curve_runs();
    let counts = [1u64, 4, 16, 64, 256];
    let dbs: Vec<_> = counts.iter().map(|&n| dataset(root, bytes, n)).collect();
    settle();
    let repo = root.join("repo");
    let (mut local, mut remote) = (
        vec![Vec::new(); counts.len()],
        vec![Vec::new(); counts.len()],
    );
    let mut rss_over = vec![0u64; counts.len()];
    let mut remote_bound = vec![0.0; counts.len()];
    let idle: Vec<Value> = dbs
        .iter()
        .map(|db| run_child("idle", db, &root.join("unused"), &[]))
        .collect();
    for run in 0..runs {
        eprintln!("partitions curve: run {} of {runs}", run + 1);
        for (i, db) in dbs.iter().enumerate() {
            let _ = std::fs::remove_dir_all(&repo);
            let s = run_child("snapshot", db, &repo, &[]);
            local[i].push(secs(&s).as_secs_f64());
            rss_over[i] = rss_over[i].max(rss(&s).saturating_sub(rss(&idle[i])));
            std::fs::remove_dir_all(&repo).unwrap();
            let r = run_child("remote-snapshot", db, &repo, &[]);
            remote[i].push(secs(&r).as_secs_f64());
            remote_bound[i] = r["lower_bound"].as_f64().unwrap();
        }
    }
    let mut rows = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        rows.push((
            n,
            median(std::mem::take(&mut local[i])),
            median(std::mem::take(&mut remote[i])),
            remote_bound[i],
            rss_over[i],
            fixed_overhead(&dbs[i], root, &idle[i], runs),
        ));
    }
    let at = |n: u64| rows.iter().find(|r| r.0 == n).unwrap();
    let (base_local, base_remote) = (at(4).1, at(4).2);
    println!(
        "\npartitions: {} MiB in all, snapshotted at once (median of {runs}; ratios to 4 partitions)\n",
        bytes >> 20
    );
    println!(
        "{:>10} {:>9} {:>6} {:>13} {:>6} {:>13} {:>17} {:>13}",
        "partitions",
        "local s",
        "×4",
        "remote-like s",
        "×4",
        "model bound s",
        "RSS over idle MiB",
        "overhead MiB"
    );
    let mut json_rows = Vec::new();
    for &(n, l, r, b, m, o) in &rows {
        println!(
            "{n:>10} {l:>9.3} {:>6.2} {r:>13.3} {:>6.2} {b:>13.3} {:>17.0} {:>13.0}",
            l / base_local,
            r / base_remote,
            mib(m),
            mib(o)
        );
        json_rows.push(json!({
            "partitions": n, "local_seconds": l, "local_ratio_to_4": l / base_local,
            "remote_seconds": r, "remote_ratio_to_4": r / base_remote,
            "remote_lower_bound": b, "peak_rss_over_idle": m, "fixed_overhead": o,
        }));
    }
    checks.at_most(
        "partitions: 64 ÷ 4 partitions, local snapshot time",
        at(64).1 / base_local,
        1.3,
    );
    checks.at_most(
        "partitions: 64 ÷ 4 partitions, remote-like snapshot time",
        at(64).2 / base_remote,
        1.3,
    );
    for &(n, _, _, _, m, o) in &rows {
        checks.memory(&format!("partitions: {n}, peak RSS over idle"), m, o, bound);
    }
    let xs: Vec<f64> = rows.iter().map(|r| r.0 as f64).collect();
    plot::lines(
        &out.join("partitions.svg"),
        &format!("Snapshot of {} MiB split in N partitions", bytes >> 20),
        Axis::log("partitions"),
        Axis::linear("seconds"),
        &[
            Series::new("local directory", &xs, rows.iter().map(|r| r.1)),
            Series::new("remote-like store", &xs, rows.iter().map(|r| r.2)),
            Series::new("model lower bound", &xs, rows.iter().map(|r| r.3)),
        ],
    );
    json!({"runs": runs, "rows": json_rows})
}

/// One partition of 1, 2, 4, 8 GiB (or `ROCKSNAP_BENCH_SIZES_GIB`) into a
/// local directory: time per GiB and peak memory, beside the time per GiB
/// of a direct copy of the same files (`disk::copy`). A size the disk
/// cannot hold twice over (dataset and snapshot) is skipped, and said so.
pub fn size(root: &Path, out: &Path, bound: u64, checks: &mut Checks) -> Value {
    let sizes: Vec<u64> = std::env::var("ROCKSNAP_BENCH_SIZES_GIB")
        .unwrap_or_else(|_| "1,2,4,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs = curve_runs();
    let mut rows: Vec<SizeRow> = Vec::new();
    let mut skipped = Vec::new();
    // Every dataset is built first, so that no measurement meets another
    // one's writeback.
    let mut built = Vec::new();
    for &gib in &sizes {
        let path = root.join(format!("db-{}-1", gib * GIB));
        let have = path.with_extension("complete").exists();
        let largest = sizes.iter().max().copied().unwrap_or(gib) * GIB;
        // Building writes it twice (the values, then their compaction).
        let need = if have { 0 } else { 2 * gib * GIB } + largest + GIB;
        if free_bytes(root) < need {
            eprintln!("size curve: {gib} GiB skipped, the disk has too little room");
            skipped.push(gib);
            continue;
        }
        built.push((gib, dataset(root, gib * GIB, 1)));
    }
    // Each run visits every size in turn, as the partitions curve does: a
    // noisy stretch of the machine then falls on every size alike, not on
    // whichever was being measured (run back to back, the same size
    // differed by a quarter between two stretches of the same hour). Each
    // measurement reads its dataset into the page cache just before.
    settle();
    let idle: Vec<Value> = built
        .iter()
        .map(|(_, db)| run_child("idle", db, &root.join("unused"), &[]))
        .collect();
    let overheads: Vec<u64> = built
        .iter()
        .zip(&idle)
        .map(|((_, db), idle)| fixed_overhead(db, root, idle, runs))
        .collect();
    // The same files copied with nothing but the disk in the way
    // (`disk::copy`), alternating with the snapshot: what the disk itself
    // does with each size, so that a row off the median can be read
    // against the disk's own row. (Direct `dd` streams of zeros here took
    // 0.77–0.83 s per GiB at 1 GiB and 0.58–0.68 s at 8 GiB; the copy's
    // rows have spread over 0.76–1.03, 0.89–1.07 and 0.90–1.05 of their
    // median in three runs, falling with size in one and not in others.)
    let exports: Vec<(PathBuf, PathBuf)> = built
        .iter()
        .map(|(gib, db)| {
            let export = root.join(format!("export-{gib}"));
            let _ = std::fs::remove_dir_all(&export);
            std::fs::create_dir_all(&export).unwrap();
            let store = PartitionStore::open_existing(db).unwrap();
            let cf = rocksnap::partition::cf_name(PartitionId(0));
            let files = export.join(&cf);
            store.export_column_family(&cf, &files).unwrap();
            (export, files)
        })
        .collect();
    let repo = root.join("repo");
    let mut samples = vec![Vec::new(); built.len()];
    let mut copies: Vec<Vec<crate::disk::Copied>> = built.iter().map(|_| Vec::new()).collect();
    let mut buffered = false;
    for run in 0..runs {
        eprintln!("size curve: run {} of {runs}", run + 1);
        // Each run starts one size further on, so that no size always
        // follows the same one (the largest, whose repository and copy were
        // just deleted) or always opens a run.
        for i in (0..built.len()).map(|k| (k + run) % built.len()) {
            let db = &built[i].1;
            let copy = || {
                warm(db);
                crate::quiet_disk();
                let dest = root.join("copy");
                let copied = crate::disk::copy(&exports[i].1, &dest);
                std::fs::remove_dir_all(&dest).unwrap();
                copied
            };
            let baseline_first = run % 2 == 0;
            if baseline_first {
                copies[i].push(copy());
            }
            let _ = std::fs::remove_dir_all(&repo);
            samples[i].push(run_child("snapshot", db, &repo, &[]));
            std::fs::remove_dir_all(&repo).unwrap();
            if !baseline_first {
                copies[i].push(copy());
            }
        }
    }
    for (export, _) in &exports {
        std::fs::remove_dir_all(export).unwrap();
    }
    for (i, (gib, _)) in built.iter().enumerate() {
        let samples = &mut samples[i];
        samples.sort_by_key(secs);
        let s = &samples[samples.len() / 2];
        let stored = s["bytes"].as_u64().unwrap() as f64 / GIB as f64;
        let cpu = crate::cpu(s).expect("the snapshot child reports its CPU");
        let peak = samples.iter().map(rss).max().unwrap();
        let copy = median(
            copies[i]
                .iter()
                .map(|c| c.took.as_secs_f64() * GIB as f64 / c.bytes as f64)
                .collect(),
        );
        buffered |= copies[i].iter().any(|c| !c.direct);
        rows.push(SizeRow {
            gib: *gib,
            seconds: secs(s).as_secs_f64(),
            per_gib: secs(s).as_secs_f64() / stored,
            copy_per_gib: copy,
            rss_over_idle: peak.saturating_sub(rss(&idle[i])),
            overhead: overheads[i],
            user_per_gib: cpu.user / stored,
            sys_per_gib: cpu.sys / stored,
        });
    }
    if rows.is_empty() {
        return json!({"skipped_gib": skipped});
    }
    let reference = median(rows.iter().map(|r| r.per_gib).collect());
    let copy_reference = median(rows.iter().map(|r| r.copy_per_gib).collect());
    println!("\nsize: one partition, local directory (median of {runs}), beside a direct copy of the same files\n");
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>13} {:>8} {:>9} {:>17} {:>13} {:>10} {:>10}",
        "GiB",
        "seconds",
        "s/GiB",
        "÷median",
        "copy s/GiB",
        "÷median",
        "copy÷snap",
        "RSS over idle MiB",
        "overhead MiB",
        "user s/GiB",
        "sys s/GiB"
    );
    let mut json_rows = Vec::new();
    for r in &rows {
        println!(
            "{:>6} {:>9.3} {:>8.3} {:>8.2} {:>13.3} {:>8.2} {:>9.2} {:>17.0} {:>13.0} {:>10.3} {:>10.3}",
            r.gib,
            r.seconds,
            r.per_gib,
            r.per_gib / reference,
            r.copy_per_gib,
            r.copy_per_gib / copy_reference,
            r.copy_per_gib / r.per_gib,
            mib(r.rss_over_idle),
            mib(r.overhead),
            r.user_per_gib,
            r.sys_per_gib,
        );
        json_rows.push(json!({
            "gib": r.gib, "seconds": r.seconds, "seconds_per_gib": r.per_gib,
            "ratio_to_median": r.per_gib / reference,
            "copy_seconds_per_gib": r.copy_per_gib,
            "copy_ratio_to_median": r.copy_per_gib / copy_reference,
            "copy_over_snapshot": r.copy_per_gib / r.per_gib,
            "peak_rss_over_idle": r.rss_over_idle, "fixed_overhead": r.overhead,
            "user_cpu_per_gib": r.user_per_gib, "system_cpu_per_gib": r.sys_per_gib,
        }));
        checks.within(
            &format!("size: {} GiB, time per GiB ÷ median of sizes", r.gib),
            r.per_gib / reference,
            0.9,
            1.1,
        );
    }
    if !skipped.is_empty() {
        println!("skipped for lack of disk: {skipped:?} GiB");
    }
    if buffered {
        println!("the filesystem refused O_DIRECT: the copy's writes went through the page cache");
    }
    for r in &rows {
        checks.memory(
            &format!("size: {} GiB, peak RSS over idle", r.gib),
            r.rss_over_idle,
            r.overhead,
            bound,
        );
    }
    let xs: Vec<f64> = rows.iter().map(|r| r.gib as f64).collect();
    plot::lines(
        &out.join("size.svg"),
        "One partition into a local directory: time per GiB",
        Axis::log("GiB"),
        Axis::linear("seconds per GiB"),
        &[
            Series::new("rocksnap snapshot", &xs, rows.iter().map(|r| r.per_gib)),
            Series::new(
                "direct copy of the same files",
                &xs,
                rows.iter().map(|r| r.copy_per_gib),
            ),
        ],
    );
    json!({"rows": json_rows, "skipped_gib": skipped, "copy_direct": !buffered})
}

/// One size of the size curve: the snapshot's median run, and the synced
/// copy's.
struct SizeRow {
    gib: u64,
    seconds: f64,
    per_gib: f64,
    copy_per_gib: f64,
    rss_over_idle: u64,
    overhead: u64,
    user_per_gib: f64,
    sys_per_gib: f64,
}

/// Writes back everything dirty (with `ROCKSNAP_BENCH_DROP_CACHES`, then
/// empties the page cache). What a measurement reads it warms itself
/// ([`warm`]).
pub fn settle() {
    crate::quiet_disk();
    if std::env::var_os("ROCKSNAP_BENCH_DROP_CACHES").is_some() {
        std::fs::write("/proc/sys/vm/drop_caches", "1")
            .expect("ROCKSNAP_BENCH_DROP_CACHES needs root");
    }
}

/// Reads every file of `db` once, so that what reads it next finds it in
/// the page cache. Called again just before each measurement that reads a
/// database: a machine may page out page cache that went unread for a
/// while (this one runs a DAMON `pageout` scheme on pages a minute cold),
/// and a dataset read at a curve's start could otherwise be back on disk,
/// in part, by its turn: the same snapshot then took twice its time.
pub fn warm(db: &Path) {
    for e in std::fs::read_dir(db).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            let mut f = std::fs::File::open(&path).unwrap();
            std::io::copy(&mut f, &mut std::io::sink()).unwrap();
        }
    }
}

/// Free bytes on the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "df failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the bytes available")
}

const PART_SIZES_MIB: [usize; 4] = [5, 8, 16, 32];
const IN_FLIGHT: [usize; 3] = [4, 8, 16];

/// The child of [`grid`]: every part size × parts in flight, one snapshot
/// of the dataset each into a fresh remote-like store.
pub async fn grid_child(db: &Path) -> Value {
    let partitions = PartitionStore::open_existing(db).unwrap();
    let arena = crate::child::arena_for(db, 1);
    let mut rows = Vec::new();
    for part_mib in PART_SIZES_MIB {
        for in_flight in IN_FLIGHT {
            let config = PipelineConfig {
                part_size: part_mib << 20,
                max_parts_in_flight: in_flight,
                ..PipelineConfig::default()
            };
            let store: Arc<dyn ObjectStore> = Arc::new(model::RemoteModel::with_arena(arena));
            let (seconds, _, bound) =
                snapshot_into_model(&store, "repo", partitions.clone(), config).await;
            rows.push(json!({
                "part_mib": part_mib, "in_flight": in_flight, "seconds": seconds,
                "lower_bound": bound, "memory_bound_mib": part_mib * (in_flight + 1),
            }));
        }
    }
    json!({"seconds": 0.0, "bytes": 0, "rows": rows})
}

/// Part size × parts in flight on the remote-like store: the time of one
/// snapshot of the dataset, its bound, and the memory each setting needs.
pub fn grid(v: &Value, out: &Path) -> Value {
    let rows = v["rows"].as_array().unwrap().clone();
    println!("\npart size × parts in flight, remote-like store (one snapshot each)\n");
    println!(
        "{:>9} {:>9} {:>9} {:>13} {:>8} {:>18}",
        "part MiB", "in flight", "seconds", "model bound s", "÷bound", "memory bound MiB"
    );
    for r in &rows {
        let (s, b) = (
            r["seconds"].as_f64().unwrap(),
            r["lower_bound"].as_f64().unwrap(),
        );
        println!(
            "{:>9} {:>9} {s:>9.3} {b:>13.3} {:>8.2} {:>18}",
            r["part_mib"].as_u64().unwrap(),
            r["in_flight"].as_u64().unwrap(),
            s / b,
            r["memory_bound_mib"].as_u64().unwrap()
        );
    }
    let series: Vec<Series> = PART_SIZES_MIB
        .iter()
        .map(|&p| {
            let of_part: Vec<&Value> = rows.iter().filter(|r| r["part_mib"] == p).collect();
            let xs: Vec<f64> = of_part
                .iter()
                .map(|r| r["in_flight"].as_f64().unwrap())
                .collect();
            Series::new(
                &format!("{p} MiB parts"),
                &xs,
                of_part.iter().map(|r| r["seconds"].as_f64().unwrap()),
            )
        })
        .collect();
    plot::lines(
        &out.join("parts.svg"),
        "Remote-like snapshot of the dataset: part size × parts in flight",
        Axis::log("parts in flight"),
        Axis::linear("seconds"),
        &series,
    );
    json!({"rows": rows})
}
