//! Kafka RecordBatch v2 codec: header parsing and CRC checks, a fast uncompressed encoder, and a
//! decoder for stored batches (none/gzip/snappy/lz4/zstd) into records.

use std::borrow::Cow;
use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::compression::{self, InflateError};
use crate::error::{LogError, Result};
use crate::log::{EncodedHeaders, Header, PreparedRecord, Record, StoredRecord};

/// Bytes before the batch-length field counts: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Length of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Offset of the CRC field; the CRC covers everything from `CRC_START` to the end.
const CRC_OFFSET: usize = 17;
const CRC_START: usize = 21;
const MAGIC_OFFSET: usize = 16;
/// The control bit of the batch attributes.
const CONTROL_BIT: i16 = 0x20;

/// What a Raft-internal (zero-width control) batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalKind {
    /// A leader's blank entry (kind byte 0).
    Blank,
    /// A membership change (kind byte 1); the payload is opaque to the log.
    Membership,
}

impl InternalKind {
    fn byte(self) -> u8 {
        match self {
            Self::Blank => 0,
            Self::Membership => 1,
        }
    }
}

/// Encodes a Raft-internal entry as a zero-width control batch: magic 2, control attribute,
/// no producer, no record, last offset delta -1 (so its next offset equals its base offset
/// and Kafka offsets stay dense), `base_offset` the offset the next data record gets,
/// `partitionLeaderEpoch` the term, both timestamps `timestamp_ms`; the records section is
/// `[kind u8][payload]`, covered by the CRC-32C like any batch.
pub fn encode_internal(
    kind: InternalKind,
    payload: &[u8],
    base_offset: i64,
    term: i32,
    timestamp_ms: i64,
) -> Result<BytesMut> {
    let body = 1 + payload.len();
    let batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + body)
        .map_err(|_| LogError::InvalidArgument("internal entry payload too large".to_owned()))?;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body);
    buf.put_i64(base_offset);
    buf.put_i32(batch_length);
    buf.put_i32(term);
    buf.put_i8(2);
    buf.put_u32(0); // crc, filled below
    buf.put_i16(CONTROL_BIT);
    buf.put_i32(-1); // last offset delta: zero width
    buf.put_i64(timestamp_ms);
    buf.put_i64(timestamp_ms);
    buf.put_i64(-1); // producer id
    buf.put_i16(-1); // producer epoch
    buf.put_i32(-1); // base sequence
    buf.put_i32(0); // records count
    buf.put_u8(kind.byte());
    buf.put_slice(payload);
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// Kind and payload of a Raft-internal batch (one whole batch); `None` when `batch` is not a
/// well-formed internal batch (a data batch, a bad kind byte, a short buffer). The CRC is not
/// checked here (see [`crc_ok`]).
pub fn parse_internal(batch: &Bytes) -> Option<(InternalKind, Bytes)> {
    let header = BatchHeader::parse(batch)?;
    if !header.is_internal() || header.total_len() != batch.len() || batch.len() <= HEADER_LEN {
        return None;
    }
    let kind = match batch[HEADER_LEN] {
        0 => InternalKind::Blank,
        1 => InternalKind::Membership,
        _ => return None,
    };
    Some((kind, batch.slice(HEADER_LEN + 1..)))
}

/// Length of the leading run of whole data (non-internal) batches in `buf`: a Kafka read
/// stops before the first Raft-internal batch.
pub fn data_prefix_len(buf: &[u8]) -> usize {
    let mut len = 0;
    while let Some(h) = BatchHeader::parse(&buf[len..]) {
        if h.is_internal() || h.check().is_err() || len + h.total_len() > buf.len() {
            break;
        }
        len += h.total_len();
    }
    len
}

