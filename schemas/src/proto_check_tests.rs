//! Tests of the wire check: the same accept/refuse as `DynamicMessage::decode` on generated
//! payloads over several descriptors, and a chosen case for every refusal.

use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use prost::encoding::encode_varint;
use prost_reflect::{DynamicMessage, MessageDescriptor};

use super::fixtures::*;
use super::*;

/// The wire check of `desc` on `bytes`, its checker planned afresh.
fn check(desc: &MessageDescriptor, bytes: &[u8]) -> Result<(), ProtoCheckError> {
    WireChecker::new(desc).check(bytes)
}

/// The check and `DynamicMessage::decode` agree on `bytes`.
fn agree(desc: &MessageDescriptor, bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = check(desc, bytes);
    let theirs = DynamicMessage::decode(desc.clone(), bytes);
    prop_assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "{}: {:02x?}: check {:?}, DynamicMessage::decode {:?}",
        desc.full_name(),
        bytes,
        ours,
        theirs.err()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_agree(which in 0usize..8, bytes in vec(any::<u8>(), 0..48)) {
        agree(pick(which), &bytes)?;
    }

    #[test]
    fn encoded_messages_agree_whole_and_mutated(
        which in 0usize..8,
        choices in vec(any::<u8>(), 0..400),
        mutations in vec(any::<u8>(), 0..24),
    ) {
        let desc = pick(which);
        let mut bytes = random_message(&mut Entropy(&choices), desc, 0).encode_to_vec();
        prop_assert_eq!(check(desc, &bytes), Ok(()));
        mutate(&mut Entropy(&mutations), &mut bytes);
        agree(desc, &bytes)?;
    }

    #[test]
    fn wire_tokens_agree_whole_and_mutated(
        which in 0usize..8,
        choices in vec(any::<u8>(), 0..400),
        mutations in vec(any::<u8>(), 0..24),
    ) {
        let desc = pick(which);
        let mut bytes = Vec::new();
        tokens(&mut Entropy(&choices), Some(desc), 0, &mut bytes);
        agree(desc, &bytes)?;
        mutate(&mut Entropy(&mutations), &mut bytes);
        agree(desc, &bytes)?;
    }
}

/// The token generator is no trivial source: it makes payloads of both outcomes.
#[test]
fn wire_tokens_reach_both_outcomes() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut accepted = 0;
    for _ in 0..1000 {
        let choices: Vec<u8> = (0..300)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let mut bytes = Vec::new();
        tokens(&mut Entropy(&choices), Some(rich()), 0, &mut bytes);
        accepted += usize::from(check(rich(), &bytes).is_ok());
    }
    assert!(
        (200..=800).contains(&accepted),
        "{accepted} of 1000 accepted"
    );
}

/// `check`'s answer, after asserting that `DynamicMessage::decode` gives the same verdict.
fn both(desc: &MessageDescriptor, bytes: &[u8]) -> Result<(), ProtoCheckError> {
    let ours = check(desc, bytes);
    let theirs = DynamicMessage::decode(desc.clone(), bytes);
    assert_eq!(
        ours.is_ok(),
        theirs.is_ok(),
        "{bytes:02x?}: {ours:?} vs {theirs:?}"
    );
    ours
}

fn key(number: u32, wire: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(u64::from(number) << 3 | u64::from(wire), &mut out);
    out
}

/// Field `number` length-delimited around `body`.
fn delimited_field(number: u32, body: &[u8]) -> Vec<u8> {
    let mut out = key(number, 2);
    encode_varint(body.len() as u64, &mut out);
    out.extend(body);
    out
}

#[test]
fn varints_longer_than_ten_bytes_or_past_64_bits_are_refused() {
    let t = telemetry();
    let mut ok = vec![0x10];
    ok.extend([0xff; 9]);
    ok.push(0x01);
    assert_eq!(both(t, &ok), Ok(()));
    let mut overflow = ok.clone();
    overflow[10] = 0x02;
    assert_eq!(both(t, &overflow), Err(ProtoCheckError::InvalidVarint));
    let mut eleven = vec![0x10];
    eleven.extend([0x80; 10]);
    eleven.push(0x00);
    assert_eq!(both(t, &eleven), Err(ProtoCheckError::InvalidVarint));
    assert_eq!(both(t, &[0xff; 12]), Err(ProtoCheckError::InvalidVarint));
}

