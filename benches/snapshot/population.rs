//! Bucket population: what reading the pointer and starting a restore,
//! listing a partition, and pruning cost when a partition holds 10 to
//! 100 000 snapshots. The store is simulated: `object_store`'s in-memory
//! store behind a model of S3's requests, each paying the model's latency,
//! listings served in pages of 1 000 (one request each), deletions in
//! batches of up to 1 000 keys per request (DeleteObjects). Every request
//! is counted by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use rocksnap::format::{snapshot_folder, SnapshotId};
use rocksnap::gc::{collect, GcOptions};
use rocksnap::restore::{RestoreOptions, RestoreTarget};
use rocksnap::{Lsn, PartitionId, PartitionStore, PipelineConfig, Repository, Retention};
use serde_json::{json, Value};

use crate::child::snapshot_all;
use crate::model::LATENCY;
use crate::plot::{self, Axis, Series};
use crate::table::Checks;

/// Entries per listing page, keys per batch delete: S3's.
const PAGE: usize = 1000;

/// Populations, in snapshots of one partition.
const POPULATIONS: [usize; 4] = [10, 1_000, 10_000, 100_000];

#[derive(Debug, Default)]
struct State {
    inner: InMemory,
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

impl State {
    /// One request of `kind`: counted, and the model's latency paid.
    async fn request(&self, kind: &'static str) {
        *self.requests.lock().unwrap().entry(kind).or_default() += 1;
        tokio::time::sleep(LATENCY).await;
    }
}

/// The simulated S3-like store.
#[derive(Debug, Clone, Default)]
pub struct PagedModel {
    state: Arc<State>,
}

impl PagedModel {
    /// Requests so far, by kind; and starts counting again.
    fn take_requests(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.state.requests.lock().unwrap())
    }
}

impl fmt::Display for PagedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PagedModel")
    }
}

#[async_trait]
impl ObjectStore for PagedModel {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.state.request("put").await;
        self.state.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.state.request("put").await;
        self.state.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjPath, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head { "head" } else { "get" };
        self.state.request(kind).await;
        self.state.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<ObjPath>>,
    ) -> BoxStream<'static, Result<ObjPath>> {
        let state = self.state.clone();
        locations
            .chunks(PAGE)
            .then(move |batch| {
                let state = state.clone();
                async move {
                    state.request("delete").await;
                    let batch = futures::stream::iter(batch).boxed();
                    state.inner.delete_stream(batch).collect::<Vec<_>>().await
                }
            })
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&ObjPath>) -> BoxStream<'static, Result<ObjectMeta>> {
        let state = self.state.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let all: Result<Vec<ObjectMeta>> =
                state.inner.list(prefix.as_ref()).try_collect().await;
            let pages: Vec<Result<Vec<ObjectMeta>>> = match all {
                Ok(mut all) => {
                    all.sort_by(|a, b| a.location.cmp(&b.location));
                    if all.is_empty() {
                        vec![Ok(Vec::new())]
                    } else {
                        all.chunks(PAGE).map(|c| Ok(c.to_vec())).collect()
                    }
                }
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pages).then(move |page| {
                let state = state.clone();
                async move {
                    state.request("list").await;
                    page
                }
            })
        })
        .flatten()
        .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> Result<ListResult> {
        let listed = self.state.inner.list_with_delimiter(prefix).await?;
        let entries = listed.objects.len() + listed.common_prefixes.len();
        for _ in 0..entries.div_ceil(PAGE).max(1) {
            self.state.request("list").await;
        }
        Ok(listed)
    }

    async fn copy_opts(&self, from: &ObjPath, to: &ObjPath, options: CopyOptions) -> Result<()> {
        self.state.request("copy").await;
        self.state.inner.copy_opts(from, to, options).await
    }
}