/// The fixed header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Leader epoch (replication).
    pub partition_leader_epoch: i32,
    /// Format version; always 2 here.
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `buf`; `None` if too short.
    pub fn parse(mut buf: &[u8]) -> Option<Self> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(Self {
            base_offset: buf.get_i64(),
            batch_length: buf.get_i32(),
            partition_leader_epoch: buf.get_i32(),
            magic: buf.get_i8(),
            crc: buf.get_u32(),
            attributes: buf.get_i16(),
            last_offset_delta: buf.get_i32(),
            base_timestamp: buf.get_i64(),
            max_timestamp: buf.get_i64(),
            producer_id: buf.get_i64(),
            producer_epoch: buf.get_i16(),
            base_sequence: buf.get_i32(),
            records_count: buf.get_i32(),
        })
    }

    /// Whole batch size on disk, framing included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        // Saturating: the header may come straight off the wire.
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// True for a zero-width control batch holding a Raft-internal entry (blank, membership):
    /// control bit set, no record, last offset delta -1 (see [`encode_internal`]).
    pub fn is_internal(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
            && self.records_count == 0
            && self.last_offset_delta == -1
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    /// Sequence of the last record (wrapping like Kafka's).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    /// Checks the structural invariants a stored batch must meet.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.magic != 2 {
            return Err(format!("magic {} is not 2", self.magic));
        }
        if (self.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(format!("batch length {} too small", self.batch_length));
        }
        if self.records_count < 0 || (self.last_offset_delta < 0 && !self.is_internal()) {
            return Err("negative record count".to_owned());
        }
        if self.compression() > 4 {
            return Err(format!("unknown compression {}", self.compression()));
        }
        Ok(())
    }
}

/// True when the CRC in `batch`'s header matches its content. `batch` is one whole batch.
pub fn crc_ok(batch: &[u8]) -> bool {
    if batch.len() < HEADER_LEN {
        return false;
    }
    let stored = u32::from_be_bytes([
        batch[CRC_OFFSET],
        batch[CRC_OFFSET + 1],
        batch[CRC_OFFSET + 2],
        batch[CRC_OFFSET + 3],
    ]);
    crc32c::crc32c(&batch[CRC_START..]) == stored
}

