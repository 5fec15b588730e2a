//! A lingering close: after hyper closes a connection the client was still sending on (an
//! answer given before the request's body was read, a 413 for one, or an idle close racing a
//! request), the bytes still coming are read and dropped for a bounded time before the socket
//! is closed (not after a timeout or an error, where nothing was answered). A socket closed with unread bytes is reset, not closed, and a reset can reach the
//! client before it read the answer already sent: it would see "connection reset" where the
//! server said why. The way Apache and nginx close a connection they answered early.
//!
//! hyper owns the connection's stream while it serves it, so the stream is handed to it inside
//! a [`Homing`] that, when hyper drops it, gives the stream back to the connection's task
//! (unless the client had closed its side already), which then lingers on it ([`linger`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// The longest a connection lingers in all.
const LINGER_FOR: Duration = Duration::from_secs(5);
/// The longest it waits for the client's next bytes.
const LINGER_QUIET: Duration = Duration::from_secs(1);
/// The most it reads and drops (a client past it is reset).
const LINGER_BYTES: usize = 16 << 20;
/// Read at a time.
const LINGER_CHUNK: usize = 16 << 10;

/// Where a [`Homing`] leaves its stream when dropped.
pub(super) type Home<I> = Arc<Mutex<Option<I>>>;

/// A connection's stream as hyper holds it: reads and writes pass through; dropped, it leaves
/// the stream in its [`Home`] unless a read found the client's end of it.
pub(super) struct Homing<I> {
    io: Option<I>,
    home: Home<I>,
    ended: bool,
}

impl<I> Homing<I> {
    pub(super) fn new(io: I, home: &Home<I>) -> Self {
        Self {
            io: Some(io),
            home: home.clone(),
            ended: false,
        }
    }

    /// The stream (only `drop` takes it out, so it is always there).
    fn io(&mut self) -> io::Result<Pin<&mut I>>
    where
        I: Unpin,
    {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

/// The stream of a [`Homing`], or the poll's error.
macro_rules! io_or_ready {
    ($homing:expr) => {
        match $homing.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        }
    };
}

impl<I> Drop for Homing<I> {
    fn drop(&mut self) {
        if let Some(io) = self.io.take()
            && !self.ended
        {
            *self.home.lock().unwrap_or_else(PoisonError::into_inner) = Some(io);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Homing<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let read = io_or_ready!(self).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && room
            && buf.filled().len() == before
        {
            self.ended = true;
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Homing<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        io_or_ready!(self).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        io_or_ready!(self).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(I::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io_or_ready!(self).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        io_or_ready!(self).poll_shutdown(cx)
    }
}

/// Shuts the server's side of `io` (a FIN, after TLS's close_notify: a client about to reuse a
/// kept-alive connection learns at once that it is closed), then reads and drops what the
/// client still sends until it closes its side, stops sending for [`LINGER_QUIET`], has sent
/// [`LINGER_BYTES`], [`LINGER_FOR`] has passed, or the server drains; then `io` is dropped
/// (closed). Returns the bytes dropped.
pub(super) async fn linger<I: AsyncRead + AsyncWrite + Unpin>(
    mut io: I,
    drain: &mut watch::Receiver<bool>,
) -> usize {
    let until = Instant::now() + LINGER_FOR;
    // hyper shuts it when it closes a connection itself; whatever the path, the client learns
    // that the connection is closed before anything it sends is dropped.
    match tokio::time::timeout_at(until.min(Instant::now() + LINGER_QUIET), io.shutdown()).await {
        Ok(Ok(())) => {}
        // A client that takes nothing more, or a stream already gone: nothing to wait for.
        Ok(Err(_)) | Err(_) => return 0,
    }
    let mut scratch = vec![0u8; LINGER_CHUNK];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        let quiet = until.min(Instant::now() + LINGER_QUIET);
        let read = tokio::select! {
            read = tokio::time::timeout_at(quiet, io.read(&mut scratch)) => read,
            _ = drain.wait_for(|draining| *draining) => return dropped,
        };
        match read {
            Ok(Ok(n)) if n > 0 => dropped += n,
            // The client's end, an error, or the time is up.
            _ => return dropped,
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    #[tokio::test]
    async fn a_stream_comes_home_unless_its_reader_saw_the_end() {
        let home: Home<tokio::io::DuplexStream> = Home::default();
        let (ours, mut theirs) = duplex(64);
        let mut homing = Homing::new(ours, &home);
        theirs.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(homing.read(&mut buf).await.unwrap(), 3);
        drop(homing);
        let ours = home.lock().unwrap().take().expect("handed back");

        let mut homing = Homing::new(ours, &home);
        drop(theirs);
        assert_eq!(homing.read(&mut buf).await.unwrap(), 0);
        drop(homing);
        assert!(
            home.lock().unwrap().is_none(),
            "the client closed: nothing to linger on"
        );
    }

    #[tokio::test]
    async fn lingering_shuts_our_side_then_drops_what_comes_until_the_clients_close() {
        let (ours, mut theirs) = duplex(1024);
        let (_tx, mut drain) = watch::channel(false);
        let client = tokio::spawn(async move {
            // Our side is shut first: the client reads its end before it sends the rest.
            let mut buf = [0u8; 8];
            assert_eq!(theirs.read(&mut buf).await.unwrap(), 0);
            for _ in 0..100 {
                theirs.write_all(&[7u8; 1000]).await.unwrap();
            }
        });
        assert_eq!(linger(ours, &mut drain).await, 100_000);
        client.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn lingering_ends_on_a_quiet_client_and_on_the_drain() {
        let (ours, _theirs) = duplex(1024);
        let (tx, mut drain) = watch::channel(false);
        let started = Instant::now();
        assert_eq!(linger(ours, &mut drain).await, 0);
        assert_eq!(started.elapsed(), LINGER_QUIET);

        let (ours, _theirs) = duplex(1024);
        tx.send(true).unwrap();
        let started = Instant::now();
        assert_eq!(linger(ours, &mut drain).await, 0);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn lingering_stops_at_its_time_and_byte_limits() {
        let (ours, mut theirs) = duplex(LINGER_CHUNK);
        let (_tx, mut drain) = watch::channel(false);
        // A client that sends a byte every half second never goes quiet.
        let slow = tokio::spawn(async move {
            while theirs.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let started = Instant::now();
        let dropped = linger(ours, &mut drain).await;
        assert_eq!(started.elapsed(), LINGER_FOR);
        assert!((9..=11).contains(&dropped), "{dropped}");
        slow.await.unwrap();

        let (ours, mut theirs) = duplex(LINGER_CHUNK);
        let fast = tokio::spawn(async move {
            let chunk = vec![0u8; LINGER_CHUNK];
            while theirs.write_all(&chunk).await.is_ok() {}
        });
        let dropped = linger(ours, &mut drain).await;
        assert!(
            (LINGER_BYTES..LINGER_BYTES + LINGER_CHUNK).contains(&dropped),
            "{dropped}"
        );
        fast.await.unwrap();
    }
}
