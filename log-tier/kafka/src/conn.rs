//! One client connection: length-prefixed frames in, responses out in request order.
//!
//! Unknown API keys, unsupported versions (other than ApiVersions, which answers
//! UNSUPPORTED_VERSION as the protocol asks), undecodable frames and oversized frames close
//! the connection; nothing a client sends can panic the broker or affect other connections.
//! When the listener requires SASL, [`SaslState`] gates every request until the client has
//! authenticated; a refused request or a failed exchange closes the connection. Every request
//! then runs as the connection's [`Principal`] (from SASL, else a mapped client certificate,
//! else anonymous), checked against the ACLs before it acts.

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit, watch};
use tokio::time::Instant;

use super::principal::Principal;
use super::request::{DecodeError, decode_body, decode_head};
use super::sasl::{After, SaslState};
use super::{Broker, authorize, data, groups, versions};
use headwater_log::security::Operation;

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
    certified: Principal,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sasl = SaslState::new(broker.options.sasl.is_some());
    let deadline = Instant::now() + AUTHENTICATION_TIMEOUT;
    let limits = &broker.options.limits;
    loop {
        let limit = if sasl.is_open() {
            limits.max_request_bytes
        } else {
            UNAUTHENTICATED_MAX_BYTES.min(limits.max_request_bytes)
        };
        let frame = tokio::select! {
            frame = read_frame(&mut stream, limit, limits.idle_timeout, &broker.request_bytes) => frame?,
            _ = shutdown.changed() => return Ok(()),
            () = tokio::time::sleep_until(deadline), if !sasl.is_open() => {
                return Err(sasl_failure("SASL authentication timed out"));
            }
        };
        let (frame, _budget) = match frame {
            Frame::Request(bytes, budget) => (bytes, budget),
            Frame::End => return Ok(()),
            Frame::Idle => {
                ::metrics::counter!(crate::metrics::KAFKA_IDLE_CLOSED_TOTAL).increment(1);
                tracing::debug!(%peer, idle = ?limits.idle_timeout, "kafka connection idle: closed");
                return Ok(());
            }
        };
        // What the response holds of the listener's fetch budget, until it is written.
        let mut held = None;
        let reply = if sasl.expects_raw_token() {
            raw_token(&broker, &mut sasl, &frame, peer)?
        } else {
            let request = Request {
                frame,
                peer,
                certified: &certified,
            };
            handle_frame(&broker, &mut sasl, request, &mut held).await?
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

/// What waiting for the next frame gave.
enum Frame<'a> {
    /// A whole frame, and its share of the listener's request-bytes budget (held until the
    /// request has been answered).
    Request(Bytes, Option<SemaphorePermit<'a>>),
    /// The client closed the connection between frames.
    End,
    /// No frame began within the idle timeout.
    Idle,
}

/// Reads one length-prefixed frame of at most `limit` bytes. The next frame must begin within
/// `idle` and its body must then arrive within [`FRAME_BODY_TIMEOUT`]. The body of a frame
/// over [`SMALL_FRAME_BYTES`] takes its first bytes from `budget` as they arrive, so a declared
/// length holds nothing another connection could use until its bytes are sent, then the rest
/// at once, so it holds all it needs to finish ([`read_body`]).
async fn read_frame<'a, S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
    idle: Duration,
    budget: &'a Semaphore,
) -> io::Result<Frame<'a>> {
    let length = match tokio::time::timeout(idle, stream.read_i32()).await {
        Err(_) => return Ok(Frame::Idle),
        Ok(Ok(length)) => length,
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(Frame::End),
        Ok(Err(error)) => return Err(error),
    };
    let length = usize::try_from(length).map_err(|_| invalid("negative frame length"))?;
    if length > limit {
        return Err(invalid(format!(
            "frame of {length} bytes is over the limit of {limit}"
        )));
    }
    // Small frames pass without the budget, so they never queue behind large ones.
    let budget = (length > SMALL_FRAME_BYTES).then_some(budget);
    // Declared before `body` so it is dropped after it: on an error or timeout the memory is
    // freed before its budget wakes the connections waiting for it.
    let mut permit = None;
    let mut body = Vec::new();
    tokio::time::timeout(
        FRAME_BODY_TIMEOUT,
        read_body(stream, length, &mut body, budget, &mut permit),
    )
    .await
    .map_err(|_| invalid("timed out reading a request frame"))??;
    Ok(Frame::Request(Bytes::from(body), permit))
}

