//! [`Instrumented`]: the one wrapper that gives every sink its `sink_send` span, its timer and
//! its outcome counters ([`crate::metrics`]), so that sinks themselves only deliver.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::{Instrument, info_span};

use crate::metrics::observe_send;
use crate::{Batch, Delivery, Sink, SinkError};

/// A sink whose sends run in a `sink_send` span (`route`, `sink`, `events`) and are recorded
/// in `headwater_sink_events_total`, `headwater_sink_batch_duration_seconds` and
/// `headwater_sink_retries_total` under the label `sink`.
pub struct Instrumented<S> {
    inner: S,
    label: Arc<str>,
}

impl<S: Sink> Instrumented<S> {
    /// Wraps `inner`, recorded as `label`.
    pub fn new(inner: S, label: &str) -> Self {
        Self {
            inner,
            label: Arc::from(label),
        }
    }

    /// [`Instrumented::new`], shared.
    pub fn arc(inner: S, label: &str) -> Arc<dyn Sink> {
        Arc::new(Self::new(inner, label))
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: Sink> Sink for Instrumented<S> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let started = Instant::now();
        let route = Arc::clone(&batch.route);
        let events = batch.events.len();
        let span = info_span!("sink_send", route = %route, sink = %self.label, events);
        let result = self.inner.send(batch).instrument(span).await;
        observe_send(&route, &self.label, events, started, &result);
        result
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.inner.healthcheck().await
    }
}