/// Overwrites the partition leader epoch of a batch (not covered by the CRC); a replicated
/// partition stores the Raft term of the entry there.
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Overwrites the base offset of a batch (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Validates one batch handed to append: exactly one whole v2 batch with a good CRC, no
/// transactional or control batch, records framed as Kafka's broker checks them. A compressed
/// batch may inflate to at most [`compression::DEFAULT_INFLATE_LIMIT`] bytes; see
/// [`validate_for_append_within`] for a topic's own limit.
pub fn validate_for_append(batch: &[u8]) -> Result<BatchHeader> {
    validate_for_append_within(batch, compression::DEFAULT_INFLATE_LIMIT)
}

/// [`validate_for_append`] with a compressed batch allowed to inflate to at most
/// `max_inflated_bytes` ([`compression::inflate_limit`] of the topic's `max_message_bytes`).
/// The records are checked as they are decompressed, one at a time, so the check holds at most
/// one record in memory, and a compression bomb is refused once past the limit.
pub fn validate_for_append_within(batch: &[u8], max_inflated_bytes: usize) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch).ok_or_else(|| {
        LogError::InvalidBatch(format!("{} bytes is shorter than a header", batch.len()))
    })?;
    if batch.len() > MAGIC_OFFSET && batch[MAGIC_OFFSET] != 2 {
        return Err(LogError::InvalidBatch(format!(
            "magic {} is not 2",
            header.magic
        )));
    }
    header.check().map_err(LogError::InvalidBatch)?;
    if header.total_len() != batch.len() {
        return Err(LogError::InvalidBatch(format!(
            "batch length field says {} bytes but {} were given",
            header.total_len(),
            batch.len()
        )));
    }
    if !crc_ok(batch) {
        return Err(LogError::InvalidBatch("crc mismatch".to_owned()));
    }
    if header.attributes & 0x30 != 0 {
        return Err(LogError::InvalidBatch(
            "transactional and control batches are not supported".to_owned(),
        ));
    }
    if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(LogError::InvalidBatch(format!(
            "{} records but last offset delta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    check_records(batch, &header, max_inflated_bytes).map_err(LogError::InvalidBatch)?;
    Ok(header)
}

/// Walks the records of a batch (decompressing as it goes) and checks their framing: exactly
/// `records_count` records with offset deltas 0, 1, 2… and no trailing bytes. Like Kafka's
/// broker-side validation, so a stored batch never lies about its offsets.
fn check_records(
    batch: &[u8],
    header: &BatchHeader,
    max_inflated_bytes: usize,
) -> std::result::Result<(), String> {
    let mut body = &batch[HEADER_LEN..];
    let codec = header.compression();
    if codec == 0 {
        for i in 0..i64::from(header.records_count) {
            let len = get_varint(&mut body)?;
            if len < 1 || len as usize > body.len() {
                return Err(format!("record {i} has a bad length"));
            }
            let (rec, rest) = body.split_at(len as usize);
            check_record(rec, i)?;
            body = rest;
        }
        return if body.is_empty() {
            Ok(())
        } else {
            Err("bytes after the last record".to_owned())
        };
    }
    let inflater =
        crate::compression::inflater(codec, body, max_inflated_bytes).map_err(|e| e.to_string())?;
    let failed = |e: std::io::Error| InflateError::from_io(codec, &e).to_string();
    let mut stream = std::io::BufReader::with_capacity(64 * 1024, inflater);
    let mut rec = Vec::new();
    for i in 0..i64::from(header.records_count) {
        let len = read_varint(&mut stream).map_err(failed)?;
        let len = len.ok_or_else(|| format!("record {i} has a bad length"))?;
        if len < 1 {
            return Err(format!("record {i} has a bad length"));
        }
        rec.clear();
        // Grows as bytes arrive: a record claiming more than the stream holds costs nothing.
        (&mut stream)
            .take(len as u64)
            .read_to_end(&mut rec)
            .map_err(failed)?;
        if rec.len() as u64 != len as u64 {
            return Err(format!("record {i} has a bad length"));
        }
        check_record(&rec, i)?;
    }
    let mut more = [0u8; 1];
    if stream.read(&mut more).map_err(failed)? != 0 {
        return Err("bytes after the last record".to_owned());
    }
    Ok(())
}

/// Checks one record's fields (`rec` is the record without its length prefix): the offset
/// delta is `i`, every field lies within the record, nothing trails.
fn check_record(mut rec: &[u8], i: i64) -> std::result::Result<(), String> {
    rec.advance(1); // attributes
    get_varint(&mut rec)?; // timestamp delta
    if get_varint(&mut rec)? != i {
        return Err(format!("record {i} has a wrong offset delta"));
    }
    skip_opt_bytes(&mut rec)?; // key
    skip_opt_bytes(&mut rec)?; // value
    let headers = get_varint(&mut rec)?;
    if headers < 0 {
        return Err(format!("record {i} has a negative header count"));
    }
    for _ in 0..headers {
        if skip_opt_bytes(&mut rec)? < 0 {
            return Err(format!("record {i} has a null header key"));
        }
        skip_opt_bytes(&mut rec)?;
    }
    if !rec.is_empty() {
        return Err(format!("record {i} has trailing bytes"));
    }
    Ok(())
}

/// Reads a zigzag varint from a stream: `None` at a clean end of the stream or when malformed.
fn read_varint(r: &mut impl std::io::BufRead) -> std::io::Result<Option<i64>> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return Ok(None);
        }
        z |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(((z >> 1) as i64) ^ -((z & 1) as i64)));
        }
    }
    Ok(None)
}

