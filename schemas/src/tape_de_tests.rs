//! prost-reflect reading a protobuf type's JSON from a simd-json tape ([`TapeDeserializer`])
//! against reading it from the text with serde_json: the same message from the same text, and
//! a refusal where serde_json refuses. Beside the wire check's tests for their descriptors and
//! random messages.

use proptest::collection::vec;
use proptest::prelude::*;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde_json::Value as Json;

use super::fixtures::{Entropy, pick, random_message, telemetry};
use crate::proto_check::WireChecker;
use crate::proto_json::JsonPlan;
use crate::tape::{TapeNode, with_tape};
use crate::tape_de::TapeDeserializer;

/// Values written in place of a value of the JSON, as sent: numbers at the edges of the
/// protobuf kinds, `-0`, numbers as strings, enum names, lists, objects, escapes.
const TOKENS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.0",
    "1.5",
    "-2.5",
    "1e2",
    "1E-2",
    "-0.0",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "3.4028235e38",
    "3.5e38",
    "1e-50",
    "true",
    "false",
    "null",
    r#""""#,
    r#""1""#,
    r#""-1""#,
    r#""1.5""#,
    r#""1e2""#,
    r#""abc""#,
    r#""AQID""#,
    r#""AQ==""#,
    r#""Infinity""#,
    r#""-Infinity""#,
    r#""RED""#,
    r#""BLUE""#,
    r#""PURPLE""#,
    r#""2020-01-01T00:00:00Z""#,
    r#""1.5s""#,
    r#""\u0041\n""#,
    "[]",
    "[1,2]",
    r#"["a",null]"#,
    "{}",
    r#"{"a":1}"#,
    r#"{"label":"x"}"#,
];

