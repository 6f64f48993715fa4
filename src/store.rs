//! Opening a destination: from a URL (or a plain directory path) to an
//! [`ObjectStore`] and the key prefix inside it.
//!
//! A destination is refused here, at start, when it cannot work: a query
//! string, an unknown scheme, a local path that is not a directory. Errors
//! name the URL without credentials.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};
use url::Url;

/// Settings for S3 and S3-compatible stores beyond the URL. Each one that is
/// not set falls back to the usual `AWS_*` environment variable.
#[derive(Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// S3 endpoint, for S3-compatible servers (MinIO, R2, moto, …) [env: AWS_ENDPOINT].
    #[arg(long = "s3-endpoint")]
    pub endpoint: Option<String>,
    /// S3 region [env: AWS_REGION].
    #[arg(long = "s3-region")]
    pub region: Option<String>,
    /// Access key id [env: AWS_ACCESS_KEY_ID].
    #[arg(long = "s3-access-key-id")]
    pub access_key_id: Option<String>,
    /// Secret access key; prefer the environment variable [env: AWS_SECRET_ACCESS_KEY].
    #[arg(long = "s3-secret-access-key")]
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials [env: AWS_SESSION_TOKEN].
    #[arg(long = "s3-session-token")]
    pub session_token: Option<String>,
    /// Allow a plain-HTTP endpoint [env: AWS_ALLOW_HTTP=true].
    #[arg(long = "s3-allow-http")]
    #[serde(default)]
    pub allow_http: bool,
    /// Use the credentials of the machine's instance role (EC2, ECS) when no
    /// keys are given; off by default so that missing keys are an error at start.
    #[arg(long = "s3-instance-credentials")]
    #[serde(default)]
    pub instance_credentials: bool,
}

/// Secrets never reach a log line.
impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("instance_credentials", &self.instance_credentials)
            .finish()
    }
}

/// An opened destination.
#[derive(Debug, Clone)]
pub struct Destination {
    pub store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store (the URL's path for buckets; empty for a local directory).
    pub prefix: Path,
    /// The directory behind a local store, which needs its own compare-and-swap.
    pub local_root: Option<PathBuf>,
    /// The URL as given, without user info: safe to print.
    pub display: String,
    /// The smallest part a multipart upload accepts (all parts but the last).
    pub min_part_size: usize,
    /// How to find the multipart uploads left open under this destination.
    pub uploads: crate::uploads::UploadLister,
}

/// S3 refuses multipart parts under 5 MiB, but for the last one.
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// Whether opening a missing local directory creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Writing snapshots: create the directory.
    CreateMissing,
    /// Reading: a missing directory is an error.
    MustExist,
}

impl Destination {
    /// Opens `spec`, a URL (`file:///dir`, `s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `memory://`) or a plain directory path, with S3 settings from
    /// the environment.
    pub fn open(spec: &str, mode: OpenMode) -> Result<Self, StoreError> {
        Self::open_with(spec, mode, &S3Options::default())
    }

    /// Opens `spec` with explicit S3 settings.
    pub fn open_with(spec: &str, mode: OpenMode, s3: &S3Options) -> Result<Self, StoreError> {
        if !spec.contains("://") {
            return Self::local(FsPath::new(spec), mode, spec.to_string());
        }
        let url = Url::parse(spec).map_err(|e| StoreError::BadUrl {
            url: redact(spec),
            reason: e.to_string(),
        })?;
        let display = redact_url(&url);
        if url.query().is_some() || url.fragment().is_some() {
            return Err(StoreError::BadUrl {
                url: display,
                reason: "query strings and fragments are not allowed; the path is the key prefix"
                    .into(),
            });
        }
        match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|_| StoreError::BadUrl {
                    url: display.clone(),
                    reason: "not an absolute local path".into(),
                })?;
                Self::local(&path, mode, display)
            }
            "memory" => Ok(Destination {
                store: Arc::new(InMemory::new()),
                prefix: Path::from(url.path().trim_matches('/')),
                local_root: None,
                display,
                min_part_size: 1,
                uploads: Default::default(),
            }),
            "s3" | "s3a" => {
                let (store, uploads) = open_s3(&url, s3, &display)?;
                Ok(Destination {
                    store,
                    prefix: Path::from(url.path().trim_matches('/')),
                    local_root: None,
                    display,
                    min_part_size: S3_MIN_PART_SIZE,
                    uploads: crate::uploads::UploadLister::S3(uploads),
                })
            }
            "gs" | "az" | "azure" | "abfs" | "abfss" => {
                let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
                let (store, prefix) =
                    object_store::parse_url_opts(&url, env).map_err(|e| StoreError::Open {
                        url: display.clone(),
                        source: e,
                    })?;
                Ok(Destination {
                    store: Arc::from(store),
                    prefix,
                    local_root: None,
                    display,
                    // GCS and Azure take smaller blocks; 5 MiB suits all three.
                    min_part_size: S3_MIN_PART_SIZE,
                    uploads: Default::default(),
                })
            }
            other => Err(StoreError::BadUrl {
                url: display,
                reason: format!(
                    "unknown scheme {other:?} (use file://, s3://, gs://, az://, memory:// or a directory path)"
                ),
            }),
        }
    }

    fn local(dir: &FsPath, mode: OpenMode, display: String) -> Result<Self, StoreError> {
        if mode == OpenMode::CreateMissing {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::LocalDir {
                path: dir.to_path_buf(),
                source: e,
            })?;
        }
        let root = std::fs::canonicalize(dir).map_err(|e| StoreError::LocalDir {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if !root.is_dir() {
            return Err(StoreError::LocalDir {
                path: root,
                source: std::io::Error::other("not a directory"),
            });
        }
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StoreError::Open {
                url: display.clone(),
                source: e,
            })?
            // Object stores promise that a completed write is durable; a local
            // directory keeps that promise only with fsync, and `latest.json`
            // must never point at files a power cut could lose.
            .with_fsync(true)
            // Pruned snapshots leave no empty folders behind.
            .with_automatic_cleanup(true);
        Ok(Destination {
            store: Arc::new(store),
            prefix: Path::default(),
            local_root: Some(root.clone()),
            display,
            min_part_size: 1,
            uploads: crate::uploads::UploadLister::Local(root),
        })
    }
}