/// Skips a varint-length-prefixed field; returns its length (-1 for null).
fn skip_opt_bytes(buf: &mut &[u8]) -> std::result::Result<i64, String> {
    let len = get_varint(buf)?;
    if len > buf.len() as i64 {
        return Err("field longer than the record".to_owned());
    }
    if len > 0 {
        buf.advance(len as usize);
    }
    Ok(len)
}

/// Idempotence fields of a batch written by [`encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id, or -1 for none.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
}

impl ProducerFields {
    /// A batch from no idempotent producer.
    pub const NONE: Self = Self {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes `records` as one uncompressed RecordBatch v2 with base offset 0 (the log assigns it).
/// Returns an error for an empty slice.
pub fn encode<R: BatchRecord>(records: &[&R], producer: ProducerFields) -> Result<BytesMut> {
    let first = records
        .first()
        .ok_or_else(|| LogError::InvalidArgument("a batch needs at least one record".to_owned()))?;
    let base_ts = first.timestamp_ms();
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms())
        .max()
        .unwrap_or(base_ts);
    let lens: Vec<usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| record_body_len(*r, base_ts, i as i64))
        .collect();
    let body: usize = lens
        .iter()
        .map(|&len| varint_len(zigzag(len as i64)) + len)
        .sum();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body);
    buf.put_i64(0);
    buf.put_i32((HEADER_LEN - LOG_OVERHEAD + body) as i32);
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(2);
    buf.put_u32(0); // crc, filled below
    buf.put_i16(0); // attributes: no compression, create time
    buf.put_i32(records.len() as i32 - 1);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(producer.producer_id);
    buf.put_i16(producer.producer_epoch);
    buf.put_i32(producer.base_sequence);
    buf.put_i32(records.len() as i32);
    for (i, (r, len)) in records.iter().zip(lens).enumerate() {
        put_varint(&mut buf, len as i64);
        buf.put_i8(0);
        put_varint(&mut buf, r.timestamp_ms().wrapping_sub(base_ts));
        put_varint(&mut buf, i as i64);
        put_opt_bytes(&mut buf, r.key());
        put_opt_bytes(&mut buf, r.value());
        r.put_headers(&mut buf);
    }
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

fn record_body_len<R: BatchRecord>(r: &R, base_ts: i64, delta: i64) -> usize {
    1 + varint_len(zigzag(r.timestamp_ms().wrapping_sub(base_ts)))
        + varint_len(zigzag(delta))
        + opt_bytes_len(r.key())
        + opt_bytes_len(r.value())
        + r.headers_len()
}

/// What [`encode`] reads of a record: a [`Record`], or a [`PreparedRecord`] whose headers come
/// encoded.
pub trait BatchRecord {
    /// Create time in milliseconds since the epoch.
    fn timestamp_ms(&self) -> i64;
    /// Record key.
    fn key(&self) -> Option<&[u8]>;
    /// Record value.
    fn value(&self) -> Option<&[u8]>;
    /// Bytes of the record's headers as encoded: their count's varint, then the headers.
    fn headers_len(&self) -> usize;
    /// Writes what [`headers_len`](Self::headers_len) counts.
    fn put_headers(&self, buf: &mut BytesMut);
}

/// [`BatchRecord`]'s time, key and value, read from the fields [`Record`] and
/// [`PreparedRecord`] share.
macro_rules! record_fields {
    () => {
        fn timestamp_ms(&self) -> i64 {
            self.timestamp_ms
        }

        fn key(&self) -> Option<&[u8]> {
            self.key.as_deref()
        }

        fn value(&self) -> Option<&[u8]> {
            self.value.as_deref()
        }
    };
}

impl BatchRecord for Record {
    record_fields!();

    fn headers_len(&self) -> usize {
        self.headers
            .iter()
            .map(|h| header_len(h.key.as_bytes(), h.value.as_deref()))
            .sum::<usize>()
            + varint_len(zigzag(self.headers.len() as i64))
    }

