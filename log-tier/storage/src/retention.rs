//! Retention: deletes whole sealed, durable segments from the oldest while their newest
//! record is older than `retention_ms` or the rest still exceeds `retention_bytes`, and runs
//! every `retention_check_interval_ms`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, warn};

use super::{LogEngine, now_ms};
use crate::error::Result;
use crate::metrics as m;
use crate::partition::{Partition, State};
use crate::segment::Segment;

impl LogEngine {
    /// Runs retention on every partition now; returns the number of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        let now = now_ms();
        let mut deleted = 0;
        for p in self.all_partitions() {
            deleted += p.enforce_retention(now)?;
        }
        Ok(deleted)
    }
}

impl Partition {
    /// Deletes whole sealed, durable segments past retention; returns how many went.
    pub(crate) fn enforce_retention(&self, now_ms: i64) -> Result<usize> {
        let hw = self.high_watermark();
        let mut st = self.state();
        st.producers
            .expire(now_ms, self.settings.producer_expiry_ms);
        if self.replicated {
            // A replica's segments go only when Raft purges them (`replica.rs`), up to the
            // point `ReplicaLog::retention_point` names.
            return Ok(0);
        }
        let doomed = self.past_retention(&st, hw.offset, now_ms);
        for segment in &doomed {
            let base = segment.base_offset;
            st.segments.remove(&base);
            st.unsynced.retain(|s| s.base_offset != base);
            st.log_start = st
                .segments
                .keys()
                .next()
                .copied()
                .unwrap_or(st.written.offset);
            segment.delete_files()?;
            metrics::counter!(m::SEGMENTS_DELETED_TOTAL).increment(1);
            metrics::gauge!(m::SEGMENTS).decrement(1.0);
            debug!(topic = %self.topic, partition = self.id, base, "retention deleted segment");
        }
        Ok(doomed.len())
    }

    /// The oldest segments past retention, oldest first: sealed, wholly below `hw_offset`,
    /// and each either holding nothing newer than `retention_ms` or not needed to keep
    /// `retention_bytes`; the first segment that stays ends the run.
    pub(crate) fn past_retention(
        &self,
        st: &State,
        hw_offset: i64,
        now_ms: i64,
    ) -> Vec<Arc<Segment>> {
        let mut total: u64 = st.segments.values().map(|s| s.size()).sum();
        let age = i64::try_from(self.settings.retention_ms).unwrap_or(i64::MAX);
        let mut doomed = Vec::new();
        for segment in st.segments.values() {
            if Arc::ptr_eq(segment, &st.active) || segment.next_offset() > hw_offset {
                break;
            }
            let (size, max_ts) = {
                let meta = segment.meta();
                (meta.size, meta.max_timestamp)
            };
            let expired = max_ts < now_ms.saturating_sub(age);
            let too_big = self
                .settings
                .retention_bytes
                .is_some_and(|r| total - size >= r);
            if !expired && !too_big {
                break;
            }
            total -= size;
            doomed.push(segment.clone());
        }
        doomed
    }
}

/// Runs retention every `retention_check_interval_ms` until the engine closes or is dropped.
pub(super) async fn retention_loop(engine: Weak<LogEngine>) {
    let interval = match engine.upgrade() {
        Some(e) => Duration::from_millis(e.config.retention_check_interval_ms.max(1)),
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(e) = engine.upgrade() else { return };
        if e.closed.load(Ordering::Acquire) {
            return;
        }
        match tokio::task::spawn_blocking(move || e.enforce_retention()).await {
            Ok(Ok(n)) if n > 0 => debug!(segments = n, "retention deleted segments"),
            Ok(Err(err)) => warn!(error = %err, "retention failed"),
            _ => {}
        }
    }
}
