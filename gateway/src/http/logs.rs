//! `POST /v1/logs`: OTLP/HTTP logs, a protobuf or JSON `ExportLogsServiceRequest`, answered
//! in the same encoding; each log record becomes an event, or the whole request one
//! (`otlp::decode`).

use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

use super::AppState;
use super::intake::{self, BodyKind};
use crate::collector::Collector;
use crate::error::IngestError;
use crate::metrics::Transport;
use crate::otlp;

/// The handler: the OTLP answer, or the error that refused the whole request.
#[tracing::instrument(skip_all, fields(tenant, batch_size))]
pub(super) async fn post_logs(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let result = ingest(&state.collector, request).await;
    intake::observe(&state.collector, Transport::OtlpHttp, started, &result);
    match result {
        Ok((BodyKind::Protobuf, answer)) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&answer),
        )
            .into_response(),
        Ok((_, answer)) => Json(answer).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn ingest(
    collector: &Collector,
    request: Request,
) -> Result<(BodyKind, ExportLogsServiceResponse), IngestError> {
    let _slot = collector.take_slot()?;
    let (meta, kind, bytes, _reserved) = intake::admit_and_read(collector, request).await?;
    let encoding = match kind {
        BodyKind::Protobuf => otlp::Encoding::Protobuf,
        BodyKind::Json => otlp::Encoding::Json,
        BodyKind::Ndjson => {
            return Err(IngestError::UnsupportedType(
                "application/x-ndjson".to_owned(),
            ));
        }
    };
    let mut export = otlp::decode(collector, bytes, encoding).await?;
    tracing::Span::current().record("batch_size", export.events.len());
    let report = collector
        .publish(&meta, std::mem::take(&mut export.events))
        .await?;
    Ok((kind, export.response(&report)))
}