/// Frames up to this size are read without the request budget (at most this much per
/// connection, `Limits::max_connections` × 16 KiB in all), so small requests (ApiVersions,
/// Metadata, heartbeats, most fetches) never queue behind large produces.
const SMALL_FRAME_BYTES: usize = 16 * 1024;

/// First buffer of a frame body; it doubles as bytes arrive, up to [`WHOLE_AFTER`].
const FIRST_CHUNK: usize = 8 * 1024;
/// Once this much of a frame arrived, the frame takes the rest of its declared length from
/// the budget in one piece, then reserves it in one allocation (one copy of at most this
/// much; the buffer is then as large as the budget it holds and never grows again).
///
/// Up to here a frame takes the budget as its bytes arrive, so a declared length holds
/// nothing another connection could use until its bytes are sent. Past here it holds all it
/// needs to finish, so frames read in whole: partial frames that each hold a share of the
/// budget and wait for more can stall each other only while they hold more than the budget
/// less one frame (over 150 connections each 1 MiB into a frame, at the defaults), and the
/// semaphore is fair, so a frame waiting for its rest stops the others from taking more.
const WHOLE_AFTER: usize = 1024 * 1024;
/// Most bytes one read of a budgeted frame takes from the budget ahead of their arrival. A
/// read starts at [`SMALL_FRAME_BYTES`] and doubles while reads fill what they took, so a
/// connection waiting for bytes holds at most what it already sent plus 16 KiB.
const BUDGET_CHUNK: usize = 1024 * 1024;

/// Reads exactly `length` bytes into `body` (empty), which grows with what arrived (doubling
/// from [`FIRST_CHUNK`] to [`WHOLE_AFTER`]), so a declared length commits no memory the
/// client has not sent. With a `budget`, each read of the first [`WHOLE_AFTER`] bytes first
/// takes what it may read from it (waiting, unread, while other connections hold it; see
/// [`BUDGET_CHUNK`]) and gives back what did not arrive; then the rest of the frame is taken
/// at once before its buffer is reserved. `held` collects the bytes taken, released when the
/// request has been answered; it always covers the buffer's capacity once past
/// [`WHOLE_AFTER`].
async fn read_body<'a, S: AsyncRead + Unpin>(
    stream: &mut S,
    length: usize,
    body: &mut Vec<u8>,
    budget: Option<&'a Semaphore>,
    held: &mut Option<SemaphorePermit<'a>>,
) -> io::Result<()> {
    fn keep<'a>(held: &mut Option<SemaphorePermit<'a>>, permit: SemaphorePermit<'a>) {
        match held {
            Some(all) => all.merge(permit),
            None => *held = Some(permit),
        }
    }
    fn permits(bytes: usize) -> io::Result<u32> {
        u32::try_from(bytes).map_err(|_| invalid("frame over u32 bytes"))
    }
    body.reserve_exact(length.min(FIRST_CHUNK));
    let mut grant = SMALL_FRAME_BYTES;
    // Whether the whole frame is budgeted and reserved.
    let mut whole = false;
    while body.len() < length {
        let left = length - body.len();
        if body.len() == body.capacity() {
            if body.len() >= WHOLE_AFTER {
                if let Some(budget) = budget {
                    // At most `max_request_bytes`, which the budget's size covers
                    // (`Broker::new`); the semaphore is never closed.
                    let rest = budget.acquire_many(permits(left)?).await;
                    keep(held, rest.map_err(|_| invalid("request budget closed"))?);
                }
                whole = true;
                body.reserve_exact(left);
            } else {
                body.reserve_exact(body.len().max(FIRST_CHUNK).min(left));
            }
        }
        let mut room = (body.capacity() - body.len()).min(left);
        let mut taken = None;
        if let Some(budget) = budget.filter(|_| !whole) {
            room = room.min(grant);
            // `room` is at most BUDGET_CHUNK, far below the budget's size (`Broker::new`), so
            // this resolves once other frames are done; the semaphore is never closed.
            let permit = budget.acquire_many(permits(room)?).await;
            taken = Some(permit.map_err(|_| invalid("request budget closed"))?);
        }
        let read = (&mut *stream).take(room as u64).read_buf(body).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed {left} bytes before the end of a frame"),
            ));
        }
        grant = if read == room {
            (grant * 2).min(BUDGET_CHUNK)
        } else {
            SMALL_FRAME_BYTES
        };
        if let Some(mut permit) = taken {
            // Give back what did not arrive; keep what did.
            drop(permit.split(room - read));
            keep(held, permit);
        }
    }
    Ok(())
}

