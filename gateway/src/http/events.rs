//! `POST /v1/events`: a JSON array, `{"events":[...]}`, NDJSON or a protobuf `Batch`, answered
//! with the report (`accepted`, `rejected`, `errors`) once the accepted events are durable.

use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::intake::{self, BodyKind};
use crate::collector::Collector;
use crate::decode;
use crate::error::IngestError;
use crate::ingest::Report;
use crate::metrics::Transport;

/// The handler: the report, or the error that refused the whole request.
#[tracing::instrument(skip_all, fields(tenant, batch_size))]
pub(super) async fn post_events(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let result = ingest(&state.collector, request).await;
    intake::observe(&state.collector, Transport::Http, started, &result);
    match result {
        Ok(report) => Json(report).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn ingest(collector: &Collector, request: Request) -> Result<Report, IngestError> {
    let _slot = collector.take_slot()?;
    let (meta, kind, bytes, _reserved) = intake::admit_and_read(collector, request).await?;
    let max_events = collector.limits.max_events_per_batch as usize;
    let len = bytes.len();
    let validator = collector.pipeline.validator.clone();
    let decode = move || match kind {
        BodyKind::Json => decode::decode_json_validated(&bytes, max_events, &*validator),
        BodyKind::Ndjson => decode::decode_ndjson(&bytes, max_events),
        BodyKind::Protobuf => decode::decode_protobuf(&bytes, max_events),
    };
    let decoded = decode::decode_sized(len, decode).await?;
    tracing::Span::current().record("batch_size", decoded.len());
    collector.publish(&meta, decoded).await
}