#[test]
fn truncated_payloads_are_refused() {
    let t = telemetry();
    for bytes in [&[0x10][..], &[0x10, 0x80], &[0x0d, 1, 2, 3], &[0x80]] {
        assert_eq!(
            both(t, bytes),
            Err(ProtoCheckError::Truncated),
            "{bytes:02x?}"
        );
    }
    let past = ProtoCheckError::LengthPastEnd { len: 5, left: 2 };
    assert_eq!(both(t, &[0x42, 5, b'7', b'.']), Err(past.clone()));
    assert_eq!(
        past.to_string(),
        "length 5 runs past the end of the message (2 bytes left)"
    );
    // A length that fits the payload but not the message around it.
    let inner = [0x42, 3, b'a'];
    let mut outer = delimited_field(14, &inner);
    outer.extend([b'b', b'c']);
    assert!(both(rich(), &outer).is_err());
    let huge = [
        0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert!(matches!(
        both(t, &huge),
        Err(ProtoCheckError::LengthPastEnd { .. })
    ));
}

#[test]
fn bad_keys_are_refused() {
    let t = telemetry();
    let mut too_large = Vec::new();
    encode_varint(1 << 32 | 8, &mut too_large);
    too_large.push(0);
    assert_eq!(
        both(t, &too_large),
        Err(ProtoCheckError::KeyTooLarge((1 << 32) | 8))
    );
    assert_eq!(both(t, &[0x0e]), Err(ProtoCheckError::InvalidWireType(6)));
    assert_eq!(both(t, &[0x0f]), Err(ProtoCheckError::InvalidWireType(7)));
    assert_eq!(
        both(t, &[0x00, 0x00]),
        Err(ProtoCheckError::FieldNumberZero)
    );
    assert_eq!(
        both(t, &[0x02, 0x00]),
        Err(ProtoCheckError::FieldNumberZero)
    );
    let mut highest = key((1 << 29) - 1, 0);
    highest.push(1);
    assert_eq!(both(t, &highest), Ok(()));
}

#[test]
fn known_fields_in_the_wrong_wire_type_are_refused() {
    let t = telemetry();
    let error = both(t, &[0x40, 0x01]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field 8 (player_version) of headwater.events.device.v1.Telemetry: \
         wire type 0 (varint), expected length-delimited"
    );
    // float as varint, uint32 as 32-bit, message as varint, string as a group.
    for bytes in [
        &[0x08, 0x01][..],
        &[0x1d, 0, 0, 0, 0],
        &[0x38, 0x00],
        &[0x43, 0x44],
    ] {
        assert!(
            matches!(both(t, bytes), Err(ProtoCheckError::WrongWireType { .. })),
            "{bytes:02x?}"
        );
    }
    // A known field's end-group where no group is open.
    assert!(both(t, &[0x0c]).is_err());
    // proto2 group field sent length-delimited, and a message field sent as a group.
    assert!(both(legacy(), &delimited_field(2, &[])).is_err());
    let mut as_group = key(102, 3);
    as_group.extend(key(102, 4));
    assert!(both(legacy(), &as_group).is_err());
}

#[test]
fn strings_must_be_utf8_bytes_need_not() {
    let t = telemetry();
    let error = both(t, &delimited_field(8, &[0xc3, 0x28])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field 8 (player_version) of headwater.events.device.v1.Telemetry is not valid UTF-8"
    );
    assert_eq!(
        both(rich(), &delimited_field(2, &[0xc3, 0x28, 0xff])),
        Ok(())
    );
    assert!(both(legacy(), &delimited_field(9, &[0xff])).is_err());
    assert_eq!(both(legacy(), &delimited_field(10, &[0xff])), Ok(()));
    // A map's string value, and an extension's string.
    let entry = [&[0x08, 0x01][..], &delimited_field(2, &[0xff])].concat();
    assert!(both(rich(), &delimited_field(20, &entry)).is_err());
    let error = both(legacy(), &delimited_field(100, &[0xff])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "field 100 (t.legacy.note) of t.legacy.Old is not valid UTF-8"
    );
}

/// The short-string check agrees with the standard library at every length around its word
/// size and its cut to the library's check, with a non-ASCII byte (valid or not) anywhere.
#[test]
fn the_utf8_check_agrees_with_std_at_every_length_and_place() {
    for len in 0..80 {
        let ascii = vec![b'a'; len];
        assert!(is_utf8(&ascii), "{len}");
        for at in 0..len {
            for odd in [
                &[0xffu8][..],
                &[0xc3, 0xa9],
                &[0xc3],
                &[0x80],
                &[0xe2, 0x82, 0xac],
            ] {
                let mut bytes = ascii.clone();
                bytes.splice(at..(at + odd.len()).min(len), odd.iter().copied());
                assert_eq!(
                    is_utf8(&bytes),
                    std::str::from_utf8(&bytes).is_ok(),
                    "{bytes:02x?}"
                );
            }
        }
    }
}

#[test]
fn packable_fields_are_accepted_packed_and_unpacked() {
    let r = rich();
    // ints (packed by default) sent unpacked, sints ([packed = false]) sent packed.
    assert_eq!(both(r, &[0x18, 0x05, 0x18, 0x7f]), Ok(()));
    assert_eq!(both(r, &delimited_field(4, &[0x01, 0x80, 0x01])), Ok(()));
    assert_eq!(both(r, &delimited_field(5, &[0; 8])), Ok(()));
    assert_eq!(both(r, &delimited_field(6, &[0; 16])), Ok(()));
    assert_eq!(both(r, &delimited_field(12, &[0x09, 0xff, 0x01])), Ok(()));
    assert_eq!(both(legacy(), &delimited_field(7, &[0x01, 0x02])), Ok(()));
    assert_eq!(both(legacy(), &[0x40, 0x01]), Ok(()));
    let error = both(r, &delimited_field(5, &[0; 6])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "packed field 5 (fixed32s) of t.rich.Rich has 6 bytes, not a multiple of 4"
    );
    assert!(both(r, &delimited_field(3, &[0x01, 0x80])).is_err());
    // Strings are not packable: a repeated string's element is one string.
    assert!(both(r, &[0xa8, 0x01, 0x01]).is_err());
}

#[test]
fn enums_and_bools_take_any_varint() {
    let r = rich();
    let mut big = vec![0x58];
    encode_varint(u64::MAX, &mut big);
    assert_eq!(both(r, &big), Ok(()));
    big[0] = 0x68;
    assert_eq!(both(r, &big), Ok(()));
    assert_eq!(both(r, &[0x58, 0x63]), Ok(()));
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let t = telemetry();
    let mut bytes = Vec::new();
    bytes.extend([0xc8, 0x06, 0x96, 0x01]); // 105 varint
    bytes.extend([0xc9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]); // 105 64-bit
    bytes.extend(delimited_field(105, &[0xff, 0xfe])); // bytes of any kind
    bytes.extend([0xcd, 0x06, 1, 2, 3, 4]); // 105 32-bit
    bytes.extend(key(106, 3)); // a group holding a group and a varint
    bytes.extend(key(1, 3));
    bytes.extend(key(2, 0));
    bytes.push(1);
    bytes.extend(key(1, 4));
    bytes.extend(key(106, 4));
    assert_eq!(both(t, &bytes), Ok(()));
    assert_eq!(
        both(t, &[key(106, 3), key(107, 4)].concat()),
        Err(ProtoCheckError::EndGroupMismatch {
            open: 106,
            found: 107
        })
    );
    assert_eq!(
        both(t, &key(106, 4)),
        Err(ProtoCheckError::UnexpectedEndGroup(106))
    );
    assert_eq!(both(t, &key(106, 3)), Err(ProtoCheckError::Truncated));
    assert!(both(t, &[0xcd, 0x06, 1, 2]).is_err());
}

#[test]
fn groups_and_extensions_of_proto2_are_checked() {
    let l = legacy();
    // Item { name: "x", nested: Old { id: 1 } }, then two Entry groups.
    let mut bytes = key(2, 3);
    bytes.extend(delimited_field(3, b"x"));
    bytes.extend(delimited_field(4, &[0x08, 0x01]));
    bytes.extend(key(2, 4));
    for value in [1, 2] {
        bytes.extend(key(5, 3));
        bytes.extend([0x30, value]);
        bytes.extend(key(5, 4));
    }
    bytes.extend(delimited_field(101, &[0; 8]));
    bytes.extend(delimited_field(102, &[0x08, 0x07]));
    assert_eq!(both(l, &bytes), Ok(()));
    let wrong_end = [key(2, 3), key(5, 4)].concat();
    assert_eq!(
        both(l, &wrong_end),
        Err(ProtoCheckError::EndGroupMismatch { open: 2, found: 5 })
    );
    // A group's field in the wrong wire type is the group message's field.
    let inside = [key(2, 3), vec![0x18, 0x01], key(2, 4)].concat();
    assert!(matches!(
        both(l, &inside),
        Err(ProtoCheckError::WrongWireType { .. })
    ));
}

#[test]
fn map_fields_of_any_wire_type_are_read_as_length_delimited() {
    // prost-reflect's map merge does not check the wire type: a map key with wire type varint
    // (or 64-bit, or a group's) is followed by a length and entries, as if length-delimited.
    let r = rich();
    let entry = [0x08, 0x01, 0x12, 0x01, b'a'];
    for wire in [0, 1, 3, 4, 5] {
        let mut bytes = key(20, wire);
        encode_varint(entry.len() as u64, &mut bytes);
        bytes.extend(entry);
        assert_eq!(both(r, &bytes), Ok(()), "wire type {wire}");
    }
    // A key of the wrong wire type inside an entry is refused; an unknown entry field is not.
    assert!(both(r, &delimited_field(20, &[0x0d, 0, 0, 0, 0])).is_err());
    assert_eq!(both(r, &delimited_field(20, &[0x18, 0x01])), Ok(()));
    // A message value.
    let value = delimited_field(2, &delimited_field(1, b"label"));
    assert_eq!(both(r, &delimited_field(19, &value)), Ok(()));
}

/// `levels` messages of `Rich.child` around `leaf`.
fn nested(levels: usize, leaf: &[u8]) -> Vec<u8> {
    (0..levels).fold(leaf.to_vec(), |inner, _| delimited_field(14, &inner))
}

#[test]
fn messages_nest_100_deep_and_no_deeper() {
    let r = rich();
    assert_eq!(both(r, &nested(100, &[0x40, 0x01])), Ok(()));
    assert_eq!(both(r, &nested(101, &[])), Err(ProtoCheckError::TooDeep));
    assert_eq!(
        ProtoCheckError::TooDeep.to_string(),
        "nested deeper than 100 messages"
    );
    // Map entries take no level, their message values do.
    let in_map = |levels: usize| {
        let value = delimited_field(2, &nested(levels, &[]));
        delimited_field(31, &value)
    };
    assert_eq!(both(r, &in_map(99)), Ok(()));
    assert_eq!(both(r, &in_map(100)), Err(ProtoCheckError::TooDeep));
}

#[test]
fn groups_count_toward_the_nesting_limit() {
    // Old -> Item (group) -> nested (Old) -> Item ...: each step takes a level.
    let l = legacy();
    let nest = |steps: usize| {
        (0..steps).fold(Vec::new(), |inner, step| {
            // Counted from the outside, even steps are Item groups, odd ones nested Olds.
            if (steps - 1 - step).is_multiple_of(2) {
                [key(2, 3), inner, key(2, 4)].concat()
            } else {
                delimited_field(4, &inner)
            }
        })
    };
    assert_eq!(both(l, &nest(99)), Ok(()));
    assert_eq!(both(l, &nest(100)), Ok(()));
    assert_eq!(both(l, &nest(101)), Err(ProtoCheckError::TooDeep));
    assert_eq!(both(l, &nest(102)), Err(ProtoCheckError::TooDeep));
    // Unknown groups: 100 deep is accepted, 101 is not.
    let unknown = |levels: usize| [key(99, 3).repeat(levels), key(99, 4).repeat(levels)].concat();
    assert_eq!(both(telemetry(), &unknown(100)), Ok(()));
    assert_eq!(
        both(telemetry(), &unknown(101)),
        Err(ProtoCheckError::TooDeep)
    );
}

#[test]
fn unknown_fields_at_the_deepest_level_follow_prost() {
    // 100 levels down, fields are read with no level left: scalars and unknown scalars pass,
    // an unknown group does not, and in a map entry (prost's skip_field) neither does an unknown
    // scalar.
    let r = rich();
    let entry_with_unknown = delimited_field(20, &[0x08, 0x01, 0x18, 0x01]);
    let cases: [(&[u8], bool); 5] = [
        (&[0x40, 0x01], true),
        (&[0xc8, 0x06, 0x01], true),
        (&[0xcb, 0x06, 0xcc, 0x06], false),
        (&entry_with_unknown, false),
        (&[0xa2, 0x01, 0x02, 0x08, 0x01], true),
    ];
    for (leaf, accepted) in cases {
        for levels in 98..=101 {
            let bytes = nested(levels, leaf);
            let ours = both(r, &bytes);
            if levels == 100 {
                assert_eq!(ours.is_ok(), accepted, "{leaf:02x?}");
            }
        }
    }
}

#[test]
fn generated_otlp_requests_are_accepted() {
    let bytes = otlp_request(100);
    assert!(bytes.len() > 20_000, "{}", bytes.len());
    assert_eq!(both(otlp(), &bytes), Ok(()));
    if let Some(shipped) = descriptors().get(4) {
        assert_eq!(both(shipped, &bytes), Ok(()));
    }
    assert!(both(otlp(), &bytes[..bytes.len() - 1]).is_err());
}

/// For instruction counting under callgrind (`--toggle-collect=*count_check*` and
/// `*count_decode*`): 100 checks, then 100 decodes, of a 100-record OTLP request.
#[test]
#[ignore = "run by hand under callgrind"]
fn otlp_request_cost() {
    let bytes = otlp_request(100);
    let checker = WireChecker::new(otlp());
    for _ in 0..100 {
        count_check(&checker, &bytes);
    }
    for _ in 0..100 {
        count_decode(otlp(), &bytes);
    }
}

#[inline(never)]
fn count_check(checker: &WireChecker, bytes: &[u8]) {
    assert!(std::hint::black_box(checker).check(bytes).is_ok());
}

#[inline(never)]
fn count_decode(desc: &MessageDescriptor, bytes: &[u8]) {
    assert!(DynamicMessage::decode(std::hint::black_box(desc).clone(), bytes).is_ok());
}