/// The child: a real snapshot of a small partition as the template, then
/// for each population a bucket of that many snapshots of it, and the
/// three operations measured on it.
pub async fn child(root: &Path) -> Value {
    let work = tempfile::tempdir_in(root).unwrap();
    let template = template(work.path()).await;
    let mut rows = Vec::new();
    for population in POPULATIONS {
        eprintln!("population curve: {population} snapshots");
        let model = PagedModel::default();
        let objects = populate(&model, &template, population).await;
        let store: Arc<dyn ObjectStore> = Arc::new(model.clone());
        let repo = Repository::with_store(store.clone(), ObjPath::from("repo"));
        model.take_requests();

        // Read the pointer and restore the latest snapshot (one small file).
        let t = Instant::now();
        let into = work.path().join(format!("restored-{population}"));
        rocksnap::restore::restore_partitions(
            &repo,
            &into,
            &[PartitionId(0)],
            RestoreTarget::Latest,
            &RestoreOptions::default(),
        )
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
        let restore = (t.elapsed().as_secs_f64(), model.take_requests());

        // `rocksnap list --partition 0` (its default --limit of 20).
        let t = Instant::now();
        repo.read_pointer(PartitionId(0)).await.unwrap();
        let (shown, older) = repo
            .newest_snapshots(PartitionId(0), Some(20))
            .await
            .unwrap();
        assert_eq!(shown.len() + older, population);
        let list = (t.elapsed().as_secs_f64(), model.take_requests());

        // `rocksnap prune --keep 1`, everything older than the grace period.
        let t = Instant::now();
        let report = collect(
            &repo,
            PartitionId(0),
            &GcOptions {
                retention: Some(Retention {
                    keep_last: 1,
                    max_age: None,
                }),
                cluster: Some(PipelineConfig::default().cluster_name),
                now: Some(chrono::Utc::now() + chrono::Duration::days(1)),
                ..GcOptions::default()
            },
        )
        .await
        .unwrap();
        let prune = (t.elapsed().as_secs_f64(), model.take_requests());
        let left: Vec<ObjectMeta> = model.state.inner.list(None).try_collect().await.unwrap();
        assert_eq!(
            left.len(),
            template.len(),
            "prune left only the latest snapshot"
        );
        let r = |(s, counts): (f64, BTreeMap<&str, u64>)| json!({"seconds": s, "requests": counts.values().sum::<u64>(), "by_kind": counts});
        rows.push(json!({
            "snapshots": population, "objects": objects,
            "deleted": report.deleted.len(),
            "restore_start": r(restore), "list": r(list), "prune": r(prune),
        }));
    }
    json!({"seconds": 0.0, "bytes": 0, "rows": rows})
}

/// The objects of one real snapshot of a small partition (its folder's
/// objects, and `latest.json`), keyed below the repository.
async fn template(work: &Path) -> Vec<(String, Bytes)> {
    let db = work.join("db");
    let store = PartitionStore::open(&db, &[PartitionId(0)]).unwrap();
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..64)
        .map(|k| (format!("key-{k:06}").into_bytes(), vec![7u8; 1024]))
        .collect();
    store
        .apply(PartitionId(0), Lsn(1_000_000), records)
        .unwrap();
    let seed = Arc::new(InMemory::new());
    let repo = Repository::with_store(seed.clone(), ObjPath::from("repo"));
    snapshot_all(store, repo, PipelineConfig::default()).await;
    let mut objects = Vec::new();
    let listed: Vec<ObjectMeta> = seed.list(None).try_collect().await.unwrap();
    for meta in listed {
        let bytes = seed
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let key = meta
            .location
            .as_ref()
            .strip_prefix("repo/")
            .unwrap()
            .to_string();
        objects.push((key, bytes));
    }
    objects
}

/// The template's objects, and `population - 1` older snapshots beside
/// them (their metadata naming each its own id and LSN, their files the
/// template's), written straight into the model's store (not counted).
/// Returns the objects in the bucket.
async fn populate(model: &PagedModel, template: &[(String, Bytes)], population: usize) -> usize {
    let inner = &model.state.inner;
    let mut objects = 0;
    let mut files = Vec::new();
    let mut metadata: Option<Value> = None;
    for (key, bytes) in template {
        inner
            .put(&ObjPath::from(format!("repo/{key}")), bytes.clone().into())
            .await
            .unwrap();
        objects += 1;
        let name = key.rsplit('/').next().unwrap();
        if name == "metadata.json" {
            metadata = Some(serde_json::from_slice(bytes).unwrap());
        } else if key.matches('/').count() == 2 {
            files.push((name.to_string(), bytes.clone()));
        }
    }
    let metadata = metadata.expect("the template has metadata");
    for lsn in 1..population as u64 {
        let id = SnapshotId::new();
        let folder = snapshot_folder(Lsn(lsn), id);
        let mut meta = metadata.clone();
        meta["snapshot_id"] = json!(id.to_string());
        meta["min_applied_lsn"] = json!(lsn);
        inner
            .put(
                &ObjPath::from(format!("repo/0/{folder}/metadata.json")),
                serde_json::to_vec(&meta).unwrap().into(),
            )
            .await
            .unwrap();
        for (name, bytes) in &files {
            inner
                .put(
                    &ObjPath::from(format!("repo/0/{folder}/{name}")),
                    bytes.clone().into(),
                )
                .await
                .unwrap();
        }
        objects += 1 + files.len();
    }
    objects
}