/// The token after a v0 SaslHandshake, sent raw: success answers an empty server token,
/// failure closes the connection without an answer (as Kafka does).
fn raw_token(
    broker: &Broker,
    sasl: &mut SaslState,
    token: &[u8],
    peer: SocketAddr,
) -> io::Result<Reply> {
    let Some(options) = broker.options.sasl.as_ref() else {
        return Err(invalid("SASL token on a listener without SASL"));
    };
    sasl.authenticate(token, options.store.as_ref())
        .map_err(|error| sasl_failure(format!("SASL/PLAIN authentication failed: {error}")))?;
    tracing::debug!(%peer, principal = ?sasl.principal(), "kafka client authenticated");
    let mut empty = BytesMut::with_capacity(4);
    empty.put_i32(0);
    Ok(Reply::Send(empty))
}

/// A request frame and who sent it.
struct Request<'a> {
    frame: Bytes,
    peer: SocketAddr,
    /// The principal of the connection's client certificate (else anonymous).
    certified: &'a Principal,
}

/// Decodes one frame, answers it, and encodes the response with its length prefix; `held`
/// gets what the response holds of the listener's fetch budget.
async fn handle_frame(
    broker: &Broker,
    sasl: &mut SaslState,
    request: Request<'_>,
    held: &mut Option<OwnedSemaphorePermit>,
) -> io::Result<Reply> {
    let Request {
        mut frame,
        peer,
        certified,
    } = request;
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
            let offered = broker
                .options
                .sasl
                .as_ref()
                .map_or(&[][..], |o| o.mechanisms.as_slice());
            let (response, after) = sasl.handshake(r.mechanism.as_str(), version, offered);
            (Some(ResponseKind::SaslHandshake(response)), after)
        }
        RequestKind::SaslAuthenticate(r) => {
            let (response, after) = sasl_authenticate(broker, sasl, &r.auth_bytes, peer)?;
            (Some(ResponseKind::SaslAuthenticate(response)), after)
        }
        other => {
            let client_id = header.client_id.as_ref().map_or("", |c| c.as_str());
            let principal = sasl.principal().unwrap_or(certified);
            let asked = Asked {
                version,
                client_id,
                peer,
                principal,
            };
            let response = dispatch(broker, other, asked, held).await;
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
    let Some(options) = broker.options.sasl.as_ref() else {
        return Err(invalid("SaslAuthenticate on a listener without SASL"));
    };
    let (response, after) = sasl.authenticate_response(token, options.store.as_ref());
    if let Some(principal) = sasl.principal().filter(|_| after == After::Continue) {
        tracing::debug!(%peer, %principal, "kafka client authenticated");
    }
    Ok((response, after))
}

/// How a decoded request was asked, and by whom.
struct Asked<'a> {
    version: i16,
    client_id: &'a str,
    peer: SocketAddr,
    principal: &'a Principal,
}

