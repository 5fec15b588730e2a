//! One client connection: length-prefixed frames in, responses out in request order.
//!
//! Produce requests are pipelined once the connection is authenticated (SASL done, or off):
//! each is written to the log in request order before the next frame is read, and its
//! response waits for durability in [`in_flight`]'s queue while the connection reads on, up to
//! [`MAX_PRODUCES_IN_FLIGHT`]. Any other request first waits for every response ahead of it.
//!
//! Unknown API keys, unsupported versions (other than ApiVersions, which answers
//! UNSUPPORTED_VERSION as the protocol asks), undecodable frames and oversized frames close
//! the connection (after the responses of the Produces ahead of them); nothing a client sends
//! can panic the broker or affect other connections. When the listener requires SASL,
//! [`SaslState`] gates every request until the client has authenticated; a refused request or
//! a failed exchange closes the connection. Every request then runs as the connection's
//! [`Principal`] (from SASL, else a mapped client certificate, else anonymous), checked against
//! the ACLs before it acts.

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
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{OwnedSemaphorePermit, SemaphorePermit, watch};
use tokio::time::Instant;

use super::principal::Principal;
use super::request::{DecodeError, decode_body, decode_head};
use super::sasl::{After, SaslState};
use super::{Broker, authorize, data, groups, versions};
use frame::{Frame, read_frame};
use headwater_log::security::Operation;
use in_flight::{Queue, WrittenReply};

mod frame;
mod in_flight;

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
    /// A Produce written to the log, answered once durable.
    Written(WrittenReply),
}

/// What the connection waited for.
enum Event<'a, R> {
    /// The read half back, with what reading gave.
    Read(R, io::Result<Frame<'a>>),
    /// The oldest queued Produce is answered.
    Answered(in_flight::Answered<'a>),
    /// Shutdown began.
    Shutdown,
    /// SASL was not completed in time.
    AuthenticationTimedOut,
}

/// Serves requests on `stream` (TCP or TLS) until the client closes, errs, or shutdown begins.
///
/// The read half is owned by the one frame read in progress (`reading`), kept across
/// iterations: a half-read frame is never dropped while responses are written.
pub(crate) async fn serve_connection<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    certified: Principal,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = Some(reader);
    let mut reading = None;
    let mut session = Session {
        broker: &broker,
        peer,
        certified: &certified,
        sasl: SaslState::new(broker.options.sasl.is_some()),
        queue: Queue::new(),
        writer,
    };
    let deadline = Instant::now() + AUTHENTICATION_TIMEOUT;
    let limits = &broker.options.limits;
    loop {
        if reading.is_none()
            && !session.queue.is_full()
            && let Some(half) = reader.take()
        {
            let limit = if session.sasl.is_open() {
                limits.max_request_bytes
            } else {
                UNAUTHENTICATED_MAX_BYTES.min(limits.max_request_bytes)
            };
            let idle = limits.idle_timeout;
            reading = Some(Box::pin(read_next(half, limit, idle, &broker)));
        }
        let (queue, writer) = (&mut session.queue, &mut session.writer);
        let event = tokio::select! {
            biased;
            _ = shutdown.changed() => Event::Shutdown,
            Some(answered) = queue.next(), if !queue.is_empty() => Event::Answered(answered),
            (half, frame) = next_read(&mut reading) => Event::Read(half, frame),
            () = tokio::time::sleep_until(deadline), if !session.sasl.is_open() => {
                Event::AuthenticationTimedOut
            }
        };
        let frame = match event {
            Event::Answered(answered) => {
                answered.write(writer).await?;
                continue;
            }
            Event::Shutdown => return queue.drain(writer).await,
            Event::AuthenticationTimedOut => {
                return Err(sasl_failure("SASL authentication timed out"));
            }
            Event::Read(half, frame) => {
                reading = None;
                reader = Some(half);
                frame
            }
        };
        match frame {
            Ok(Frame::Request(bytes, budget)) => session.serve(bytes, budget).await?,
            Ok(Frame::End) => return queue.drain(writer).await,
            Ok(Frame::Idle) => {
                ::metrics::counter!(crate::metrics::KAFKA_IDLE_CLOSED_TOTAL).increment(1);
                tracing::debug!(%peer, idle = ?limits.idle_timeout, "kafka connection idle: closed");
                return queue.drain(writer).await;
            }
            Err(error) => return queue.close(writer, error).await,
        }
    }
}

