//! Step 4 of a restore, the only one that touches the live database.
//!
//! An intent naming both sides is written and fsynced before the live
//! column family is dropped, and removed once the new one is in, so that a
//! restore that dies at any instant is finished by whatever opens the
//! database next (see [`crate::partition::RestoreIntent`]).

use std::path::Path;

use super::prepare::{import_files, Prepared};
use super::RestoreError;
use crate::partition::{intent, PartitionStore, RestoreIntent};

/// Replaces the column family of the database at `db` (not open elsewhere)
/// with the prepared one.
pub(super) fn swap_into(db: &Path, cf: &str, prepared: Prepared) -> Result<(), RestoreError> {
    // Opening recovers an earlier restore that was interrupted, if any.
    let live = PartitionStore::open(db, &[])?;
    swap_in(&live, cf, prepared)
}

/// Replaces the live column family with the prepared one, keeping the old one
/// (exported by hard links) until the new one is in. The caller holds the
/// column family's gate, or has the database to itself.
pub(super) fn swap_in(
    live: &PartitionStore,
    cf: &str,
    prepared: Prepared,
) -> Result<(), RestoreError> {
    let db = live.path();
    let previous = if live.has_column_family(cf) {
        Some(live.export_ungated(cf, &prepared.staging.path().join("previous"))?)
    } else {
        None
    };
    let previous_files = previous.as_ref().map(|p| import_files(&p.files));
    let intent = RestoreIntent::new(
        cf,
        &prepared.comparator,
        &prepared.files,
        previous
            .as_ref()
            .zip(previous_files.as_deref())
            .map(|(p, files)| (p.comparator_name.as_str(), files)),
        prepared.staging.path(),
    );
    let intent_path = intent.write(db).map_err(|e| RestoreError::Local {
        path: intent::intents_dir(db),
        source: e,
    })?;
    if previous.is_some() {
        live.drop_column_family(cf)?;
    }
    if let Err(e) = live.import_column_family(cf, &prepared.comparator, &prepared.files) {
        if let Some((previous, files)) = previous.zip(previous_files) {
            if let Err(back) = live.import_column_family(cf, &previous.comparator_name, &files) {
                // Keep the previous files, and the intent that names them:
                // they are the partition's only copy now.
                let kept = prepared.staging.keep().join("previous");
                return Err(RestoreError::PreviousLost {
                    cf: cf.to_string(),
                    import: e.to_string(),
                    back: back.to_string(),
                    kept,
                });
            }
        }
        intent::remove(&intent_path).map_err(|e| RestoreError::Local {
            path: intent_path.clone(),
            source: e,
        })?;
        return Err(e.into());
    }
    // The column family is replaced: a leftover intent is settled by the
    // next open (the column family exists), so its removal failing is no
    // failure of the restore.
    if let Err(e) = intent::remove(&intent_path) {
        tracing::warn!(path = %intent_path.display(), error = %e, "cannot remove the restore's intent; the next open settles it");
    }
    Ok(())
}
