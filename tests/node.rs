//! `rocksnap node` as a process, from a configuration file, on a local
//! directory and on a real S3 server: policy, admin requests, the real
//! `/metrics` endpoint (checked by promtool), SIGTERM mid-snapshot, and
//! invalid configurations.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::backend::Backend;
use rocksnap::format::PartitionId;

struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(backend: &Backend, config: &Path) -> Node {
        let mut cmd = common::bin::command(&["node", "--config", config.to_str().unwrap()]);
        cmd.env("RUST_LOG", "rocksnap=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in backend.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("node did not start: {line:?}"))
            .trim()
            .to_string();
        Node { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

/// A node left running by a failed test is killed with it.
impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_config(dir: &Path, backend: &Backend, extra: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let text = format!(
        r#"[node]
name = "test-node"
db = "{db}"
partitions = [1, 2]
admin_addr = "127.0.0.1:0"
shutdown_deadline = "1s"

[repository]
url = "{url}"

{extra}
"#,
        db = dir.join("db").display(),
        url = backend.url(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The value of a counter or gauge line `name{labels} value` in a scrape.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn promtool_check(scrape: &str) {
    let promtool = std::env::var("ROCKSNAP_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{promtool} ({e}): install Debian's prometheus package"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn json(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

async fn scrape(http: &reqwest::Client, node: &Node) -> String {
    http.get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn policy_requests_and_metrics(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let part = if matches!(backend, Backend::S3 { .. }) {
        "5MiB"
    } else {
        "1MiB"
    };
    let config = write_config(
        dir.path(),
        &backend,
        &format!(
            "[pipeline]\npart_size = \"{part}\"\n\n[policy]\nevery_records = 3000\njitter = \"50ms\"\n\n[workload]\nrecords_per_second = 20000\nvalue_size = \"256B\"\n"
        ),
    );
    let node = Node::start(&backend, &config);
    let http = reqwest::Client::new();

    // The policy fires for both partitions.
    let first = common::wait_for("the policy to snapshot both partitions", || async {
        let s = scrape(&http, &node).await;
        let done = |p: &str| {
            sample(
                &s,
                &format!("rocksnap_snapshots_succeeded_total{{partition=\"{p}\"}}"),
            )
        };
        // The node refreshes the age and trim-point gauges right after a
        // snapshot's outcome; wait for those too.
        let refreshed = ["1", "2"].iter().all(|p| {
            s.contains(&format!(
                "rocksnap_latest_snapshot_age_seconds{{partition=\"{p}\"}}"
            )) && s.contains(&format!("rocksnap_safe_trim_lsn{{partition=\"{p}\"}}"))
        });
        let fired = done("1").unwrap_or(0.0) >= 1.0 && done("2").unwrap_or(0.0) >= 1.0;
        (fired && refreshed).then_some(s)
    })
    .await;
    promtool_check(&first);
    for name in [
        "rocksnap_stage_duration_seconds_bucket{stage=\"export\"",
        "rocksnap_stage_duration_seconds_bucket{stage=\"upload\"",
        "rocksnap_stage_duration_seconds_bucket{stage=\"publish\"",
        "rocksnap_uploaded_bytes_total",
        "rocksnap_uploaded_parts_total",
        "rocksnap_mailbox_depth{stage=\"upload\"}",
        "rocksnap_parts_in_flight",
        "rocksnap_latest_snapshot_lsn{partition=\"1\"}",
        "rocksnap_latest_snapshot_age_seconds{partition=\"1\"}",
        "rocksnap_safe_trim_lsn{partition=\"2\"}",
    ] {
        assert!(
            first.contains(name),
            "{name} missing from the scrape:\n{first}"
        );
    }

    // An admin request returns the outcome, through the CLI too. The
    // policy snapshots every partition many times a second, and a request
    // for a partition already being snapshotted is refused (not queued):
    // ask again until it is the request's turn.
    let outcome = common::wait_for("the admin request's turn", || async {
        let answer = json(http.post(node.url("/snapshots/2")).send().await.unwrap()).await;
        (answer["reason"] != "in_progress").then_some(answer)
    })
    .await;
    assert_eq!(outcome["partition_id"], 2, "{outcome}");
    let out = common::wait_for("the CLI request's turn", || async {
        let out = common::bin::command(&["request", "--node", &node.addr, "--partition", "1"])
            .output()
            .unwrap();
        let busy = String::from_utf8_lossy(&out.stderr).contains("already being snapshotted");
        (!busy).then_some(out)
    })
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let via_cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(via_cli["partition_id"], 1);
    let unknown = http.post(node.url("/snapshots/9")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let out = common::bin::command(&["request", "--node", &node.addr, "--partition", "9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("data-9"));

    // The counters moved, and the trim point is on /partitions.
    let second = scrape(&http, &node).await;
    promtool_check(&second);
    let started = |s: &str| sample(s, "rocksnap_snapshots_started_total{partition=\"2\"}").unwrap();
    assert!(
        started(&second) > started(&first),
        "started_total did not move"
    );
    let bytes = |s: &str| sample(s, "rocksnap_uploaded_bytes_total").unwrap();
    assert!(
        bytes(&second) > bytes(&first),
        "uploaded_bytes_total did not move"
    );
    let partitions = json(http.get(node.url("/partitions")).send().await.unwrap()).await;
    assert!(
        partitions[0]["safe_trim_lsn"].as_u64().is_some(),
        "{partitions}"
    );

    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_node_policy_requests_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    policy_requests_and_metrics(Backend::local(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_node_policy_requests_and_metrics() {
    policy_requests_and_metrics(Backend::s3("node").await).await;
}

async fn sigterm_mid_snapshot(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // A slow store (1 MiB/s) and ~16 MiB per partition: a snapshot takes far
    // longer than the one-second shutdown deadline.
    let part = if matches!(backend, Backend::S3 { .. }) {
        "5MiB"
    } else {
        "256KiB"
    };
    let config = write_config(
        dir.path(),
        &backend,
        &format!("[pipeline]\npart_size = \"{part}\"\nrate_limit = \"1MiB\"\n"),
    );
    {
        let store = rocksnap::PartitionStore::open(
            &dir.path().join("db"),
            &[PartitionId(1), PartitionId(2)],
        )
        .unwrap();
        for lsn in 1..=16u64 {
            let records: Vec<_> = (0..256)
                .map(|i| (common::key(lsn, i), common::value(lsn, i, 4096)))
                .collect();
            store
                .apply(PartitionId(1), rocksnap::Lsn(lsn), records)
                .unwrap();
        }
    }
    let node = Node::start(&backend, &config);
    let url = node.url("/snapshots/1");
    let request = tokio::spawn(async move { reqwest::Client::new().post(url).send().await });
    // Let the upload start, then ask the node to stop.
    // Stopped once its upload is under way: a multipart upload is open.
    backend.wait_upload_under_way(&dir.path().join("db")).await;
    let status = node.terminate();
    assert!(status.success(), "node exited with {status}");
    if let Ok(Ok(response)) = request.await {
        assert!(
            !response.status().is_success(),
            "the snapshot was published after all"
        );
    }

    // Nothing half-published: no pointer, no metadata, no open upload.
    let repo = backend.repository();
    assert!(repo.read_pointer(PartitionId(1)).await.unwrap().is_none());
    for f in repo.list_snapshots(PartitionId(1)).await.unwrap() {
        assert!(
            repo.read_metadata(PartitionId(1), &f.name).await.is_err(),
            "{} has metadata",
            f.name
        );
    }
    assert_eq!(backend.open_uploads().await, 0, "an upload was left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_sigterm_mid_snapshot_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    sigterm_mid_snapshot(Backend::local(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sigterm_mid_snapshot_exits_cleanly() {
    sigterm_mid_snapshot(Backend::s3("sigterm").await).await;
}

#[test]
fn invalid_configurations_are_refused_with_their_problem() {
    let dir = tempfile::tempdir().unwrap();
    let base = |repo: &str, extra: &str| {
        format!(
            "[node]\nname = \"n\"\ndb = \"{}\"\npartitions = [1]\nadmin_addr = \"127.0.0.1:0\"\n\n[repository]\nurl = \"{repo}\"\n{extra}\n",
            dir.path().join("db").display()
        )
    };
    let local = format!("file://{}", dir.path().join("repo").display());
    let cases = [
        (
            base(&local, "[pipeline]\nbogus = 1\n"),
            "unknown field `bogus`",
        ),
        (base("ftp://x/y", ""), "unknown scheme"),
        (base("s3://bucket/p?x=1", ""), "query strings"),
        (
            base("s3://bucket/p", "[pipeline]\npart_size = \"1MiB\"\n"),
            "under the 5 MiB",
        ),
        (
            base(&local, "[pipeline]\nparts_in_flight = 0\n"),
            "parts_in_flight must be above zero",
        ),
        (
            base(&local, "[policy]\nmax_concurrent_exports = 0\n"),
            "max_concurrent_exports must be above zero",
        ),
        (base(&local, "[policy]\nevery = \"soon\"\n"), "every"),
        (
            base(&local, "[workload]\nrecords_per_second = 0\n"),
            "records_per_second must be above zero",
        ),
        (
            base(&local, "").replace("partitions = [1]", "partitions = []"),
            "node.partitions is empty",
        ),
        (
            base(&local, "").replace("127.0.0.1:0", "0.0.0.0:0"),
            "is not a loopback address",
        ),
    ];
    for (i, (text, expect)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = common::bin::command(&["node", "--config", path.to_str().unwrap()])
            .env("AWS_ACCESS_KEY_ID", "k")
            .env("AWS_SECRET_ACCESS_KEY", "s")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} started");
        assert!(
            stderr.contains(expect),
            "case {i}: expected {expect:?} in {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "case {i}: {stderr}");
    }
}

/// Bound beyond loopback, a node takes state-changing requests only with
/// its token; reads stay open, and `rocksnap request` sends the token from
/// the environment. The token never shows in what the node prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_state_changing_requests() {
    const TOKEN: &str = "a-long-admin-token-1234";
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path().join("repo"));
    let path = write_config(dir.path(), &backend, "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "admin_addr = \"127.0.0.1:0\"",
        &format!("admin_addr = \"0.0.0.0:0\"\nadmin_token = \"{TOKEN}\""),
    );
    std::fs::write(&path, text).unwrap();
    {
        let store =
            rocksnap::PartitionStore::open(&dir.path().join("db"), &[PartitionId(1)]).unwrap();
        store
            .apply(
                PartitionId(1),
                rocksnap::Lsn(4),
                [(b"k".to_vec(), b"v".to_vec())],
            )
            .unwrap();
    }
    let mut node = Node::start(&backend, &path);
    // Bound to every address; reached here on loopback.
    let port = node.addr.rsplit(':').next().unwrap().to_string();
    node.addr = format!("127.0.0.1:{port}");
    let url = node.url("/snapshots/1");
    let client = reqwest::Client::new();

    let none = client.post(&url).send().await.unwrap();
    assert_eq!(none.status(), reqwest::StatusCode::UNAUTHORIZED);
    let wrong = client
        .post(&url)
        .bearer_auth("a-long-but-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(
        common::files_below(&dir.path().join("repo").join("1")).is_empty(),
        "a snapshot was taken"
    );
    let metrics = client.get(node.url("/metrics")).send().await.unwrap();
    assert!(metrics.status().is_success(), "reads need no token");

    let right = client.post(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert!(
        right.status().is_success(),
        "{}",
        right.text().await.unwrap()
    );
    let out = common::bin::command(&["request", "--node", &node.addr, "--partition", "1"])
        .env("ROCKSNAP_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = common::bin::command(&["request", "--node", &node.addr, "--partition", "1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"));
    let status = node.terminate();
    assert!(status.success());
}

/// A node whose database is gone restores every partition from the
/// repository before it opens them for writes, and reports where each came
/// from and the LSN its log resumes after; with bootstrap off, they start
/// empty.
async fn bootstrap_at_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let path = write_config(dir.path(), &backend, "");
    let (before_1, before_2) = {
        let store = rocksnap::PartitionStore::open(&db, &[PartitionId(1), PartitionId(2)]).unwrap();
        for (p, lsn) in [(1u64, 7u64), (2, 9)] {
            let records: Vec<_> = (0..300)
                .map(|i| (common::key(lsn, i), common::value(lsn, i, 1000)))
                .collect();
            store
                .apply(PartitionId(p), rocksnap::Lsn(lsn), records)
                .unwrap();
        }
        (
            store.entries("data-1").unwrap(),
            store.entries("data-2").unwrap(),
        )
    };
    let node = Node::start(&backend, &path);
    let client = reqwest::Client::new();
    for p in [1, 2] {
        let r = client
            .post(node.url(&format!("/snapshots/{p}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    assert!(node.terminate().success());

    std::fs::remove_dir_all(&db).unwrap();
    let node = Node::start(&backend, &path);
    let parts = json(client.get(node.url("/partitions")).send().await.unwrap()).await;
    for (i, lsn) in [(0usize, 7u64), (1, 9)] {
        assert_eq!(parts[i]["origin"]["source"], "snapshot", "{parts}");
        assert_eq!(parts[i]["resume_after"], lsn, "{parts}");
        assert_eq!(parts[i]["applied_lsn"], lsn, "{parts}");
    }
    assert!(node.terminate().success());
    let store = rocksnap::PartitionStore::open_existing(&db).unwrap();
    assert!(
        store.entries("data-1").unwrap() == before_1,
        "partition 1 differs from its snapshot"
    );
    assert!(
        store.entries("data-2").unwrap() == before_2,
        "partition 2 differs from its snapshot"
    );
    drop(store);

    // Bootstrap off: the partitions start empty, and say so.
    std::fs::remove_dir_all(&db).unwrap();
    let text = std::fs::read_to_string(&path).unwrap() + "\n[bootstrap]\nmode = \"never\"\n";
    std::fs::write(&path, text).unwrap();
    let node = Node::start(&backend, &path);
    let parts = json(client.get(node.url("/partitions")).send().await.unwrap()).await;
    for i in [0, 1] {
        assert_eq!(parts[i]["origin"]["source"], "not_bootstrapped", "{parts}");
        assert!(parts[i]["applied_lsn"].is_null(), "{parts}");
    }
    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_bootstrap_at_start() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_at_start(Backend::local(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bootstrap_at_start() {
    bootstrap_at_start(Backend::s3("bootstrap").await).await;
}

/// A running node with a workload: one partition's log is trimmed past its
/// applied LSN; the node fast-forwards it from a snapshot that covers the
/// gap while the other partition keeps taking writes, then writes and
/// snapshots of it go on. A gap no snapshot covers is refused.
async fn fast_forward_on_a_running_node(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &backend,
        "[workload]\nrecords_per_second = 200\nvalue_size = \"100B\"\n",
    );
    let node = Node::start(&backend, &path);
    let client = reqwest::Client::new();
    let status = || async { json(client.get(node.url("/partitions")).send().await.unwrap()).await };

    // Another node publishes partition 1 far ahead, at LSN 10 000.
    let source = common::Fixture::new(&[1]);
    source.write(1, 10_000, 500, 1000);
    let supervisor = source
        .supervisor_on(
            rocksnap::PipelineConfig {
                part_size: backend.part_size(),
                ..source.config()
            },
            backend.repository(),
            std::sync::Arc::default(),
        )
        .await;
    common::snapshot(&supervisor, 1, None).await.unwrap();
    supervisor.stop(None);

    // The log now starts at 9 000: partition 1 (at a few hundred) has a gap.
    let ff = client
        .post(node.url("/partitions/1/fast-forward?log_start=9000"))
        .send()
        .await
        .unwrap();
    let ok = ff.status().is_success();
    let done = json(ff).await;
    assert!(ok, "{done}");
    assert_eq!(done["applied_lsn"], 10_000, "{done}");
    // Partition 2 kept (and keeps) taking writes; partition 1 resumes after 10 000.
    let before = status().await[1]["applied_records"].as_u64().unwrap();
    common::wait_until_async("writes go on in both partitions", || async {
        let now = status().await;
        now[1]["applied_records"].as_u64().unwrap() > before
            && now[0]["applied_lsn"].as_u64().unwrap() > 10_000
    })
    .await;
    let snap = client.post(node.url("/snapshots/1")).send().await.unwrap();
    let snap = json(snap).await;
    assert!(snap["min_applied_lsn"].as_u64().unwrap() > 10_000, "{snap}");

    // A gap no snapshot covers: refused, nothing changed.
    let lsn_before = status().await[0]["applied_lsn"].as_u64().unwrap();
    let refused = client
        .post(node.url("/partitions/1/fast-forward?log_start=1000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("no snapshot covers the gap"));
    assert!(status().await[0]["applied_lsn"].as_u64().unwrap() >= lsn_before);
    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_fast_forward_on_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    fast_forward_on_a_running_node(Backend::local(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_fast_forward_on_a_running_node() {
    fast_forward_on_a_running_node(Backend::s3("fastforward").await).await;
}

/// The alert rules shipped in `deploy/prometheus/` pass promtool: they
/// parse, and every alert fires on its fixtures and stays quiet on others.
#[test]
fn alert_rules_pass_promtool() {
    let promtool = std::env::var("ROCKSNAP_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "rocksnap-rules.yml"],
        ["test", "rules", "rocksnap-rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("{promtool} ({e}): install Debian's prometheus package"));
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `rocksnap_…` name in a text (a rule file, a dashboard).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rocksnap_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The alert rules and the dashboard use only metrics the node exports: a
/// live node is made to snapshot, fail, scrub, find a damaged file and
/// refuse a fast-forward, so that every labelled series exists, and its
/// `/metrics` is scraped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_metrics_the_node_exports() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(dir.path().join("repo"));
    {
        let store = rocksnap::PartitionStore::open(
            &dir.path().join("db"),
            &[PartitionId(1), PartitionId(2)],
        )
        .unwrap();
        for lsn in 1..=3 {
            store
                .apply(
                    PartitionId(1),
                    rocksnap::Lsn(lsn),
                    (0..200).map(|i| (common::key(lsn, i), common::value(lsn, i, 300))),
                )
                .unwrap();
        }
    }
    let config = write_config(
        dir.path(),
        &backend,
        "[policy]\nevery = \"1h\"\n\n[scrub]\nevery = \"50ms\"\ndeep = true\n",
    );
    let node = Node::start(&backend, &config);
    let http = reqwest::Client::new();

    // A snapshot, and a failure.
    let ok = http.post(node.url("/snapshots/1")).send().await.unwrap();
    assert!(ok.status().is_success());
    let failed = http
        .post(node.url("/snapshots/1?min_lsn=1000000"))
        .send()
        .await
        .unwrap();
    assert!(!failed.status().is_success());
    // A scrub that passes, then one that finds a flipped bit.
    let scrub_outcome = |partitions: &serde_json::Value| {
        partitions
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["partition_id"] == 1)
            .map(|p| {
                p["last_scrub"]["outcome"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap()
    };
    let outcome = || async {
        scrub_outcome(&json(http.get(node.url("/partitions")).send().await.unwrap()).await)
    };
    common::wait_until_async("a scrub passed", || async { outcome().await == "ok" }).await;
    let repo = dir.path().join("repo").join("1");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("latest.json")).unwrap()).unwrap();
    let folder = repo.join(latest["path"].as_str().unwrap());
    let sst = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&sst, &bytes).unwrap();
    common::wait_until_async("a scrub found the damage", || async {
        outcome().await == "checksum"
    })
    .await;
    // A fast-forward no snapshot covers: refused, and counted.
    let refused = http
        .post(node.url("/partitions/2/fast-forward?log_start=1000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT);

    let scraped = scrape(&http, &node).await;
    promtool_check(&scraped);
    let exported: std::collections::BTreeSet<String> = scraped
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    assert!(
        sample(
            &scraped,
            r#"rocksnap_scrub_failures_total{partition="1",reason="checksum"}"#
        )
        .is_some_and(|v| v >= 1.0),
        "{scraped}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in [
        "prometheus/rocksnap-rules.yml",
        "grafana/rocksnap-dashboard.json",
    ] {
        let used = metric_names(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(!used.is_empty(), "{file} uses no metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the node does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    assert!(node.terminate().success());
}
