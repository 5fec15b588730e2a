//! Unit tests of the body decoders: forms, bad elements, and the bounds on what a body may
//! make the decoder build.

use headwater_schemas::proto::v1::{Batch, Event as ProtoEvent};

use super::*;

fn events(decoded: &[Decoded]) -> Vec<&IncomingEvent> {
    decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(e) => Some(e),
            Decoded::Bad { .. } => None,
        })
        .collect()
}

#[test]
fn array_and_object_forms_keep_payload_bytes_as_sent() {
    let body = Bytes::from_static(
        br#"[{"id":"e1","type":"playback.start","version":1,"source":"tv-1","ts":5,"payload":{"title_id":"t", "position_ms":0}}]"#,
    );
    let decoded = decode_json(&body, 10).unwrap();
    let event = events(&decoded)[0].clone();
    assert_eq!(event.id.as_deref(), Some("e1"));
    assert_eq!(event.version, Some(1));
    assert_eq!(&event.payload[..], br#"{"title_id":"t", "position_ms":0}"#);
    let body = Bytes::from_static(br#"{"events":[{"type":"a","source":"s","payload":[1,2]}]}"#);
    let decoded = decode_json(&body, 10).unwrap();
    assert_eq!(&events(&decoded)[0].payload[..], b"[1,2]");
}

#[test]
fn the_one_pass_and_the_per_element_paths_decode_events_alike() {
    let good = concat!(
        r#"{"id":"e1","type":"a","version":2,"source":"s1","ts":-3,"payload":{"k":"v\u00e9"}},"#,
        r#"{"id":"","type":"b","version":0,"source":"s2","payload":"x","extra":[1,{"y":null}]},"#,
        r#"{"type":"c","source":"s3","payload":[1, 2.5e3, true]}"#
    );
    let one_pass = decode_json(&Bytes::from(format!("[{good}]")), 10).unwrap();
    // A bad element sends the whole body down the per-element path.
    let per_element = decode_json(&Bytes::from(format!("[{good}, 42]")), 10).unwrap();
    assert_eq!(one_pass.len(), 3);
    assert_eq!(events(&one_pass), events(&per_element));
    assert!(matches!(per_element[3], Decoded::Bad { .. }));
    let object = decode_json(&Bytes::from(format!(r#"{{"events":[{good}]}}"#)), 10).unwrap();
    assert_eq!(events(&object), events(&one_pass));
    // The limit holds on both paths.
    assert!(matches!(
        decode_json(&Bytes::from(format!("[{good}]")), 2),
        Err(IngestError::TooManyEvents { count: 3, limit: 2 })
    ));
}

#[test]
fn bad_elements_are_reported_one_by_one() {
    let body = Bytes::from_static(
        br#"[{"type":"a","source":"s","payload":1}, 42, {"source":"s","payload":1}, {"type":"a","payload":1}, {"type":"a","source":"s"}]"#,
    );
    let decoded = decode_json(&body, 10).unwrap();
    let reasons: Vec<String> = decoded
        .iter()
        .filter_map(|d| match d {
            Decoded::Bad { reason, .. } => Some(reason.clone()),
            Decoded::Event(_) => None,
        })
        .collect();
    assert_eq!(reasons.len(), 4);
    assert!(reasons[0].starts_with("not an event object"), "{reasons:?}");
    assert_eq!(
        &reasons[1..],
        ["missing `type`", "missing `source`", "missing `payload`"]
    );
}

#[test]
fn malformed_json_is_a_malformed_body() {
    for body in [
        &b"[{\"type\":"[..],
        b"hello",
        b"",
        b"{\"events\": 3}",
        b"\xff\xfe",
    ] {
        let error = decode_json(&Bytes::copy_from_slice(body), 10).unwrap_err();
        assert!(matches!(error, IngestError::Malformed(_)), "{error}");
    }
}

#[test]
fn ndjson_lines_decode_independently() {
    let body = Bytes::from_static(b"{\"type\":\"a\",\"source\":\"s\",\"payload\":{}}\n\nnot json\n{\"type\":\"b\",\"source\":\"s\",\"payload\":2}\n");
    let decoded = decode_ndjson(&body, 10).unwrap();
    assert_eq!(decoded.len(), 3);
    assert!(matches!(&decoded[1], Decoded::Bad { raw, .. } if &raw[..] == b"not json"));
    assert_eq!(events(&decoded).len(), 2);
}

#[test]
fn protobuf_batches_decode_and_truncated_ones_are_malformed() {
    let batch = Batch {
        events: vec![
            ProtoEvent {
                id: "p1".into(),
                r#type: "device.telemetry".into(),
                version: 1,
                source: "tv-9".into(),
                ts: 5,
                payload: vec![8, 1].into(),
                payload_format: "protobuf".into(),
                ..ProtoEvent::default()
            },
            ProtoEvent {
                r#type: "x".into(),
                payload_format: "yaml".into(),
                source: "s".into(),
                ..ProtoEvent::default()
            },
        ],
    };
    let bytes = Bytes::from(batch.encode_to_vec());
    let decoded = decode_protobuf(&bytes, 10).unwrap();
    let good = events(&decoded);
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].format, PayloadFormat::Protobuf);
    assert_eq!(&good[0].payload[..], &[8, 1]);
    // The payload is a slice of the body as received, not a copy.
    let body = bytes.as_ptr_range();
    assert!(body.contains(&good[0].payload.as_ptr()));
    assert!(matches!(&decoded[1], Decoded::Bad { reason, .. } if reason.contains("yaml")));
    let truncated = bytes.slice(..bytes.len() - 3);
    assert!(matches!(
        decode_protobuf(&truncated, 10),
        Err(IngestError::Malformed(_))
    ));
}

#[test]
fn too_many_events_is_refused_before_decoding_them() {
    let body = Bytes::from(format!("[{}]", ["1"; 11].join(",")));
    assert!(matches!(
        decode_json(&body, 10),
        Err(IngestError::TooManyEvents {
            count: 11,
            limit: 10
        })
    ));
}

#[test]
fn a_million_tiny_elements_are_counted_not_kept() {
    let array = format!("[{}0]", "0,".repeat(999_999));
    let object = format!("{{\"x\":[1],\"events\":{array},\"y\":2}}");
    for body in [Bytes::from(array), Bytes::from(object)] {
        assert!(matches!(
            decode_json(&body, 10_000),
            Err(IngestError::TooManyEvents {
                count: 1_000_000,
                limit: 10_000
            })
        ));
    }
    let lines = Bytes::from("{}\n".repeat(20_001));
    assert!(matches!(
        decode_ndjson(&lines, 20_000),
        Err(IngestError::TooManyEvents {
            count: 20_001,
            limit: 20_000
        })
    ));
    // At the limit, every element is kept.
    let full = Bytes::from(format!("[{}0]", "0,".repeat(9_999)));
    assert_eq!(decode_json(&full, 10_000).unwrap().len(), 10_000);
}

#[test]
fn the_events_object_needs_exactly_one_events_array() {
    for body in [
        &br#"{"events":[],"events":[]}"#[..],
        br#"{"other":[]}"#,
        br#"{"events":[]} x"#,
        br#"[1] [2]"#,
    ] {
        let error = decode_json(&Bytes::copy_from_slice(body), 10).unwrap_err();
        assert!(matches!(error, IngestError::Malformed(_)), "{error}");
    }
}

#[test]
fn ten_million_empty_protobuf_events_are_refused_before_decoding() {
    let bomb = Bytes::from([0x0a, 0x00].repeat(10_000_000));
    assert!(matches!(
        decode_protobuf(&bomb, 10_000),
        Err(IngestError::TooManyEvents {
            count: 10_000_000,
            limit: 10_000
        })
    ));
}

fn proto_event(attributes: usize, value: &str) -> ProtoEvent {
    ProtoEvent {
        r#type: "a".into(),
        source: "s".into(),
        payload: Bytes::from_static(b"{}"),
        attributes: (0..attributes)
            .map(|i| (format!("k{i}"), value.to_owned()))
            .collect(),
        ..ProtoEvent::default()
    }
}

/// A `Batch` of the given encoded events, byte for byte.
fn batch_of(events: &[Vec<u8>]) -> Bytes {
    let mut body = Vec::new();
    for event in events {
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(event.len() as u64, &mut body);
        body.extend_from_slice(event);
    }
    Bytes::from(body)
}

#[test]
fn attributes_are_bounded_per_event_and_the_rest_of_the_batch_is_kept() {
    let over_count = proto_event(MAX_ATTRIBUTES + 1, "v").encode_to_vec();
    let body = batch_of(&[
        proto_event(MAX_ATTRIBUTES, "v").encode_to_vec(),
        over_count.clone(),
        proto_event(2, &"x".repeat(MAX_ATTRIBUTE_BYTES)).encode_to_vec(),
    ]);
    let decoded = decode_protobuf(&body, 10).unwrap();
    let Decoded::Event(first) = &decoded[0] else {
        panic!("{:?}", decoded[0])
    };
    assert_eq!(first.attributes.len(), MAX_ATTRIBUTES);
    assert!(
        matches!(&decoded[1], Decoded::Bad { raw, reason } if reason == "65 attributes are over the limit of 64" && raw[..] == over_count[..]),
        "{:?}",
        decoded[1]
    );
    assert!(
        matches!(&decoded[2], Decoded::Bad { reason, .. } if reason == "attributes of 16388 bytes are over the limit of 8192 bytes"),
        "{:?}",
        decoded[2]
    );
}

#[test]
fn an_event_that_is_not_an_event_is_one_bad_element() {
    // The first event's bytes `08 80`: a varint cut short.
    let body = batch_of(&[vec![0x08, 0x80], proto_event(0, "").encode_to_vec()]);
    let decoded = decode_protobuf(&body, 10).unwrap();
    assert!(
        matches!(&decoded[0], Decoded::Bad { raw, reason } if raw[..] == [0x08, 0x80] && reason.starts_with("not a protobuf Event")),
        "{:?}",
        decoded[0]
    );
    assert!(matches!(&decoded[1], Decoded::Event(_)));
}

/// A runtime whose one worker is the calling thread.
fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn decoding_runs_on_the_blocking_pool_and_a_panic_is_resumed() {
    let runtime = one_worker();
    let here = std::thread::current().id();
    let there = runtime
        .block_on(off_workers(|| Ok(std::thread::current().id())))
        .unwrap();
    assert_ne!(here, there, "the runtime's one worker is this thread");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(off_workers::<()>(|| panic!("decoder bug")))
    }));
    assert!(panicked.is_err());
}

