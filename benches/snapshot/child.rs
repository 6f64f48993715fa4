//! The measurements, each run in a child process of the benchmark so that
//! its peak resident size and CPU time are its own. Each prints one JSON
//! object with at least `seconds`, `bytes` and `peak_rss`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use futures::TryStreamExt;
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

use crate::{model, Cpu, VALUE};

pub fn run(mode: &str) {
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
                let defaults = PipelineConfig::default();
                let config = PipelineConfig {
                    rate_limit: rate_limit(),
                    encryption: keyring(),
                    part_size: crate::env_or("ROCKSNAP_BENCH_PART_MIB", defaults.part_size >> 20)
                        << 20,
                    max_parts_in_flight: crate::parts_in_flight(),
                    ..defaults
                };
                let local = Repository::new(
                    Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
                );
                let partitions = PartitionStore::open_existing(&db).unwrap();
                let cpu = Cpu::this_process();
                let (seconds, bytes) = snapshot_all(partitions, local, config).await;
                let cpu = Cpu::this_process().since(cpu);
                json!({"seconds": seconds, "bytes": bytes, "cpu": cpu.json()})
            }
            "restore" => {
                let repository = Repository::new(
                    Destination::open(repo.to_str().unwrap(), OpenMode::MustExist).unwrap(),
                );
                let opts = RestoreOptions {
                    keyring: keyring(),
                    ..RestoreOptions::default()
                };
                let cpu = Cpu::this_process();
                let t = Instant::now();
                let bytes = restore_all(&repository, &db, &opts).await;
                let seconds = t.elapsed().as_secs_f64();
                let cpu = Cpu::this_process().since(cpu);
                json!({"seconds": seconds, "bytes": bytes, "cpu": cpu.json()})
            }
            "remote" => remote(&db).await,
            "remote-snapshot" => remote_snapshot(&db).await,
            "grid" => crate::curves::grid_child(&db).await,
            "incremental" => incremental(&db, &repo).await,
            "foreground" => crate::foreground::child(&db, &repo).await,
            "population" => crate::population::child(&db).await,
            other => panic!("unknown child mode {other}"),
        }
    });
    v["peak_rss"] = json!(crate::peak_rss());
    v["part_peaks"] = json!(*PART_PEAKS.lock().unwrap());
    println!("{v}");
}

/// The rate limit a child is given, if any.
pub fn rate_limit() -> Option<rocksnap::RateLimit> {
    std::env::var("ROCKSNAP_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .map(rocksnap::RateLimit::new)
}

/// The keyring a child is given for the encrypted rows, if any.
fn keyring() -> Option<Arc<rocksnap::crypto::Keyring>> {
    let text = std::env::var("ROCKSNAP_BENCH_KEYRING").ok()?;
    Some(Arc::new(rocksnap::crypto::Keyring::parse(&text).unwrap()))
}

/// Restores every partition of the repository into `db` together, as a
/// node's bootstrap does (downloads sharing `opts`' one bound); the bytes.
pub async fn restore_all(repository: &Repository, db: &Path, opts: &RestoreOptions) -> u64 {
    let ids = repository.list_partitions().await.unwrap();
    rocksnap::restore::restore_partitions(repository, db, &ids, RestoreTarget::Latest, opts)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().bytes)
        .sum()
}

/// Snapshots every partition of `db` at once through one supervisor, as a
/// node does (its export concurrency); returns seconds and bytes.
pub async fn snapshot_all(
    partitions: PartitionStore,
    repository: Repository,
    config: PipelineConfig,
) -> (f64, u64) {
    let ids = partition_ids(&partitions);
    // A sealed part is its plain bytes and a tag per segment.
    let part = match config.encryption {
        Some(_) => rocksnap::crypto::stored_size(config.part_size as u64),
        None => config.part_size as u64,
    };
    let bound = part * (config.max_parts_in_flight as u64 + 1);
    let args = SupervisorArgs::new(config, partitions, repository);
    let stats = args.stats.clone();
    let (sup, done) = Supervisor::start(args).await.unwrap();
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
    let bytes = outcomes.into_iter().map(|o| o.unwrap().bytes).sum();
    // Wait until the actors let go of the database.
    sup.stop(None);
    done.await.unwrap();
    PART_PEAKS.lock().unwrap().push(json!({
        "bytes": stats.bytes_alive_peak(),
        "bound": bound,
    }));
    (seconds, bytes)
}

/// For every snapshot this child made: the most bytes its parts held at
/// once, by the pipeline's own count, and its bound (part size × (parts in
/// flight + 1)). Exact where the resident size is not (see
/// `crate::rss_resolution`).
static PART_PEAKS: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());

