//! Opening a destination: from a URL (or a plain directory path) to an
//! [`ObjectStore`] and the key prefix inside it.
//!
//! A destination is refused here, at start, when it cannot work: a query
//! string, an unknown scheme, a local path that is not a directory. Errors
//! name the URL without credentials.

/// Implements [`ObjectStore`] for a wrapper store whose field `inner` is
/// the store it wraps: the methods given are its own, every other one goes
/// to `inner` unchanged. Each wrapper here changes multipart uploads only,
/// and spelling out the rest in each would hide that.
macro_rules! wrapper_store {
    ($store:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl object_store::ObjectStore for $store {
            $($own)*

            async fn put_opts(
                &self,
                location: &object_store::path::Path,
                payload: object_store::PutPayload,
                opts: object_store::PutOptions,
            ) -> object_store::Result<object_store::PutResult> {
                self.inner.put_opts(location, payload, opts).await
            }

            async fn get_opts(
                &self,
                location: &object_store::path::Path,
                options: object_store::GetOptions,
            ) -> object_store::Result<object_store::GetResult> {
                self.inner.get_opts(location, options).await
            }

            async fn get_ranges(
                &self,
                location: &object_store::path::Path,
                ranges: &[std::ops::Range<u64>],
            ) -> object_store::Result<Vec<bytes::Bytes>> {
                self.inner.get_ranges(location, ranges).await
            }

            fn delete_stream(
                &self,
                locations: futures::stream::BoxStream<
                    'static,
                    object_store::Result<object_store::path::Path>,
                >,
            ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
            {
                self.inner.delete_stream(locations)
            }

            fn list(
                &self,
                prefix: Option<&object_store::path::Path>,
            ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
            {
                self.inner.list(prefix)
            }

            fn list_with_offset(
                &self,
                prefix: Option<&object_store::path::Path>,
                offset: &object_store::path::Path,
            ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
            {
                self.inner.list_with_offset(prefix, offset)
            }

            async fn list_with_delimiter(
                &self,
                prefix: Option<&object_store::path::Path>,
            ) -> object_store::Result<object_store::ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }

            async fn copy_opts(
                &self,
                from: &object_store::path::Path,
                to: &object_store::path::Path,
                options: object_store::CopyOptions,
            ) -> object_store::Result<()> {
                self.inner.copy_opts(from, to, options).await
            }

            async fn rename_opts(
                &self,
                from: &object_store::path::Path,
                to: &object_store::path::Path,
                options: object_store::RenameOptions,
            ) -> object_store::Result<()> {
                self.inner.rename_opts(from, to, options).await
            }
        }
    };
}

mod azure;
pub(crate) mod local;
mod s3;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use s3::open_s3;
pub use s3::{S3Options, ServerSideEncryption, UploadChecksum};

/// An opened destination: a store, and where in it the repository is.
#[derive(Debug, Clone)]
pub struct Destination {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Key prefix inside the store (the URL's path for buckets; empty for a local directory).
    pub(crate) prefix: Path,
    /// The directory behind a local store, which needs its own compare-and-swap.
    pub(crate) local_root: Option<PathBuf>,
    /// The URL as given, without user info: safe to print.
    pub(crate) display: String,
    /// The smallest part a multipart upload accepts (all parts but the last).
    pub(crate) min_part_size: usize,
    /// How to find the multipart uploads left open under this destination.
    pub(crate) uploads: crate::uploads::UploadLister,
    /// The store is the local directory itself, unwrapped: its files may
    /// be read directly (restore's fast path). A wrapper store sees every
    /// request, so wrapping turns this off.
    pub(crate) plain_local: bool,
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
    /// The store requests go to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix of the repository inside the store.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Where the destination is, safe to print.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The same destination with its store wrapped, the way `object_store`
    /// composes behaviour (throttling, limits, faults in tests): every
    /// request then goes through `wrap`'s store. The local directory's
    /// compare-and-swap still locks the same directory.
    pub fn wrap_store(
        mut self,
        wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>,
    ) -> Self {
        self.store = wrap(self.store);
        self.plain_local = false;
        self
    }

    /// Opens `spec`, a URL (`file:///dir`, `s3://bucket/prefix`, `gs://…`,
    /// `az://…`, `memory://`) or a plain directory path, with S3 settings from
    /// the environment.
    pub fn open(spec: &str, mode: OpenMode) -> Result<Self, StoreError> {
        Self::open_with(spec, mode, &S3Options::default())
    }

    /// Opens `spec` with explicit S3 settings.
    pub fn open_with(spec: &str, mode: OpenMode, s3: &S3Options) -> Result<Self, StoreError> {
        Self::open_with_settings(spec, mode, s3, &[])
    }

    /// Opens `spec` with explicit S3 settings and, for `gs://` and `az://`,
    /// `object_store` configuration keys (`azure_storage_account_name`,
    /// `azure_storage_endpoint`, `google_service_account`, …) that take
    /// precedence over the same settings in the process's environment: a
    /// host passes its own instead of setting environment variables.
    pub fn open_with_settings(
        spec: &str,
        mode: OpenMode,
        s3: &S3Options,
        settings: &[(String, String)],
    ) -> Result<Self, StoreError> {
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
                plain_local: false,
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
                    plain_local: false,
                })
            }
            "gs" | "az" | "azure" | "abfs" | "abfss" => {
                // The process's environment, then the caller's settings.
                let env = std::env::vars()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .chain(settings.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
                let (store, prefix) =
                    object_store::parse_url_opts(&url, env).map_err(|e| StoreError::Open {
                        url: display.clone(),
                        source: e,
                    })?;
                let store: Arc<dyn ObjectStore> = Arc::from(store);
                let store = if url.scheme() == "gs" {
                    store
                } else {
                    Arc::new(azure::DropBlocksOnAbort::new(store))
                };
                Ok(Destination {
                    store,
                    prefix,
                    local_root: None,
                    display,
                    // GCS and Azure take smaller blocks; 5 MiB suits all three.
                    min_part_size: S3_MIN_PART_SIZE,
                    uploads: Default::default(),
                    plain_local: false,
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
            store: Arc::new(local::LocalDirectory::new(store)),
            prefix: Path::default(),
            local_root: Some(root.clone()),
            display,
            min_part_size: 1,
            uploads: crate::uploads::UploadLister::Local(root),
            plain_local: true,
        })
    }
}

impl Destination {
    /// Asks the store for the prefix's listing: a bucket that does not exist,
    /// an endpoint that does not answer or credentials that are refused show
    /// up here, at start, rather than at the first upload.
    pub async fn check(&self) -> Result<(), StoreError> {
        use object_store::Error as E;
        let unreachable = |reason: String| StoreError::Unreachable {
            url: self.display.clone(),
            reason,
        };
        if let crate::uploads::UploadLister::S3(s3) = &self.uploads {
            // Any other answer (or none) leaves it to the listing below.
            match s3.head_bucket().await.map(|s| s.as_u16()) {
                Ok(404) => return Err(unreachable("the bucket does not exist".into())),
                Ok(status @ (401 | 403)) => {
                    return Err(unreachable(format!(
                        "the credentials were refused (HTTP {status} on HeadBucket)"
                    )))
                }
                _ => {}
            }
        }
        let e = match self.store.list_with_delimiter(Some(&self.prefix)).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // Listing a prefix never answers "not found" for the prefix itself:
        // only the bucket (or container) can be missing. Some clients
        // (Azure's) report the store's answer only in their message.
        let text = e.to_string();
        let bucket = if self.display.starts_with("az") || self.display.starts_with("abfs") {
            "container"
        } else {
            "bucket"
        };
        let reason = match (&e, http_status(&text)) {
            (E::NotFound { .. }, _) | (_, Some(404)) => format!("the {bucket} does not exist"),
            (_, Some(status @ (401 | 403))) => {
                format!("the credentials were refused (HTTP {status} on a listing)")
            }
            (E::PermissionDenied { .. } | E::Unauthenticated { .. }, _) => {
                format!("the credentials were refused ({})", first_line(&text))
            }
            _ => first_line(&text).to_string(),
        };
        Err(unreachable(reason))
    }
}

/// The HTTP status a store client's error message reports, if it reports
/// one (`… status code: 404 Not Found …`).
fn http_status(message: &str) -> Option<u16> {
    let at = message.find("status code: ")? + "status code: ".len();
    message.get(at..at + 3)?.parse().ok()
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

/// Why a destination cannot be used. URLs are printed without credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one rocksnap accepts.
    #[error("bad destination {url}: {reason}")]
    BadUrl {
        /// The URL, without credentials.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store client could not be built.
    #[error("cannot open {url}: {source}")]
    Open {
        /// The URL, without credentials.
        url: String,
        /// What the client said.
        #[source]
        source: object_store::Error,
    },
    /// Credentials are missing or incomplete.
    #[error("{url}: {reason}")]
    Credentials {
        /// The URL, without credentials.
        url: String,
        /// What is missing.
        reason: String,
    },
    /// The store answered the start-up check with an error.
    #[error("cannot use {url}: {reason}")]
    Unreachable {
        /// The URL, without credentials.
        url: String,
        /// What the store said.
        reason: String,
    },
    /// A local repository directory cannot be used.
    #[error("local repository {}: {source}", path.display())]
    LocalDir {
        /// The directory.
        path: PathBuf,
        /// What the filesystem said.
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
