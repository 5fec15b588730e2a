//! One client connection: length-prefixed frames in, responses out in request order.
//!
//! Unknown API keys, unsupported versions (other than ApiVersions, which answers
//! UNSUPPORTED_VERSION as the protocol asks), undecodable frames and oversized frames close
//! the connection; nothing a client sends can panic the broker or affect other connections.
//! When the listener requires SASL, [`SaslState`] gates every request until the client has
//! authenticated; a refused request or a failed exchange closes the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::request::{DecodeError, decode_body, decode_head};
use super::sasl::{After, SaslState};
use super::{Broker, data, groups, versions};

/// Time a client may take to send the rest of a frame once its length arrived.
const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a response may take to reach a client that stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time from connect to a completed SASL exchange when SASL is required.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest frame accepted before authentication (Kafka's `sasl.server.max.receive.size`).
const UNAUTHENTICATED_MAX_BYTES: usize = 512 * 1024;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// What a frame leads to.
enum Reply {
    /// No response (Produce with acks=0).
    Nothing,
    /// A response; the connection goes on.
    Send(BytesMut),
    /// A response, then the connection closes for `reason`.
    SendAndClose(BytesMut, String),
}

/// Serves requests on `stream` (TCP or TLS) until the client closes, errs, or shutdown begins.
pub(crate) async fn serve_connection<S>(
    broker: Arc<Broker>,
    mut stream: S,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sasl = SaslState::new(broker.options.sasl.is_some());
    let deadline = Instant::now() + AUTHENTICATION_TIMEOUT;
    loop {
        let limit = if sasl.is_open() {
            broker.options.max_request_bytes
        } else {
            UNAUTHENTICATED_MAX_BYTES.min(broker.options.max_request_bytes)
        };
        let frame = tokio::select! {
            frame = read_frame(&mut stream, limit) => frame?,
            _ = shutdown.changed() => return Ok(()),
            () = tokio::time::sleep_until(deadline), if !sasl.is_open() => {
                return Err(sasl_failure("SASL authentication timed out"));
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        let reply = if sasl.expects_raw_token() {
            raw_token(&broker, &mut sasl, &frame, peer)?
        } else {
            handle_frame(&broker, &mut sasl, frame, peer).await?
        };
        let (response, close) = match reply {
            Reply::Nothing => continue,
            Reply::Send(response) => (response, None),
            Reply::SendAndClose(response, reason) => (response, Some(reason)),
        };
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&response).await?;
            stream.flush().await?;
            if close.is_some() {
                stream.shutdown().await?;
            }
            io::Result::Ok(())
        })
        .await
        .map_err(|_| invalid("timed out writing a response"))??;
        if let Some(reason) = close {
            return Err(sasl_failure(reason));
        }
    }
}

/// Counts a SASL failure and makes the error that closes the connection.
fn sasl_failure(reason: impl Into<String>) -> io::Error {
    ::metrics::counter!(crate::metrics::KAFKA_AUTH_FAILURES_TOTAL, "stage" => "sasl").increment(1);
    io::Error::new(io::ErrorKind::PermissionDenied, reason.into())
}

/// Reads one length-prefixed frame of at most `limit` bytes; `None` at a clean end of stream.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> io::Result<Option<Bytes>> {
    let length = match stream.read_i32().await {
        Ok(length) => length,
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    };
    let length = usize::try_from(length).map_err(|_| invalid("negative frame length"))?;
    if length > limit {
        return Err(invalid(format!(
            "frame of {length} bytes is over the limit of {limit}"
        )));
    }
    let mut frame = vec![0u8; length];
    tokio::time::timeout(FRAME_BODY_TIMEOUT, stream.read_exact(&mut frame))
        .await
        .map_err(|_| invalid("timed out reading a request frame"))??;
    Ok(Some(Bytes::from(frame)))
}

/// The token after a v0 SaslHandshake, sent raw: success answers an empty server token,
/// failure closes the connection without an answer (as Kafka does).
fn raw_token(
    broker: &Broker,
    sasl: &mut SaslState,
    token: &[u8],
    peer: SocketAddr,
) -> io::Result<Reply> {
    let Some(authenticator) = broker.options.sasl.as_deref() else {
        return Err(invalid("SASL token on a listener without SASL"));
    };
    sasl.authenticate(token, authenticator)
        .map_err(|error| sasl_failure(format!("SASL/PLAIN authentication failed: {error}")))?;
    tracing::debug!(%peer, tenant = sasl.tenant(), "kafka client authenticated");
    let mut empty = BytesMut::with_capacity(4);
    empty.put_i32(0);
    Ok(Reply::Send(empty))
}

