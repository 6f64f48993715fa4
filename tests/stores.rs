//! The command line against a real S3 server and Azurite: a full round trip
//! (a multipart-sized file, the layout, nothing left open), and every bad
//! configuration refused at start with its own message.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::bin;

use common::backend::{Backend, SECRET_KEY};
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::PartitionStore;

fn command(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = bin::command(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

fn run(env: &[(String, String)], args: &[&str]) -> Output {
    bin::output(&mut command(env, args))
}

fn ok_json(env: &[(String, String)], args: &[&str]) -> serde_json::Value {
    bin::ok_json(&mut command(env, args))
}

/// `rocksnap list` of `url` with every S3 setting on the command line.
fn list_explicitly<'a>(url: &'a str, endpoint: &'a str) -> [&'a str; 12] {
    [
        "list",
        "--from",
        url,
        "--s3-endpoint",
        endpoint,
        "--s3-region",
        "us-east-1",
        "--s3-access-key-id",
        "k",
        "--s3-secret-access-key",
        SECRET_KEY,
        "--s3-allow-http",
    ]
}

fn refused(env: &[(String, String)], args: &[&str], expect: &str) {
    let stderr = bin::fails_clearly(&mut command(env, args), expect);
    assert!(!stderr.contains(SECRET_KEY), "the secret leaked: {stderr}");
}

fn build_db(path: &Path) {
    let store = PartitionStore::open(path, &[PartitionId(3)]).unwrap();
    for lsn in 1..=4u64 {
        let records: Vec<_> = (0..1024)
            .map(|i| (common::key(lsn, i), common::value(lsn, i, 4096)))
            .collect();
        store.apply(PartitionId(3), Lsn(lsn), records).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_list_verify_restore_on_s3() {
    round_trip(Backend::s3("cli").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_list_verify_restore_on_azure() {
    round_trip(Backend::azure("cli").await).await;
}

async fn round_trip(backend: Backend) {
    let env = backend.env();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let url = backend.url();
    let db_s = db.to_str().unwrap();
    // 16 MiB of values in 5 MiB parts: multipart uploads on S3.
    let outcome = ok_json(
        &env,
        &[
            "snapshot",
            "--db",
            db_s,
            "--partition",
            "3",
            "--to",
            &url,
            "--part-size",
            "5MiB",
            "--json",
        ],
    );
    assert_eq!(outcome["min_applied_lsn"], 4);
    assert!(outcome["bytes"].as_u64().unwrap() > 10 << 20);

    let list = ok_json(&env, &["list", "--from", &url, "--json"]);
    assert_eq!(list[0]["latest"]["snapshot_id"], outcome["snapshot_id"]);
    let report = ok_json(
        &env,
        &[
            "verify",
            "--from",
            &url,
            "--partition",
            "3",
            "--deep",
            "--json",
        ],
    );
    assert_eq!(report["snapshot_id"], outcome["snapshot_id"]);

    let restored = dir.path().join("restored");
    let r = ok_json(
        &env,
        &[
            "restore",
            "--from",
            &url,
            "--partition",
            "3",
            "--db",
            restored.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(r["restored_lsn"], 4);
    let a = PartitionStore::open_existing(&db)
        .unwrap()
        .entries("data-3")
        .unwrap();
    let b = PartitionStore::open_existing(&restored)
        .unwrap()
        .entries("data-3")
        .unwrap();
    assert!(a == b, "restored data differs");
    assert_eq!(backend.open_uploads().await, 0);

    // The layout, as the store lists it.
    let repo = backend.repository();
    let pointer = repo
        .read_pointer(PartitionId(3))
        .await
        .unwrap()
        .unwrap()
        .pointer;
    let id = outcome["snapshot_id"].as_str().unwrap();
    assert_eq!(pointer.snapshot_id.to_string(), id);
    assert_eq!(
        pointer.path,
        rocksnap::format::snapshot_folder(Lsn(4), pointer.snapshot_id)
    );
    let objects = repo
        .list_objects(PartitionId(3), &pointer.path)
        .await
        .unwrap();
    let meta = repo
        .read_metadata(PartitionId(3), &pointer.path)
        .await
        .unwrap();
    let mut names: Vec<String> = objects
        .iter()
        .map(|(k, _)| k.filename().unwrap().to_string())
        .collect();
    names.sort();
    let mut expected: Vec<String> = meta
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string())
        .chain(["metadata.json".to_string()])
        .collect();
    expected.sort();
    assert_eq!(names, expected, "{}: the snapshot's folder", backend.name());
    for (key, size) in &objects {
        if let Some(f) = meta
            .files
            .iter()
            .find(|f| key.as_ref().ends_with(f.file_name().unwrap()))
        {
            assert_eq!(*size, f.size, "{key}");
        }
    }
    assert!(
        meta.files.iter().any(|f| f.size > 5 << 20),
        "no file needed a multipart upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_refused_at_start() {
    let backend = Backend::s3("config").await;
    let Backend::S3 { endpoint, bucket } = &backend else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let db_s = db.to_str().unwrap();
    let good = backend.env();
    let without = |name: &str| -> Vec<(String, String)> {
        good.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let url = backend.url();

    refused(
        &good,
        &["list", "--from", &format!("{url}?versionId=1")],
        "query strings",
    );
    refused(
        &good,
        &["list", "--from", "gopher://bucket/x"],
        "unknown scheme",
    );
    refused(
        &without("AWS_ALLOW_HTTP"),
        &["list", "--from", &url],
        "plain HTTP",
    );
    refused(
        &good,
        &["list", "--from", "s3://no-such-bucket/x"],
        "the bucket does not exist",
    );
    let no_keys: Vec<_> = good
        .iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .cloned()
        .collect();
    refused(&no_keys, &["list", "--from", &url], "no credentials");
    refused(
        &without("AWS_ACCESS_KEY_ID"),
        &["list", "--from", &url],
        "access key id needs its secret",
    );
    refused(
        &good,
        &[
            "snapshot",
            "--db",
            db_s,
            "--partition",
            "3",
            "--to",
            &url,
            "--part-size",
            "1MiB",
        ],
        "part size 1048576 is below the 5242880 bytes",
    );
    // Explicit settings work without the environment, and the secret given
    // on the command line does not show in errors.
    let in_bucket = format!("s3://{bucket}/x");
    let out = run(
        &[],
        &[&list_explicitly(&in_bucket, endpoint)[..], &["--json"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused(
        &[],
        &list_explicitly("s3://no-such-bucket/x", endpoint),
        "the bucket does not exist",
    );
}

/// A server that ignores conditional writes would turn the pointer's
/// compare-and-swap into a blind overwrite: writers find out at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_conditional_writes_is_refused() {
    let backend = Backend::s3("blind").await;
    // moto honours them.
    backend
        .repository()
        .check_conditional_writes()
        .await
        .unwrap();
    let dest = backend.destination();
    let store = common::faulty::FaultyStore::new(dest.store().clone());
    store.ignore_conditions();
    let blind = rocksnap::Repository::new(dest.wrap_store(|_| std::sync::Arc::new(store.clone())));
    let err = blind.check_conditional_writes().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not honour conditional writes"),
        "{err}"
    );
    // The probes leave nothing behind.
    use futures::TryStreamExt;
    let repo = backend.repository();
    let left: Vec<_> = repo
        .store()
        .list(Some(repo.layout().prefix()))
        .try_collect()
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_bad_configuration_is_refused_at_start() {
    let backend = Backend::azure("config").await;
    let good = backend.env();
    let url = backend.url();
    refused(
        &good,
        &["list", "--from", "az://no-such-container/x"],
        "the container does not exist",
    );
    let wrong_key: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| {
            if k == "AZURE_STORAGE_ACCOUNT_KEY" {
                (k.clone(), "d3Jvbmcta2V5LXdyb25nLWtleQ==".to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    refused(
        &wrong_key,
        &["list", "--from", &url],
        "the credentials were refused",
    );
    let stderr = bin::fails_clearly(
        &mut command(&wrong_key, &["list", "--from", &url]),
        "refused",
    );
    assert!(!stderr.contains("d3Jvbmcta2V5"), "the key leaked: {stderr}");
}

/// What S3 keeps of an object's encryption and checksum, read with boto3
/// (beside moto) rather than through rocksnap: `(ServerSideEncryption,
/// SSEKMSKeyId, ChecksumSHA256)`, each empty when absent.
fn s3_head(backend: &Backend, key: &str) -> (String, String, String) {
    let Backend::S3 { endpoint, bucket } = backend else {
        unreachable!()
    };
    let python = std::env::var("ROCKSNAP_MOTO_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.moto/bin/python").to_string());
    let script = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id=sys.argv[4], aws_secret_access_key=sys.argv[5])
h = s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3], ChecksumMode="ENABLED")
print(h.get("ServerSideEncryption", ""))
print(h.get("SSEKMSKeyId", ""))
print(h.get("ChecksumSHA256", ""))
"#;
    let out = Command::new(python)
        .args(["-c", script, endpoint, bucket, key])
        .args([common::backend::ACCESS_KEY, SECRET_KEY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::to_string);
    let mut next = || lines.next().unwrap_or_default();
    (next(), next(), next())
}

/// Server-side encryption (SSE-S3, SSE-KMS with a key) and S3's own upload
/// checksum, as flags: every object rocksnap writes carries them, and what
/// was written that way verifies and restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_encryption_and_checksums_apply_to_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    build_db(&db);
    let db_s = db.to_str().unwrap();
    let kms_key = "arn:aws:kms:us-east-1:123456789012:key/rocksnap-test";
    let cases: [(&str, &[&str]); 3] = [
        ("sse-s3", &["--s3-sse", "aes256"]),
        (
            "sse-kms",
            &["--s3-sse", "kms", "--s3-sse-kms-key-id", kms_key],
        ),
        ("checksum", &["--s3-checksum", "sha256"]),
    ];
    for (name, flags) in cases {
        let backend = Backend::s3(name).await;
        let env = backend.env();
        let url = backend.url();
        let args = [
            &["snapshot", "--db", db_s, "--partition", "3", "--to", &url][..],
            &["--part-size", "5MiB", "--json"],
            flags,
        ]
        .concat();
        let outcome = ok_json(&env, &args);
        let repo = backend.repository();
        let pointer = repo
            .read_pointer(PartitionId(3))
            .await
            .unwrap()
            .unwrap()
            .pointer;
        let objects = repo
            .list_objects(PartitionId(3), &pointer.path)
            .await
            .unwrap();
        let mut keys: Vec<String> = objects.iter().map(|(k, _)| k.to_string()).collect();
        keys.push(repo.layout().latest(PartitionId(3)).to_string());
        assert!(keys.len() >= 3, "{keys:?}");
        for key in &keys {
            let (sse, kms, sha256) = s3_head(&backend, key);
            match name {
                "sse-s3" => assert_eq!(sse, "AES256", "{key}"),
                "sse-kms" => {
                    assert_eq!(sse, "aws:kms", "{key}");
                    assert!(kms.contains("rocksnap-test"), "{key}: {kms}");
                }
                // moto keeps the checksum of plain and multipart uploads,
                // and drops it on conditional writes (metadata.json and
                // latest.json), which S3 itself keeps.
                _ if key.ends_with(".sst") => {
                    assert!(!sha256.is_empty(), "{key}: no SHA-256 kept")
                }
                _ => {}
            }
        }
        let mut verify = vec!["verify", "--from", &url, "--partition", "3", "--json"];
        verify.extend(flags);
        let report = ok_json(&env, &verify);
        assert_eq!(report["snapshot_id"], outcome["snapshot_id"]);
    }
    refused(
        &Backend::s3("kms-alone").await.env(),
        &["list", "--from", "s3://x/y", "--s3-sse-kms-key-id", kms_key],
        "needs server-side encryption kms",
    );
}
