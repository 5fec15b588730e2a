//! `MemorySink`: an in-memory [`Sink`] for the router's tests. Records every batch it accepts
//! and can be told to fail whole batches, reject or ask to retry chosen event ids, or be slow.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::{Batch, Classify, Delivery, OutEvent, Sink, SinkError};

/// What a [`MemorySink`] was told to fail with.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// [`MemorySink::fail_next`] (retryable).
    #[error("told to fail")]
    ToldToFail,
    /// [`MemorySink::set_healthy`] with `false` (retryable).
    #[error("told to be unhealthy")]
    ToldToBeUnhealthy,
    /// [`MemorySink::set_config_error`] (not retryable).
    #[error("{0}")]
    Config(String),
}

impl Classify for MemoryError {
    const SINK: &'static str = "memory";

    fn is_retryable(&self) -> bool {
        !matches!(self, Self::Config(_))
    }
}

#[derive(Default)]
struct State {
    batches: Vec<Batch>,
    fail_next: usize,
    config_error: Option<String>,
    reject: HashMap<String, String>,
    retry_once: HashSet<String>,
    delay: Duration,
    healthy: bool,
}

/// Records batches; see the module docs. Rejected and to-retry events are not recorded as
/// delivered; a batch is recorded with only its delivered events.
pub struct MemorySink {
    state: Mutex<State>,
    sends: AtomicU64,
    flushes: AtomicU64,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// A healthy sink that accepts everything.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                healthy: true,
                ..State::default()
            }),
            sends: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` sends fail with [`SinkError::Unavailable`] (and record nothing).
    pub fn fail_next(&self, n: usize) {
        self.state().fail_next = n;
    }

    /// Every send fails with [`SinkError::Config`] until cleared with `None`.
    pub fn set_config_error(&self, reason: Option<&str>) {
        self.state().config_error = reason.map(str::to_owned);
    }

    /// Events with this id are rejected with `reason`, every time.
    pub fn reject_id(&self, id: &str, reason: &str) {
        self.state().reject.insert(id.to_owned(), reason.to_owned());
    }

    /// The next time an event with this id comes, it is listed for retry.
    pub fn retry_id_once(&self, id: &str) {
        self.state().retry_once.insert(id.to_owned());
    }

    /// Each send sleeps this long first (to test back-pressure and timeouts).
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// What `healthcheck` answers.
    pub fn set_healthy(&self, healthy: bool) {
        self.state().healthy = healthy;
    }

    /// Batches accepted so far, each with only its delivered events.
    pub fn batches(&self) -> Vec<Batch> {
        self.state().batches.clone()
    }

    /// Delivered events of every accepted batch, in order.
    pub fn events(&self) -> Vec<OutEvent> {
        self.state()
            .batches
            .iter()
            .flat_map(|b| b.events.iter().cloned())
            .collect()
    }

    /// Ids of the delivered events, in order.
    pub fn ids(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.envelope.id).collect()
    }

    /// Calls of `send`, failed ones included.
    pub fn send_count(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }

    /// Calls of `flush`.
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Forgets the recorded batches (settings stay).
    pub fn clear(&self) {
        self.state().batches.clear();
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn send(&self, mut batch: Batch) -> Result<Delivery, SinkError> {
        self.sends.fetch_add(1, Ordering::Relaxed);
        let delay = self.state().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        if let Some(reason) = &state.config_error {
            return Err(MemoryError::Config(reason.clone()).into());
        }
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return Err(MemoryError::ToldToFail.into());
        }
        let mut delivery = Delivery::all();
        let mut kept = Vec::with_capacity(batch.events.len());
        for (i, event) in batch.events.drain(..).enumerate() {
            let id = &event.envelope.id;
            if let Some(reason) = state.reject.get(id) {
                delivery.rejected.push((i, reason.clone()));
            } else if state.retry_once.remove(id) {
                delivery.retry.push(i);
            } else {
                kept.push(event);
            }
        }
        batch.events = kept;
        state.batches.push(batch);
        Ok(delivery)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        if self.state().healthy {
            Ok(())
        } else {
            Err(MemoryError::ToldToBeUnhealthy.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use headwater_schemas::Envelope;

    use super::*;

    fn batch(ids: &[&str]) -> Batch {
        Batch {
            route: Arc::from("r"),
            topic: Arc::from("events"),
            partition: 0,
            first_offset: 0,
            last_offset: ids.len() as i64 - 1,
            events: ids
                .iter()
                .enumerate()
                .map(|(i, id)| OutEvent {
                    topic: Arc::from("events"),
                    partition: 0,
                    offset: i as i64,
                    key: None,
                    envelope: Envelope {
                        id: (*id).to_owned(),
                        ..Envelope::default()
                    },
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn fails_rejects_and_records() {
        let sink = MemorySink::new();
        sink.fail_next(1);
        sink.reject_id("b", "bad");
        sink.retry_id_once("c");
        assert!(sink.send(batch(&["a"])).await.unwrap_err().is_retryable());
        let d = sink.send(batch(&["a", "b", "c"])).await.unwrap();
        assert_eq!(d.rejected, vec![(1, "bad".to_owned())]);
        assert_eq!(d.retry, vec![2]);
        assert!(sink.send(batch(&["c"])).await.unwrap().is_complete());
        assert_eq!(sink.ids(), ["a", "c"]);
        assert_eq!(sink.send_count(), 3);
        sink.set_config_error(Some("nope"));
        assert!(!sink.send(batch(&["d"])).await.unwrap_err().is_retryable());
    }
}
