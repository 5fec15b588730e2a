//! Framing of the transport: `u32 length | u8 kind | u64 correlation | u64 group | body`, all
//! big-endian, `length` counting every byte after itself. [`decode`] is sans-I/O (it never
//! panics and allocates nothing from a declared length); [`FrameReader`] feeds it from a socket,
//! growing its buffer only as bytes arrive; [`write_loop`] drains a connection's queue of
//! [`Outgoing`] frames into a buffered writer without copying bodies first.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::error::TransportError;
use super::metrics::{self, Direction};

/// Bytes of the header: length, kind, correlation, group.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 8;

/// Bytes the length field counts besides the body.
const AFTER_LENGTH: usize = HEADER_LEN - 4;

/// The default frame cap, header included: 2 MiB + 64 KiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 2 * 1024 * 1024 + 64 * 1024;

/// The most a read grows a frame's buffer by at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The first frame of a connection, both ways (the answer is a Response carrying the
    /// server's Hello).
    Hello = 1,
    /// openraft's AppendEntries request (binary body).
    AppendEntries = 2,
    /// openraft's Vote request (JSON).
    Vote = 3,
    /// openraft's Pre-Vote request (JSON).
    PreVote = 4,
    /// A whole snapshot: vote, metadata and our (data-free) snapshot data (JSON).
    InstallSnapshot = 5,
    /// The answer to the request with the same correlation id (JSON).
    Response = 6,
    /// A refusal of the request with the same correlation id (JSON [`super::codec::ErrorBody`]).
    Error = 7,
    /// A proposal forwarded to the leader of a group that takes forwarded proposals (the
    /// metadata group): the body is the RecordBatch; the answer is a JSON
    /// [`super::codec::ProposeAnswer`].
    Propose = 8,
}

impl Kind {
    /// Every kind, for tests and metric registration.
    pub const ALL: [Kind; 8] = [
        Kind::Hello,
        Kind::AppendEntries,
        Kind::Vote,
        Kind::PreVote,
        Kind::InstallSnapshot,
        Kind::Response,
        Kind::Error,
        Kind::Propose,
    ];

    /// The kind of a kind byte, if it is one.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// The kind as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::AppendEntries => "append_entries",
            Kind::Vote => "vote",
            Kind::PreVote => "pre_vote",
            Kind::InstallSnapshot => "install_snapshot",
            Kind::Response => "response",
            Kind::Error => "error",
            Kind::Propose => "propose",
        }
    }
}

/// One decoded frame; the body shares the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// Pairs a response with its request; 0 for the Hello exchange.
    pub correlation: u64,
    /// The Raft group the request is for (0 where none applies).
    pub group: u64,
    /// The body.
    pub body: Bytes,
}

impl Frame {
    /// The frame as one buffer (tests and small frames; the writer uses [`Outgoing`]).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.body.len());
        Outgoing::header_into(
            &mut out,
            self.kind,
            self.correlation,
            self.group,
            self.body.len(),
        );
        out.put_slice(&self.body);
        out.freeze()
    }
}

