//! The schema API: `GET /v1/schemas` lists what the registry holds, and
//! `GET /v1/schemas/{type}/versions/{version}` returns one schema's text.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use headwater_schemas::SchemaFormat;
use serde_json::json;

use super::AppState;
use crate::error::IngestError;
use crate::registry::SchemaRegistry;

/// The two routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/schemas", get(list_schemas)).route(
        "/v1/schemas/{event_type}/versions/{version}",
        get(get_schema),
    )
}

fn registry(state: &AppState) -> Result<&SchemaRegistry, IngestError> {
    state.schemas.as_deref().ok_or(IngestError::NoRegistry)
}

async fn list_schemas(State(state): State<AppState>) -> Result<Response, IngestError> {
    let registry = registry(&state)?.snapshot();
    Ok(Json(json!({"schemas": registry.list()})).into_response())
}

async fn get_schema(
    State(state): State<AppState>,
    Path((event_type, version)): Path<(String, String)>,
) -> Result<Response, IngestError> {
    let registry = registry(&state)?.snapshot();
    let found = version.parse::<u32>().ok().and_then(|v| {
        Some((
            registry.info(&event_type, v)?,
            registry.get(&event_type, v)?,
        ))
    });
    let Some((info, text)) = found else {
        return Err(IngestError::UnknownSchema {
            event_type,
            version,
        });
    };
    let content_type = match info.format {
        SchemaFormat::Json => "application/schema+json",
        SchemaFormat::Protobuf => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text.to_owned()).into_response())
}
