//! Metric names of the log tier (`headwater_log_*`) and their descriptions.

use metrics::{Counter, Unit, describe_counter, describe_gauge, describe_histogram};

/// Record batches appended (label `topic`).
pub const APPENDS_TOTAL: &str = "headwater_log_appends_total";
/// Records appended (label `topic`).
pub const RECORDS_TOTAL: &str = "headwater_log_records_total";
/// Bytes appended, batch framing included (label `topic`).
pub const APPEND_BYTES_TOTAL: &str = "headwater_log_append_bytes_total";
/// Appends refused because of a full disk.
pub const DISK_FULL_TOTAL: &str = "headwater_log_disk_full_total";
/// Retried idempotent batches answered without writing them again.
pub const DUPLICATES_TOTAL: &str = "headwater_log_duplicate_batches_total";
/// Bytes returned by reads (label `topic`).
pub const READ_BYTES_TOTAL: &str = "headwater_log_read_bytes_total";
/// fsync calls on segment files.
pub const FSYNCS_TOTAL: &str = "headwater_log_fsyncs_total";
/// fsync latency.
pub const FSYNC_SECONDS: &str = "headwater_log_fsync_seconds";
/// Segments currently held, all partitions.
pub const SEGMENTS: &str = "headwater_log_segments";
/// Segments deleted by retention.
pub const SEGMENTS_DELETED_TOTAL: &str = "headwater_log_segments_deleted_total";
/// Corrupt batches found by reads or recovery.
pub const CORRUPT_BATCHES_TOTAL: &str = "headwater_log_corrupt_batches_total";
/// Bytes truncated from segment tails during recovery.
pub const RECOVERY_TRUNCATED_BYTES_TOTAL: &str = "headwater_log_recovery_truncated_bytes_total";
/// Zero bytes written ahead of appends into active segments (`log.preallocate_bytes`).
pub const PREALLOCATED_BYTES_TOTAL: &str = "headwater_log_preallocated_bytes_total";
/// Damaged segments recovery set aside as `<base>.log.quarantined`.
pub const QUARANTINED_SEGMENTS_TOTAL: &str = "headwater_log_quarantined_segments_total";
/// fsyncs that failed (each fails its partition until restart).
pub const FSYNC_FAILURES_TOTAL: &str = "headwater_log_fsync_failures_total";
/// Partitions refusing appends after a failed fsync, until restart.
pub const FAILED_PARTITIONS: &str = "headwater_log_failed_partitions";
/// Segment files open now, all partitions (at most `log.max_open_files`, plus files in use).
pub const OPEN_SEGMENT_FILES: &str = "headwater_log_open_segment_files";

/// Registers descriptions with the installed recorder; call once at start-up.
pub fn describe() {
    describe_counter!(APPENDS_TOTAL, "Record batches appended to the log");
    describe_counter!(RECORDS_TOTAL, "Records appended to the log");
    describe_counter!(APPEND_BYTES_TOTAL, Unit::Bytes, "Bytes appended to the log");
    describe_counter!(DISK_FULL_TOTAL, "Appends refused because the disk is full");
    describe_counter!(
        DUPLICATES_TOTAL,
        "Idempotent retries answered without a second write"
    );
    describe_counter!(READ_BYTES_TOTAL, Unit::Bytes, "Bytes served by log reads");
    describe_counter!(FSYNCS_TOTAL, "fsync calls on segment files");
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "Latency of one segment fsync");
    describe_gauge!(SEGMENTS, "Segments held by all partitions");
    describe_counter!(SEGMENTS_DELETED_TOTAL, "Segments deleted by retention");
    describe_counter!(
        CORRUPT_BATCHES_TOTAL,
        "Corrupt batches detected and not served"
    );
    describe_counter!(
        RECOVERY_TRUNCATED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of torn tail truncated by recovery"
    );
    describe_counter!(
        PREALLOCATED_BYTES_TOTAL,
        Unit::Bytes,
        "Zero bytes written ahead of appends into active segments"
    );
    describe_counter!(
        QUARANTINED_SEGMENTS_TOTAL,
        "Damaged segments set aside by recovery, the later segments kept"
    );
    describe_counter!(FSYNC_FAILURES_TOTAL, "fsyncs of segment files that failed");
    describe_gauge!(
        FAILED_PARTITIONS,
        "Partitions refusing appends after a failed fsync, until restart"
    );
    describe_gauge!(
        OPEN_SEGMENT_FILES,
        "Segment files open now over all partitions (bounded by log.max_open_files)"
    );
}

/// Counter handles of one partition's hot path, registered once (label `topic`). Handles bind
/// to the recorder installed when the partition opens: install the recorder before
/// `LogEngine::open`.
#[derive(Clone)]
pub(crate) struct PartitionMetrics {
    pub appends: Counter,
    pub records: Counter,
    pub append_bytes: Counter,
    pub read_bytes: Counter,
}

impl PartitionMetrics {
    pub(crate) fn new(topic: &str) -> Self {
        let labels = [("topic", topic.to_owned())];
        Self {
            appends: metrics::counter!(APPENDS_TOTAL, &labels),
            records: metrics::counter!(RECORDS_TOTAL, &labels),
            append_bytes: metrics::counter!(APPEND_BYTES_TOTAL, &labels),
            read_bytes: metrics::counter!(READ_BYTES_TOTAL, &labels),
        }
    }
}
