//! A raw HTTP client for connection-level tests of the ingest port: TCP connections from a
//! chosen loopback address, HTTP/1.1 requests on a kept-alive connection, an HTTP/2 (h2c)
//! preface and request built by hand, waiting for the server to close, reading `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The longest a test waits for the server to answer or to close a connection it should close.
/// A bound on waiting, far above the idle timeouts the tests configure, not a measure of it.
pub(crate) const CLOSE_WITHIN: Duration = Duration::from_secs(30);

/// A TCP connection to `server` from the loopback address `from` (127.0.0.1, 127.0.0.2, …:
/// each is a client address of its own to the server).
pub(crate) async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    try_connect_from(from, server).await.unwrap()
}

/// [`connect_from`], or the error (a reset when the server closed the connection at accept
/// before the handshake was reported here).
pub(crate) async fn try_connect_from(
    from: [u8; 4],
    server: SocketAddr,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(server).await
}

/// Whether a connection from `from` is closed without a byte of answer: refused at connect,
/// or reset or closed once connected. Fails the test when it stays open past [`CLOSE_WITHIN`].
pub(crate) async fn refused(from: [u8; 4], server: SocketAddr, what: &str) -> bool {
    let mut stream = match try_connect_from(from, server).await {
        Ok(stream) => stream,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
        Err(error) => panic!("{what}: connect failed: {error}"),
    };
    // Whether the request is written before the reset or not, no answer comes.
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: h\r\n\r\n")
        .await;
    wait_closed(&mut stream, what).await.is_empty()
}

/// Asserts that a connection from `from` is closed without a byte of answer (see [`refused`]).
pub(crate) async fn assert_refused(from: [u8; 4], server: SocketAddr, what: &str) {
    assert!(refused(from, server, what).await, "{what} was served");
}

/// `GET path` over HTTP/1.1 on a kept-alive connection: the status code and body, or `None`
/// when the server closed the connection instead of answering.
pub(crate) async fn get(stream: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: headwater\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end + 4;
        }
        let read = tokio::time::timeout(CLOSE_WITHIN, stream.read(&mut chunk)).await;
        match read.expect("no answer nor close within the bound") {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a content-length (the server's answers are not chunked)");
    while received.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).to_string();
    Some((status, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads until the server closes `stream` (end of file or a reset), within [`CLOSE_WITHIN`];
/// returns what it sent first. Fails the test when the connection stays open.
pub(crate) async fn wait_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {CLOSE_WITHIN:?}");
    received
}

/// The value of the series `series` (name and labels as printed) in the /metrics text.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The series lines of the metric `name` (with labels) in the /metrics text.
pub(crate) fn series(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(str::to_owned)
        .collect()
}

/// The client connection preface and an empty SETTINGS frame.
pub(crate) const H2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// HTTP/2 frame types.
pub(crate) const H2_HEADERS: u8 = 0x1;
pub(crate) const H2_GOAWAY: u8 = 0x7;

/// A HEADERS frame on stream 1 (END_STREAM, END_HEADERS) for `GET /healthz` over http: the
/// HPACK static-table entries `:method GET` (2), `:scheme http` (6), and `:path` (4) with a
/// literal value, not indexed.
pub(crate) fn h2_get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    let mut frame = vec![
        0,
        0,
        u8::try_from(block.len()).unwrap(),
        0x1,
        0x5,
        0,
        0,
        0,
        1,
    ];
    frame.extend_from_slice(&block);
    frame
}

/// The types of the HTTP/2 frames in `bytes` (complete ones), with their stream ids.
pub(crate) fn h2_frames(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length =
            usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5] & 0x7f, bytes[6], bytes[7], bytes[8]]);
        frames.push((bytes[3], stream));
        bytes = &bytes[(9 + length).min(bytes.len())..];
    }
    frames
}

/// Reads `stream` until the answer (HEADERS) on stream 1 arrived; `false` when the server
/// closed the connection first. Fails the test after [`CLOSE_WITHIN`].
pub(crate) async fn h2_answered(stream: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !h2_frames(&received).contains(&(H2_HEADERS, 1)) {
        let read = tokio::time::timeout(CLOSE_WITHIN, stream.read(&mut chunk)).await;
        match read.expect("an h2c request was neither answered nor closed") {
            Ok(0) | Err(_) => return false,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    true
}
