//! When the node snapshots by itself: every N applied records and/or every
//! T per partition, with jitter; and the synthetic workload that applies
//! records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, RngCore};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{GcSection, PolicySection, ScrubSection, WorkloadSection};
use super::{NodeState, ScrubStatus, TICK};
use rocksnap::format::{Lsn, PartitionId};
use rocksnap::metrics as m;
use rocksnap::{SnapshotError, SnapshotRequest, Supervisor};

/// Requests snapshots when a partition is due, until `stop`.
pub async fn run(state: Arc<NodeState>, policy: PolicySection, mut stop: watch::Receiver<bool>) {
    if policy.every_records.is_none() && policy.every.is_none() {
        let _ = stop.wait_for(|s| *s).await.map(|_| ());
        return;
    }
    let due_after = |policy: &PolicySection| {
        policy.every.map(|every| {
            let jitter = if policy.jitter.is_zero() {
                Duration::ZERO
            } else {
                rand::rng().random_range(Duration::ZERO..policy.jitter)
            };
            Instant::now() + every + jitter
        })
    };
    let mut last_records: HashMap<PartitionId, u64> = HashMap::new();
    let mut next_due: HashMap<PartitionId, Option<Instant>> = state
        .ids
        .iter()
        .map(|&id| (id, due_after(&policy)))
        .collect();
    // One task per snapshot requested, owned here: aborted when the policy
    // stops (the supervisor's shutdown then settles the snapshot itself).
    let mut running: HashMap<PartitionId, tokio::task::JoinHandle<()>> = HashMap::new();
    while !*stop.borrow() {
        running.retain(|_, task| !task.is_finished());
        for &id in &state.ids {
            if running.contains_key(&id) {
                continue;
            }
            let records = state.partitions.applied_records(id);
            let since = records - last_records.get(&id).copied().unwrap_or(0);
            let by_records = policy.every_records.is_some_and(|n| since >= n);
            let by_time = next_due[&id].is_some_and(|t| Instant::now() >= t);
            if !(by_records || by_time) {
                continue;
            }
            last_records.insert(id, records);
            next_due.insert(id, due_after(&policy));
            let state = state.clone();
            running.insert(
                id,
                tokio::spawn(async move {
                    let request = SnapshotRequest {
                        partition: id,
                        min_lsn: None,
                    };
                    match Supervisor::snapshot(&state.supervisor, request).await {
                        Ok(_) => state.refresh(id).await,
                        Err(SnapshotError::Stopped(_)) => {}
                        Err(e) => {
                            tracing::debug!(partition = %id, error = %e, "policy snapshot failed")
                        }
                    }
                }),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
    }
    for task in running.values() {
        task.abort();
    }
}

/// Applies `records_per_second` records of `value_size` random bytes to
/// every partition, one write batch (one LSN) per partition per tick.
pub async fn workload(state: Arc<NodeState>, w: WorkloadSection, mut stop: watch::Receiver<bool>) {
    let per_tick = (w.records_per_second as f64 * TICK.as_secs_f64()).max(1.0) as usize;
    let value_size = w.value_size.as_u64() as usize;
    let mut lsn: HashMap<PartitionId, u64> = state
        .ids
        .iter()
        .map(|&id| {
            let stored = state
                .partitions
                .applied_lsn(&rocksnap::partition::cf_name(id))
                .ok()
                .flatten()
                .map_or(0, |l| l.0);
            (id, stored)
        })
        .collect();
    let mut counter = 0u64;
    while !*stop.borrow() {
        let partitions = state.partitions.clone();
        let ids = state.ids.clone();
        let mut next = lsn.clone();
        let start = counter;
        let written = tokio::task::spawn_blocking(move || {
            let mut rng = rand::rng();
            for id in ids {
                let l = next.get_mut(&id).expect("every partition");
                // A fast-forward may have moved the partition ahead: the
                // log resumes after wherever it stands.
                let stored = partitions
                    .applied_lsn(&rocksnap::partition::cf_name(id))
                    .ok()
                    .flatten()
                    .map_or(0, |l| l.0);
                *l = (*l).max(stored) + 1;
                let records: Vec<(Vec<u8>, Vec<u8>)> = (0..per_tick as u64)
                    .map(|i| {
                        let mut v = vec![0u8; value_size];
                        rng.fill_bytes(&mut v);
                        (format!("workload-{:016}", start + i).into_bytes(), v)
                    })
                    .collect();
                partitions.apply(id, Lsn(*l), records)?;
            }
            Ok::<_, rocksnap::partition::PartitionError>(next)
        })
        .await
        .expect("workload task");
        match written {
            Ok(next) => lsn = next,
            // A partition fast-forwarded meanwhile: its log resumes after
            // its new LSN, which the next round reads.
            Err(rocksnap::partition::PartitionError::Behind {
                partition, applied, ..
            }) => {
                tracing::info!(%partition, %applied, "the workload resumes after a fast-forward");
            }
            Err(e) => {
                tracing::error!(error = %e, "workload write failed; stopping the workload");
                return;
            }
        }
        counter += per_tick as u64;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Collects each partition's garbage every `g.every`, until `stop`.
pub async fn gc(state: Arc<NodeState>, g: GcSection, mut stop: watch::Receiver<bool>) {
    let opts = rocksnap::gc::GcOptions {
        grace: g.grace,
        cluster: Some(state.cluster.clone()),
        ..Default::default()
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(g.every) => {}
            _ = stop.changed() => return,
        }
        for &id in &state.ids {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = rocksnap::gc::collect(&state.repository, id, &opts).await {
                tracing::warn!(partition = %id, error = %e, "garbage collection failed");
            }
            state.refresh(id).await;
        }
    }
}

/// Reads every partition's latest snapshot back, every `s.every`: a damaged
/// or missing file is logged with its key and counted, and `GET
/// /partitions` shows each partition's last scrub.
pub async fn scrub(state: Arc<NodeState>, s: ScrubSection, mut stop: watch::Receiver<bool>) {
    m::scrub_interval().set(s.every.as_secs_f64());
    let mut opts = state.download_options();
    if let Some(limit) = s.rate_limit {
        opts.rate_limit = Some(rocksnap::RateLimit::new(limit.as_u64()));
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.every) => {}
            _ = stop.changed() => return,
        }
        for &id in &state.ids {
            if *stop.borrow() {
                return;
            }
            let result = tokio::select! {
                r = rocksnap::scrub::scrub(&state.repository, id, s.deep, &opts) => r,
                _ = stop.changed() => return,
            };
            let status = match result {
                Ok(Some(report)) => {
                    tracing::debug!(partition = %id, snapshot_id = %report.snapshot_id, bytes = report.bytes, "scrubbed");
                    ScrubStatus {
                        at: chrono::Utc::now(),
                        outcome: "ok",
                        snapshot_id: Some(report.snapshot_id.to_string()),
                        error: None,
                    }
                }
                Ok(None) => ScrubStatus {
                    at: chrono::Utc::now(),
                    outcome: "no_snapshot",
                    snapshot_id: None,
                    error: None,
                },
                Err(e) => {
                    tracing::error!(partition = %id, error = %e, "scrub found the latest snapshot damaged or unreadable");
                    ScrubStatus {
                        at: chrono::Utc::now(),
                        outcome: rocksnap::scrub::failure_reason(&e),
                        snapshot_id: None,
                        error: Some(e.to_string()),
                    }
                }
            };
            state
                .scrubs
                .lock()
                .expect("not poisoned")
                .insert(id, status);
        }
    }
}