pub fn partition_ids(store: &PartitionStore) -> Vec<PartitionId> {
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

/// Sizes of the SST objects stored under `prefix`.
pub async fn stored_files(store: &dyn ObjectStore, prefix: &str) -> Vec<u64> {
    store
        .list(Some(&ObjPath::from(prefix)))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".sst"))
        .map(|m| m.size)
        .collect()
}

/// Snapshots every partition into `prefix` of the remote-like `store`:
/// seconds, bytes, and the model's lower bound for the files it stored
/// (sizes as stored, in `config`'s parts over its connections).
pub async fn snapshot_into_model(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    partitions: PartitionStore,
    config: PipelineConfig,
) -> (f64, u64, f64) {
    let repository = Repository::with_store(store.clone(), ObjPath::from(prefix));
    let (part, connections) = (config.part_size as u64, config.max_parts_in_flight);
    let (seconds, bytes) = snapshot_all(partitions, repository, config).await;
    let files = stored_files(store.as_ref(), prefix).await;
    (
        seconds,
        bytes,
        model::lower_bound(&files, part, connections, 3),
    )
}

/// A snapshot of every partition into the remote-like store, and the
/// model's lower bound for it.
async fn remote_snapshot(db: &Path) -> Value {
    let model = Arc::new(model::RemoteModel::with_arena(arena_for(db, 1)));
    let store: Arc<dyn ObjectStore> = model.clone();
    let partitions = PartitionStore::open_existing(db).unwrap();
    model.warm();
    let (seconds, bytes, bound) =
        snapshot_into_model(&store, "repo", partitions, PipelineConfig::default()).await;
    json!({"seconds": seconds, "bytes": bytes, "lower_bound": bound})
}

/// Everything against the remote-like store, in one process.
async fn remote(db: &Path) -> Value {
    let config = PipelineConfig::default();
    let baselines = std::env::var_os("ROCKSNAP_BENCH_BASELINES").is_some();
    // rocksnap's plain snapshot and its sealed one, and the references'
    // two copies when they run: each receives its parts into the arena.
    let copies = if baselines { 4 } else { 2 };
    let model = Arc::new(model::RemoteModel::with_arena(arena_for(db, copies)));
    let store: Arc<dyn ObjectStore> = model.clone();
    let repository = Repository::with_store(store.clone(), ObjPath::from("repo"));
    let partitions = PartitionStore::open_existing(db).unwrap();
    let keyring = keyring().expect("the remote child is given a keyring");
    let sealed_repository = Repository::with_store(store.clone(), ObjPath::from("sealed"));
    let sealed_config = PipelineConfig {
        encryption: Some(keyring.clone()),
        ..config.clone()
    };
    // Plain and sealed alternate which goes first from run to run (the
    // parent says), so that neither always meets a process the other has
    // warmed.
    let sealed_first = std::env::var_os("ROCKSNAP_BENCH_SEALED_FIRST").is_some();
    let plain_snapshot = async {
        model.warm();
        let cpu = Cpu::this_process();
        let (seconds, bytes, bound) =
            snapshot_into_model(&store, "repo", partitions.clone(), config.clone()).await;
        (seconds, bytes, bound, Cpu::this_process().since(cpu))
    };
    let sealed_snapshot = async {
        model.warm();
        snapshot_all(
            partitions.clone(),
            sealed_repository.clone(),
            sealed_config.clone(),
        )
        .await
        .0
    };
    let ((rocksnap_s, bytes, lower_bound, rocksnap_cpu), rocksnap_encrypted) =
        in_order(sealed_first, plain_snapshot, sealed_snapshot).await;

    // The model's lower bound for restore's ranges and connections.
    let sizes = stored_files(store.as_ref(), "repo").await;
    let restore_opts = RestoreOptions::default();
    let restore_lower_bound = model::lower_bound(
        &sizes,
        restore_opts.part_size as u64,
        restore_opts.concurrency,
        2,
    );

    // Restore from the model, plain and sealed in the same order.
    let plain_restore = async {
        let restored = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
        model.warm();
        let cpu = Cpu::this_process();
        let t = Instant::now();
        restore_all(&repository, &restored.path().join("db"), &restore_opts).await;
        (t.elapsed().as_secs_f64(), Cpu::this_process().since(cpu))
    };
    let sealed_restore = async {
        model.warm();
        let restored = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
        let t = Instant::now();
        restore_all(
            &sealed_repository,
            &restored.path().join("db"),
            &RestoreOptions {
                keyring: Some(keyring.clone()),
                ..RestoreOptions::default()
            },
        )
        .await;
        t.elapsed().as_secs_f64()
    };
    let ((restore_s, restore_cpu), restore_encrypted) =
        in_order(sealed_first, plain_restore, sealed_restore).await;
    let mut v = json!({
        "seconds": rocksnap_s, "bytes": bytes, "rocksnap": rocksnap_s,
        "rocksnap_cpu": rocksnap_cpu.json(), "lower_bound": lower_bound,
        "restore": restore_s, "restore_cpu": restore_cpu.json(),
        "rocksnap_encrypted": rocksnap_encrypted, "restore_encrypted": restore_encrypted,
        "restore_lower_bound": restore_lower_bound,
    });
    if baselines {
        let b = baselines_on(&model, db, &partitions).await;
        for (k, x) in b.as_object().unwrap() {
            v[k] = x.clone();
        }
    }
    v
}