    fn put_headers(&self, buf: &mut BytesMut) {
        put_varint(buf, self.headers.len() as i64);
        for h in &self.headers {
            put_header(buf, h.key.as_bytes(), h.value.as_deref());
        }
    }
}

impl BatchRecord for PreparedRecord {
    record_fields!();

    fn headers_len(&self) -> usize {
        varint_len(zigzag(i64::from(self.headers.count))) + self.headers.encoded.len()
    }

    fn put_headers(&self, buf: &mut BytesMut) {
        put_varint(buf, i64::from(self.headers.count));
        buf.put_slice(&self.headers.encoded);
    }
}

/// Bytes of one encoded header.
fn header_len(key: &[u8], value: Option<&[u8]>) -> usize {
    varint_len(zigzag(key.len() as i64)) + key.len() + opt_bytes_len(value)
}

/// Writes one header: the key's length and the key, the value's length (-1: null) and the value.
fn put_header(buf: &mut impl BufMut, key: &[u8], value: Option<&[u8]>) {
    put_varint(buf, key.len() as i64);
    buf.put_slice(key);
    put_opt_bytes(buf, value);
}

/// Writes the headers of many records into one buffer, each record's as [`EncodedHeaders`]
/// (see [`PreparedRecord`]): [`header`](Self::header) for each header of a record, then
/// [`end_record`](Self::end_record); once all are written, [`freeze`](Self::freeze), and each
/// record's headers, in the order the records were ended, are a slice of the one buffer.
#[derive(Debug, Default)]
pub struct HeadersWriter {
    buf: Vec<u8>,
    /// Where the record being written starts, and how many headers it has so far.
    start: usize,
    count: u32,
    /// Each ended record's `(start, end, count)`.
    records: Vec<(usize, usize, u32)>,
}

impl HeadersWriter {
    /// Room for `records` records and `bytes` bytes of headers before anything grows.
    #[must_use]
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
            ..Self::default()
        }
    }

    /// Adds a header to the record being written; returns where its value went in the
    /// buffer (empty for a null value), for [`FrozenHeaders::slice`]. Always inlined: with
    /// a constant name (the envelope's), its length and bytes are known where it is called.
    #[inline(always)]
    pub fn header(&mut self, key: &str, value: Option<&[u8]>) -> std::ops::Range<usize> {
        let buf = &mut self.buf;
        let value_len = value.map_or(0, <[u8]>::len);
        // One check of the room, and the lengths under 64 (a name's, most values') as the
        // one byte they take.
        buf.reserve(key.len() + value_len + 2 * MAX_VARINT_LEN);
        put_len(buf, key.len());
        buf.extend_from_slice(key.as_bytes());
        let at = match value {
            Some(value) => {
                put_len(buf, value.len());
                let at = buf.len();
                buf.extend_from_slice(value);
                at
            }
            None => {
                put_varint(buf, -1);
                buf.len()
            }
        };
        self.count += 1;
        at..at + value_len
    }

    /// Adds `headers` (another writer's, as they are) to the record being written: headers
    /// every record of a batch carries are encoded once, and copied as one block.
    #[inline]
    pub fn extend(&mut self, headers: &EncodedHeaders) {
        self.buf.extend_from_slice(&headers.encoded);
        self.count += headers.count;
    }

    /// Ends the record being written (with no header since the last end: a record without).
    #[inline]
    pub fn end_record(&mut self) {
        self.records.push((self.start, self.buf.len(), self.count));
        self.start = self.buf.len();
        self.count = 0;
    }

    /// The headers written, each ended record's in turn from [`FrozenHeaders::records`]
    /// (headers after the last ended record are dropped).
    #[must_use]
    pub fn freeze(self) -> FrozenHeaders {
        FrozenHeaders {
            buf: Bytes::from(self.buf),
            records: self.records,
        }
    }
}

