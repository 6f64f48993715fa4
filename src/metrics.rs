//! Metric names, units and help texts, in one place.
//!
//! rocksnap records through the `metrics` facade; the host installs an
//! exporter (see [`install_prometheus`]) or none, in which case recording
//! costs almost nothing. Names follow Prometheus conventions: a `rocksnap_`
//! prefix, base units in the name, `_total` on counters.

use std::net::SocketAddr;

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
}

/// Installs the Prometheus recorder with an HTTP listener serving `/metrics`.
pub fn install_prometheus(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
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

pub(crate) fn latest_lsn(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_LSN, "partition" => partition.to_string())
}

pub(crate) fn latest_timestamp(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_TIMESTAMP, "partition" => partition.to_string())
}
