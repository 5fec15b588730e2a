//! A connection's Produces in flight: written to the log in request order, each answered in
//! request order once its batches are durable, while the connection reads the next requests.

use std::io;

use bytes::BytesMut;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::AsyncWrite;
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::{Broker, data, encode, write_response};
use crate::metrics::{KAFKA_INFLIGHT_PRODUCES, KAFKA_PRODUCE_SECONDS};

/// Most Produce requests of one connection written to the log and not yet answered. With this
/// many waiting for durability the connection reads no further frame until the oldest is
/// answered. Each holds its frame's share of the listener's request budget
/// (`Limits::queued_max_request_bytes`) until its response is written, so the budget bounds
/// their bytes over all connections. Clients rarely send more at once: Kafka producers keep
/// at most `max.in.flight.requests.per.connection` (5 by default) requests outstanding.
pub(crate) const MAX_PRODUCES_IN_FLIGHT: usize = 16;

/// A Produce written to the log, answered once durable.
pub(super) struct WrittenReply {
    pub(super) produce: data::WrittenProduce,
    pub(super) correlation_id: i32,
    pub(super) version: i16,
}

impl WrittenReply {
    /// Waits until the Produce's batches are durable and encodes its response (none for
    /// acks=0).
    pub(super) async fn answer(self, broker: &Broker) -> io::Result<Option<BytesMut>> {
        let Some(response) = self.produce.durable(broker).await else {
            return Ok(None);
        };
        let response = ResponseKind::Produce(response);
        encode(
            self.correlation_id,
            ApiKey::Produce,
            self.version,
            &response,
        )
        .map(Some)
    }
}

/// An answered Produce, and what it holds until its response is written.
pub(super) struct Answered<'a> {
    response: io::Result<Option<BytesMut>>,
    /// The frame's share of the request budget.
    _budget: Option<SemaphorePermit<'a>>,
    _in_flight: InFlight,
    /// When its request was read.
    read_at: Instant,
}

impl Answered<'_> {
    /// Writes the response (if the Produce has one), then lets go of what it held. The time
    /// from the request read to its response written goes into [`KAFKA_PRODUCE_SECONDS`].
    pub(super) async fn write<W: AsyncWrite + Unpin>(self, writer: &mut W) -> io::Result<()> {
        if let Some(response) = self.response? {
            write_response(writer, &response, false).await?;
        }
        ::metrics::histogram!(KAFKA_PRODUCE_SECONDS).record(self.read_at.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The Produces of one connection in flight, in request order.
pub(super) struct Queue<'a> {
    queued: FuturesOrdered<BoxFuture<'a, Answered<'a>>>,
}

impl<'a> Queue<'a> {
    pub(super) fn new() -> Self {
        Self {
            queued: FuturesOrdered::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Whether [`MAX_PRODUCES_IN_FLIGHT`] are queued: no frame is read until one is answered.
    pub(super) fn is_full(&self) -> bool {
        self.queued.len() >= MAX_PRODUCES_IN_FLIGHT
    }

    /// Queues the `answer` of a written Produce, with its frame's `budget` and the time its
    /// request was read.
    pub(super) fn push(
        &mut self,
        answer: impl Future<Output = io::Result<Option<BytesMut>>> + Send + 'a,
        budget: Option<SemaphorePermit<'a>>,
        read_at: Instant,
    ) {
        let in_flight = InFlight::new();
        self.queued.push_back(Box::pin(async move {
            Answered {
                response: answer.await,
                _budget: budget,
                _in_flight: in_flight,
                read_at,
            }
        }));
    }

    /// The oldest Produce, once answered (`None` when none is queued).
    pub(super) async fn next(&mut self) -> Option<Answered<'a>> {
        self.queued.next().await
    }

    /// Writes every queued response in order, each once its Produce is durable.
    pub(super) async fn drain<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<()> {
        while let Some(answered) = self.queued.next().await {
            answered.write(writer).await?;
        }
        Ok(())
    }

    /// Before the connection closes for `error`: writes the responses queued ahead of the
    /// frame that failed (their batches are in the log, and durable once answered), then
    /// returns `error`.
    pub(super) async fn close<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        error: io::Error,
    ) -> io::Result<()> {
        if let Err(unwritten) = self.drain(writer).await {
            tracing::debug!(error = %unwritten, "kafka responses queued before a failure not written");
        }
        Err(error)
    }
}

/// One Produce counted in [`KAFKA_INFLIGHT_PRODUCES`] until dropped.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        ::metrics::gauge!(KAFKA_INFLIGHT_PRODUCES).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        ::metrics::gauge!(KAFKA_INFLIGHT_PRODUCES).decrement(1.0);
    }
}