/// Decodes the first frame of `buf`, removing it; `Ok(None)` while it is incomplete. A declared
/// length above `max_frame_bytes` (header included) or below the header is an error before any
/// body byte is awaited; an unknown kind consumes the whole frame and is reported with its
/// correlation id so that it can be answered.
pub fn decode(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Frame>, TransportError> {
    let Some(total) = declared_total(buf, max_frame_bytes)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(4);
    let kind = frame.get_u8();
    let correlation = frame.get_u64();
    let group = frame.get_u64();
    let body = frame.freeze();
    match Kind::from_u8(kind) {
        Some(kind) => Ok(Some(Frame {
            kind,
            correlation,
            group,
            body,
        })),
        None => Err(TransportError::UnknownKind {
            kind,
            correlation,
            group,
        }),
    }
}

/// The whole length of the frame at the start of `buf` (length field included), once its length
/// field has arrived; checked against the cap.
fn declared_total(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>, TransportError> {
    let Some(length) = buf.get(..4) else {
        return Ok(None);
    };
    let mut length = length;
    let declared = length.get_u32() as usize;
    let total = declared.saturating_add(4);
    if total > max_frame_bytes {
        return Err(TransportError::FrameTooLarge {
            declared: total,
            max: max_frame_bytes,
        });
    }
    if declared < AFTER_LENGTH {
        return Err(TransportError::FrameTooShort { declared });
    }
    Ok(Some(total))
}

/// Reads frames from one connection under a frame cap.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `inner` refusing frames above `max_frame_bytes`, header included.
    pub fn new(inner: R, max_frame_bytes: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            max_frame_bytes,
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream (between frames). The buffer grows
    /// by at most [`READ_CHUNK`] beyond what has arrived, whatever the declared length.
    pub async fn next(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = decode(&mut self.buf, self.max_frame_bytes)? {
                metrics::frame(frame.kind, Direction::In);
                return Ok(Some(frame));
            }
            let wanted = match declared_total(&self.buf, self.max_frame_bytes)? {
                Some(total) => total - self.buf.len(),
                None => HEADER_LEN - self.buf.len(),
            };
            self.buf.reserve(wanted.min(READ_CHUNK));
            let read = (&mut self.inner)
                .take(wanted.min(READ_CHUNK) as u64)
                .read_buf(&mut self.buf)
                .await?;
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(TransportError::Truncated)
                };
            }
        }
    }

    /// The frame cap, header included.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Bytes the reader's buffer holds allocated (for tests of the cap).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// A frame to write: its header and its body in parts (batches stay the `Bytes` they are).
#[derive(Debug, Clone)]
pub struct Outgoing {
    header: [u8; HEADER_LEN],
    kind: Kind,
    parts: Vec<Bytes>,
}

impl Outgoing {
    /// A frame of `parts`; fails when the whole would exceed `max_frame_bytes`.
    pub fn new(
        kind: Kind,
        correlation: u64,
        group: u64,
        parts: Vec<Bytes>,
        max_frame_bytes: usize,
    ) -> Result<Self, TransportError> {
        let body: usize = parts.iter().map(Bytes::len).sum();
        let total = HEADER_LEN.saturating_add(body);
        if total > max_frame_bytes || body > u32::MAX as usize - AFTER_LENGTH {
            return Err(TransportError::FrameTooLarge {
                declared: total,
                max: max_frame_bytes,
            });
        }
        let mut header = BytesMut::with_capacity(HEADER_LEN);
        Self::header_into(&mut header, kind, correlation, group, body);
        let mut fixed = [0u8; HEADER_LEN];
        fixed.copy_from_slice(&header);
        Ok(Self {
            header: fixed,
            kind,
            parts,
        })
    }

    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn header_into(out: &mut BytesMut, kind: Kind, correlation: u64, group: u64, body: usize) {
        // Callers checked `body` against the cap, far below u32::MAX.
        out.put_u32(u32::try_from(body + AFTER_LENGTH).unwrap_or(u32::MAX));
        out.put_u8(kind as u8);
        out.put_u64(correlation);
        out.put_u64(group);
    }

    /// Writes the frame (not flushed).
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(&self.header).await?;
        for part in &self.parts {
            out.write_all(part).await?;
        }
        metrics::frame(self.kind, Direction::Out);
        Ok(())
    }
}

