//! One client connection: length-prefixed frames in, responses out in request order.
//!
//! Unknown API keys, unsupported versions (other than ApiVersions, which answers
//! UNSUPPORTED_VERSION as the protocol asks), undecodable frames and oversized frames close
//! the connection; nothing a client sends can panic the broker or affect other connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Broker, data, groups, versions};

/// Time a client may take to send the rest of a frame once its length arrived.
const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(30);

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Serves requests on `stream` until the client closes, errs, or shutdown begins.
pub(crate) async fn serve_connection(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    loop {
        let length = tokio::select! {
            read = stream.read_i32() => match read {
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let length = usize::try_from(length).map_err(|_| invalid("negative frame length"))?;
        if length > broker.options.max_request_bytes {
            return Err(invalid(format!(
                "frame of {length} bytes is over the limit of {}",
                broker.options.max_request_bytes
            )));
        }
        if length < 8 {
            return Err(invalid("frame too short for a request header"));
        }
        let mut frame = vec![0u8; length];
        tokio::time::timeout(FRAME_BODY_TIMEOUT, stream.read_exact(&mut frame))
            .await
            .map_err(|_| invalid("timed out reading a request frame"))??;
        let Some(response) = handle_frame(&broker, Bytes::from(frame), peer).await? else {
            continue;
        };
        stream.write_all(&response).await?;
    }
}

/// Decodes one frame, answers it, and encodes the response with its length prefix; `None`
/// when the request wants no response (Produce with acks=0).
async fn handle_frame(
    broker: &Broker,
    mut frame: Bytes,
    peer: SocketAddr,
) -> io::Result<Option<BytesMut>> {
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api_key =
        ApiKey::try_from(raw_key).map_err(|_| invalid(format!("unknown api key {raw_key}")))?;
    let Some((min, max)) = versions::range(api_key) else {
        return Err(invalid(format!("api {api_key:?} is not served")));
    };
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            // Answer in v0 so any client can read it, then let it retry with a version we serve.
            let correlation_id = (&frame[4..8]).get_i32();
            let mut body = api_versions();
            body.error_code = ResponseError::UnsupportedVersion.code();
            return encode(correlation_id, api_key, 0, &ResponseKind::ApiVersions(body)).map(Some);
        }
        return Err(invalid(format!(
            "{api_key:?} v{version} is not served (v{min}..=v{max})"
        )));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| invalid(format!("request header: {e}")))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| invalid(format!("{api_key:?} v{version}: {e}")))?;
    let client_id = header
        .client_id
        .as_ref()
        .map_or("", |c| c.as_str())
        .to_owned();
    let response = dispatch(broker, request, version, &client_id, peer).await;
    match response {
        Some(body) => encode(header.correlation_id, api_key, version, &body).map(Some),
        None => Ok(None),
    }
}

async fn dispatch(
    broker: &Broker,
    request: RequestKind,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> Option<ResponseKind> {
    let response = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(data::metadata(broker, r, version)),
        RequestKind::Produce(r) => {
            return data::produce(broker, r).await.map(ResponseKind::Produce);
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(data::fetch(broker, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(data::list_offsets(broker, r)),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(data::create_topics(broker, r)),
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(data::delete_topics(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(data::init_producer_id(broker, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(
            broker
                .groups
                .join(r, version, client_id, &peer.ip().to_string())
                .await,
        ),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(broker.groups.sync(r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(broker.groups.heartbeat(r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(broker.groups.leave(r, version)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(broker.groups.offset_commit(r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(broker.groups.offset_fetch(r, version))
        }
        RequestKind::ListGroups(_) => ResponseKind::ListGroups(broker.groups.list_groups()),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(broker.groups.describe_groups(r))
        }
        other => {
            tracing::debug!(request = ?std::mem::discriminant(&other), "unserved request decoded");
            return None;
        }
    };
    Some(response)
}

/// Every API this broker serves, with its versions.
fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = versions::SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    response
}

fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> io::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, api_key.response_header_version(version))
        .map_err(|e| invalid(format!("encoding a response header: {e}")))?;
    body.encode(&mut out, version)
        .map_err(|e| invalid(format!("encoding {api_key:?} v{version}: {e}")))?;
    let length = i32::try_from(out.len() - 4).map_err(|_| invalid("response too large"))?;
    out[0..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use proptest::prelude::*;

    use super::*;
    use crate::LogConfig;
    use crate::engine::LogEngine;
    use crate::kafka::{KafkaOptions, groups};

    fn broker(dir: &std::path::Path) -> Broker {
        let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
        Broker {
            groups: groups::Coordinator::new(engine.clone()),
            engine,
            options: KafkaOptions::advertising("127.0.0.1:9092".parse().unwrap()),
            next_producer_id: AtomicI64::new(1),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Any bytes after a served API key and version decode to an answer or a refusal,
        /// never a panic.
        #[test]
        fn arbitrary_frames_never_panic(key in 0usize..17, version in -1i16..20, body in proptest::collection::vec(any::<u8>(), 4..256)) {
            let dir = tempfile::tempdir().unwrap();
            let broker = broker(dir.path());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (api, _, _) = versions::SUPPORTED[key];
            let mut frame = (api as i16).to_be_bytes().to_vec();
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&body);
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            // A panic fails the test; a decoded request may legitimately wait (a long poll), so
            // the answer is only awaited briefly.
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(50), handle_frame(&broker, Bytes::from(frame), peer)).await
            });
        }
    }
}