/// A connection's state between frames.
struct Session<'a, W> {
    broker: &'a Broker,
    peer: SocketAddr,
    /// The principal of the connection's client certificate (else anonymous).
    certified: &'a Principal,
    sasl: SaslState,
    /// The Produces written and not yet answered.
    queue: Queue<'a>,
    writer: W,
}

impl<'a, W: AsyncWrite + Unpin> Session<'a, W> {
    /// Handles one request frame: a Produce (once authenticated) is written and joins the
    /// queue; anything else waits until the queue is answered, then is answered. `budget` is
    /// the frame's share of the request budget, held until the answer is written. An error
    /// closes the connection (after the answers queued ahead).
    async fn serve(&mut self, frame: Bytes, budget: Option<SemaphorePermit<'a>>) -> io::Result<()> {
        let read_at = Instant::now();
        let pipelined = self.sasl.is_open() && is_produce(&frame);
        if !pipelined {
            self.queue.drain(&mut self.writer).await?;
        }
        // What the response holds of the listener's fetch budget, until it is written.
        let mut held = None;
        let reply = if self.sasl.expects_raw_token() {
            raw_token(self.broker, &mut self.sasl, &frame, self.peer)
        } else {
            let request = Request {
                frame,
                peer: self.peer,
                certified: self.certified,
            };
            handle_frame(self.broker, &mut self.sasl, request, &mut held).await
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => return self.queue.close(&mut self.writer, error).await,
        };
        match reply {
            Reply::Nothing => Ok(()),
            Reply::Send(response) => write_response(&mut self.writer, &response, false).await,
            Reply::SendAndClose(response, reason) => {
                write_response(&mut self.writer, &response, true).await?;
                Err(sasl_failure(reason))
            }
            Reply::Written(written) => {
                self.queue
                    .push(written.answer(self.broker), budget, read_at);
                if pipelined {
                    Ok(())
                } else {
                    self.queue.drain(&mut self.writer).await
                }
            }
        }
    }
}

/// Whether `frame` (a request, header first) is a Produce: its API key, read before decoding.
fn is_produce(frame: &[u8]) -> bool {
    frame.get(..2) == Some(&(ApiKey::Produce as i16).to_be_bytes()[..])
}

/// Reads the next frame from `half`, giving it back with the frame.
async fn read_next<R: AsyncRead>(
    mut half: ReadHalf<R>,
    limit: usize,
    idle: Duration,
    broker: &Broker,
) -> (ReadHalf<R>, io::Result<Frame<'_>>) {
    let frame = read_frame(&mut half, limit, idle, &broker.request_bytes).await;
    (half, frame)
}

/// The frame read in progress, once it completes (never, when none is).
async fn next_read<F: Future + Unpin>(reading: &mut Option<F>) -> F::Output {
    match reading {
        Some(read) => read.await,
        None => std::future::pending().await,
    }
}

/// Writes one response (then closes the stream when `close`), within [`WRITE_TIMEOUT`].
async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &[u8],
    close: bool,
) -> io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, async {
        writer.write_all(response).await?;
        writer.flush().await?;
        if close {
            writer.shutdown().await?;
        }
        io::Result::Ok(())
    })
    .await
    .map_err(|_| invalid("timed out writing a response"))?
}

/// Counts a SASL failure and makes the error that closes the connection.
fn sasl_failure(reason: impl Into<String>) -> io::Error {
    ::metrics::counter!(crate::metrics::KAFKA_AUTH_FAILURES_TOTAL, "stage" => "sasl").increment(1);
    io::Error::new(io::ErrorKind::PermissionDenied, reason.into())
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
        // Written in order now, answered once durable (`in_flight`).
        RequestKind::Produce(r) => {
            let principal = sasl.principal().unwrap_or(certified);
            let produce = data::produce(broker, principal, r).await;
            return Ok(Reply::Written(WrittenReply {
                produce,
                correlation_id,
                version,
            }));
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
            ResponseKind::CreateTopics(data::create_topics(broker, principal, r).await)
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
