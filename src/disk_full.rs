//! Full disks, told apart the same way wherever one stops a snapshot or a
//! restore: an operator frees room, and nothing is wrong with the data.

/// The system's own words for `ENOSPC`: RocksDB reports a full disk in its
/// message only.
const ENOSPC: &str = "No space left on device";

/// Whether the filesystem said it is full (or the quota is spent).
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Whether `e`, or any error under it, is a filesystem saying it is full.
pub(crate) fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>().is_some_and(is_full) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether a message (RocksDB's) says the disk is full.
pub(crate) fn said(message: &str) -> bool {
    message.contains(ENOSPC)
}
