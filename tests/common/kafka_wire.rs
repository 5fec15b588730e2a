//! A raw Kafka-protocol client, hand-encoded in the non-flexible request versions, as a hostile
//! client speaks it: request framing and the bodies of Produce, Fetch, Metadata, JoinGroup,
//! CreateTopics and OffsetCommit, and just enough decoding of their answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use headwater_log::Record;
use headwater_log::batch::{ProducerFields, encode, split_batches};

/// The longest a request waits for an answer or a close: a bound on waiting, not a measure.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(60);

// Kafka API keys.
pub(crate) const PRODUCE: i16 = 0;
pub(crate) const FETCH: i16 = 1;
pub(crate) const METADATA: i16 = 3;
pub(crate) const OFFSET_COMMIT: i16 = 8;
pub(crate) const JOIN_GROUP: i16 = 11;
pub(crate) const API_VERSIONS: i16 = 18;
pub(crate) const CREATE_TOPICS: i16 = 19;

// Kafka error codes.
/// What the listener answers an invalid batch (one inflating past the limit).
pub(crate) const CORRUPT_MESSAGE: i16 = 2;
pub(crate) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// A batch over the topic's `max_message_bytes` as sent.
pub(crate) const MESSAGE_TOO_LARGE: i16 = 10;
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub(crate) const INVALID_PARTITIONS: i16 = 37;
/// A request over a broker policy (e.g. `log.max_topics`).
pub(crate) const POLICY_VIOLATION: i16 = 44;

/// Request bodies, big-endian, as the Kafka protocol's non-flexible versions encode them.
#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub(crate) fn i8(mut self, v: i8) -> Self {
        self.0.put_i8(v);
        self
    }
    pub(crate) fn i16(mut self, v: i16) -> Self {
        self.0.put_i16(v);
        self
    }
    pub(crate) fn i32(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    pub(crate) fn i64(mut self, v: i64) -> Self {
        self.0.put_i64(v);
        self
    }
    pub(crate) fn str(self, v: &str) -> Self {
        let mut out = self.i16(i16::try_from(v.len()).unwrap());
        out.0.put_slice(v.as_bytes());
        out
    }
    pub(crate) fn bytes(self, v: &[u8]) -> Self {
        let mut out = self.i32(i32::try_from(v.len()).unwrap());
        out.0.put_slice(v);
        out
    }
    /// An array of `count` elements; the caller encodes them next.
    pub(crate) fn array(self, count: usize) -> Self {
        self.i32(i32::try_from(count).unwrap())
    }
}

/// Reads a response body.
pub(crate) struct Dec<'a>(pub &'a [u8]);

impl Dec<'_> {
    pub(crate) fn i8(&mut self) -> i8 {
        self.0.get_i8()
    }
    pub(crate) fn i16(&mut self) -> i16 {
        self.0.get_i16()
    }
    pub(crate) fn i32(&mut self) -> i32 {
        self.0.get_i32()
    }
    pub(crate) fn i64(&mut self) -> i64 {
        self.0.get_i64()
    }
    pub(crate) fn skip(&mut self, n: usize) {
        self.0.advance(n);
    }
    pub(crate) fn str(&mut self) -> String {
        let len = self.i16();
        if len < 0 {
            return String::new();
        }
        let text = String::from_utf8_lossy(&self.0[..len as usize]).into_owned();
        self.skip(len as usize);
        text
    }
    /// Nullable bytes: their length (0 for null).
    pub(crate) fn bytes_len(&mut self) -> usize {
        self.bytes().len()
    }
    /// Nullable bytes (empty for null).
    pub(crate) fn bytes(&mut self) -> Vec<u8> {
        let len = usize::try_from(self.i32()).unwrap_or(0);
        let out = self.0[..len].to_vec();
        self.skip(len);
        out
    }
}

