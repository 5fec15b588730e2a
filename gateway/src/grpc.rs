//! gRPC collectors on the HTTP port: `headwater.v1.Ingest/Publish` and OTLP
//! `LogsService/Export`, sharing the collector (auth, limits, validation, append) with HTTP.
//!
//! Each method is served by a [`Method`] service instead of tonic's generated servers, which
//! decode the whole message before the handler runs: here the caller is authenticated from the
//! request headers before the body is read, and the message reaches the handler as bytes
//! ([`RawCodec`]), decoded on the blocking pool by the same bounded decoders as HTTP bodies
//! (elements counted before they are built).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes};
use headwater_schemas::proto::v1::{PublishResponse, Rejection};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstEncoder;

use crate::collector::Collector;
use crate::decode::{decode_protobuf, decode_sized};
use crate::error::IngestError;
use crate::ingest::{Report, RequestMeta};
use crate::metrics::Transport;
use crate::otlp;

/// `headwater.v1` with its tonic code (`Ingest` server and client), generated in headwater-schemas.
pub use headwater_schemas::proto::v1 as pb;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Both gRPC services as an axum router, mounted beside the HTTP routes; any other gRPC path
/// answers UNIMPLEMENTED.
pub fn router(collector: Arc<Collector>) -> axum::Router {
    tonic::service::Routes::new(Method::<Publish>::new(collector.clone()))
        .add_service(Method::<Export>::new(collector))
        .into_axum_router()
}

/// What one unary method does with an admitted caller's message.
trait Handler: Send + Sync + 'static {
    /// The gRPC service name (`package.Service`).
    const SERVICE: &'static str;
    /// The method's path (`/package.Service/Method`).
    const PATH: &'static str;
    /// The response message.
    type Response: prost::Message + Default + Send + 'static;

    /// Decodes `message` and publishes its events for `meta`.
    fn handle(
        collector: Arc<Collector>,
        meta: RequestMeta,
        message: Bytes,
    ) -> impl Future<Output = Result<Self::Response, IngestError>> + Send;
}

/// `headwater.v1.Ingest/Publish`: a protobuf `Batch`.
struct Publish;

impl Handler for Publish {
    const SERVICE: &'static str = "headwater.v1.Ingest";
    const PATH: &'static str = "/headwater.v1.Ingest/Publish";
    type Response = PublishResponse;

    async fn handle(
        collector: Arc<Collector>,
        meta: RequestMeta,
        message: Bytes,
    ) -> Result<PublishResponse, IngestError> {
        let max = collector.limits.max_events_per_batch as usize;
        let decoded = decode_sized(message.len(), move || decode_protobuf(&message, max)).await?;
        let report = collector.publish(&meta, decoded).await?;
        Ok(publish_response(&report))
    }
}

/// OTLP `LogsService/Export`: an `ExportLogsServiceRequest`.
struct Export;

impl Handler for Export {
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Response = ExportLogsServiceResponse;

    async fn handle(
        collector: Arc<Collector>,
        meta: RequestMeta,
        message: Bytes,
    ) -> Result<ExportLogsServiceResponse, IngestError> {
        let mut export = otlp::decode(&collector, message, otlp::Encoding::Protobuf).await?;
        let report = collector
            .publish(&meta, std::mem::take(&mut export.events))
            .await?;
        Ok(export.response(&report))
    }
}

/// The tower service of one method: authenticates from the headers, then lets tonic read the
/// (gzip or zstd, at most `max_decompressed_bytes`) message as bytes for the handler.
struct Method<H> {
    collector: Arc<Collector>,
    handler: PhantomData<fn() -> H>,
}

impl<H> Method<H> {
    fn new(collector: Arc<Collector>) -> Self {
        Self {
            collector,
            handler: PhantomData,
        }
    }
}

impl<H> Clone for Method<H> {
    fn clone(&self) -> Self {
        Self::new(self.collector.clone())
    }
}

impl<H: Handler> NamedService for Method<H> {
    const NAME: &'static str = H::SERVICE;
}

impl<H: Handler> tower::Service<axum::http::Request<Body>> for Method<H> {
    type Response = axum::http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        if request.uri().path() != H::PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // Before a byte of the body is read: a shed or refused caller costs no decoding.
        let admitted = self
            .collector
            .take_slot()
            .and_then(|slot| Ok((slot, admit(&self.collector, &request)?)));
        let (slot, meta) = match admitted {
            Ok(admitted) => admitted,
            Err(error) => {
                self.collector
                    .requests
                    .observe(Transport::Grpc, started, Some(error.label()));
                let status = error.into_status();
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let call = Call::<H> {
            collector: self.collector.clone(),
            meta,
            started,
            handler: PhantomData,
        };
        let max =
            usize::try_from(self.collector.limits.max_decompressed_bytes).unwrap_or(usize::MAX);
        Box::pin(async move {
            // Held until the answer.
            let _slot = slot;
            let mut grpc = Grpc::new(RawCodec::<H::Response>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max);
            Ok(grpc.unary(call, request).await)
        })
    }
}

/// Authenticates, takes a request token and identifies the client, from the request's headers
/// and connection.
fn admit(
    collector: &Collector,
    request: &axum::http::Request<Body>,
) -> Result<RequestMeta, IngestError> {
    let extensions = request.extensions();
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    collector.admit(
        request.headers(),
        peer,
        extensions.get::<crate::tls::ClientCert>(),
    )
}

/// One admitted call, handed its message by tonic.
struct Call<H> {
    collector: Arc<Collector>,
    meta: RequestMeta,
    started: Instant,
    handler: PhantomData<fn() -> H>,
}

impl<H: Handler> UnaryService<Bytes> for Call<H> {
    type Response = H::Response;
    type Future = BoxFuture<Result<Response<H::Response>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (collector, meta) = (self.collector.clone(), self.meta.clone());
        let started = self.started;
        Box::pin(async move {
            let message = request.into_inner();
            collector
                .requests
                .received(&meta.principal.tenant, message.len());
            // The message's bytes held in the in-flight budget until the answer.
            let _reserved = collector.reserve(message.len()).await;
            let result = H::handle(collector.clone(), meta, message).await;
            finish(&collector, started, result)
        })
    }
}

/// Records the call's duration (and refusal), and makes its answer.
fn finish<T>(
    collector: &Collector,
    started: Instant,
    result: Result<T, IngestError>,
) -> Result<Response<T>, Status> {
    let refused = result.as_ref().err().map(IngestError::label);
    collector
        .requests
        .observe(Transport::Grpc, started, refused);
    result.map(Response::new).map_err(IngestError::into_status)
}

/// Encodes responses with prost; hands the request message over undecoded.
struct RawCodec<T>(PhantomData<fn() -> T>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: prost::Message + Send + 'static> Codec for RawCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = ProstEncoder<T>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// The message's bytes, as tonic read (and decompressed) them.
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
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
