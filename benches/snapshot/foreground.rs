//! Foreground impact: a node's writes while a snapshot runs beside them.
//!
//! A writer thread applies one 1 KiB record every millisecond, to each
//! partition in turn, as a node's log replay does; its latency is taken
//! from the moment the write was due (so a write that waits behind a slow
//! one counts its wait). First with nothing else running, then while a
//! snapshot of every partition runs with the default settings, then while
//! one runs under the rate limit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksnap::{Destination, Lsn, OpenMode, PipelineConfig, Repository};
use serde_json::{json, Value};

use crate::child::{checkpoint, partition_ids, rate_limit, snapshot_all};
use crate::table::Checks;

const EVERY: Duration = Duration::from_millis(1);
/// Phases; writes in the others (warm-up, pauses) are not kept.
const QUIET: usize = 1;
const SNAPSHOT: usize = 3;
const LIMITED: usize = 5;

pub async fn child(dataset: &Path, repo: &Path) -> Value {
    let work = repo.with_extension("db");
    let _ = std::fs::remove_dir_all(repo);
    let store = checkpoint(dataset, &work);
    let ids = partition_ids(&store);
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Mutex<Vec<(usize, Duration)>>> = Arc::default();
    let writer = {
        let (store, phase, stop, latencies) = (
            store.clone(),
            phase.clone(),
            stop.clone(),
            latencies.clone(),
        );
        std::thread::spawn(move || {
            let mut lsns: Vec<u64> = ids
                .iter()
                .map(|p| {
                    store
                        .applied_lsn(&rocksnap::partition::cf_name(*p))
                        .unwrap()
                        .map_or(0, |l| l.0)
                })
                .collect();
            let value = vec![5u8; 1024];
            let mut due = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                due += EVERY;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // The phase the write was due in: one that waits past the
                // end of a snapshot still counts against it.
                let p = phase.load(Ordering::Relaxed);
                let i = (n as usize) % ids.len();
                lsns[i] += 1;
                let key = format!("fg-{n:012}");
                store
                    .apply(ids[i], Lsn(lsns[i]), [(key.as_bytes(), &value[..])])
                    .unwrap();
                latencies.lock().unwrap().push((p, due.elapsed()));
                n += 1;
            }
        })
    };
    let local = || {
        let _ = std::fs::remove_dir_all(repo);
        Repository::new(Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap())
    };
    let pause = |d| tokio::time::sleep(Duration::from_millis(d));
    pause(500).await;
    phase.store(QUIET, Ordering::Relaxed);
    pause(3000).await;
    phase.store(QUIET + 1, Ordering::Relaxed);
    pause(300).await;
    phase.store(SNAPSHOT, Ordering::Relaxed);
    let (default_s, _) = snapshot_all(store.clone(), local(), PipelineConfig::default()).await;
    phase.store(SNAPSHOT + 1, Ordering::Relaxed);
    pause(500).await;
    phase.store(LIMITED, Ordering::Relaxed);
    let limited = PipelineConfig {
        rate_limit: rate_limit(),
        ..PipelineConfig::default()
    };
    let (limited_s, _) = snapshot_all(store.clone(), local(), limited).await;
    phase.store(LIMITED + 1, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(repo);
    let all = latencies.lock().unwrap().clone();
    let stats = |p: usize| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, d)| d.as_secs_f64() * 1e6)
            .collect();
        assert!(!v.is_empty(), "no write in phase {p}");
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        json!({"writes": v.len(), "p50_us": at(0.5), "p99_us": at(0.99), "max_us": v[v.len() - 1]})
    };
    json!({
        "seconds": 0.0, "bytes": 0,
        "quiet": stats(QUIET),
        "snapshot": stats(SNAPSHOT), "snapshot_seconds": default_s,
        "limited": stats(LIMITED), "limited_seconds": limited_s,
    })
}

pub fn report(v: &Value, rate_mib: u64, checks: &mut Checks) -> Value {
    println!("\nforeground: a write of 1 KiB every ms while a snapshot of the dataset runs\n");
    println!(
        "{:<40} {:>7} {:>9} {:>9} {:>10} {:>11}",
        "", "writes", "p50 µs", "p99 µs", "max µs", "snapshot s"
    );
    let quiet_p99 = v["quiet"]["p99_us"].as_f64().unwrap();
    let limited = format!("during a snapshot, rate limit {rate_mib} MiB/s");
    for (name, key, seconds) in [
        ("no snapshot", "quiet", None),
        (
            "during a snapshot, default settings",
            "snapshot",
            v["snapshot_seconds"].as_f64(),
        ),
        (limited.as_str(), "limited", v["limited_seconds"].as_f64()),
    ] {
        let s = &v[key];
        println!(
            "{name:<40} {:>7} {:>9.0} {:>9.0} {:>10.0} {:>11}",
            s["writes"],
            s["p50_us"].as_f64().unwrap(),
            s["p99_us"].as_f64().unwrap(),
            s["max_us"].as_f64().unwrap(),
            seconds.map_or("-".into(), |s| format!("{s:.2}"))
        );
    }
    checks.at_most(
        "foreground: write p99 during a snapshot ÷ quiet p99 (default)",
        v["snapshot"]["p99_us"].as_f64().unwrap() / quiet_p99,
        1.2,
    );
    checks.at_most(
        &format!("foreground: write p99 during a snapshot ÷ quiet p99 ({rate_mib} MiB/s)"),
        v["limited"]["p99_us"].as_f64().unwrap() / quiet_p99,
        1.2,
    );
    v.clone()
}
