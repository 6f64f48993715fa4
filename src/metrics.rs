//! Metric names, units and help texts, in one place.
//!
//! rocksnap records through the `metrics` facade; the host installs an
//! exporter (the `rocksnap` binary installs Prometheus's) or none, in which
//! case recording costs almost nothing. A host that renders the metrics
//! calls [`describe`] once after installing its recorder. Names follow Prometheus conventions: a `rocksnap_`
//! prefix, base units in the name, `_total` on counters.

use metrics::{
    describe_counter, describe_gauge, describe_histogram, Counter, Gauge, Histogram, Unit,
};

/// Counter: snapshots requested, by partition.
pub const SNAPSHOTS_STARTED: &str = "rocksnap_snapshots_started_total";
/// Counter: snapshots published, by partition.
pub const SNAPSHOTS_SUCCEEDED: &str = "rocksnap_snapshots_succeeded_total";
/// Counter: snapshots that failed, by partition and reason.
pub const SNAPSHOTS_FAILED: &str = "rocksnap_snapshots_failed_total";
/// Histogram: seconds spent per snapshot in each stage (export, upload, publish).
pub const STAGE_DURATION: &str = "rocksnap_stage_duration_seconds";
/// Counter: bytes of snapshot files stored.
pub const UPLOADED_BYTES: &str = "rocksnap_uploaded_bytes_total";
/// Counter: parts (single puts and multipart parts) stored.
pub const UPLOADED_PARTS: &str = "rocksnap_uploaded_parts_total";
/// Gauge: parts read from disk and not yet stored.
pub const PARTS_IN_FLIGHT: &str = "rocksnap_parts_in_flight";
/// Gauge: messages queued or in work, by pipeline stage.
pub const MAILBOX_DEPTH: &str = "rocksnap_mailbox_depth";
/// Counter: `latest.json` compare-and-swap conflicts, by partition.
pub const CAS_CONFLICTS: &str = "rocksnap_pointer_conflicts_total";
/// Gauge: LSN of the newest published snapshot, by partition.
pub const LATEST_LSN: &str = "rocksnap_latest_snapshot_lsn";
/// Gauge: creation time of the newest published snapshot, in Unix seconds, by partition.
pub const LATEST_TIMESTAMP: &str = "rocksnap_latest_snapshot_timestamp_seconds";
/// Gauge: age in seconds of the newest published snapshot, by partition.
pub const LATEST_AGE: &str = "rocksnap_latest_snapshot_age_seconds";
/// Gauge: LSN up to which the host may trim its log, by partition.
pub const SAFE_TRIM_LSN: &str = "rocksnap_safe_trim_lsn";
/// Counter: restores, by partition and outcome.
pub const RESTORES: &str = "rocksnap_restores_total";
/// Histogram: seconds per restore.
pub const RESTORE_DURATION: &str = "rocksnap_restore_duration_seconds";
/// Counter: unusable snapshots skipped by restores, by partition.
pub const RESTORE_FALLBACKS: &str = "rocksnap_restore_fallbacks_total";
/// Counter: pipeline stages restarted by the supervisor, by stage.
pub const STAGE_RESTARTS: &str = "rocksnap_stage_restarts_total";
/// Gauge: Unix time of a partition's last scrub that found its latest snapshot whole.
pub const SCRUB_LAST_SUCCESS: &str = "rocksnap_scrub_last_success_timestamp_seconds";
/// Counter: scrubs that found a partition's latest snapshot damaged or could
/// not read it, by partition and reason.
pub const SCRUB_FAILURES: &str = "rocksnap_scrub_failures_total";
/// Gauge: seconds between a node's snapshots of a partition by time, as
/// configured (for alerts on stale snapshots).
pub const SNAPSHOT_INTERVAL: &str = "rocksnap_snapshot_interval_seconds";
/// Gauge: seconds between a node's scrubs, as configured.
pub const SCRUB_INTERVAL: &str = "rocksnap_scrub_interval_seconds";

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
    describe_counter!(
        STAGE_RESTARTS,
        "Pipeline stages restarted by the supervisor after a failure, by stage."
    );
    describe_counter!(RESTORES, "Restores, by partition and outcome.");
    describe_gauge!(
        SCRUB_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last scrub that found the partition's latest snapshot whole."
    );
    describe_counter!(
        SCRUB_FAILURES,
        "Scrubs that found the latest snapshot damaged or could not read it, by partition and reason."
    );
    describe_gauge!(
        SNAPSHOT_INTERVAL,
        Unit::Seconds,
        "Configured time between snapshots of a partition."
    );
    describe_gauge!(
        SCRUB_INTERVAL,
        Unit::Seconds,
        "Configured time between scrubs."
    );
    describe_histogram!(RESTORE_DURATION, Unit::Seconds, "Time per restore.");
    describe_counter!(
        RESTORE_FALLBACKS,
        "Unusable snapshots skipped by restores, by partition."
    );
}

pub(crate) fn stage_restarts(stage: &'static str) -> Counter {
    metrics::counter!(STAGE_RESTARTS, "stage" => stage)
}

pub(crate) fn restores(partition: u64, outcome: &'static str) -> Counter {
    metrics::counter!(RESTORES, "partition" => partition.to_string(), "outcome" => outcome)
}

pub(crate) fn restore_duration() -> Histogram {
    metrics::histogram!(RESTORE_DURATION)
}

/// The [`SCRUB_LAST_SUCCESS`] gauge of a partition.
pub fn scrub_last_success(partition: u64) -> Gauge {
    metrics::gauge!(SCRUB_LAST_SUCCESS, "partition" => partition.to_string())
}

/// The [`SCRUB_FAILURES`] counter of a partition and reason.
pub fn scrub_failures(partition: u64, reason: &'static str) -> Counter {
    metrics::counter!(SCRUB_FAILURES, "partition" => partition.to_string(), "reason" => reason)
}

/// The [`SNAPSHOT_INTERVAL`] gauge of a partition.
pub fn snapshot_interval(partition: u64) -> Gauge {
    metrics::gauge!(SNAPSHOT_INTERVAL, "partition" => partition.to_string())
}

/// The [`SCRUB_INTERVAL`] gauge.
pub fn scrub_interval() -> Gauge {
    metrics::gauge!(SCRUB_INTERVAL)
}

pub(crate) fn restore_fallbacks(partition: u64) -> Counter {
    metrics::counter!(RESTORE_FALLBACKS, "partition" => partition.to_string())
}

/// The [`LATEST_AGE`] gauge of a partition.
pub fn latest_age(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_AGE, "partition" => partition.to_string())
}

/// The [`SAFE_TRIM_LSN`] gauge of a partition.
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

/// The [`LATEST_LSN`] gauge of a partition.
pub fn latest_lsn(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_LSN, "partition" => partition.to_string())
}

/// The [`LATEST_TIMESTAMP`] gauge of a partition.
pub fn latest_timestamp(partition: u64) -> Gauge {
    metrics::gauge!(LATEST_TIMESTAMP, "partition" => partition.to_string())
}