#[test]
fn small_bodies_decode_on_the_task_and_large_ones_on_the_blocking_pool() {
    let runtime = one_worker();
    let here = std::thread::current().id();
    let thread = |len| {
        runtime
            .block_on(decode_sized(len, || Ok(std::thread::current().id())))
            .unwrap()
    };
    assert_eq!(thread(INLINE_DECODE_BYTES), here);
    assert_ne!(thread(INLINE_DECODE_BYTES + 1), here);
}

#[test]
fn parser_reasons_are_clipped() {
    let body = Bytes::from(format!("[{{\"version\":\"{}\"}}]", "v".repeat(100_000)));
    let decoded = decode_json(&body, 10).unwrap();
    let Decoded::Bad { reason, .. } = &decoded[0] else {
        panic!("{decoded:?}")
    };
    assert!(reason.len() <= MAX_REASON_BYTES + 3, "{}", reason.len());
}

mod view_against_generated {
    //! The decoder reads an `Event`'s strings in place and the rest through its own prost
    //! message (`NumbersAndBytes`); the generated `proto::v1::Event` is the reference both
    //! are held to, byte string by byte string.

    use proptest::prelude::*;
    use prost::encoding::{WireType, encode_key, encode_varint};

    use super::*;

    /// What the generated type makes of `raw`, as the decoder turns it into an event: `None`
    /// where prost refuses the bytes.
    fn through_generated(raw: &Bytes) -> Option<Decoded> {
        let event = ProtoEvent::decode(raw.clone()).ok()?;
        let mut attributes: Vec<(String, String)> = event.attributes.into_iter().collect();
        attributes.sort();
        let bytes: usize = attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
        let format = PayloadFormat::from_wire(&event.payload_format);
        if event.r#type.is_empty()
            || event.source.is_empty()
            || attributes.len() > MAX_ATTRIBUTES
            || bytes > MAX_ATTRIBUTE_BYTES
            || format.is_err()
        {
            return Some(bad(raw.clone(), "refused"));
        }
        Some(Decoded::Event(IncomingEvent {
            id: Some(event.id)
                .filter(|id| !id.is_empty())
                .map(CompactString::from),
            event_type: event.r#type.into(),
            version: Some(event.version).filter(|v| *v != 0),
            source: event.source.into(),
            ts: Some(event.ts).filter(|ts| *ts != 0),
            payload: event.payload,
            format: format.unwrap_or_default(),
            attributes,
            verdict: None,
        }))
    }

