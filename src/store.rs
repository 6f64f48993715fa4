//! Opening a destination: from a URL (or a plain directory path) to an
//! [`ObjectStore`] and the key prefix inside it.
//!
//! A destination is refused here, at start, when it cannot work: a query
//! string, an unknown scheme, a local path that is not a directory. Errors
//! name the URL without credentials.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

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
}

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
    /// `az://…`, `memory://`) or a plain directory path.
    pub fn open(spec: &str, mode: OpenMode) -> Result<Self, StoreError> {
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
            }),
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
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
            local_root: Some(root),
            display,
        })
    }
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