/// One raw Kafka connection.
pub(crate) struct Wire {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    /// A connection whose reads wait at most [`ANSWER_WITHIN`].
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        Self::connect_within(addr, ANSWER_WITHIN)
    }

    /// A connection whose reads wait at most `within`.
    pub(crate) fn connect_within(addr: SocketAddr, within: Duration) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(within)).unwrap();
        Self {
            stream,
            correlation_id: 0,
        }
    }

    /// A connection made elsewhere (e.g. from a chosen local address), in blocking mode.
    pub(crate) fn from_std(stream: TcpStream) -> Self {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
        Self {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends a request (header v1) and reads its answer's body (header v0 stripped); `None`
    /// when the server closed the connection instead.
    pub(crate) fn request(&mut self, api_key: i16, version: i16, body: &[u8]) -> Option<Vec<u8>> {
        self.send(api_key, version, body)?;
        self.answer()
    }

    /// Sends a request (header v1); `None` when the server closed the connection.
    pub(crate) fn send(&mut self, api_key: i16, version: i16, body: &[u8]) -> Option<()> {
        self.correlation_id += 1;
        let header = Enc::default()
            .i16(api_key)
            .i16(version)
            .i32(self.correlation_id)
            .str("hostile-test");
        let mut frame = Vec::with_capacity(4 + header.0.len() + body.len());
        frame.put_i32(i32::try_from(header.0.len() + body.len()).unwrap());
        frame.put_slice(&header.0);
        frame.put_slice(body);
        self.stream.write_all(&frame).ok()
    }

    /// Reads the answer to the last request: its body (header v0 stripped); `None` when the
    /// server closed the connection instead.
    pub(crate) fn answer(&mut self) -> Option<Vec<u8>> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut answer = vec![0u8; usize::try_from(i32::from_be_bytes(length)).unwrap()];
        self.stream.read_exact(&mut answer).ok()?;
        assert_eq!(Dec(&answer[..4]).i32(), self.correlation_id);
        Some(answer.split_off(4))
    }

    /// Whether the server closes the connection (EOF or reset) without sending a byte.
    pub(crate) fn closed_without_answer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    /// ApiVersions v0: its error code, `None` when the connection was closed instead.
    pub(crate) fn api_versions(&mut self) -> Option<i16> {
        let body = self.request(API_VERSIONS, 0, &[])?;
        Some(Dec(&body[..]).i16())
    }

    /// Produce v3 (acks 1) of the batches `records` to `topic`/`partition`: the partition's
    /// error code and base offset; `None` when the connection was closed instead.
    pub(crate) fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[u8],
    ) -> Option<(i16, i64)> {
        let body = Enc::default()
            .i16(-1) // no transactional id
            .i16(1)
            .i32(60_000)
            .array(1)
            .str(topic)
            .array(1)
            .i32(partition)
            .bytes(records);
        let answer = self.request(PRODUCE, 3, &body.0)?;
        let mut answer = Dec(&answer[..]);
        answer.i32(); // topics
        answer.str();
        answer.i32(); // partitions
        answer.i32(); // index
        Some((answer.i16(), answer.i64()))
    }

    /// Fetch v4 of `topic`/`partition` from `offset` (no waiting, `max_bytes` for the whole
    /// answer): the error code, the high watermark and the record batches.
    pub(crate) fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> (i16, i64, Vec<u8>) {
        let body = Enc::default()
            .i32(-1)
            .i32(0)
            .i32(1)
            .i32(max_bytes)
            .i8(0)
            .array(1)
            .str(topic)
            .array(1)
            .i32(partition)
            .i64(offset)
            .i32(max_bytes);
        let answer = self.request(FETCH, 4, &body.0).expect("a Fetch answer");
        let mut answer = Dec(&answer[..]);
        answer.i32(); // throttle
        assert_eq!(answer.i32(), 1, "one topic");
        answer.str();
        assert_eq!(answer.i32(), 1, "one partition");
        answer.i32();
        let error = answer.i16();
        let high_watermark = answer.i64();
        answer.i64(); // last stable offset
        let aborted = answer.i32();
        answer.skip(16 * usize::try_from(aborted).unwrap_or(0));
        (error, high_watermark, answer.bytes())
    }

    /// Metadata v4 of `topics` (auto-creating them when the broker does): each topic's name,
    /// error code and partition count, in answer order.
    pub(crate) fn metadata(&mut self, topics: &[String]) -> Option<Vec<(String, i16, usize)>> {
        let mut body = Enc::default().array(topics.len());
        for topic in topics {
            body = body.str(topic);
        }
        let answer = self.request(METADATA, 4, &body.i8(1).0)?;
        let mut answer = Dec(&answer[..]);
        answer.i32(); // throttle
        for _ in 0..answer.i32() {
            answer.i32();
            answer.str();
            answer.i32();
            answer.str(); // rack
        }
        answer.str(); // cluster id
        answer.i32(); // controller
        let mut out = Vec::new();
        for _ in 0..answer.i32() {
            let error = answer.i16();
            let name = answer.str();
            answer.i8(); // internal
            let partitions = usize::try_from(answer.i32()).unwrap_or(0);
            for _ in 0..partitions {
                answer.i16();
                answer.i32();
                answer.i32();
                let replicas = answer.i32();
                answer.skip(4 * usize::try_from(replicas).unwrap_or(0));
                let isr = answer.i32();
                answer.skip(4 * usize::try_from(isr).unwrap_or(0));
            }
            out.push((name, error, partitions));
        }
        Some(out)
    }
}