/// A prune's requests of one kind in a row of the table. A prune lists,
/// reads and deletes whatever the population: a kind it never sent means
/// the figure is missing, not zero.
fn prune_requests(row: &Value, kind: &str) -> u64 {
    row["prune"]["by_kind"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no {kind} request counted for a prune"))
}

/// Prints the population table, draws its picture, checks its targets.
pub fn report(v: &Value, out: &Path, checks: &mut Checks) -> Value {
    let rows = v["rows"].as_array().unwrap().clone();
    println!(
        "\nbucket population: one partition of N snapshots on a simulated S3 ({} ms a request, pages and delete batches of {PAGE})\n",
        LATENCY.as_millis()
    );
    println!(
        "{:>9} {:>9} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>6} {:>7} {:>6} {:>8}",
        "snapshots",
        "objects",
        "restore",
        "s",
        "list",
        "s",
        "prune",
        "lists",
        "deletes",
        "other",
        "s"
    );
    for r in &rows {
        let req = |op: &str| r[op]["requests"].as_u64().unwrap();
        let s = |op: &str| r[op]["seconds"].as_f64().unwrap();
        let kind = |k: &str| prune_requests(r, k);
        println!(
            "{:>9} {:>9} | {:>8} {:>8.3} | {:>8} {:>8.3} | {:>8} {:>6} {:>7} {:>6} {:>8.3}",
            r["snapshots"].as_u64().unwrap(),
            r["objects"].as_u64().unwrap(),
            req("restore_start"),
            s("restore_start"),
            req("list"),
            s("list"),
            req("prune"),
            kind("list"),
            kind("delete"),
            req("prune") - kind("list") - kind("delete"),
            s("prune"),
        );
    }
    let first = &rows[0];
    for r in &rows {
        let n = r["snapshots"].as_u64().unwrap();
        let objects = r["objects"].as_u64().unwrap();
        let deleted = r["deleted"].as_u64().unwrap();
        // The smallest population is the reference, not held to itself.
        if !std::ptr::eq(r, first) {
            checks.at_most(
                &format!("population {n}: restore-start requests ÷ those at 10"),
                r["restore_start"]["requests"].as_f64().unwrap()
                    / first["restore_start"]["requests"].as_f64().unwrap(),
                1.0,
            );
        }
        // One listing of the partition, a request per page of 1 000
        // objects, and one of its leases.
        let lists = prune_requests(r, "list");
        checks.at_most(
            &format!("population {n}: prune list requests (≤ ⌈objects/1000⌉ + 1)"),
            lists as f64,
            (objects.div_ceil(PAGE as u64) + 1) as f64,
        );
        // Deleted in three phases (metadata, files, leases), each in
        // batches of 1 000 keys.
        let deletes = prune_requests(r, "delete");
        checks.at_most(
            &format!("population {n}: prune delete requests (≤ ⌈deleted/1000⌉ + 2)"),
            deletes as f64,
            (deleted.div_ceil(PAGE as u64) + 2) as f64,
        );
    }
    let xs: Vec<f64> = rows
        .iter()
        .map(|r| r["snapshots"].as_f64().unwrap())
        .collect();
    let requests = |op: &'static str| {
        rows.iter()
            .map(move |r| r[op]["requests"].as_f64().unwrap())
    };
    plot::lines(
        &out.join("population.svg"),
        "Requests against the bucket's population (one partition)",
        Axis::log("snapshots in the partition"),
        Axis::log("requests"),
        &[
            Series::new(
                "read the pointer, restore the latest",
                &xs,
                requests("restore_start"),
            ),
            Series::new("list --partition (newest 20)", &xs, requests("list")),
            Series::new("prune --keep 1", &xs, requests("prune")),
        ],
    );
    json!({"latency_ms": LATENCY.as_millis() as u64, "page": PAGE, "rows": rows})
}
