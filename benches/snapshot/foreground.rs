//! Foreground impact: a node's writes while a snapshot runs beside them.
//!
//! A writer thread applies one 1 KiB record every millisecond, to each
//! partition in turn, as a node's log replay does; its latency is taken
//! from the moment the write was due (so a write that waits behind a slow
//! one counts its wait), and the write's own time apart (from the moment
//! the thread ran again). First with nothing else running, then while a
//! snapshot of every partition runs with the default settings, then while
//! one runs under the rate limit, then with the default settings on a
//! background runtime: one whose threads (the pipeline's tasks and its
//! blocking reads and writes) run at `SCHED_IDLE`, as a host may start
//! the supervisor on, so that any of its own threads that wakes takes the
//! core at once.

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
const BACKGROUND: usize = 7;

pub async fn child(dataset: &Path, repo: &Path) -> Value {
    let work = repo.with_extension("db");
    let _ = std::fs::remove_dir_all(repo);
    let store = checkpoint(dataset, &work);
    let ids = partition_ids(&store);
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // (phase, since due, the write alone)
    let latencies: Arc<Mutex<Vec<(usize, Duration, Duration)>>> = Arc::default();
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
                let ran = Instant::now();
                // The phase the write was due in: one that waits past the
                // end of a snapshot still counts against it.
                let p = phase.load(Ordering::Relaxed);
                let i = (n as usize) % ids.len();
                lsns[i] += 1;
                let key = format!("fg-{n:012}");
                store
                    .apply(ids[i], Lsn(lsns[i]), [(key.as_bytes(), &value[..])])
                    .unwrap();
                let write = ran.elapsed();
                latencies.lock().unwrap().push((p, due.elapsed(), write));
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
    pause(500).await;
    let background = background_runtime();
    phase.store(BACKGROUND, Ordering::Relaxed);
    let (background_s, _) = background
        .spawn(snapshot_all(
            store.clone(),
            local(),
            PipelineConfig::default(),
        ))
        .await
        .unwrap();
    phase.store(BACKGROUND + 1, Ordering::Relaxed);
    background.shutdown_background();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(repo);
    let all = latencies.lock().unwrap().clone();
    let sorted = |p: usize, f: fn(&(usize, Duration, Duration)) -> Duration| {
        let mut v: Vec<f64> = all
            .iter()
            .filter(|w| w.0 == p)
            .map(|w| f(w).as_secs_f64() * 1e6)
            .collect();
        assert!(!v.is_empty(), "no write in phase {p}");
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let at = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let stats = |p: usize| {
        let v = sorted(p, |w| w.1);
        let write = sorted(p, |w| w.2);
        json!({
            "writes": v.len(), "p50_us": at(&v, 0.5), "p99_us": at(&v, 0.99),
            "max_us": v[v.len() - 1], "write_p99_us": at(&write, 0.99),
        })
    };
    json!({
        "seconds": 0.0, "bytes": 0,
        "quiet": stats(QUIET),
        "snapshot": stats(SNAPSHOT), "snapshot_seconds": default_s,
        "limited": stats(LIMITED), "limited_seconds": limited_s,
        "background": stats(BACKGROUND), "background_seconds": background_s,
    })
}

/// A runtime whose threads, its workers and its blocking pool alike, run at
/// `SCHED_IDLE`: what a host that wants its own threads served first starts
/// the supervisor on. A thread at that policy runs only when no other wants
/// the core, and is preempted as soon as one does.
fn background_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("background")
        .on_thread_start(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the calling thread's own policy, with a valid
            // parameter that outlives the call; no memory is shared.
            #[allow(unsafe_code)]
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        })
        .build()
        .expect("a runtime")
}

pub fn report(v: &Value, rate_mib: u64, checks: &mut Checks) -> Value {
    println!("\nforeground: a write of 1 KiB every ms while a snapshot of the dataset runs\n");
    println!(
        "{:<48} {:>7} {:>9} {:>9} {:>10} {:>15} {:>11}",
        "", "writes", "p50 µs", "p99 µs", "max µs", "write p99 µs", "snapshot s"
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
        (
            "during a snapshot, default, SCHED_IDLE runtime",
            "background",
            v["background_seconds"].as_f64(),
        ),
    ] {
        let s = &v[key];
        println!(
            "{name:<48} {:>7} {:>9.0} {:>9.0} {:>10.0} {:>15.0} {:>11}",
            s["writes"],
            s["p50_us"].as_f64().unwrap(),
            s["p99_us"].as_f64().unwrap(),
            s["max_us"].as_f64().unwrap(),
            s["write_p99_us"].as_f64().unwrap(),
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
    checks.at_most(
        "foreground: write p99 during a snapshot ÷ quiet p99 (SCHED_IDLE runtime)",
        v["background"]["p99_us"].as_f64().unwrap() / quiet_p99,
        1.2,
    );
    v.clone()
}
