//! The snapshot's lease: taken before anything is stored, renewed while the
//! snapshot runs, so that garbage collection never takes its objects
//! however long its upload lasts (see [`crate::format::Lease`]).

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{Job, SnapshotError};
use crate::format::Lease;

impl Job {
    /// The snapshot's lease, as it is first written.
    pub(super) fn new_lease(&self) -> Lease {
        Lease::new(
            self.partition(),
            self.snapshot_id,
            self.config.node_name.clone(),
            self.config.lease_ttl,
        )
    }

    /// Writes the lease, and opens the snapshot's objects' gate (or tells
    /// it the lease will not be there): none of them is stored before it.
    pub(super) async fn write_lease(&self, lease: &Lease) -> Result<(), SnapshotError> {
        let written = self
            .repository
            .put_lease(lease)
            .await
            .map_err(|e| SnapshotError::Lease {
                partition: self.partition(),
                reason: format!("cannot write its lease: {e}"),
            });
        self.lease_gate.open(written.is_ok());
        written
    }

    /// Renews the lease every third of its time to live until `done`.
    /// Returns the error if the lease is lost (it expired before a renewal
    /// got through, and a collector may now take the snapshot's objects),
    /// `None` once `done` fires between renewals.
    pub(super) async fn keep_lease(
        &self,
        mut lease: Lease,
        done: &CancellationToken,
    ) -> Option<SnapshotError> {
        let every = self.config.lease_ttl / 3;
        loop {
            tokio::select! {
                _ = done.cancelled() => return None,
                _ = tokio::time::sleep(every) => {}
            }
            let renewed = lease.renewed(self.config.lease_ttl);
            match self.repository.put_lease(&renewed).await {
                Ok(()) => lease = renewed,
                Err(e) if Utc::now() < lease.expires_at => {
                    tracing::warn!(partition = %self.partition(), error = %e,
                        expires_at = %lease.expires_at, "cannot renew the snapshot's lease; trying again");
                }
                Err(e) => {
                    return Some(SnapshotError::Lease {
                        partition: self.partition(),
                        reason: format!(
                            "its lease expired at {} before it could be renewed ({e}); not published, as garbage collection may take its objects",
                            lease.expires_at
                        ),
                    })
                }
            }
        }
    }
}