/// `batches` copies of a batch of one record with a `value_bytes` value.
pub(crate) fn value_batches(batches: usize, value_bytes: usize) -> Vec<u8> {
    let record = Record {
        partition: None,
        key: None,
        value: Some(Bytes::from(vec![b'v'; value_bytes])),
        headers: Vec::new(),
        timestamp_ms: headwater_log::now_ms(),
    };
    let batch = encode(&[&record], ProducerFields::NONE).unwrap();
    std::iter::repeat_n(&batch[..], batches)
        .flatten()
        .copied()
        .collect()
}

/// A Fetch v4 body: partition 0 of `topic` from offset 0 listed `listings` times, `max_bytes`
/// -1, each listing allowed i32::MAX bytes, no waiting.
pub(crate) fn fetch_body(topic: &str, listings: usize) -> Vec<u8> {
    let mut body = Enc::default()
        .i32(-1)
        .i32(0)
        .i32(1)
        .i32(-1)
        .i8(0)
        .array(1)
        .str(topic)
        .array(listings);
    for _ in 0..listings {
        body = body.i32(0).i64(0).i32(i32::MAX);
    }
    body.0
}

/// The partitions and record bytes of a Fetch v4 answer (every partition without error).
pub(crate) fn fetched(answer: &[u8]) -> (usize, usize) {
    let mut answer = Dec(answer);
    answer.i32(); // throttle
    let (mut partitions, mut records) = (0, 0);
    for _ in 0..answer.i32() {
        answer.str();
        for _ in 0..answer.i32() {
            partitions += 1;
            answer.i32();
            assert_eq!(answer.i16(), 0, "Fetch partition error code");
            answer.i64();
            answer.i64();
            let aborted = answer.i32();
            answer.skip(16 * usize::try_from(aborted).unwrap_or(0));
            records += answer.bytes_len();
        }
    }
    (partitions, records)
}

/// A JoinGroup v0 body: a new member of `group` with `metadata` for the `range` protocol and
/// a 30-minute session.
pub(crate) fn join_group_body(group: &str, metadata: &[u8]) -> Vec<u8> {
    Enc::default()
        .str(group)
        .i32(30 * 60 * 1000)
        .str("")
        .str("consumer")
        .array(1)
        .str("range")
        .bytes(metadata)
        .0
}

/// A CreateTopics v2 body: `topic` with `partitions` partitions, replication factor 1.
pub(crate) fn create_topics_body(topic: &str, partitions: i32) -> Vec<u8> {
    Enc::default()
        .array(1)
        .str(topic)
        .i32(partitions)
        .i16(1)
        .array(0)
        .array(0)
        .i32(30_000)
        .i8(0)
        .0
}

/// The first topic's name, error code and message of a CreateTopics v2 answer.
pub(crate) fn create_topics_answer(answer: &[u8]) -> (String, i16, String) {
    let mut answer = Dec(answer);
    answer.i32(); // throttle
    assert_eq!(answer.i32(), 1);
    (answer.str(), answer.i16(), answer.str())
}

/// An OffsetCommit v2 body for `group` (generation -1: no group membership), committing
/// offset 0 for partitions `0..count` of each `(topic, count)`.
pub(crate) fn offset_commit_body(group: &str, topics: &[(&str, i32)]) -> Vec<u8> {
    let mut body = Enc::default()
        .str(group)
        .i32(-1)
        .str("")
        .i64(-1)
        .array(topics.len());
    for (topic, count) in topics {
        body = body.str(topic).i32(*count);
        for partition in 0..*count {
            body = body.i32(partition).i64(0).i16(-1);
        }
    }
    body.0
}

/// The error codes of an OffsetCommit v2 answer, every partition in order.
pub(crate) fn offset_commit_codes(answer: &[u8]) -> Vec<i16> {
    let mut answer = Dec(answer);
    let mut codes = Vec::new();
    for _ in 0..answer.i32() {
        answer.str();
        for _ in 0..answer.i32() {
            answer.i32();
            codes.push(answer.i16());
        }
    }
    codes
}

/// The batches of a Fetch answer's records, whole ones only.
pub(crate) fn batches(records: Vec<u8>) -> impl Iterator<Item = Bytes> {
    split_batches(Bytes::from(records)).map(|(_, batch)| batch)
}