/// The headers a [`HeadersWriter`] wrote, one buffer for all its records.
#[derive(Debug, Clone)]
pub struct FrozenHeaders {
    buf: Bytes,
    records: Vec<(usize, usize, u32)>,
}

impl FrozenHeaders {
    /// The bytes at `range` of the buffer (a value's, as [`HeadersWriter::header`] returned it).
    ///
    /// # Panics
    ///
    /// When `range` is out of the buffer's bounds.
    #[must_use]
    pub fn slice(&self, range: std::ops::Range<usize>) -> Bytes {
        self.buf.slice(range)
    }

    /// Each ended record's headers, in the order the records were ended.
    pub fn records(&self) -> impl ExactSizeIterator<Item = EncodedHeaders> + '_ {
        self.records
            .iter()
            .map(|&(start, end, count)| EncodedHeaders {
                count,
                encoded: self.buf.slice(start..end),
            })
    }
}

/// The headers `encoded` holds, as a list (names of the envelope borrowed).
pub(crate) fn decode_headers(headers: &EncodedHeaders) -> std::result::Result<Vec<Header>, String> {
    let mut buf = headers.encoded.clone();
    let mut out = Vec::with_capacity((headers.count as usize).min(buf.len()));
    for _ in 0..headers.count {
        let key = get_header_name(&mut buf)?;
        let value = get_opt_bytes(&mut buf)?;
        out.push(Header { key, value });
    }
    if buf.has_remaining() {
        return Err("bytes after the last header".to_owned());
    }
    Ok(out)
}

fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varint_len(zigzag(b.len() as i64)) + b.len(),
    }
}

fn put_opt_bytes(buf: &mut impl BufMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes of the longest varint (a 64-bit value).
const MAX_VARINT_LEN: usize = 10;

/// A length as a varint, one byte without a loop when under 64 (its zigzag under 128).
#[inline]
fn put_len(buf: &mut Vec<u8>, len: usize) {
    if len < 64 {
        buf.push((len as u8) << 1);
    } else {
        put_varint(buf, len as i64);
    }
}

fn put_varint(buf: &mut impl BufMut, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn get_varint(buf: &mut impl Buf) -> std::result::Result<i64, String> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated varint".to_owned());
        }
        let b = buf.get_u8();
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err("varint too long".to_owned())
}

/// Reads the length of a field (`None`: Kafka's null), which must fit in what `buf` holds.
fn get_len(buf: &mut Bytes) -> std::result::Result<Option<usize>, String> {
    let len = get_varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err("field longer than the record".to_owned());
    }
    Ok(Some(len))
}

fn get_opt_bytes(buf: &mut Bytes) -> std::result::Result<Option<Bytes>, String> {
    Ok(get_len(buf)?.map(|len| buf.split_to(len)))
}

/// Splits `buf` into whole batches. Stops at a short or torn tail without error.
pub fn split_batches(mut buf: Bytes) -> impl Iterator<Item = (BatchHeader, Bytes)> {
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(&buf)?;
        if header.check().is_err() || buf.len() < header.total_len() {
            return None;
        }
        let batch = buf.split_to(header.total_len());
        Some((header, batch))
    })
}

/// Decodes one whole stored batch (CRC already checked) into records, decompressing if needed
/// (at most [`compression::DEFAULT_INFLATE_LIMIT`] bytes; see [`decode_records_within`]).
/// Keeps duplicate header keys in order.
pub fn decode_records(batch: &Bytes) -> Result<Vec<StoredRecord>> {
    decode_records_within(batch, compression::DEFAULT_INFLATE_LIMIT)
}

/// [`decode_records`] with a compressed batch allowed to inflate to at most
/// `max_inflated_bytes`; past it the batch is `Corrupt` (no valid append stores such a batch).
pub fn decode_records_within(
    batch: &Bytes,
    max_inflated_bytes: usize,
) -> Result<Vec<StoredRecord>> {
    decode_counted(batch, max_inflated_bytes).map(|(records, _)| records)
}

