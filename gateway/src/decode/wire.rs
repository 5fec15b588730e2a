//! A walk over the protobuf wire format that decodes nothing: each field's number and where its
//! value lies, so that a decoder can count and measure a message's elements before prost
//! materialises any of them (an empty element costs 2 bytes on the wire and a whole struct once
//! decoded).

/// Why a buffer is not a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a varint.
    #[error("truncated varint at byte {0}")]
    TruncatedVarint(usize),
    /// A varint longer than 10 bytes.
    #[error("varint longer than 10 bytes at byte {0}")]
    LongVarint(usize),
    /// A field whose value runs past the end of the buffer.
    #[error("field {field} at byte {at} runs past the end of the message")]
    Truncated {
        /// Field number.
        field: u32,
        /// Offset of its tag.
        at: usize,
    },
    /// Field number 0, or one over 2^29 - 1.
    #[error("invalid field number at byte {0}")]
    FieldNumber(usize),
    /// Wire types 3 and 4 (groups, long deprecated) or 6 and 7 (undefined).
    #[error("unsupported wire type {wire_type} at byte {at}")]
    WireType {
        /// The wire type.
        wire_type: u8,
        /// Offset of its tag.
        at: usize,
    },
}

/// A field's value as it lies on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1: 8 bytes.
    Fixed64,
    /// Wire type 2: the bytes of a string, bytes, sub-message or packed field.
    Len(&'a [u8]),
    /// Wire type 5: 4 bytes.
    Fixed32,
}

