//! `cargo bench`: rocksnap against the alternatives and the physical limit,
//! every comparison made in the same run on the same data.
//!
//! Prints one table and writes the same figures as JSON to
//! `<bench dir>/results.json`. Each row is the median of the runs, with min
//! and max. Snapshots and restores that report memory run in child processes
//! of this benchmark, so that each peak resident size is its own.
//!
//! Environment:
//! - `ROCKSNAP_BENCH_BYTES`: dataset size, all partitions together (default 1 GiB);
//! - `ROCKSNAP_BENCH_PARTITIONS`: partitions (default 4);
//! - `ROCKSNAP_BENCH_RUNS`: runs per row (default 3);
//! - `ROCKSNAP_BENCH_DIR`: where datasets are built once and kept, and where
//!   `results.json` goes (default `<target dir>/rocksnap-bench`);
//! - `ROCKSNAP_BENCH_SKIP_4X=1`: skip the memory run on a 4× dataset;
//! - `ROCKSNAP_BENCH_RATE_MIB`: the rate limit checked (default 200 MiB/s).

mod model;

// The binary's allocator tuning, so that child processes measure what it would.
#[path = "../../src/bin/rocksnap/alloc.rs"]
mod alloc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::RngCore;
use rocksnap::format::FormatVersion;
use rocksnap::restore::{RestoreOptions, RestoreTarget};
use rocksnap::{
    Destination, Lsn, OpenMode, PartitionId, PartitionStore, PipelineConfig, Repository,
    SnapshotRequest, Supervisor, SupervisorArgs,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const VALUE: usize = 4096;

fn main() {
    // As the rocksnap binary does; see its documentation.
    alloc::pin_mmap_threshold();
    if let Ok(mode) = std::env::var("ROCKSNAP_BENCH_CHILD") {
        child(&mode);
        return;
    }
    let bytes: u64 = env_or("ROCKSNAP_BENCH_BYTES", 1 << 30);
    let partitions: u64 = env_or("ROCKSNAP_BENCH_PARTITIONS", 4);
    let runs: usize = env_or("ROCKSNAP_BENCH_RUNS", 3).max(1);
    let rate_mib: u64 = env_or("ROCKSNAP_BENCH_RATE_MIB", 200);
    let root = std::env::var_os("ROCKSNAP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("rocksnap-bench"));
    let db = dataset(&root, bytes, partitions);
    let mut t = Table::default();

    let idle = run_child("idle", &db, &root.join("unused"), &[]);
    // One keyring for the encrypted rows, handed to each child.
    let keyring = rocksnap::crypto::Keyring::generate_line("bench");
    let sealed: [(&str, &str); 1] = [("ROCKSNAP_BENCH_KEYRING", &keyring)];
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        // Encrypted and plain alternate which goes first, so that neither
        // always meets the other's page cache.
        let sealed_first = run % 2 == 1;
        if sealed_first {
            encrypted_local(&mut t, &db, &root, &sealed, &idle);
        }
        // Local directory: snapshot against copying the same exported files.
        let export = root.join("export");
        let _ = std::fs::remove_dir_all(&export);
        std::fs::create_dir_all(&export).unwrap();
        {
            let store = PartitionStore::open_existing(&db).unwrap();
            for p in 0..partitions {
                let cf = format!("data-{p}");
                store.export_column_family(&cf, &export.join(&cf)).unwrap();
            }
        }
        let (copied, synced) = copy_tree(&export, &root.join("copy"));
        std::fs::remove_dir_all(&export).unwrap();
        let repo = root.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        let snap = run_child("snapshot", &db, &repo, &[]);
        let stored = snap["bytes"].as_u64().unwrap();
        t.add("local", "rocksnap snapshot", secs(&snap), stored);
        t.add("local", "cp -r of the exported files", copied, stored);
        t.add("local", "cp -r + sync", synced, stored);
        t.mem("snapshot peak RSS over idle, S", rss(&snap) - rss(&idle));

        // Restore every partition, against copying the same snapshot files.
        let folders: Vec<PathBuf> = (0..partitions)
            .flat_map(|p| std::fs::read_dir(repo.join(p.to_string())).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        let copy_src = root.join("copy-src");
        let _ = std::fs::remove_dir_all(&copy_src);
        std::fs::create_dir_all(&copy_src).unwrap();
        for (i, f) in folders.iter().enumerate() {
            std::fs::rename(f, copy_src.join(i.to_string())).unwrap();
        }
        let (copied, synced) = copy_tree(&copy_src, &root.join("copy"));
        for (i, f) in folders.iter().enumerate() {
            std::fs::rename(copy_src.join(i.to_string()), f).unwrap();
        }
        let restored = root.join("restored");
        let _ = std::fs::remove_dir_all(&restored);
        let r = run_child("restore", &restored, &repo, &[]);
        t.add("local restore", "rocksnap restore", secs(&r), stored);
        t.add(
            "local restore",
            "cp -r of the snapshot files",
            copied,
            stored,
        );
        t.add("local restore", "cp -r + sync", synced, stored);
        t.mem("restore peak RSS over idle, S", rss(&r) - rss(&idle));
        std::fs::remove_dir_all(&restored).unwrap();
        std::fs::remove_dir_all(&repo).unwrap();
        if !sealed_first {
            encrypted_local(&mut t, &db, &root, &sealed, &idle);
        }

        // The remote-like store.
        let m = run_child("remote", &db, &repo, &sealed);
        for (name, key) in [
            ("rocksnap snapshot", "rocksnap"),
            ("rocksnap snapshot, encrypted", "rocksnap_encrypted"),
            ("sequential 5 MiB parts, one file at a time", "sequential"),
            ("object_store BufWriter per file", "bufwriter"),
            ("lower bound of the model (8 connections)", "lower_bound"),
        ] {
            t.add(
                "remote-like store",
                name,
                Duration::from_secs_f64(m[key].as_f64().unwrap()),
                stored,
            );
        }
        for (name, key) in [
            ("rocksnap restore", "restore"),
            ("rocksnap restore, encrypted", "restore_encrypted"),
            ("sequential download", "sequential_download"),
            (
                "lower bound of the model (8 connections)",
                "restore_lower_bound",
            ),
        ] {
            t.add(
                "remote-like restore",
                name,
                Duration::from_secs_f64(m[key].as_f64().unwrap()),
                stored,
            );
        }

        // Incremental after 1% new writes (format V2).
        let v = run_child("incremental", &db, &repo, &[]);
        let full = v["full_uploaded"].as_u64().unwrap();
        t.add(
            "incremental (V2)",
            "full snapshot",
            Duration::from_secs_f64(v["full_seconds"].as_f64().unwrap()),
            full,
        );
        t.add(
            "incremental (V2)",
            "incremental after 1% new writes",
            Duration::from_secs_f64(v["inc_seconds"].as_f64().unwrap()),
            v["inc_uploaded"].as_u64().unwrap(),
        );
        let _ = std::fs::remove_dir_all(&repo);

        // The rate limit.
        let limited = run_child(
            "snapshot",
            &db,
            &repo,
            &[("ROCKSNAP_BENCH_RATE", &(rate_mib << 20).to_string())],
        );
        t.add(
            &format!("rate limit {rate_mib} MiB/s"),
            "rocksnap snapshot",
            secs(&limited),
            stored,
        );
        std::fs::remove_dir_all(&repo).unwrap();
    }

    // Memory must not grow with the snapshot's size.
    if std::env::var_os("ROCKSNAP_BENCH_SKIP_4X").is_none() {
        let big = dataset(&root, 4 * bytes, partitions);
        let repo = root.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        // Over an idle process on the same dataset: RocksDB itself holds
        // more for a larger database.
        let big_idle = run_child("idle", &big, &root.join("unused"), &[]);
        let snap = run_child("snapshot", &big, &repo, &[]);
        t.mem(
            "snapshot peak RSS over idle, 4S",
            rss(&snap) - rss(&big_idle),
        );
        std::fs::remove_dir_all(&repo).unwrap();
    }

    let config = PipelineConfig::default();
    let results = t.print(
        &format!(
            "{} MiB in {partitions} partitions, {runs} runs; memory bound part size × (parts in flight + 1) = {} MiB",
            bytes >> 20,
            (config.part_size * (config.max_parts_in_flight + 1)) >> 20
        ),
        rate_mib,
    );
    // Encrypted throughput against plain, same run: plain time ÷ encrypted time.
    let median = |group: &str, name: &str| {
        results["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == group && r["name"] == name)
            .and_then(|r| r["median_seconds"].as_f64())
            .unwrap()
    };
    let mut encryption = serde_json::Map::new();
    println!("\nencrypted throughput ÷ plain throughput (same run):");
    for (group, plain, sealed) in [
        ("local", "rocksnap snapshot", "rocksnap snapshot, encrypted"),
        (
            "local restore",
            "rocksnap restore",
            "rocksnap restore, encrypted",
        ),
        (
            "remote-like store",
            "rocksnap snapshot",
            "rocksnap snapshot, encrypted",
        ),
        (
            "remote-like restore",
            "rocksnap restore",
            "rocksnap restore, encrypted",
        ),
    ] {
        let ratio = median(group, plain) / median(group, sealed);
        println!("  {group:<22} {ratio:>5.2}");
        encryption.insert(group.to_string(), json!(ratio));
    }
    let mut results = results;
    results["encrypted_over_plain"] = Value::Object(encryption);
    let out = root.join("results.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
    println!("\nfigures written to {}", out.display());
}

/// The local snapshot and restore, encrypted.
fn encrypted_local(t: &mut Table, db: &Path, root: &Path, sealed: &[(&str, &str)], idle: &Value) {
    let repo = root.join("repo");
    let restored = root.join("restored");
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_dir_all(&restored);
    let snap = run_child("snapshot", db, &repo, sealed);
    let stored = snap["bytes"].as_u64().unwrap();
    t.add("local", "rocksnap snapshot, encrypted", secs(&snap), stored);
    t.mem(
        "encrypted snapshot peak RSS over idle, S",
        rss(&snap) - rss(idle),
    );
    let r = run_child("restore", &restored, &repo, sealed);
    t.add(
        "local restore",
        "rocksnap restore, encrypted",
        secs(&r),
        stored,
    );
    t.mem(
        "encrypted restore peak RSS over idle, S",
        rss(&r) - rss(idle),
    );
    std::fs::remove_dir_all(&restored).unwrap();
    std::fs::remove_dir_all(&repo).unwrap();
}

/// Rows of the table: group, name, durations, bytes.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String, Vec<Duration>, u64)>,
    memory: Vec<(String, Vec<u64>)>,
}

impl Table {
    fn add(&mut self, group: &str, name: &str, d: Duration, bytes: u64) {
        match self.rows.iter_mut().find(|r| r.0 == group && r.1 == name) {
            Some(r) => {
                r.2.push(d);
                r.3 = bytes;
            }
            None => self.rows.push((group.into(), name.into(), vec![d], bytes)),
        }
    }

    fn mem(&mut self, name: &str, bytes: u64) {
        match self.memory.iter_mut().find(|r| r.0 == name) {
            Some(r) => r.1.push(bytes),
            None => self.memory.push((name.into(), vec![bytes])),
        }
    }

    fn print(&self, title: &str, rate_mib: u64) -> Value {
        println!("\n{title}\n");
        println!(
            "{:<22} {:<44} {:>9} {:>9} {:>9} {:>10} {:>7}",
            "group", "", "median s", "min s", "max s", "MiB/s", "ratio"
        );
        let mut rows = Vec::new();
        let mut first: Option<(String, f64)> = None;
        for (group, name, ds, bytes) in &self.rows {
            let mut s: Vec<f64> = ds.iter().map(|d| d.as_secs_f64()).collect();
            s.sort_by(|a, b| a.total_cmp(b));
            let median = s[s.len() / 2];
            if first.as_ref().is_none_or(|f| &f.0 != group) {
                first = Some((group.clone(), median));
            }
            let ratio = median / first.as_ref().unwrap().1;
            let rate = *bytes as f64 / (1 << 20) as f64 / median;
            println!(
                "{group:<22} {name:<44} {median:>9.3} {:>9.3} {:>9.3} {rate:>10.0} {ratio:>7.2}",
                s[0],
                s[s.len() - 1]
            );
            rows.push(json!({
                "group": group, "name": name, "median_seconds": median, "min_seconds": s[0],
                "max_seconds": s[s.len() - 1], "bytes": bytes, "mib_per_second": rate,
                "ratio_to_first_in_group": ratio,
            }));
        }
        let limited = rows
            .iter()
            .find(|r| r["group"].as_str().unwrap().starts_with("rate limit"));
        let rate_check = limited.map(|r| {
            let measured = r["mib_per_second"].as_f64().unwrap();
            let off = measured / rate_mib as f64 - 1.0;
            println!("\nrate limit: {rate_mib} MiB/s set, {measured:.1} MiB/s measured ({:+.1}%)", off * 100.0);
            json!({"set_mib_per_second": rate_mib, "measured_mib_per_second": measured, "deviation": off})
        });
        let mut memory = Vec::new();
        println!();
        for (name, v) in &self.memory {
            let mut v = v.clone();
            v.sort();
            let median = v[v.len() / 2];
            println!(
                "{name:<40} {:>6.0} MiB (min {:.0}, max {:.0})",
                mib(median),
                mib(v[0]),
                mib(v[v.len() - 1])
            );
            memory.push(json!({"name": name, "median_bytes": median, "min_bytes": v[0], "max_bytes": v[v.len() - 1]}));
        }
        json!({"title": title, "rows": rows, "memory": memory, "rate_limit": rate_check})
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn secs(v: &Value) -> Duration {
    Duration::from_secs_f64(v["seconds"].as_f64().unwrap())
}

fn rss(v: &Value) -> u64 {
    v["peak_rss"].as_u64().unwrap()
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
    std::fs::remove_dir_all(dest).unwrap();
    (copied, synced)
}

fn run_child(mode: &str, db: &Path, repo: &Path, env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("ROCKSNAP_BENCH_CHILD", mode)
        .env("ROCKSNAP_BENCH_DB", db)
        .env("ROCKSNAP_BENCH_REPO", repo);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One measurement in a fresh process; prints a JSON object with at least
/// `seconds`, `bytes` and `peak_rss`.
fn child(mode: &str) {
    let db = PathBuf::from(std::env::var_os("ROCKSNAP_BENCH_DB").unwrap());
    let repo = PathBuf::from(std::env::var_os("ROCKSNAP_BENCH_REPO").unwrap());
    if let Ok(filter) = std::env::var("ROCKSNAP_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut v = rt.block_on(async {
        match mode {
            "idle" => {
                let _store = PartitionStore::open_existing(&db).unwrap();
                json!({"seconds": 0.0, "bytes": 0})
            }
            "snapshot" => {
                let rate = std::env::var("ROCKSNAP_BENCH_RATE")
                    .ok()
                    .and_then(|r| r.parse().ok());
                let config = PipelineConfig {
                    rate_limit: rate.map(rocksnap::RateLimit::new),
                    encryption: bench_keyring(),
                    ..PipelineConfig::default()
                };
                let local = Repository::new(
                    Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
                );
                let partitions = PartitionStore::open_existing(&db).unwrap();
                let (seconds, bytes, _) = snapshot_all(partitions, local, config).await;
                json!({"seconds": seconds, "bytes": bytes})
            }
            "restore" => {
                let repository = Repository::new(
                    Destination::open(repo.to_str().unwrap(), OpenMode::MustExist).unwrap(),
                );
                let t = Instant::now();
                let opts = RestoreOptions {
                    keyring: bench_keyring(),
                    ..RestoreOptions::default()
                };
                let bytes = restore_all(&repository, &db, &opts).await;
                json!({"seconds": t.elapsed().as_secs_f64(), "bytes": bytes})
            }
            "remote" => remote(&db).await,
            "probe" => probe().await,
            "incremental" => incremental(&db, &repo).await,
            other => panic!("unknown child mode {other}"),
        }
    });
    v["peak_rss"] = json!(peak_rss());
    println!("{v}");
}

/// Restores every partition of the repository into `db` together, as a
/// node's bootstrap does (downloads sharing `opts`' one bound); the bytes.
async fn restore_all(repository: &Repository, db: &Path, opts: &RestoreOptions) -> u64 {
    let ids = repository.list_partitions().await.unwrap();
    rocksnap::restore::restore_partitions(repository, db, &ids, RestoreTarget::Latest, opts)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().bytes)
        .sum()
}

/// The keyring a child is given for the encrypted rows, if any.
fn bench_keyring() -> Option<Arc<rocksnap::crypto::Keyring>> {
    let text = std::env::var("ROCKSNAP_BENCH_KEYRING").ok()?;
    Some(Arc::new(rocksnap::crypto::Keyring::parse(&text).unwrap()))
}

/// Snapshots every partition of `db` at once; returns seconds, bytes, and
/// the sizes of the files stored.
async fn snapshot_all(
    partitions: PartitionStore,
    repository: Repository,
    config: PipelineConfig,
) -> (f64, u64, usize) {
    let ids = partition_ids(&partitions);
    let (sup, done) = Supervisor::start(SupervisorArgs::new(config, partitions, repository))
        .await
        .unwrap();
    let t = Instant::now();
    let outcomes = join_all(ids.iter().map(|&partition| {
        Supervisor::snapshot(
            &sup,
            SnapshotRequest {
                partition,
                min_lsn: None,
            },
        )
    }))
    .await;
    let seconds = t.elapsed().as_secs_f64();
    let mut bytes = 0;
    let mut files = 0;
    for o in outcomes {
        let o = o.unwrap();
        bytes += o.bytes;
        files += o.files;
    }
    // Wait until the actors let go of the database.
    sup.stop(None);
    done.await.unwrap();
    (seconds, bytes, files)
}

fn partition_ids(store: &PartitionStore) -> Vec<PartitionId> {
    let mut ids: Vec<PartitionId> =
        rocksdb::DB::list_cf(&rocksdb::Options::default(), store.path())
            .unwrap()
            .iter()
            .filter_map(|n| n.strip_prefix("data-")?.parse().ok())
            .map(PartitionId)
            .collect();
    ids.sort();
    ids
}

/// Everything against the remote-like store, in one process.
async fn remote(db: &Path) -> Value {
    let config = PipelineConfig::default();
    // rocksnap.
    let store: Arc<dyn ObjectStore> = Arc::new(model::RemoteModel::new());
    let repository = Repository::with_store(store.clone(), ObjPath::from("repo"));
    let partitions = PartitionStore::open_existing(db).unwrap();
    let (rocksnap_s, bytes, _) =
        snapshot_all(partitions.clone(), repository.clone(), config.clone()).await;
    // The same, encrypted, into another repository of the same model.
    let keyring = bench_keyring().expect("the remote child is given a keyring");
    let sealed_repository = Repository::with_store(store.clone(), ObjPath::from("sealed"));
    let sealed_config = PipelineConfig {
        encryption: Some(keyring.clone()),
        ..config.clone()
    };
    let (rocksnap_encrypted, _, _) =
        snapshot_all(partitions.clone(), sealed_repository.clone(), sealed_config).await;

    // The same exported files for the baselines.
    let staging = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    {
        for p in partition_ids(&partitions) {
            let cf = format!("data-{p}");
            let e = partitions
                .export_column_family(&cf, &staging.path().join(&cf))
                .unwrap();
            for f in e.files {
                files.push((
                    Path::new(&f.directory).join(f.name.trim_start_matches('/')),
                    f.size,
                ));
            }
        }
    }
    // Sequential: one file at a time, 5 MiB parts awaited one by one.
    let t = Instant::now();
    for (i, (path, size)) in files.iter().enumerate() {
        let data = std::fs::read(path).unwrap();
        let key = ObjPath::from(format!("sequential/{i}.sst"));
        if *size <= 5 << 20 {
            store.put(&key, PutPayload::from(data)).await.unwrap();
        } else {
            let mut upload = store.put_multipart(&key).await.unwrap();
            for chunk in data.chunks(5 << 20) {
                upload
                    .put_part(PutPayload::from(chunk.to_vec()))
                    .await
                    .unwrap();
            }
            upload.complete().await.unwrap();
        }
    }
    let sequential = t.elapsed().as_secs_f64();
    // object_store's BufWriter per file, its default concurrency.
    let t = Instant::now();
    for (i, (path, _)) in files.iter().enumerate() {
        let mut file = tokio::fs::File::open(path).await.unwrap();
        let mut w = BufWriter::new(store.clone(), ObjPath::from(format!("bufwriter/{i}.sst")));
        tokio::io::copy(&mut file, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    }
    let bufwriter = t.elapsed().as_secs_f64();
    // The model's lower bound with rocksnap's parts over its 8 connections.
    let part = config.part_size as u64;
    let total: f64 = files
        .iter()
        .flat_map(|(_, size)| {
            let n = size.div_ceil(part).max(1);
            (0..n).map(move |k| (size - k * part).min(part))
        })
        .map(|b| model::request_time(b).as_secs_f64())
        .sum();
    let lower_bound = total / config.max_parts_in_flight as f64;
    // The same for restore's ranged GETs (same part size, same number at
    // once), without the local work that follows them.
    let restore_opts = RestoreOptions::default();
    let range = restore_opts.part_size as u64;
    let get_total: f64 = files
        .iter()
        .flat_map(|(_, size)| {
            let n = size.div_ceil(range).max(1);
            (0..n).map(move |k| (size - k * range).min(range))
        })
        .map(|b| model::request_time(b).as_secs_f64())
        .sum();
    let restore_lower_bound = get_total / restore_opts.concurrency as f64;

    // Restore from the model against a sequential download of the same files.
    let restored = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
    let t = Instant::now();
    restore_all(
        &repository,
        &restored.path().join("db"),
        &RestoreOptions::default(),
    )
    .await;
    let restore_s = t.elapsed().as_secs_f64();
    let sealed_restored = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
    let t = Instant::now();
    restore_all(
        &sealed_repository,
        &sealed_restored.path().join("db"),
        &RestoreOptions {
            keyring: Some(keyring.clone()),
            ..RestoreOptions::default()
        },
    )
    .await;
    let restore_encrypted = t.elapsed().as_secs_f64();
    drop(sealed_restored);
    let t = Instant::now();
    for (i, _) in files.iter().enumerate() {
        let bytes = store
            .get(&ObjPath::from(format!("sequential/{i}.sst")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut f = tokio::fs::File::create(restored.path().join(format!("{i}.sst")))
            .await
            .unwrap();
        f.write_all(&bytes).await.unwrap();
        f.sync_all().await.unwrap();
    }
    let sequential_download = t.elapsed().as_secs_f64();
    json!({
        "seconds": rocksnap_s, "bytes": bytes, "rocksnap": rocksnap_s, "sequential": sequential,
        "bufwriter": bufwriter, "lower_bound": lower_bound, "restore": restore_s,
        "rocksnap_encrypted": rocksnap_encrypted, "restore_encrypted": restore_encrypted,
        "restore_lower_bound": restore_lower_bound,
        "sequential_download": sequential_download,
    })
}

/// A full V2 snapshot of partition 0 of a checkpoint of the dataset, 1% new
/// writes and a flush, then an incremental snapshot.
async fn incremental(dataset: &Path, repo: &Path) -> Value {
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
        format: FormatVersion::V2,
        ..PipelineConfig::default()
    };
    let (sup, _) = Supervisor::start(SupervisorArgs::new(config, partitions.clone(), repository))
        .await
        .unwrap();
    let request = SnapshotRequest {
        partition: PartitionId(0),
        min_lsn: None,
    };
    let t = Instant::now();
    let full = Supervisor::snapshot(&sup, request).await.unwrap();
    let full_s = t.elapsed().as_secs_f64();
    let lsn = partitions.applied_lsn("data-0").unwrap().unwrap().0 + 1;
    let records = (full.bytes / 100 / VALUE as u64).max(1);
    let mut rng = rand::rng();
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..records)
        .map(|k| {
            let mut v = vec![0u8; VALUE];
            rng.fill_bytes(&mut v);
            (format!("new-{k:012}").into_bytes(), v)
        })
        .collect();
    partitions.apply(PartitionId(0), Lsn(lsn), batch).unwrap();
    let cf = partitions.db().cf_handle("data-0").unwrap();
    partitions.db().flush_cf(&cf).unwrap();
    drop(cf);
    let t = Instant::now();
    let inc = Supervisor::snapshot(&sup, request).await.unwrap();
    let inc_s = t.elapsed().as_secs_f64();
    sup.stop(None);
    drop(partitions);
    let _ = std::fs::remove_dir_all(&work);
    json!({
        "seconds": 0.0, "bytes": 0, "full_seconds": full_s, "full_uploaded": full.uploaded_bytes,
        "inc_seconds": inc_s, "inc_uploaded": inc.uploaded_bytes,
    })
}

/// A database of `partitions` column families holding `bytes` of
/// incompressible values in all, built once under `root` and kept.
fn dataset(root: &Path, bytes: u64, partitions: u64) -> PathBuf {
    let db = root.join(format!("db-{bytes}-{partitions}"));
    let done = db.with_extension("complete");
    if done.exists() {
        return db;
    }
    let _ = std::fs::remove_dir_all(&db);
    eprintln!(
        "building a {} MiB dataset in {partitions} partitions at {} (once)",
        bytes >> 20,
        db.display()
    );
    let ids: Vec<PartitionId> = (0..partitions).map(PartitionId).collect();
    let store = PartitionStore::open(&db, &ids).unwrap();
    let mut rng = rand::rng();
    let per_partition = bytes / partitions / VALUE as u64;
    for &p in &ids {
        let mut i = 0u64;
        let mut lsn = 0;
        while i < per_partition {
            lsn += 1;
            let batch: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + 256).min(per_partition))
                .map(|k| {
                    let mut v = vec![0u8; VALUE];
                    rng.fill_bytes(&mut v);
                    (format!("key-{k:012}").into_bytes(), v)
                })
                .collect();
            i += batch.len() as u64;
            store.apply(p, Lsn(lsn), batch).unwrap();
        }
        let cf = store.db().cf_handle(&format!("data-{p}")).unwrap();
        store.db().flush_cf(&cf).unwrap();
    }
    drop(store);
    std::fs::write(done, b"").unwrap();
    db
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

async fn probe() -> Value {
    if std::env::var("PROBE_SNAP").is_ok() {
        let db = PathBuf::from(std::env::var_os("ROCKSNAP_BENCH_DB").unwrap());
        let store: Arc<dyn ObjectStore> = Arc::new(model::RemoteModel::new());
        let repository = Repository::with_store(store.clone(), ObjPath::from("repo"));
        let partitions = PartitionStore::open_existing(&db).unwrap();
        let cpu0 = cpu();
        let t0 = Instant::now();
        let (s, _, _) = snapshot_all(partitions.clone(), repository.clone(), PipelineConfig::default()).await;
        let cpu1 = cpu();
        timeline(t0);
        return json!({"seconds": s, "bytes": 0, "user": cpu1.0 - cpu0.0, "sys": cpu1.1 - cpu0.1});
    }
    let store: Arc<dyn ObjectStore> = Arc::new(model::RemoteModel::new());
    let key = ObjPath::from("x");
    store.put(&key, PutPayload::from(vec![7u8; 64 << 20])).await.unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let t = Instant::now();
    let tasks: Vec<_> = (0..128u64).map(|i| {
        let (store, key, sem) = (store.clone(), key.clone(), sem.clone());
        async move {
            let _p = sem.acquire().await.unwrap();
            let start = (i % 8) * (8 << 20);
            store.get_range(&key, start..start + (8 << 20)).await.unwrap().len()
        }
    }).collect();
    join_all(tasks).await;
    let plain = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir_in("/var/cache/rocksnap-bench-target").unwrap();
    let t = Instant::now();
    let files: Vec<_> = (0..16).map(|f| Arc::new(std::fs::File::create(dir.path().join(f.to_string())).unwrap())).collect();
    let tasks: Vec<_> = (0..128u64).map(|i| {
        let (store, key, sem) = (store.clone(), key.clone(), sem.clone());
        let file = files[(i / 8) as usize].clone();
        async move {
            let _p = sem.acquire().await.unwrap();
            let start = (i % 8) * (8 << 20);
            let b = store.get_range(&key, start..start + (8 << 20)).await.unwrap();
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let c = crc32c::crc32c(&b);
                file.write_all_at(&b, start).unwrap();
                c
            }).await.unwrap()
        }
    }).collect();
    join_all(tasks).await;
    let written = t.elapsed().as_secs_f64();
    json!({"seconds": plain, "bytes": 0, "written": written, "bound": 128.0 * model::request_time(8 << 20).as_secs_f64() / 8.0})
}

fn cpu() -> (f64, f64) {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    (t(u.ru_utime), t(u.ru_stime))
}

fn timeline(t0: Instant) {
    let log = model::LOG.lock().unwrap().clone();
    let end = log.iter().map(|l| l.1).max().unwrap();
    let buckets = (end - t0).as_millis() as usize / 10 + 1;
    let mut busy = vec![0.0f64; buckets];
    for (s, e, _) in &log {
        let (a, b) = ((*s - t0).as_secs_f64() * 100.0, (*e - t0).as_secs_f64() * 100.0);
        let mut i = a.floor() as usize;
        while (i as f64) < b && i < buckets {
            let lo = a.max(i as f64); let hi = b.min(i as f64 + 1.0);
            busy[i] += hi - lo; i += 1;
        }
    }
    let mut line = String::new();
    for (i, b) in busy.iter().enumerate() { line.push_str(&format!("{:.0}", b.min(9.0))); if i % 100 == 99 { eprintln!("{line}"); line.clear(); } }
    eprintln!("{line}");
    let mut kinds: std::collections::BTreeMap<&str, (usize, f64)> = Default::default();
    for (s, e, k) in &log { let v = kinds.entry(k).or_default(); v.0 += 1; v.1 += (*e - *s).as_secs_f64(); }
    let mut sorted = log.clone();
    sorted.sort_by_key(|l| l.0);
    for (s, e, k) in sorted.iter().take(12).chain(sorted.iter().rev().take(12).rev()) {
        eprintln!("{k:>9} {:7.1} {:7.1}", (*s - t0).as_secs_f64() * 1e3, (*e - t0).as_secs_f64() * 1e3);
    }
    eprintln!("{kinds:?} total busy {:.3}", busy.iter().sum::<f64>() / 100.0);
}