/// [`decode_records_within`], also returning the bytes of the (decompressed) record body.
pub(crate) fn decode_counted(
    batch: &Bytes,
    max_inflated_bytes: usize,
) -> Result<(Vec<StoredRecord>, usize)> {
    let header =
        BatchHeader::parse(batch).ok_or_else(|| LogError::corrupt("batch", "short header"))?;
    let location = || format!("batch at offset {}", header.base_offset);
    let body = batch.slice(HEADER_LEN..);
    let mut body = compression::decompress(header.compression(), &body, max_inflated_bytes)
        .map_err(|e| LogError::corrupt(location(), e.to_string()))?;
    let inflated = body.len();
    let mut out =
        Vec::with_capacity((header.records_count.max(0) as usize).min(body.len() / 7 + 1));
    for _ in 0..header.records_count {
        let rec =
            decode_record(&mut body, &header).map_err(|e| LogError::corrupt(location(), e))?;
        out.push(rec);
    }
    Ok((out, inflated))
}

fn decode_record(
    body: &mut Bytes,
    header: &BatchHeader,
) -> std::result::Result<StoredRecord, String> {
    let len = get_varint(body)?;
    if len < 0 || body.remaining() < len as usize {
        return Err("record longer than the batch".to_owned());
    }
    let mut rec = body.split_to(len as usize);
    if !rec.has_remaining() {
        return Err("empty record".to_owned());
    }
    rec.advance(1); // attributes
    let ts_delta = get_varint(&mut rec)?;
    let offset_delta = get_varint(&mut rec)?;
    let key = get_opt_bytes(&mut rec)?;
    let value = get_opt_bytes(&mut rec)?;
    let count = get_varint(&mut rec)?;
    if count < 0 || count as usize > rec.remaining() {
        return Err("bad header count".to_owned());
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key = get_header_name(&mut rec)?;
        let value = get_opt_bytes(&mut rec)?;
        headers.push(Header { key, value });
    }
    // Log-append-time batches carry the broker time in max_timestamp for every record.
    let timestamp_ms = if header.attributes & 0x08 != 0 {
        header.max_timestamp
    } else {
        header.base_timestamp.wrapping_add(ts_delta)
    };
    let offset = header
        .base_offset
        .checked_add(offset_delta)
        .filter(|o| *o >= 0)
        .ok_or("record offset out of range")?;
    Ok(StoredRecord {
        offset,
        timestamp_ms,
        key,
        value,
        headers,
    })
}

/// Header names nearly every record carries (the envelope's `hw.*` set and the gateway's
/// enrichment), decoded without an allocation each.
const COMMON_HEADER_NAMES: [&str; 12] = [
    "hw.id",
    "hw.type",
    "hw.version",
    "hw.source",
    "hw.ts",
    "hw.received_at",
    "hw.tenant",
    "hw.format",
    "hw.client_ip",
    "hw.user_agent",
    "hw.error",
    "hw.truncated",
];

/// Reads a header name as text, in place (no `Bytes` of its own): borrowed when it is one of
/// [`COMMON_HEADER_NAMES`], else owned. Kafka header keys are strings; invalid UTF-8 is
/// replaced, as the Java client does.
fn get_header_name(buf: &mut Bytes) -> std::result::Result<Cow<'static, str>, String> {
    let len = get_len(buf)?.ok_or("null header key")?;
    let key = &buf[..len];
    let common = key.starts_with(b"hw.").then(|| {
        COMMON_HEADER_NAMES
            .iter()
            .find(|name| name.as_bytes() == key)
    });
    let name = match common.flatten() {
        Some(name) => Cow::Borrowed(*name),
        None => Cow::Owned(String::from_utf8_lossy(key).into_owned()),
    };
    buf.advance(len);
    Ok(name)
}

#[cfg(test)]
#[path = "batch_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "bomb_tests.rs"]
mod bomb_tests;
