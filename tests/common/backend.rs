//! The stores the same test bodies run against: a local directory, a real
//! S3-compatible server (moto, started once per test binary on a free
//! loopback port, a bucket per test), and Azure's emulator (Azurite, the
//! same way, a container per test).

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
    Azure { container: String, endpoint: String },
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

    /// A fresh container on the shared Azurite server.
    pub async fn azure(hint: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let endpoint = azurite_endpoint();
        let clean: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .take(30)
            .collect();
        let container = format!(
            "t-{clean}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let (status, body) = azure_request(&endpoint, "PUT", &container, "restype=container").await;
        assert_eq!(status, 201, "creating container {container}: {body}");
        Backend::Azure {
            container,
            endpoint,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Local { .. } => "local",
            Backend::S3 { .. } => "s3",
            Backend::Azure { .. } => "azure",
        }
    }

    pub fn url(&self) -> String {
        match self {
            Backend::Local { dir } => format!("file://{}", dir.display()),
            Backend::S3 { bucket, .. } => format!("s3://{bucket}/snapshots"),
            Backend::Azure { container, .. } => format!("az://{container}/snapshots"),
        }
    }

    /// `object_store` settings of an Azure backend: Azurite's well-known
    /// account, at its endpoint.
    fn azure_settings(&self) -> Vec<(String, String)> {
        match self {
            Backend::Azure { endpoint, .. } => vec![
                ("azure_storage_account_name".into(), AZURITE_ACCOUNT.into()),
                ("azure_storage_account_key".into(), AZURITE_KEY.into()),
                (
                    "azure_storage_endpoint".into(),
                    format!("{endpoint}/{AZURITE_ACCOUNT}"),
                ),
                ("azure_allow_http".into(), "true".into()),
            ],
            _ => vec![],
        }
    }

    pub fn s3_options(&self) -> S3Options {
        match self {
            Backend::Local { .. } | Backend::Azure { .. } => S3Options::default(),
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
        Destination::open_with_settings(
            &self.url(),
            OpenMode::CreateMissing,
            &self.s3_options(),
            &self.azure_settings(),
        )
        .unwrap()
    }

    pub fn repository(&self) -> Repository {
        Repository::new(self.destination())
    }

    /// Environment for a `rocksnap` process using this store.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Local { .. } => vec![],
            Backend::Azure { .. } => self
                .azure_settings()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v))
                .collect(),
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
            Backend::S3 { .. } | Backend::Azure { .. } => rocksnap::store::S3_MIN_PART_SIZE,
        }
    }

    /// Waits until a snapshot of the database at `db` is under way: its
    /// export staged, a multipart upload open.
    pub async fn wait_upload_under_way(&self, db: &std::path::Path) {
        let staging = rocksnap::default_staging_dir(db);
        super::wait_until("the export starts", || {
            std::fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some())
        })
        .await;
        super::wait_until_async("the upload starts", || async {
            self.open_uploads().await > 0
        })
        .await;
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
            // Blobs that have staged blocks and no committed content: listed
            // only when uncommitted blobs are asked for.
            Backend::Azure {
                container,
                endpoint,
            } => {
                let list = |include: &'static str| async move {
                    let query = format!("restype=container&comp=list{include}");
                    let (status, body) = azure_request(endpoint, "GET", container, &query).await;
                    assert_eq!(status, 200, "{body}");
                    body.matches("<Name>").count()
                };
                list("&include=uncommittedblobs").await - list("").await
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

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A request to Azurite signed with the account's shared key (the tests'
/// own calls: containers, uncommitted blobs); its status and body.
pub async fn azure_request(endpoint: &str, method: &str, path: &str, query: &str) -> (u16, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    params.sort();
    let canonical_query: String = params.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
    // No request here has a body: its length is signed as empty.
    let to_sign = format!(
        "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{path}{canonical_query}"
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64.decode(AZURITE_KEY).unwrap());
    let signature = b64.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let response = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{endpoint}/{AZURITE_ACCOUNT}/{path}?{query}"),
        )
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header(
            "Authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
        )
        .header("Content-Length", 0)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

struct Azurite {
    endpoint: String,
    _child: Child,
    /// Azurite exits when this closes (see `start_azurite`).
    _stdin: ChildStdin,
    /// Where its log is.
    _dir: tempfile::TempDir,
}

static AZURITE: OnceLock<Mutex<Azurite>> = OnceLock::new();

/// Starts Azurite's blob service on first use.
pub fn azurite_endpoint() -> String {
    let azurite = AZURITE.get_or_init(|| Mutex::new(start_azurite()));
    azurite.lock().unwrap().endpoint.clone()
}

/// Azurite (`ROCKSNAP_AZURITE_BIN`, or the project's
/// `.azurite/node_modules/.bin`), in memory, on a free loopback port. It is
/// started through `sh` with its standard input a pipe from this process,
/// and killed when the pipe closes, so that a test process that dies never
/// leaves it behind.
fn start_azurite() -> Azurite {
    let bin = std::env::var_os("ROCKSNAP_AZURITE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".azurite/node_modules/.bin")
        })
        .join("azurite-blob");
    assert!(
        bin.exists(),
        "Azurite is not installed at {}: run the README's setup line, or set ROCKSNAP_AZURITE_BIN",
        bin.display()
    );
    // Its output goes to a log file, read here until it says where it
    // listens: a pipe would break when this process ends first.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("azurite.log");
    let script = format!(
        "'{}' --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --loose > '{}' 2>&1 & pid=$!; cat >/dev/null; kill $pid",
        bin.display(),
        log.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start azurite");
    let stdin = child.stdin.take().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let endpoint = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(url) = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Azurite Blob service successfully listens on ")
        }) {
            break url.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "Azurite did not start: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Azurite {
        endpoint,
        _child: child,
        _stdin: stdin,
        _dir: dir,
    }
}
