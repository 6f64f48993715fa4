//! Compare-and-swap of `latest.json` on a local directory.
//!
//! `object_store`'s local store cannot replace an object only if it is still
//! at a version, so every rocksnap process that writes into one directory
//! takes the same exclusive lock file around its check and its write.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{RepoError, Repository};

/// Compare-and-swap on a local directory: the version check and the write
/// happen under an exclusive lock that every writer takes. The write itself
/// is a rename, so readers never see half a pointer.
pub(super) async fn swap(
    repo: &Repository,
    root: &std::path::Path,
    key: &Path,
    expected: Option<&UpdateVersion>,
    payload: PutPayload,
) -> Result<UpdateVersion, RepoError> {
    let lock_path = root.join(".locks").join(key.as_ref().replace('/', "%2F"));
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        std::fs::create_dir_all(lock_path.parent().expect("lock has a parent"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .expect("lock task")
    .map_err(|e| RepoError::Lock {
        key: key.to_string(),
        source: e,
    })?;
    let current = match repo
        .retry
        .run("read latest.json", || repo.store.head(key))
        .await
    {
        Ok(meta) => Some(meta.e_tag),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(RepoError::store("read", key, e)),
    };
    let matches = match (expected, &current) {
        (None, None) => true,
        (Some(want), Some(have)) => want.e_tag.is_some() && &want.e_tag == have,
        _ => false,
    };
    if !matches {
        return Err(RepoError::Conflict {
            key: key.to_string(),
        });
    }
    let put = repo
        .store
        .put_opts(key, payload, PutOptions::from(PutMode::Overwrite))
        .await
        .map_err(|e| RepoError::store("replace", key, e))?;
    drop(lock);
    Ok(UpdateVersion {
        e_tag: put.e_tag,
        version: put.version,
    })
}
