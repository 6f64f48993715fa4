//! Step 4 of a restore, the only one that touches the live database.

use std::path::Path;

use super::prepare::{import_files, Prepared};
use super::RestoreError;
use crate::partition::PartitionStore;

/// Replaces the live column family with the prepared one, keeping the old one
/// (exported by hard links) until the new one is in.
pub(super) fn swap_into(db: &Path, cf: &str, prepared: Prepared) -> Result<(), RestoreError> {
    let live = PartitionStore::open(db, &[])?;
    let previous = if live.has_column_family(cf) {
        let exported = live.export_column_family(cf, &prepared.staging.path().join("previous"))?;
        live.drop_column_family(cf)?;
        Some(exported)
    } else {
        None
    };
    if let Err(e) = live.import_column_family(cf, &prepared.comparator, &prepared.files) {
        if let Some(previous) = previous {
            let files = import_files(&previous.files);
            if let Err(back) = live.import_column_family(cf, &previous.comparator_name, &files) {
                // Keep the previous files: they are the partition's only copy now.
                let kept = prepared.staging.keep().join("previous");
                return Err(RestoreError::PreviousLost {
                    cf: cf.to_string(),
                    import: e.to_string(),
                    back: back.to_string(),
                    kept,
                });
            }
        }
        return Err(e.into());
    }
    Ok(())
}