/// Decodes one frame, answers it, and encodes the response with its length prefix.
async fn handle_frame(
    broker: &Broker,
    sasl: &mut SaslState,
    mut frame: Bytes,
    peer: SocketAddr,
) -> io::Result<Reply> {
    let sasl_on = broker.options.sasl.is_some();
    let head = match decode_head(&mut frame) {
        Ok(head) => head,
        Err(DecodeError::ApiVersionsUnsupported { correlation_id, .. }) => {
            sasl.admit(ApiKey::ApiVersions)
                .map_err(|e| sasl_failure(e.to_string()))?;
            // Answer in v0 so any client can read it, then let it retry with a version we serve.
            let mut body = api_versions(sasl_on);
            body.error_code = ResponseError::UnsupportedVersion.code();
            let body = ResponseKind::ApiVersions(body);
            return encode(correlation_id, ApiKey::ApiVersions, 0, &body).map(Reply::Send);
        }
        Err(error) => return Err(invalid(error.to_string())),
    };
    let (api_key, version) = (head.api_key, head.version);
    if !versions::offered(api_key, sasl_on) {
        return Err(invalid(format!("api {api_key:?} is not served")));
    }
    // Refused before the body is decoded: an unauthenticated client reaches only the
    // ApiVersions and SASL decoders.
    sasl.admit(api_key)
        .map_err(|e| sasl_failure(e.to_string()))?;
    let request = decode_body(&head, &mut frame).map_err(|e| invalid(e.to_string()))?;
    let header = head.header;
    let correlation_id = header.correlation_id;
    let (body, after) = match request {
        RequestKind::SaslHandshake(r) => {
            let (response, after) = sasl.handshake(r.mechanism.as_str(), version);
            (Some(ResponseKind::SaslHandshake(response)), after)
        }
        RequestKind::SaslAuthenticate(r) => {
            let (response, after) = sasl_authenticate(broker, sasl, &r.auth_bytes, peer)?;
            (Some(ResponseKind::SaslAuthenticate(response)), after)
        }
        other => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            let response = dispatch(broker, other, version, client_id, peer).await;
            (response, After::Continue)
        }
    };
    let Some(body) = body else {
        return Ok(Reply::Nothing);
    };
    let response = encode(correlation_id, api_key, version, &body)?;
    Ok(match after {
        After::Continue => Reply::Send(response),
        After::Close => Reply::SendAndClose(response, format!("SASL {api_key:?} failed")),
    })
}

/// Answers SaslAuthenticate.
fn sasl_authenticate(
    broker: &Broker,
    sasl: &mut SaslState,
    token: &[u8],
    peer: SocketAddr,
) -> io::Result<(kafka_protocol::messages::SaslAuthenticateResponse, After)> {
    let Some(authenticator) = broker.options.sasl.as_deref() else {
        return Err(invalid("SaslAuthenticate on a listener without SASL"));
    };
    let (response, after) = sasl.authenticate_response(token, authenticator);
    if after == After::Continue {
        tracing::debug!(%peer, tenant = sasl.tenant(), "kafka client authenticated");
    }
    Ok((response, after))
}

async fn dispatch(
    broker: &Broker,
    request: RequestKind,
    version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> Option<ResponseKind> {
    let response = match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(api_versions(broker.options.sasl.is_some()))
        }
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
        RequestKind::JoinGroup(r) => {
            let (group, member) = (r.group_id.0.to_string(), r.member_id.to_string());
            let response = broker
                .groups
                .join(r, version, client_id, &peer.ip().to_string())
                .await;
            tracing::debug!(%peer, %group, %member, assigned = %response.member_id,
                generation = response.generation_id, error = response.error_code, "JoinGroup");
            ResponseKind::JoinGroup(response)
        }
        RequestKind::SyncGroup(r) => {
            let (group, member, generation) = (
                r.group_id.0.to_string(),
                r.member_id.to_string(),
                r.generation_id,
            );
            let response = broker.groups.sync(r).await;
            tracing::debug!(%peer, %group, %member, generation, error = response.error_code,
                "SyncGroup");
            ResponseKind::SyncGroup(response)
        }
        RequestKind::Heartbeat(r) => {
            let (group, member, generation) = (
                r.group_id.0.to_string(),
                r.member_id.to_string(),
                r.generation_id,
            );
            let response = broker.groups.heartbeat(r);
            tracing::trace!(%peer, %group, %member, generation, error = response.error_code,
                "Heartbeat");
            ResponseKind::Heartbeat(response)
        }
        RequestKind::LeaveGroup(r) => {
            let group = r.group_id.0.to_string();
            let response = broker.groups.leave(r, version);
            tracing::debug!(%peer, %group, error = response.error_code, "LeaveGroup");
            ResponseKind::LeaveGroup(response)
        }
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

/// Every API this listener serves, with its versions (the SASL APIs only when `sasl`).
fn api_versions(sasl: bool) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = versions::advertised(sasl)
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
    use crate::{KafkaOptions, StaticCredentials, groups};
    use headwater_log::LogConfig;
    use headwater_log::LogEngine;

    fn broker(dir: &std::path::Path, sasl: bool) -> Broker {
        let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
        let mut options = KafkaOptions::advertising("127.0.0.1:9092".parse().unwrap());
        if sasl {
            options.sasl = Some(Arc::new(StaticCredentials::new([("acme", "pw")])));
        }
        Broker {
            groups: groups::Coordinator::new(engine.clone()),
            engine,
            options,
            next_producer_id: AtomicI64::new(1),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Any bytes after a served API key and version decode to an answer or a refusal,
        /// never a panic.
        #[test]
        fn arbitrary_frames_never_panic(key in 0usize..19, version in -1i16..20, sasl: bool, body in proptest::collection::vec(any::<u8>(), 4..256)) {
            let dir = tempfile::tempdir().unwrap();
            let broker = broker(dir.path(), sasl);
            let mut state = SaslState::new(sasl);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (api, _, _) = versions::SUPPORTED.iter().chain(versions::SASL).nth(key).copied().unwrap();
            let mut frame = (api as i16).to_be_bytes().to_vec();
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&body);
            let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
            // A panic fails the test; a decoded request may legitimately wait (a long poll), so
            // the answer is only awaited briefly.
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(50), handle_frame(&broker, &mut state, Bytes::from(frame), peer)).await
            });
        }
    }
}
