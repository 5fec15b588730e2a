//! gRPC collectors on the HTTP port: `headwater.v1.Ingest/Publish` and OTLP
//! `LogsService/Export`, sharing the collector (auth, limits, validation, append) with HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use headwater_schemas::proto::v1::{Batch, PublishResponse, Rejection};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::collector::Collector;
use crate::decode::decode_proto_event;
use crate::error::IngestError;
use crate::ingest::{Report, RequestMeta};
use crate::metrics::{INGEST_REFUSED_TOTAL, INGEST_REQUEST_DURATION_SECONDS};
use crate::otlp;

/// `headwater.v1` with its tonic code (`Ingest` server and client), generated in headwater-schemas.
pub use headwater_schemas::proto::v1 as pb;

use pb::ingest_server::{Ingest, IngestServer};

/// Both gRPC services as an axum router, mounted beside the HTTP routes.
pub fn router(collector: Arc<Collector>) -> axum::Router {
    let max_message =
        usize::try_from(collector.limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let ingest = IngestServer::new(GrpcIngest {
        collector: collector.clone(),
    })
    .accept_compressed(CompressionEncoding::Gzip)
    .accept_compressed(CompressionEncoding::Zstd)
    .max_decoding_message_size(max_message);
    let logs = LogsServiceServer::new(GrpcLogs { collector })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .max_decoding_message_size(max_message);
    tonic::service::Routes::new(ingest)
        .add_service(logs)
        .into_axum_router()
}

/// `headwater.v1.Ingest`.
pub struct GrpcIngest {
    collector: Arc<Collector>,
}

/// OTLP `LogsService`.
pub struct GrpcLogs {
    collector: Arc<Collector>,
}

fn admit<T>(collector: &Collector, request: &Request<T>) -> Result<RequestMeta, IngestError> {
    let headers = request.metadata().clone().into_headers();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| request.remote_addr());
    collector.admit(
        &headers,
        peer,
        request.extensions().get::<crate::tls::ClientCert>(),
    )
}

fn finish<T>(started: Instant, result: Result<T, IngestError>) -> Result<Response<T>, Status> {
    metrics::histogram!(INGEST_REQUEST_DURATION_SECONDS, "transport" => "grpc")
        .record(started.elapsed().as_secs_f64());
    result.map(Response::new).map_err(|error| {
        metrics::counter!(INGEST_REFUSED_TOTAL, "transport" => "grpc", "reason" => error.label())
            .increment(1);
        error.into_status()
    })
}

#[tonic::async_trait]
impl Ingest for GrpcIngest {
    async fn publish(&self, request: Request<Batch>) -> Result<Response<PublishResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let meta = admit(&self.collector, &request)?;
            let batch = request.into_inner();
            let decoded = batch.events.into_iter().map(decode_proto_event).collect();
            let report = self.collector.publish(&meta, decoded).await?;
            Ok(publish_response(&report))
        }
        .await;
        finish(started, result)
    }
}

fn publish_response(report: &Report) -> PublishResponse {
    PublishResponse {
        accepted: report.accepted as u32,
        rejected: report.rejected as u32,
        errors: report
            .errors
            .iter()
            .map(|e| Rejection {
                index: e.index as u32,
                reason: e.reason.clone(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let meta = admit(&self.collector, &request)?;
            let max = self.collector.limits.max_events_per_batch as usize;
            let decoded =
                otlp::decode_request(request.into_inner(), &self.collector.otlp_default_type, max)?;
            let report = self.collector.publish(&meta, decoded).await?;
            Ok(otlp::response(&report))
        }
        .await;
        finish(started, result)
    }
}