/// Builds an S3 client: settings from `s3`, else from `AWS_*`; ETag-based
/// conditional put, which `latest.json`'s compare-and-swap needs; and checks
/// that can be made without a request.
fn open_s3(
    url: &Url,
    s3: &S3Options,
    display: &str,
) -> Result<(Arc<dyn ObjectStore>, crate::uploads::S3Uploads), StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: display.to_string(),
        reason,
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no bucket name".into()));
    }
    let mut b = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // Fail fast at start on a wrong endpoint; transfers retry on their own.
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    if let Some(v) = &s3.endpoint {
        b = b.with_endpoint(v);
    }
    if let Some(v) = &s3.region {
        b = b.with_region(v);
    }
    if let Some(v) = &s3.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &s3.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    if let Some(v) = &s3.session_token {
        b = b.with_token(v);
    }
    if s3.allow_http {
        b = b.with_allow_http(true);
    }
    // The builder has merged the explicit settings and the `AWS_*`
    // variables: every check below reads the settings it will use.
    let config = |k: AmazonS3ConfigKey| b.get_config_value(&k).filter(|v| !v.is_empty());
    let is_true = |k: AmazonS3ConfigKey| config(k).is_some_and(|v| v == "true");
    let allow_http = is_true(AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
    if let Some(e) = config(AmazonS3ConfigKey::Endpoint) {
        if e.starts_with("http://") && !allow_http {
            return Err(bad(format!(
                "endpoint {e} is plain HTTP; pass --s3-allow-http (or set AWS_ALLOW_HTTP=true) to use it"
            )));
        }
    }
    let has_key = config(AmazonS3ConfigKey::AccessKeyId).is_some();
    let has_secret = config(AmazonS3ConfigKey::SecretAccessKey).is_some();
    let other_provider = config(AmazonS3ConfigKey::WebIdentityTokenFile).is_some()
        || config(AmazonS3ConfigKey::ContainerCredentialsRelativeUri).is_some()
        || config(AmazonS3ConfigKey::ContainerCredentialsFullUri).is_some()
        || is_true(AmazonS3ConfigKey::SkipSignature);
    if has_key != has_secret {
        return Err(StoreError::Credentials {
            url: display.to_string(),
            reason: "an access key id needs its secret access key, and the other way round".into(),
        });
    }
    if !has_key && !other_provider && !s3.instance_credentials {
        return Err(StoreError::Credentials {
            url: display.to_string(),
            reason: "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE, or pass --s3-instance-credentials to use the machine's role".into(),
        });
    }
    let bucket = url.host_str().unwrap_or_default().to_string();
    let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
    let base_url = match config(AmazonS3ConfigKey::Endpoint) {
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
    };
    let store = Arc::new(b.build().map_err(|e| StoreError::Open {
        url: display.to_string(),
        source: e,
    })?);
    let uploads = crate::uploads::S3Uploads {
        store: store.clone(),
        base_url,
        region,
    };
    Ok((store, uploads))
}

impl Destination {
    /// Asks the store for the prefix's listing: a bucket that does not exist,
    /// an endpoint that does not answer or credentials that are refused show
    /// up here, at start, rather than at the first upload.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self.store.list_with_delimiter(Some(&self.prefix)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = e.to_string();
                let reason = if text.contains("NoSuchBucket") {
                    "the bucket does not exist".to_string()
                } else if text.contains("InvalidAccessKeyId")
                    || text.contains("SignatureDoesNotMatch")
                    || text.contains("AccessDenied")
                {
                    format!("the credentials were refused ({})", first_line(&text))
                } else {
                    first_line(&text).to_string()
                };
                Err(StoreError::Unreachable {
                    url: self.display.clone(),
                    reason,
                })
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The URL without user name or password.
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn redact(spec: &str) -> String {
    match spec.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => spec.to_string(),
        },
        None => spec.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad destination {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot open {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: {reason}")]
    Credentials { url: String, reason: String },
    #[error("cannot use {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("local repository {}: {source}", path.display())]
    LocalDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_query_and_unknown_scheme() {
        let err = Destination::open("s3://bucket/p?x=1", OpenMode::MustExist).unwrap_err();
        assert!(err.to_string().contains("query"), "{err}");
        let err = Destination::open("ftp://host/p", OpenMode::MustExist).unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
    }

    #[test]
    fn never_prints_credentials() {
        let err = Destination::open("ftp://user:hunter2@host/p", OpenMode::MustExist).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn local_directory_must_exist_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = Destination::open(missing.to_str().unwrap(), OpenMode::MustExist).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        Destination::open(missing.to_str().unwrap(), OpenMode::CreateMissing).unwrap();
        assert!(missing.is_dir());
    }
}
