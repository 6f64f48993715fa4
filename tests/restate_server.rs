//! Against a real Restate server (1.7.12, from npm; `.ci/run` installs it),
//! its snapshots in a bucket on moto: rocksnap lists, verifies and restores
//! what Restate wrote, and Restate bootstraps a partition from a snapshot
//! rocksnap wrote of Restate's own partition store in the Restate dialect.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::backend::Backend;
use common::bin::{command, ok_json, output};
use rocksnap::PartitionStore;

/// Where `restate-server` and `restatectl` are: `ROCKSNAP_RESTATE_BIN`, or
/// the project's `.restate/node_modules/.bin` (the README's setup line).
fn restate_bin() -> PathBuf {
    let dir = std::env::var_os("ROCKSNAP_RESTATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".restate/node_modules/.bin")
        });
    assert!(
        dir.join("restate-server").exists() && dir.join("restatectl").exists(),
        "Restate is not installed in {}: run the README's setup line, or set ROCKSNAP_RESTATE_BIN",
        dir.display()
    );
    dir
}

/// One Restate node with two partitions, listening on unix sockets only
/// (no port to collide with), its snapshots going to `backend`.
struct Restate {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    runs: u32,
}

const CLUSTER: &str = "rocksnap-restate-test";

impl Restate {
    fn new(dir: &Path, backend: &Backend) -> Self {
        let Backend::S3 { bucket, endpoint } = backend else {
            panic!("Restate refuses file:// repositories")
        };
        let config = dir.join("restate.toml");
        std::fs::write(
            &config,
            format!(
                r#"cluster-name = "{CLUSTER}"
node-name = "n1"
base-dir = "{base}"
auto-provision = true
default-num-partitions = 2
log-disable-ansi-codes = true
disable-telemetry = true

[worker.snapshots]
destination = "s3://{bucket}/snapshots"
aws-endpoint-url = "{endpoint}"
aws-allow-http = true
aws-region = "us-east-1"
aws-access-key-id = "{key}"
aws-secret-access-key = "{secret}"
"#,
                base = dir.join("data").display(),
                key = common::backend::ACCESS_KEY,
                secret = common::backend::SECRET_KEY,
            ),
        )
        .unwrap();
        Restate {
            dir: dir.to_path_buf(),
            config,
            child: None,
            runs: 0,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("data/n1/db")
    }

    fn log(&self) -> PathBuf {
        self.dir.join(format!("restate-{}.log", self.runs))
    }

    fn start(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.log()).unwrap();
        let child = Command::new(restate_bin().join("restate-server"))
            .arg("--config-file")
            .arg(&self.config)
            .args(["--listen-mode", "unix", "--no-logo"])
            .env("DO_NOT_TRACK", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start restate-server");
        self.child = Some(child);
    }

    /// `restatectl ARGS` against this node.
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let socket = format!("unix:{}", self.dir.join("data/n1/fabric.sock").display());
        Command::new(restate_bin().join("restatectl"))
            .args(["--address", &socket])
            .args(args)
            .env("DO_NOT_TRACK", "1")
            .output()
            .expect("run restatectl")
    }

