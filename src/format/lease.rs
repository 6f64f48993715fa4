//! Leases: how a snapshot in progress tells garbage collection that its
//! objects are not garbage, however long its upload takes.
//!
//! A writer puts `<partition>/leases/<snapshot_id>.json` before it stores
//! anything, replaces it to renew it while the snapshot runs, and deletes
//! it once the snapshot is published or given up. Every object a snapshot
//! writes has the snapshot's id in its key (its folder, or the suffix of a
//! shared file), so a collector can tell whose object it is: the objects of
//! a snapshot whose lease is live are never collected. A lease that expired
//! (its writer crashed or stalled) no longer protects them, and the
//! collector first records a fence in `latest.json` (see
//! [`super::LatestPointer::gc_fence`]) that makes such a snapshot
//! unpublishable, under the same compare-and-swap the publisher uses.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    check_version, parse_snapshot_folder, FormatError, FormatVersion, PartitionId, SnapshotId,
    SHARED,
};

/// Folder of a partition's leases.
pub const LEASES: &str = "leases";

/// `leases/<snapshot_id>.json`: a snapshot in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Format version of this document (`V1`).
    pub version: FormatVersion,
    /// Partition being snapshotted.
    pub partition_id: PartitionId,
    /// The snapshot in progress.
    pub snapshot_id: SnapshotId,
    /// Node that runs it.
    pub node_name: String,
    /// When the snapshot started, on the writer's clock; what a fence is
    /// compared with.
    pub started_at: DateTime<Utc>,
    /// When the lease was last renewed.
    pub renewed_at: DateTime<Utc>,
    /// Until when the lease protects the snapshot's objects, unless renewed.
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// The lease of snapshot `id` of `partition`, started now, living `ttl`
    /// unless renewed.
    pub fn new(
        partition: PartitionId,
        id: SnapshotId,
        node_name: String,
        ttl: std::time::Duration,
    ) -> Self {
        let now = Utc::now();
        Lease {
            version: FormatVersion::V1,
            partition_id: partition,
            snapshot_id: id,
            node_name,
            started_at: now,
            renewed_at: now,
            expires_at: now + ttl_of(ttl),
        }
    }

    /// The same lease renewed now for `ttl` more.
    pub fn renewed(&self, ttl: std::time::Duration) -> Self {
        let now = Utc::now();
        Lease {
            renewed_at: now,
            expires_at: now + ttl_of(ttl),
            ..self.clone()
        }
    }

    /// Whether a third of `ttl` has passed since the lease was last
    /// renewed: the writer renews it then, so that one renewal may fail and
    /// be retried before the lease expires.
    pub fn renewal_due(&self, ttl: std::time::Duration) -> bool {
        Utc::now() - self.renewed_at >= ttl_of(ttl) / 3
    }

    /// Parses and checks an untrusted lease found at `leases/<name>`.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, FormatError> {
        check_version(bytes)?;
        let lease: Lease =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Json(LEASES, e))?;
        let expected = lease_name(lease.snapshot_id);
        if name != expected {
            return Err(FormatError::PointerPathMismatch {
                path: name.to_string(),
                expected,
            });
        }
        Ok(lease)
    }

    /// This document as JSON, ready to store.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("lease serializes")
    }

    /// Whether the lease still protects its snapshot at `now`: `slack`
    /// (the collector's grace period) absorbs clock skew between the writer
    /// and the collector.
    pub fn is_live(&self, now: DateTime<Utc>, slack: std::time::Duration) -> bool {
        let slack = chrono::Duration::from_std(slack).unwrap_or(chrono::Duration::MAX);
        now < self
            .expires_at
            .checked_add_signed(slack)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A time to live as chrono counts it (`PipelineConfig::check` bounds it
/// to a day).
fn ttl_of(ttl: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(1))
}

/// `<snapshot_id>.json`.
pub fn lease_name(id: SnapshotId) -> String {
    format!("{id}.json")
}

/// Key of a new shared file relative to the partition's folder:
/// `ssts/<identity>-<snapshot_id>.sst`. The uploading snapshot's id makes
/// every upload a new key, so a collector deleting an old copy can never
/// delete a new one.
pub fn shared_key(identity: &str, uploader: SnapshotId) -> String {
    format!("{SHARED}/{}", shared_name(identity, uploader))
}

/// `<identity>-<snapshot_id>.sst`.
pub fn shared_name(identity: &str, uploader: SnapshotId) -> String {
    format!("{identity}-{uploader}.sst")
}

/// The snapshot that wrote an object, from its key relative to the
/// partition's folder: `lsn_<lsn>-<id>/…`, `ssts/<identity>-<id>.sst` or
/// `leases/<id>.json`. `None` for `latest.json`, for shared files written
/// before keys carried their writer, and for anything else.
pub fn owner(relative: &str) -> Option<SnapshotId> {
    let (first, rest) = relative.split_once('/')?;
    match first {
        SHARED => {
            let stem = rest.strip_suffix(".sst")?;
            let (_, id) = stem.rsplit_once('-')?;
            id.parse().ok()
        }
        LEASES => rest.strip_suffix(".json")?.parse().ok(),
        folder => parse_snapshot_folder(folder).map(|(_, id)| id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_keys() {
        let id = SnapshotId::new();
        assert_eq!(
            owner(&format!("lsn_00000000000000000007-{id}/000012.sst")),
            Some(id)
        );
        assert_eq!(
            owner(&format!("lsn_00000000000000000007-{id}/metadata.json")),
            Some(id)
        );
        assert_eq!(owner(&shared_key("12-ABCDEF-4096", id)), Some(id));
        assert_eq!(owner(&format!("leases/{id}.json")), Some(id));
        assert_eq!(
            owner("ssts/12-ABCDEF-4096.sst"),
            None,
            "a shared file from before owners"
        );
        assert_eq!(owner("latest.json"), None);
        assert_eq!(owner("leases/nonsense.json"), None);
    }

    #[test]
    fn a_lease_is_live_until_it_expires_plus_the_slack() {
        let now = Utc::now();
        let lease = Lease {
            version: FormatVersion::V1,
            partition_id: PartitionId(1),
            snapshot_id: SnapshotId::new(),
            node_name: "n".into(),
            started_at: now,
            renewed_at: now,
            expires_at: now + chrono::Duration::seconds(60),
        };
        let slack = std::time::Duration::from_secs(10);
        assert!(lease.is_live(now + chrono::Duration::seconds(69), slack));
        assert!(!lease.is_live(now + chrono::Duration::seconds(70), slack));
        let parsed = Lease::parse(&lease.to_json(), &lease_name(lease.snapshot_id)).unwrap();
        assert_eq!(parsed, lease);
        assert!(Lease::parse(&lease.to_json(), "other.json").is_err());
    }
}