/// Writes every frame queued for one connection, flushing when the queue runs dry, until the
/// queue closes (every sender dropped) or the socket fails.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    out: W,
    mut queue: mpsc::Receiver<Outgoing>,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(READ_CHUNK, out);
    while let Some(frame) = queue.recv().await {
        frame.write_to(&mut out).await?;
        while let Ok(frame) = queue.try_recv() {
            frame.write_to(&mut out).await?;
        }
        out.flush().await?;
    }
    out.shutdown().await
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = Kind> {
        proptest::sample::select(Kind::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            kind in kind(),
            correlation: u64,
            group: u64,
            body in proptest::collection::vec(any::<u8>(), 0..512),
            split in 0usize..600,
        ) {
            let frame = Frame { kind, correlation, group, body: Bytes::from(body) };
            let encoded = frame.encode();
            // Arriving in two pieces: nothing until it is whole, then exactly it.
            let split = split.min(encoded.len());
            let mut buf = BytesMut::from(&encoded[..split]);
            if split < encoded.len() {
                prop_assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap(), None);
                buf.extend_from_slice(&encoded[split..]);
            }
            prop_assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap(), Some(frame));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut buf = BytesMut::from(&bytes[..]);
            // Decode until the bytes run out or are refused.
            for _ in 0..bytes.len() + 1 {
                match decode(&mut buf, 4096) {
                    Ok(Some(_)) | Err(TransportError::UnknownKind { .. }) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn an_oversized_declared_length_is_refused_before_its_body() {
        let mut buf = BytesMut::new();
        buf.put_u32(100 * 1024 * 1024);
        buf.put_u8(Kind::AppendEntries as u8);
        let err = decode(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
        assert!(matches!(err, TransportError::FrameTooLarge { .. }), "{err}");
        let mut short = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3][..]);
        assert!(matches!(
            decode(&mut short, DEFAULT_MAX_FRAME_BYTES),
            Err(TransportError::FrameTooShort { declared: 3 })
        ));
    }

    #[tokio::test]
    async fn a_declared_frame_that_never_comes_allocates_only_what_arrived() {
        // 2 MiB declared (under the cap), 10 bytes sent, then the end of the stream.
        let mut bytes = BytesMut::new();
        bytes.put_u32(2 * 1024 * 1024);
        bytes.put_u8(Kind::AppendEntries as u8);
        bytes.put_u64(1);
        bytes.put_u64(1);
        bytes.put_slice(&[0u8; 10]);
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(server, DEFAULT_MAX_FRAME_BYTES);
        client.write_all(&bytes).await.unwrap();
        drop(client);
        let err = reader.next().await.unwrap_err();
        assert!(matches!(err, TransportError::Truncated), "{err}");
        assert!(
            reader.buffer_capacity() < 4 * READ_CHUNK,
            "allocated {} bytes",
            reader.buffer_capacity()
        );

        // 100 MiB declared over a 2 MiB cap: refused with nothing allocated for it.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(server, DEFAULT_MAX_FRAME_BYTES);
        client
            .write_all(&(100u32 << 20).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[2u8; 10]).await.unwrap();
        let err = reader.next().await.unwrap_err();
        assert!(matches!(err, TransportError::FrameTooLarge { .. }), "{err}");
        assert!(reader.buffer_capacity() < 4 * READ_CHUNK);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_returns_frames_in_order_and_ends_cleanly() {
        let (client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(server, DEFAULT_MAX_FRAME_BYTES);
        let frames: Vec<Frame> = (0..20u64)
            .map(|i| Frame {
                kind: Kind::Vote,
                correlation: i,
                group: 7,
                body: Bytes::from(vec![i as u8; (i * 37) as usize]),
            })
            .collect();
        let (tx, rx) = mpsc::channel(4);
        let writer = tokio::spawn(write_loop(client, rx));
        let sent = frames.clone();
        // The pipe holds 64 bytes: sending runs beside the reading.
        let sender = tokio::spawn(async move {
            for f in &sent {
                let out = Outgoing::new(
                    f.kind,
                    f.correlation,
                    f.group,
                    vec![
                        f.body.slice(..f.body.len() / 2),
                        f.body.slice(f.body.len() / 2..),
                    ],
                    DEFAULT_MAX_FRAME_BYTES,
                )
                .unwrap();
                tx.send(out).await.unwrap();
            }
        });
        for f in &frames {
            assert_eq!(reader.next().await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(reader.next().await.unwrap(), None);
        sender.await.unwrap();
        writer.await.unwrap().unwrap();
    }
}
