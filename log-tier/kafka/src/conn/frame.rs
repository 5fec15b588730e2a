//! Reading request frames: the length prefix, the idle and body timeouts, and the listener's
//! request-bytes budget a frame takes as its bytes arrive.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::invalid;

/// Time a client may take to send the rest of a frame once its length arrived.
const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What waiting for the next frame gave.
pub(super) enum Frame<'a> {
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
pub(super) async fn read_frame<'a, S: AsyncRead + Unpin>(
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
pub(super) const SMALL_FRAME_BYTES: usize = 16 * 1024;

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
pub(super) async fn read_body<'a, S: AsyncRead + Unpin>(
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
