//! The stores the same test bodies run against: a local directory, and a
//! real S3-compatible server (moto, started once per test binary on a free
//! loopback port, a bucket per test).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use rocksnap::store::S3Options;
use rocksnap::{Destination, OpenMode, Repository};

pub const ACCESS_KEY: &str = "rocksnap-test";
pub const SECRET_KEY: &str = "rocksnap-test-secret";

/// A store for one test.
#[derive(Debug, Clone)]
pub enum Backend {
    Local { dir: PathBuf },
    S3 { bucket: String, endpoint: String },
}

impl Backend {
    pub fn local(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Backend::Local { dir }
    }

    /// A fresh bucket on the shared moto server.
    pub async fn s3(hint: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let endpoint = moto_endpoint();
        let clean: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let bucket = format!(
            "t-{clean}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let status = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
        Backend::S3 { bucket, endpoint }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local { .. } => "local",
            Backend::S3 { .. } => "s3",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Backend::Local { dir } => format!("file://{}", dir.display()),
            Backend::S3 { bucket, .. } => format!("s3://{bucket}/snapshots"),
        }
    }

    pub fn s3_options(&self) -> S3Options {
        match self {
            Backend::Local { .. } => S3Options::default(),
            Backend::S3 { endpoint, .. } => S3Options {
                endpoint: Some(endpoint.clone()),
                region: Some("us-east-1".into()),
                access_key_id: Some(ACCESS_KEY.into()),
                secret_access_key: Some(SECRET_KEY.into()),
                allow_http: true,
                ..S3Options::default()
            },
        }
    }

    pub fn destination(&self) -> Destination {
        Destination::open_with(&self.url(), OpenMode::CreateMissing, &self.s3_options()).unwrap()
    }

    pub fn repository(&self) -> Repository {
        Repository::new(self.destination())
    }

    /// Environment for a `rocksnap` process using this store.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local { .. } => vec![],
            Backend::S3 { endpoint, .. } => vec![
                ("AWS_ENDPOINT".into(), endpoint.clone()),
                ("AWS_REGION".into(), "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
                ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
                ("AWS_ALLOW_HTTP".into(), "true".into()),
            ],
        }
    }

    /// The smallest part size the store accepts.
    pub fn part_size(&self) -> usize {
        match self {
            Backend::Local { .. } => 64 * 1024,
            Backend::S3 { .. } => rocksnap::store::S3_MIN_PART_SIZE,
        }
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub async fn open_uploads(&self) -> usize {
        match self {
            // object_store stages a local multipart upload as `<key>#<n>`.
            Backend::Local { dir } => super::files_below(dir)
                .iter()
                .filter(|f| f.contains('#'))
                .count(),
            Backend::S3 { bucket, endpoint } => {
                let body = reqwest::Client::new()
                    .get(format!("{endpoint}/{bucket}?uploads"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(body.contains("ListMultipartUploadsResult"), "{body}");
                body.matches("<Upload>").count()
            }
        }
    }
}

struct Moto {
    endpoint: String,
    _child: Child,
    /// moto exits when this closes, which is when this process ends.
    _stdin: ChildStdin,
}

static MOTO: OnceLock<Mutex<Moto>> = OnceLock::new();

/// Starts moto's S3 server on first use.
pub fn moto_endpoint() -> String {
    let moto = MOTO.get_or_init(|| Mutex::new(start_moto()));
    moto.lock().unwrap().endpoint.clone()
}

fn start_moto() -> Moto {
    let python = std::env::var_os("ROCKSNAP_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".moto/bin/python"));
    assert!(
        python.exists(),
        "moto is not installed at {}: run the README's setup line, or set ROCKSNAP_MOTO_PYTHON",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/moto_server.py");
    let mut child = Command::new(&python)
        .arg(script)
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start moto");
    let stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("moto did not start: {line:?}"));
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: child,
        _stdin: stdin,
    }
}