    /// A string field's bytes: mostly text, sometimes not UTF-8.
    fn text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-z0-9.é-]{0,30}".prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..8),
            1 => Just(b"protobuf".to_vec()),
        ]
    }

    /// One field of an `Event` as it goes on the wire, at any of its tags (and one unknown),
    /// a field sometimes given twice or with the wrong wire type.
    fn field() -> impl Strategy<Value = Vec<u8>> {
        (1u32..=10, text(), text(), any::<u64>(), 0u8..8).prop_map(
            |(tag, bytes, value, number, odd)| {
                let mut out = Vec::new();
                let varint = matches!(tag, 3 | 5) != (odd == 0);
                if varint {
                    encode_key(tag, WireType::Varint, &mut out);
                    encode_varint(number, &mut out);
                } else if tag == 9 {
                    let mut entry = Vec::new();
                    for (key, part) in [(1, &bytes), (2, &value)] {
                        encode_key(key, WireType::LengthDelimited, &mut entry);
                        encode_varint(part.len() as u64, &mut entry);
                        entry.extend_from_slice(part);
                    }
                    encode_key(tag, WireType::LengthDelimited, &mut out);
                    encode_varint(entry.len() as u64, &mut out);
                    out.extend_from_slice(&entry);
                } else {
                    encode_key(tag, WireType::LengthDelimited, &mut out);
                    encode_varint(bytes.len() as u64, &mut out);
                    out.extend_from_slice(&bytes);
                }
                out
            },
        )
    }

    fn event_bytes() -> impl Strategy<Value = Vec<u8>> {
        let fields = || proptest::collection::vec(field(), 0..12).prop_map(|f| f.concat());
        prop_oneof![
            4 => fields(),
            // An event with a type and a source, then any fields.
            4 => fields().prop_map(|rest| {
                let mut out = proto_event(0, "").encode_to_vec();
                out.extend_from_slice(&rest);
                out
            }),
            1 => proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_view_decodes_as_the_generated_event(bytes in event_bytes()) {
            let raw = Bytes::from(bytes);
            let decoded = decode_event_bytes(raw.clone());
            match (through_generated(&raw), &decoded) {
                (Some(Decoded::Event(expected)), Decoded::Event(got)) => {
                    prop_assert_eq!(&expected, got);
                    // The payload is a slice of the event's bytes, not a copy.
                    if !got.payload.is_empty() {
                        prop_assert!(raw.as_ptr_range().contains(&got.payload.as_ptr()));
                    }
                }
                (Some(Decoded::Bad { .. }), Decoded::Bad { raw: kept, .. }) => {
                    prop_assert_eq!(kept, &raw);
                }
                (None, Decoded::Bad { raw: kept, reason }) => {
                    prop_assert_eq!(kept, &raw);
                    prop_assert!(reason.starts_with("not a protobuf Event"), "{}", reason);
                }
                (expected, got) => prop_assert!(false, "{:?} against {:?}", expected, got),
            }
        }
    }

    #[test]
    fn a_string_that_is_not_utf8_is_named() {
        for (tag, name) in [
            (1, "id"),
            (2, "type"),
            (4, "source"),
            (6, "tenant"),
            (8, "payload_format"),
        ] {
            let mut raw = proto_event(0, "").encode_to_vec();
            encode_key(tag, WireType::LengthDelimited, &mut raw);
            encode_varint(2, &mut raw);
            raw.extend_from_slice(&[0xc3, 0x28]);
            let raw = Bytes::from(raw);
            assert!(ProtoEvent::decode(raw.clone()).is_err());
            let decoded = decode_event_bytes(raw.clone());
            let expected = format!("not a protobuf Event: `{name}` is not UTF-8");
            assert!(
                matches!(&decoded, Decoded::Bad { raw: kept, reason } if *kept == raw && *reason == expected),
                "{decoded:?}"
            );
        }
    }
}
