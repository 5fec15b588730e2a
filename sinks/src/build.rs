//! [`build`]: the sink factory, one line per kind, each sink wrapped in [`Instrumented`].

use std::sync::Arc;

use crate::config::{SinkConfig, SinkContext};
use crate::elasticsearch::ElasticsearchSink;
use crate::instrumented::Instrumented;
use crate::s3::S3Sink;
use crate::topic::TopicSink;
use crate::{BuildError, Sink};

/// Builds the sink an entry describes, instrumented (span, timer, outcome counters) under the
/// entry's label. Fails on an invalid entry or bad wiring (unusable directory, unreadable CA
/// file, a topic sink without brokers and without an internal log).
pub fn build(config: &SinkConfig, ctx: &SinkContext) -> Result<Arc<dyn Sink>, BuildError> {
    let label = config.label();
    Ok(match config {
        SinkConfig::S3(c) => Instrumented::arc(S3Sink::new(c, ctx)?, &label),
        SinkConfig::Elasticsearch(c) => Instrumented::arc(ElasticsearchSink::new(c)?, &label),
        SinkConfig::Topic(c) => Instrumented::arc(TopicSink::new(c, ctx)?, &label),
    })
}