async fn dispatch(
    broker: &Broker,
    request: RequestKind,
    asked: Asked<'_>,
    held: &mut Option<OwnedSemaphorePermit>,
) -> Option<ResponseKind> {
    let Asked {
        version,
        client_id,
        peer,
        principal,
    } = asked;
    let response = match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(api_versions(broker.options.sasl.is_some()))
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(data::metadata(broker, principal, r, version))
        }
        RequestKind::Produce(r) => {
            return data::produce(broker, principal, r)
                .await
                .map(ResponseKind::Produce);
        }
        RequestKind::Fetch(r) => {
            let (response, budget) = data::fetch(broker, principal, r).await;
            *held = budget;
            ResponseKind::Fetch(response)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(data::list_offsets(broker, principal, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(data::offset_for_leader_epoch(broker, principal, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(data::create_topics(broker, principal, r))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(data::delete_topics(broker, principal, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(data::init_producer_id(broker, principal, r))
        }
        // Answered to everyone (where a group is coordinated says nothing about it): a
        // refusal here leaves librdkafka waiting for a coordinator instead of reporting
        // GROUP_AUTHORIZATION_FAILED from the request that needs the group.
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version))
        }
        RequestKind::JoinGroup(r) => {
            let (group, member) = (r.group_id.0.to_string(), r.member_id.to_string());
            let response = if authorize::group(broker, principal, &group, Operation::Read) {
                broker
                    .groups
                    .join(r, version, client_id, &peer.ip().to_string())
                    .await
            } else {
                authorize::join_denied()
            };
            tracing::debug!(%group, %member, assigned = %response.member_id,
                generation = response.generation_id, error = response.error_code, "JoinGroup");
            ResponseKind::JoinGroup(response)
        }
        RequestKind::SyncGroup(r) => {
            let (group, member, generation) = (
                r.group_id.0.to_string(),
                r.member_id.to_string(),
                r.generation_id,
            );
            let response = if authorize::group(broker, principal, &group, Operation::Read) {
                broker.groups.sync(r).await
            } else {
                authorize::sync_denied()
            };
            tracing::debug!(%group, %member, generation, error = response.error_code,
                "SyncGroup");
            ResponseKind::SyncGroup(response)
        }
        RequestKind::Heartbeat(r) => {
            let (group, member, generation) = (
                r.group_id.0.to_string(),
                r.member_id.to_string(),
                r.generation_id,
            );
            let response = if authorize::group(broker, principal, &group, Operation::Read) {
                broker.groups.heartbeat(r)
            } else {
                authorize::heartbeat_denied()
            };
            tracing::trace!(%group, %member, generation, error = response.error_code,
                "Heartbeat");
            ResponseKind::Heartbeat(response)
        }
        RequestKind::LeaveGroup(r) => {
            let group = r.group_id.0.to_string();
            let response = if authorize::group(broker, principal, &group, Operation::Read) {
                broker.groups.leave(r, version)
            } else {
                authorize::leave_denied()
            };
            tracing::debug!(%group, error = response.error_code, "LeaveGroup");
            ResponseKind::LeaveGroup(response)
        }
        RequestKind::OffsetCommit(r) => {
            let response = match authorize::offset_commit(broker, principal, r) {
                Ok((allowed, refused)) => {
                    let mut response = broker.groups.offset_commit(allowed).await;
                    response.topics.extend(refused);
                    response
                }
                Err(denied) => denied,
            };
            ResponseKind::OffsetCommit(response)
        }
        RequestKind::OffsetFetch(r) => {
            let response = match authorize::offset_fetch_denied(broker, principal, &r) {
                Some(denied) => denied,
                None => {
                    let asked_all = r.topics.is_none();
                    let mut response = broker.groups.offset_fetch(r, version);
                    authorize::offset_fetch_filter(broker, principal, asked_all, &mut response);
                    response
                }
            };
            ResponseKind::OffsetFetch(response)
        }
        RequestKind::ListGroups(_) => {
            let mut response = broker.groups.list_groups();
            authorize::list_groups_filter(broker, principal, &mut response);
            ResponseKind::ListGroups(response)
        }
        RequestKind::DescribeGroups(r) => {
            let (allowed, refused) = authorize::describe_groups(broker, principal, r);
            let response = broker.groups.describe_groups(allowed);
            ResponseKind::DescribeGroups(authorize::describe_groups_merge(response, refused))
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(broker.options.authorizer.describe_acls(principal, &r))
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
mod tests;