/// Writes `value` as JSON, now and then a token in place of a value, a member given twice, or
/// a member no message has.
fn write(e: &mut Entropy<'_>, value: &Json, out: &mut String) {
    if e.below(8) == 0 {
        out.push_str(TOKENS[e.below(TOKENS.len())]);
        return;
    }
    match value {
        Json::Object(members) => {
            out.push('{');
            let mut first = true;
            let mut member = |e: &mut Entropy<'_>, name: &str, value: &Json, out: &mut String| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).unwrap());
                out.push(':');
                write(e, value, out);
            };
            for (name, value) in members {
                member(e, name, value, out);
                if e.below(16) == 0 {
                    member(e, name, value, out);
                }
            }
            if e.below(16) == 0 {
                member(e, "zz", &Json::Null, out);
            }
            out.push('}');
        }
        Json::Array(elements) => {
            out.push('[');
            for (at, element) in elements.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                write(e, element, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Both readings of `text` agree: when simd-json parses it, the tape's message is serde_json's,
/// or both refuse.
fn agree(desc: &MessageDescriptor, text: &str) -> Result<(), TestCaseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let slow = DynamicMessage::deserialize(desc.clone(), &mut de)
        .and_then(|message| de.end().map(|()| message))
        .ok();
    let fast = with_tape(text.as_bytes(), |root| match root {
        TapeNode::At(nodes) => {
            DynamicMessage::deserialize(desc.clone(), TapeDeserializer::new(nodes)).ok()
        }
        TapeNode::Name(_) => None,
    });
    let Some(fast) = fast else {
        // simd-json refused the text: the serde_json path alone decides.
        return Ok(());
    };
    prop_assert_eq!(fast.is_some(), slow.is_some(), "{}", text);
    // NaN is not equal to itself: a message holding one is compared by its answer only.
    if !text.contains("NaN") {
        prop_assert_eq!(fast, slow, "{}", text);
    }
    Ok(())
}

/// The quick yes ([`JsonPlan`]) holds: said of `text` only where prost-reflect, fed the same
/// tape, reads it without an error. Returns what it said (`false` when simd-json refused).
fn quick_yes_holds(desc: &MessageDescriptor, text: &str) -> Result<bool, TestCaseError> {
    let plan = JsonPlan::new(WireChecker::new(desc).message_types());
    let answers = with_tape(text.as_bytes(), |root| {
        let full = match root {
            TapeNode::At(nodes) => {
                DynamicMessage::deserialize(desc.clone(), TapeDeserializer::new(nodes)).is_ok()
            }
            TapeNode::Name(_) => false,
        };
        (plan.accepts(root), full)
    });
    let Some((quick, full)) = answers else {
        return Ok(false);
    };
    prop_assert!(
        full || !quick,
        "quick yes to a payload prost-reflect refuses: {}",
        text
    );
    Ok(quick)
}

#[test]
fn plain_payloads_get_the_quick_yes_and_the_rest_go_to_prost_reflect() {
    let (telemetry, rich) = (telemetry(), pick(1));
    let yes = [
        (
            telemetry,
            r#"{"cpu_percent":12.5,"dropped_frames":3,"bitrate_kbps":5800,"player_version":"7.12.0"}"#,
        ),
        (
            telemetry,
            r#"{"cpuPercent":1,"memoryBytes":18446744073709551615,"resolution":{"width":1920,"height":1080}}"#,
        ),
        (
            telemetry,
            r#"{"cpu_percent":-0,"buffer_seconds":3.4028234663852886e38}"#,
        ),
        (telemetry, "{}"),
        (
            rich,
            r#"{"name":"a","ints":[1,-2147483648],"doubles":[1e300,-0],"color":"BLUE","colors":["RED"]}"#,
        ),
        (
            rich,
            r#"{"flag":true,"child":{"children":[{"text":"x"}]},"number":-9223372036854775808}"#,
        ),
        (
            rich,
            r#"{"inner":{"label":"l","xs":[1.5],"back":{"maybe":4294967295}}}"#,
        ),
    ];
    for (desc, text) in yes {
        assert!(quick_yes_holds(desc, text).unwrap(), "{text}");
    }
    // Each is prost-reflect's to read (taken or refused): null, a number as a string, a
    // fraction or -0 for an integer, out of range, an enum number or unknown name, bytes,
    // a map, a name given twice or unknown, two fields of one oneof.
    let others = [
        (telemetry, r#"{"cpu_percent":null}"#),
        (telemetry, r#"{"memory_bytes":"123"}"#),
        (telemetry, r#"{"dropped_frames":1.0}"#),
        (telemetry, r#"{"dropped_frames":-0}"#),
        (telemetry, r#"{"dropped_frames":4294967296}"#),
        (telemetry, r#"{"dropped_frames":-1}"#),
        (telemetry, r#"{"cpu_percent":3.5e38}"#),
        (telemetry, r#"{"cpu_percent":"NaN"}"#),
        (telemetry, r#"{"bitrate_kbps":1,"bitrateKbps":2}"#),
        (telemetry, r#"{"bitrate_kbps":1,"bitrate_kbps":1}"#),
        (telemetry, r#"{"padding":"x"}"#),
        (telemetry, r#"[]"#),
        (rich, r#"{"color":1}"#),
        (rich, r#"{"color":"PURPLE"}"#),
        (rich, r#"{"blob":"AQID"}"#),
        (rich, r#"{"labels":{"1":"a"}}"#),
        (rich, r#"{"text":"a","number":1}"#),
        (rich, r#"{"ints":[1,null]}"#),
        (rich, r#"{"i64":9223372036854775808}"#),
        (rich, r#"{"u64":-1}"#),
        (rich, r#"{"s32":2147483648}"#),
    ];
    for (desc, text) in others {
        assert!(!quick_yes_holds(desc, text).unwrap(), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn messages_as_json_read_the_same_from_the_tape_whole_and_mutated_and_quick_yes_holds(
        which in 0usize..8,
        choices in vec(any::<u8>(), 0..400),
        mutations in vec(any::<u8>(), 0..64),
    ) {
        let desc = pick(which);
        let message = random_message(&mut Entropy(&choices), desc, 0);
        let text = serde_json::to_string(&message).unwrap();
        agree(desc, &text)?;
        quick_yes_holds(desc, &text)?;
        let value: Json = serde_json::from_str(&text).unwrap();
        let mut mutated = String::new();
        write(&mut Entropy(&mutations), &value, &mut mutated);
        agree(desc, &mutated)?;
        quick_yes_holds(desc, &mutated)?;
        // Members under their proto names, which prost-reflect reads too.
        let renamed = text
            .replace("\"playerVersion\"", "\"player_version\"")
            .replace("\"byName\"", "\"by_name\"");
        quick_yes_holds(desc, &renamed)?;
    }

    #[test]
    fn tokens_alone_read_the_same_from_the_tape(which in 0usize..8, token in 0..TOKENS.len()) {
        agree(pick(which), TOKENS[token])?;
        quick_yes_holds(pick(which), TOKENS[token])?;
    }
}

#[test]
fn minus_zero_is_read_as_serde_json_reads_it() {
    // An enum field refuses a float, and serde_json reads `-0` as one.
    let rich = pick(1);
    assert_eq!(rich.full_name(), "t.rich.Rich");
    for text in [
        r#"{"color":-0}"#,
        r#"{"color":0}"#,
        r#"{"s32":-0}"#,
        r#"{"amount":-0}"#,
    ] {
        agree(rich, text).unwrap();
    }
}