    /// Asks for a snapshot of `partition` until the node can take one (it
    /// cannot before the partition has a leader); returns its id.
    async fn create_snapshot(&self, partition: u64) -> String {
        let mut id = None;
        common::wait_until("restate takes a snapshot", || {
            // The log is trimmed up to the snapshot: from now on, the
            // partition's state before it exists only in snapshots.
            let out = self.ctl(&[
                "snapshots",
                "create-snapshot",
                "--trim-log",
                &partition.to_string(),
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            id = text
                .split_whitespace()
                .find(|w| w.starts_with("snap_1"))
                .map(|w| w.to_string());
            out.status.success() && id.is_some()
        })
        .await;
        id.unwrap()
    }

    /// The partition's applied LSN, from `restatectl partitions list`.
    fn applied_lsn(&self, partition: u64) -> Option<u64> {
        let out = self.ctl(&["partitions", "list"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .find(|l| l.trim_start().starts_with("ID "))?
            .split_whitespace()
            .collect();
        let column = header.iter().position(|h| *h == "APPLIED")?;
        lines
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&partition.to_string().as_str()))
            .and_then(|cells| cells.get(column)?.parse().ok())
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

impl Drop for Restate {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A partition's column family, key → value, read from a database no
/// process has open.
fn records(db: &Path, partition: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = PartitionStore::open_existing(db).unwrap();
    store
        .entries(&format!("data-{partition}"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_vec(), v.into_vec()))
        .collect()
}

/// Restate's own records of a partition's progress, which it rewrites as
/// it applies its log on start: its state machine's table (`fs`: applied
/// LSN, epoch) and its deduplication table (`de`: the last sequence number
/// of each producer of log records, the partition itself among them).
fn is_progress(key: &[u8]) -> bool {
    key.starts_with(b"fs") || key.starts_with(b"de")
}

/// Every record of `before` is in `after` with the same value, but for
/// Restate's progress table, whose keys are there and whose values move.
fn assert_records_kept(
    before: &BTreeMap<Vec<u8>, Vec<u8>>,
    after: &BTreeMap<Vec<u8>, Vec<u8>>,
    what: &str,
) {
    assert!(!before.is_empty(), "{what}: no records to compare");
    for (key, value) in before {
        let found = after
            .get(key)
            .unwrap_or_else(|| panic!("{what}: record {} is gone", hex::encode(key)));
        if !is_progress(key) {
            assert_eq!(found, value, "{what}: record {} differs", hex::encode(key));
        }
    }
}

/// The test's Restate service (`tests/restate/counter.cjs`, on the Restate
/// SDK installed beside the server): a keyed counter whose state lives in
/// Restate's partition store.
struct Counter {
    child: Child,
    port: u16,
}

impl Counter {
    fn start() -> Self {
        let modules = restate_bin().join("..");
        let mut child = Command::new("node")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/restate/counter.cjs"))
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the counter service with node");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = None;
        let mut line = String::new();
        while port.is_none() && out.read_line(&mut line).unwrap() > 0 {
            port = line
                .trim()
                .strip_prefix("PORT ")
                .and_then(|p| p.parse().ok());
            line.clear();
        }
        // The service logs every invocation: read on, so that it never
        // blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Counter {
            child,
            port: port.expect("the counter service did not start"),
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP request to one of the node's unix sockets, by curl: the HTTP
/// status and the body. It gives up after 10 s, so that a wait around a
/// request that hangs tries again several times before its own deadline.
fn curl(socket: &Path, path: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .args(["-H", "content-type: application/json", "--data", body])
        .args(["--write-out", "\n%{http_code}"])
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Adds `amount` to counter `key` through Restate's ingress; its new count.
fn add(restate: &Restate, key: &str, amount: u64) -> u64 {
    let (status, body) = curl(
        &restate.dir.join("data/n1/ingress.sock"),
        &format!("/counter/{key}/add"),
        &amount.to_string(),
    );
    assert_eq!(status, 200, "counter/{key}/add: {body}");
    body.trim().parse().unwrap()
}

fn rocksnap(backend: &Backend, args: &[&str]) -> Command {
    let mut cmd = command(args);
    cmd.envs(backend.env());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksnap_reads_restate_and_restate_restores_from_rocksnap() {
    let backend = Backend::s3("restate-server").await;
    let url = backend.url();
    let work = tempfile::tempdir().unwrap();
    let mut restate = Restate::new(work.path(), &backend);
    restate.start();
    // Records of a real service: counter k<i> at i × 3, in both partitions.
    let counter = Counter::start();
    common::wait_until("Restate registers the counter service", || {
        let (status, _) = curl(
            &restate.dir.join("data/n1/admin.sock"),
            "/deployments",
            &format!(r#"{{"uri": "http://127.0.0.1:{}"}}"#, counter.port),
        );
        status == 201 || status == 200
    })
    .await;
    const KEYS: u64 = 20;
    for i in 0..KEYS {
        add(&restate, &format!("k{i}"), i);
        assert_eq!(add(&restate, &format!("k{i}"), 2 * i), 3 * i);
    }

    // Restate snapshots both partitions.
    let ids = [
        restate.create_snapshot(0).await,
        restate.create_snapshot(1).await,
    ];
    let applied = restate.applied_lsn(0).expect("partition 0's applied LSN");
    restate.stop();

    // rocksnap lists what Restate wrote, under Restate's own ids.
    let listed = ok_json(&mut rocksnap(&backend, &["list", "--from", &url, "--json"]));
    for (partition, id) in ids.iter().enumerate() {
        let text = listed.to_string();
        assert!(
            text.contains(id.as_str()),
            "partition {partition}: {id} not in {text}"
        );
    }
    // Verifies it (Restate writes no checksums: sizes only, and says so).
    let verified = output(&mut rocksnap(
        &backend,
        &["verify", "--from", &url, "--partition", "0"],
    ));
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // Restores it, equal to Restate's partition store.
    let live = records(&restate.db(), 0);
    let restored_db = work.path().join("restored");
    let restored = ok_json(&mut rocksnap(
        &backend,
        &[
            "restore",
            "--from",
            &url,
            "--partition",
            "0",
            "--db",
            restored_db.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(restored["snapshot_id"], ids[0].as_str(), "{restored}");
    assert_records_kept(
        &records(&restored_db, 0),
        &live,
        "Restate's snapshot restored by rocksnap",
    );

    // The other way: rocksnap snapshots Restate's stopped partition store
    // in the Restate dialect onto Restate's pointer. The store holds at
    // least what Restate's own snapshot of it holds: the status's applied
    // LSN can lag behind that, and the pointer never moves back.
    let snapshotted = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["partition_id"] == 0)
        .and_then(|l| l["latest"]["min_applied_lsn"].as_u64())
        .expect("Restate's pointer of partition 0");
    let applied = applied.max(snapshotted);
    let published = ok_json(&mut rocksnap(
        &backend,
        &[
            "snapshot",
            "--db",
            restate.db().to_str().unwrap(),
            "--partition",
            "0",
            "--to",
            &url,
            "--format",
            "restate",
            "--lsn",
            &applied.to_string(),
            "--cluster",
            CLUSTER,
            "--node",
            "n1",
            "--json",
        ],
    ));
    let ours = published["snapshot_id"].as_str().unwrap().to_string();
    assert!(ours.starts_with("snap_1"), "{published}");
    let before = records(&restate.db(), 0);

    // Restate, its partition store gone, restores from it.
    std::fs::remove_dir_all(restate.db()).unwrap();
    restate.start();
    common::wait_until("Restate imports partition 0", || {
        let log = restate.log_text();
        log.contains("Found partition snapshot, restoring it")
            && log.contains(&format!("pp-snapshots/{ours}-"))
            && log.contains("Partition 0 started")
    })
    .await;
    let log = restate.log_text();
    assert!(log.contains("Importing partition store snapshot"), "{log}");
    // Restate answers from the restored state: every counter where it was.
    for i in 0..KEYS {
        assert_eq!(add(&restate, &format!("k{i}"), 0), 3 * i, "counter k{i}");
    }
    restate.stop();
    assert_records_kept(
        &before,
        &records(&restate.db(), 0),
        "rocksnap's snapshot restored by Restate",
    );
}
