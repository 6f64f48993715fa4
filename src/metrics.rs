//! Metric names, units and help texts, in one place.
//!
//! rocksnap records through the `metrics` facade; the host installs an
//! exporter (see [`install_prometheus`]) or none, in which case recording
//! costs almost nothing. Names follow Prometheus conventions: a `rocksnap_`
//! prefix, base units in the name, `_total` on counters.

use metrics_exporter_prometheus::PrometheusHandle;

use metrics::{
    describe_counter, describe_gauge, describe_histogram, Counter, Gauge, Histogram, Unit,
};

pub const SNAPSHOTS_STARTED: &str = "rocksnap_snapshots_started_total";
pub const SNAPSHOTS_SUCCEEDED: &str = "rocksnap_snapshots_succeeded_total";
pub const SNAPSHOTS_FAILED: &str = "rocksnap_snapshots_failed_total";
pub const STAGE_DURATION: &str = "rocksnap_stage_duration_seconds";
pub const UPLOADED_BYTES: &str = "rocksnap_uploaded_bytes_total";
pub const UPLOADED_PARTS: &str = "rocksnap_uploaded_parts_total";
pub const PARTS_IN_FLIGHT: &str = "rocksnap_parts_in_flight";
pub const MAILBOX_DEPTH: &str = "rocksnap_mailbox_depth";
pub const CAS_CONFLICTS: &str = "rocksnap_pointer_conflicts_total";
pub const LATEST_LSN: &str = "rocksnap_latest_snapshot_lsn";
pub const LATEST_TIMESTAMP: &str = "rocksnap_latest_snapshot_timestamp_seconds";
pub const LATEST_AGE: &str = "rocksnap_latest_snapshot_age_seconds";
pub const SAFE_TRIM_LSN: &str = "rocksnap_safe_trim_lsn";
pub const RESTORES: &str = "rocksnap_restores_total";
pub const RESTORE_DURATION: &str = "rocksnap_restore_duration_seconds";
pub const RESTORE_FALLBACKS: &str = "rocksnap_restore_fallbacks_total";

/// Registers help texts and units; call once after installing a recorder.
pub fn describe() {
    describe_counter!(SNAPSHOTS_STARTED, "Snapshots requested, by partition.");
    describe_counter!(SNAPSHOTS_SUCCEEDED, "Snapshots published, by partition.");
    describe_counter!(
        SNAPSHOTS_FAILED,
        "Snapshots that failed, by partition and reason."
    );
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time spent per snapshot in each stage (export, upload, publish)."
    );
    describe_counter!(
        UPLOADED_BYTES,
        Unit::Bytes,
        "Bytes of snapshot files stored."
    );
    describe_counter!(
        UPLOADED_PARTS,
        "Parts (single puts and multipart parts) stored."
    );
    describe_gauge!(PARTS_IN_FLIGHT, "Parts read from disk and not yet stored.");
    describe_gauge!(
        MAILBOX_DEPTH,
        "Messages queued or in work per pipeline stage."
    );
    describe_counter!(
        CAS_CONFLICTS,
        "latest.json compare-and-swap conflicts, by partition."
    );
    describe_gauge!(
        LATEST_LSN,
        "LSN of the newest published snapshot, by partition."
    );
    describe_gauge!(
        LATEST_TIMESTAMP,
        Unit::Seconds,
        "Creation time of the newest published snapshot (Unix seconds), by partition."
    );
    describe_gauge!(
        LATEST_AGE,
        Unit::Seconds,
        "Age of the newest published snapshot, by partition."
    );
    describe_gauge!(
        SAFE_TRIM_LSN,
        "LSN up to which the host may trim its log (the oldest kept snapshot), by partition."
    );
    describe_counter!(RESTORES, "Restores, by partition and outcome.");
    describe_histogram!(RESTORE_DURATION, Unit::Seconds, "Time per restore.");
    describe_counter!(
        RESTORE_FALLBACKS,
        "Unusable snapshots skipped by restores, by partition."
    );
}

/// Installs the Prometheus recorder for this process; the handle renders
/// the text exposition format for a `/metrics` endpoint.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    describe();
    Ok(handle)
}

pub(crate) fn restores(partition: u64, outcome: &'static str) -> Counter {
    metrics::counter!(RESTORES, "partition" => partition.to_string(), "outcome" => outcome)
}

pub(crate) fn restore_duration() -> Histogram {
    metrics::histogram!(RESTORE_DURATION)
}

pub(crate) fn restore_fallbacks(partition: u64) -> Counter {
    metrics::counter!(RESTORE_FALLBACKS, "partition" => partition.to_string())
}

pub fn latest_age(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_AGE, "partition" => partition.to_string())
}

pub fn safe_trim_lsn(partition: u64) -> Gauge {
    metrics::gauge!(SAFE_TRIM_LSN, "partition" => partition.to_string())
}

pub(crate) fn mailbox_depth(stage: &'static str) -> Gauge {
    metrics::gauge!(MAILBOX_DEPTH, "stage" => stage)
}

pub(crate) fn parts_in_flight() -> Gauge {
    metrics::gauge!(PARTS_IN_FLIGHT)
}

pub(crate) fn uploaded_bytes() -> Counter {
    metrics::counter!(UPLOADED_BYTES)
}

pub(crate) fn uploaded_parts() -> Counter {
    metrics::counter!(UPLOADED_PARTS)
}

pub(crate) fn stage_duration(stage: &'static str) -> Histogram {
    metrics::histogram!(STAGE_DURATION, "stage" => stage)
}

pub(crate) fn snapshots_started(partition: u64) -> Counter {
    metrics::counter!(SNAPSHOTS_STARTED, "partition" => partition.to_string())
}

pub(crate) fn snapshots_succeeded(partition: u64) -> Counter {
    metrics::counter!(SNAPSHOTS_SUCCEEDED, "partition" => partition.to_string())
}

pub(crate) fn snapshots_failed(partition: u64, reason: &'static str) -> Counter {
    metrics::counter!(SNAPSHOTS_FAILED, "partition" => partition.to_string(), "reason" => reason)
}

pub(crate) fn cas_conflicts(partition: u64) -> Counter {
    metrics::counter!(CAS_CONFLICTS, "partition" => partition.to_string())
}

pub fn latest_lsn(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_LSN, "partition" => partition.to_string())
}

pub fn latest_timestamp(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_TIMESTAMP, "partition" => partition.to_string())
}