/// The fields of one message, in wire order: `(field number, value)`, or the first error.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    /// The fields of the message `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    #[inline(always)]
    fn next_field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let at = self.pos;
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3)
            .ok()
            .filter(|f| (1..=0x1fff_ffff).contains(f))
            .ok_or(WireError::FieldNumber(at))?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8, field, at)?;
                Value::Fixed64
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated { field, at })?;
                let start = self.pos;
                self.skip(len, field, at)?;
                Value::Len(&self.buf[start..self.pos])
            }
            5 => {
                self.skip(4, field, at)?;
                Value::Fixed32
            }
            wire_type => {
                return Err(WireError::WireType {
                    wire_type: wire_type as u8,
                    at,
                });
            }
        };
        Ok((field, value))
    }

    /// A varint: one byte (keys of fields 1 to 15, lengths under 128) read here, a longer one
    /// by [`Self::long_varint`].
    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        match self.buf.get(self.pos) {
            Some(&byte) if byte < 0x80 => {
                self.pos += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    /// How many length-delimited fields `number` the message holds, every other field
    /// skipped (the innermost loop of counting a request's records: no value is handed out).
    /// A field of `number` under 16 with a length of one or two bytes is read here; any other
    /// goes through [`Self::next_field`], which words the errors.
    pub fn count_len(mut self, number: u32) -> Result<u64, WireError> {
        let key = u8::try_from(number << 3 | 2).ok().filter(|&key| key < 0x80);
        let mut count = 0;
        while self.pos < self.buf.len() {
            if let Some(end) = key.and_then(|key| self.short_len_field(key)) {
                self.pos = end;
                count += 1;
                continue;
            }
            if let (field, Value::Len(_)) = self.next_field()?
                && field == number
            {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Where the field at `pos` ends when it is one-byte `key` with a length of one or two
    /// bytes that stays within the message; `None` for [`Self::next_field`] to read.
    #[inline]
    fn short_len_field(&self, key: u8) -> Option<usize> {
        let (len, head) = match *self.buf.get(self.pos..)? {
            [k, len, ..] if k == key && len < 0x80 => (usize::from(len), 2),
            [k, low, high, ..] if k == key && high < 0x80 => {
                (usize::from(low & 0x7f) | usize::from(high) << 7, 3)
            }
            _ => return None,
        };
        let end = self.pos.checked_add(head + len)?;
        (end <= self.buf.len()).then_some(end)
    }

    fn long_varint(&mut self) -> Result<u64, WireError> {
        let at = self.pos;
        let mut value = 0u64;
        for shift in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::TruncatedVarint(at));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * shift);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::LongVarint(at))
    }

    fn skip(&mut self, len: usize, field: u32, at: usize) -> Result<(), WireError> {
        match self.pos.checked_add(len) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(())
            }
            _ => Err(WireError::Truncated { field, at }),
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use headwater_schemas::proto::v1::{Batch, Event};
    use prost::Message;

    use super::*;

    #[test]
    fn walks_every_wire_type_prost_writes() {
        let event = Event {
            id: "e".into(),
            version: 300,
            ts: -1,
            payload: vec![1, 2, 3].into(),
            attributes: [("k".to_owned(), "v".to_owned())].into(),
            ..Event::default()
        };
        let bytes = event.encode_to_vec();
        let fields: Vec<(u32, Value<'_>)> = Fields::new(&bytes).map(Result::unwrap).collect();
        assert_eq!(fields[0], (1, Value::Len(b"e")));
        assert_eq!(fields[1], (3, Value::Varint(300)));
        assert_eq!(fields[2], (5, Value::Varint(u64::MAX)));
        assert_eq!(fields[3], (7, Value::Len(&[1, 2, 3])));
        assert!(matches!(fields[4], (9, Value::Len(_))));
        let fixed = [0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x15, 0, 0, 0, 0];
        let fields: Vec<_> = Fields::new(&fixed).map(Result::unwrap).collect();
        assert_eq!(fields, [(1, Value::Fixed64), (2, Value::Fixed32)]);
    }

    #[test]
    fn count_len_counts_one_length_delimited_field_and_skips_the_rest() {
        // Field 2 length-delimited three times (one empty, one of 200 bytes: a two-byte
        // length), field 1 as a varint, a fixed64 and a string, field 2 as a varint.
        let mut bytes = vec![0x12, 0x00, 0x08, 0x96, 0x01, 0x09, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend([0x12, 0xc8, 0x01]);
        bytes.extend([7; 200]);
        bytes.extend([0x0a, 0x01, b'x', 0x10, 0x05, 0x12, 0x01, 0x00]);
        assert_eq!(Fields::new(&bytes).count_len(2), Ok(3));
        assert_eq!(Fields::new(&bytes).count_len(1), Ok(1));
        assert_eq!(Fields::new(&[]).count_len(2), Ok(0));
        let counted = Fields::new(&bytes).filter(|f| matches!(f, Ok((2, Value::Len(_)))));
        assert_eq!(counted.count(), 3, "as the iterator counts them");
        // A value running past the end is an error, as for the iterator.
        assert!(Fields::new(&bytes[..bytes.len() - 1]).count_len(2).is_err());
        assert_eq!(
            Fields::new(&[0x12, 0x05, 1]).count_len(2),
            Err(WireError::Truncated { field: 2, at: 0 })
        );
        // A length in more bytes than it needs (prost takes it), a two-byte length past the
        // end, a field numbered over 15 (a two-byte key), a three-byte length.
        assert_eq!(
            Fields::new(&[0x12, 0x80, 0x00, 0x12, 0x00]).count_len(2),
            Ok(2)
        );
        assert!(Fields::new(&[0x12, 0x80, 0x01, 1, 2]).count_len(2).is_err());
        assert_eq!(
            Fields::new(&[0x82, 0x01, 0x01, 9, 0x82, 0x01, 0x00]).count_len(16),
            Ok(2)
        );
        let mut long = vec![0x12, 0x80, 0x80, 0x01];
        long.extend(vec![0; 1 << 14]);
        assert_eq!(Fields::new(&long).count_len(2), Ok(1));
    }

    #[test]
    fn counts_ten_million_empty_events_without_allocating_them() {
        let bomb = [0x0a, 0x00].repeat(10_000_000);
        let count = Fields::new(&bomb)
            .map(Result::unwrap)
            .filter(|(field, _)| *field == 1)
            .count();
        assert_eq!(count, 10_000_000);
        assert_eq!(Batch::decode(&[0x0a, 0x00][..]).unwrap().events.len(), 1);
    }

    #[test]
    fn broken_messages_end_the_walk_with_an_error() {
        let cases: [(&[u8], WireError); 5] = [
            (
                &[0x0a, 0x05, 1, 2],
                WireError::Truncated { field: 1, at: 0 },
            ),
            (&[0x08, 0x80], WireError::TruncatedVarint(1)),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                WireError::LongVarint(1),
            ),
            (&[0x00, 0x00], WireError::FieldNumber(0)),
            (
                &[0x0b, 0x0c],
                WireError::WireType {
                    wire_type: 3,
                    at: 0,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut fields = Fields::new(bytes);
            assert_eq!(fields.next(), Some(Err(expected)), "{bytes:?}");
            assert_eq!(fields.next(), None);
        }
    }
}