/// Runs the plain and the sealed measurement (futures, which do nothing
/// until awaited), the sealed one first if `sealed_first`; their outputs,
/// the plain one's first.
async fn in_order<P, S>(
    sealed_first: bool,
    plain: impl std::future::Future<Output = P>,
    sealed: impl std::future::Future<Output = S>,
) -> (P, S) {
    if sealed_first {
        let s = sealed.await;
        (plain.await, s)
    } else {
        let p = plain.await;
        (p, sealed.await)
    }
}

/// The slow references: one file at a time, as a simple tool would.
async fn baselines_on(
    model: &Arc<model::RemoteModel>,
    db: &Path,
    partitions: &PartitionStore,
) -> Value {
    let store: Arc<dyn ObjectStore> = model.clone();
    // The same exported files.
    let staging = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    for p in partition_ids(partitions) {
        let cf = rocksnap::partition::cf_name(p);
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
    // Sequential: one file at a time, 5 MiB parts awaited one by one.
    model.warm();
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
    model.warm();
    let t = Instant::now();
    for (i, (path, _)) in files.iter().enumerate() {
        let mut file = tokio::fs::File::open(path).await.unwrap();
        let mut w = BufWriter::new(store.clone(), ObjPath::from(format!("bufwriter/{i}.sst")));
        tokio::io::copy(&mut file, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    }
    let bufwriter = t.elapsed().as_secs_f64();
    // A sequential download of the same files.
    let restored = tempfile::tempdir_in(db.parent().unwrap()).unwrap();
    model.warm();
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
        "sequential": sequential, "bufwriter": bufwriter,
        "sequential_download": sequential_download,
    })
}

/// A checkpoint of the dataset at `work` (replacing what is there), opened:
/// the runs that write keep the dataset as it is.
pub fn checkpoint(dataset: &Path, work: &Path) -> PartitionStore {
    let _ = std::fs::remove_dir_all(work);
    {
        let store = PartitionStore::open_existing(dataset).unwrap();
        rocksdb::checkpoint::Checkpoint::new(store.db())
            .unwrap()
            .create_checkpoint(work)
            .unwrap();
    }
    PartitionStore::open_existing(work).unwrap()
}

/// A full V2 snapshot of partition 0 of a checkpoint of the dataset, 1% new
/// writes and a flush, then an incremental snapshot.
async fn incremental(dataset: &Path, repo: &Path) -> Value {
    let work = repo.with_extension("db");
    let partitions = checkpoint(dataset, &work);
    let repository = Repository::new(
        Destination::open(repo.to_str().unwrap(), OpenMode::CreateMissing).unwrap(),
    );
    let config = PipelineConfig {
        format: FormatVersion::V2,
        ..PipelineConfig::default()
    };
    let (sup, done) =
        Supervisor::start(SupervisorArgs::new(config, partitions.clone(), repository))
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
    // The actors let go of the checkpoint before it is removed.
    sup.stop(None);
    done.await.unwrap();
    // The flush may have started a compaction, whose files would land in
    // the folder while it is being removed.
    partitions.db().cancel_all_background_work(true);
    drop(partitions);
    std::fs::remove_dir_all(&work).unwrap();
    json!({
        "seconds": 0.0, "bytes": 0, "full_seconds": full_s, "full_uploaded": full.uploaded_bytes,
        "inc_seconds": inc_s, "inc_uploaded": inc.uploaded_bytes,
    })
}

/// Room in the model's arena for `snapshots` snapshots of the database at
/// `db` (its files' size, and a tenth more for sealing and documents).
pub fn arena_for(db: &Path, snapshots: u64) -> u64 {
    let files: u64 = std::fs::read_dir(db)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    files * snapshots * 11 / 10
}
