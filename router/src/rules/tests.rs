//! Tests of routes.yaml parsing, every filter operator, projections and sampling.

use bytes::Bytes;
use headwater_schemas::{Envelope, PayloadFormat};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;

fn env(payload: Json) -> Envelope {
    Envelope {
        id: "01J00000000000000000000001".into(),
        event_type: "playback.start".into(),
        version: 2,
        source: "tv-1".into(),
        ts: 1_700_000_000_000,
        received_at: 1_700_000_000_100,
        tenant: "acme".into(),
        payload: Bytes::from(payload.to_string()),
        payload_format: PayloadFormat::Json,
    }
}

fn route(body: &str) -> Arc<Route> {
    let text = format!(
        "routes:\n  - name: r\n    source: {{topics: [events]}}\n    sinks: [{{type: memory}}]\n{body}"
    );
    match check_routes(&text) {
        Ok(r) => Arc::clone(&r.routes[0]),
        Err(p) => panic!("{text}\n{p:?}"),
    }
}

fn passes(filter_yaml: &str, payload: Json) -> bool {
    let r = route(&format!("    filter: {filter_yaml}\n"));
    matches!(r.decide(env(payload)), Decision::Keep(_))
}

fn problems(text: &str) -> Vec<String> {
    match check_routes(text) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn eq_and_ne() {
    let p = json!({"a": {"b": 5}, "s": "x"});
    assert!(passes("{field: type, eq: playback.start}", p.clone()));
    assert!(!passes("{field: type, eq: playback.stop}", p.clone()));
    assert!(passes("{field: payload.a.b, '==': 5.0}", p.clone()));
    assert!(passes("{field: version, eq: 2}", p.clone()));
    assert!(!passes("{field: version, eq: '2'}", p.clone()));
    assert!(passes("{field: payload.s, '!=': y}", p.clone()));
    assert!(!passes("{field: tenant, ne: acme}", p.clone()));
    assert!(passes("{field: payload.missing, ne: 1}", p));
}

#[test]
fn in_and_exists() {
    let p = json!({"list": [10, 20], "n": null});
    assert!(passes("{field: tenant, in: [globex, acme]}", p.clone()));
    assert!(!passes("{field: source, in: [tv-2]}", p.clone()));
    assert!(passes("{field: payload.list.1, in: [20, 30]}", p.clone()));
    assert!(passes("{field: payload.list, exists: true}", p.clone()));
    assert!(!passes("{field: payload.n, exists: true}", p.clone()));
    assert!(passes("{field: payload.nope, exists: false}", p.clone()));
    assert!(passes("{field: id, exists: true}", p));
}

#[test]
fn numeric_comparisons() {
    let p = json!({"ms": 1500, "s": "1500"});
    assert!(passes("{field: payload.ms, gt: 1000}", p.clone()));
    assert!(passes("{field: payload.ms, '>=': 1500}", p.clone()));
    assert!(!passes("{field: payload.ms, '>': 1500}", p.clone()));
    assert!(passes("{field: payload.ms, lt: 1500.5}", p.clone()));
    assert!(passes("{field: payload.ms, '<=': 1500}", p.clone()));
    assert!(!passes("{field: payload.ms, '<': 1500}", p.clone()));
    assert!(
        !passes("{field: payload.s, gt: 1}", p.clone()),
        "strings are not numbers"
    );
    assert!(!passes("{field: payload.none, lt: 1}", p.clone()));
    assert!(passes("{field: ts, ge: 1700000000000}", p.clone()));
    assert!(passes("{field: received_at, le: 1700000000100}", p));
}

#[test]
fn matches_and_combinators() {
    let p = json!({"title": "Stranger Things"});
    assert!(passes("{field: source, matches: '^tv-[0-9]+$'}", p.clone()));
    assert!(!passes("{field: source, matches: '^phone'}", p.clone()));
    assert!(passes("{field: payload.title, matches: Things}", p.clone()));
    assert!(!passes("{field: version, matches: '2'}", p.clone()));
    let f = "{and: [{field: type, eq: playback.start}, {or: [{field: tenant, eq: x}, {not: {field: source, eq: tv-2}}]}]}";
    assert!(passes(f, p.clone()));
    assert!(!passes(
        "{not: {field: type, eq: playback.start}}",
        p.clone()
    ));
    assert!(passes("{and: []}", p.clone()));
    assert!(!passes("{or: []}", p));
}

#[test]
fn source_types_and_tenants_select() {
    let r = route("");
    assert!(matches!(r.decide(env(json!({}))), Decision::Keep(_)));
    let text = "routes:\n  - name: r\n    source: {topics: [events], types: ['playback.*'], tenants: [acme]}\n    sinks: [{type: memory}]\n";
    let r = Arc::clone(&check_routes(text).unwrap().routes[0]);
    assert!(matches!(r.decide(env(json!({}))), Decision::Keep(_)));
    let mut e = env(json!({}));
    e.tenant = "globex".into();
    assert_eq!(r.decide(e), Decision::Filtered);
    let mut e = env(json!({}));
    e.event_type = "search.query".into();
    assert_eq!(r.decide(e), Decision::Filtered);
}

#[test]
fn projection_include_exclude_rename() {
    let p = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
    let r = route("    projection: {include: [a, b.c], rename: {b.c: c}}\n");
    let Decision::Keep(out) = r.decide(env(p.clone())) else {
        panic!()
    };
    let got: Json = serde_json::from_slice(&out.payload).unwrap();
    assert_eq!(got, json!({"a": 1, "b": {}, "c": 2}));
    let r = route("    projection: {exclude: [b.d, e, payload.zz]}\n");
    let Decision::Keep(out) = r.decide(env(p)) else {
        panic!()
    };
    let got: Json = serde_json::from_slice(&out.payload).unwrap();
    assert_eq!(got, json!({"a": 1, "b": {"c": 2}}));
}

#[test]
fn protobuf_payloads_pass_projection_unchanged() {
    let r = route("    projection: {include: [a]}\n");
    let mut e = env(json!({}));
    e.payload_format = PayloadFormat::Protobuf;
    e.payload = Bytes::from_static(&[8, 1]);
    let Decision::Keep(out) = r.decide(e.clone()) else {
        panic!()
    };
    assert_eq!(out, e);
}

#[test]
fn sampling_is_deterministic_and_near_the_rate() {
    let r = route("    sample: {rate: 0.25, by: id}\n");
    let mut kept = 0;
    for i in 0..4000 {
        let mut e = env(json!({}));
        e.id = format!("event-{i}");
        let first = r.decide(e.clone());
        assert_eq!(first, r.decide(e), "same event, same decision");
        if matches!(first, Decision::Keep(_)) {
            kept += 1;
        }
    }
    assert!((800..1200).contains(&kept), "kept {kept} of 4000 at 0.25");
    let none = route("    sample: {rate: 0}\n");
    assert_eq!(none.decide(env(json!({}))), Decision::SampledOut);
    let all = route("    sample: {rate: 1}\n");
    assert!(matches!(all.decide(env(json!({}))), Decision::Keep(_)));
}

#[test]
fn every_problem_is_reported_with_line_and_column() {
    let text = "\
routes:
  - name: a
    source: {topics: [events]}
    sinks: []
  - name: a
    source:
      topics: [events]
      colour: blue
    filter: {field: payload.x, matches: '(unclosed'}
    sample: {rate: 1.5}
    sinks: [{type: s3}]
  - name: c
    source: {topics: [events]}
    filter: {field: body.x, eq: 1}
    projection: {include: [a], exclude: [b]}
    sinks: [{bucket: x}]
";
    let got = problems(text);
    assert_eq!(
        got,
        [
            "4:12: `sinks` must list at least one sink",
            "5:11: duplicate route name `a`",
            "8:7: unknown key `colour` in `source` (expected one of: topics, types, tenants)",
            "9:41: bad regular expression: regex parse error: (unclosed ^ error: unclosed group",
            "10:20: sampling rate 1.5 is out of range 0 to 1",
            "14:21: unknown field `body.x`: use id, type, source, tenant, version, ts, received_at, payload or payload.<path>",
            "15:17: `projection` takes `include` or `exclude`, not both",
            "16:13: a sink needs a `type` (s3, elasticsearch, topic…)",
        ],
        "{got:#?}"
    );
}

#[test]
fn structural_problems() {
    assert_eq!(
        problems(""),
        ["1:1: the routes file is empty: expected `routes:` with a list of routes"]
    );
    assert_eq!(
        problems("routes: 3"),
        ["1:9: `routes` must be a list, found a number"]
    );
    assert_eq!(
        problems("routs: []"),
        [
            "1:1: unknown key `routs` in the routes file (expected one of: routes)",
            "1:1: missing `routes:` (a list of routes)"
        ]
    );
    let p = problems(
        "routes:\n  - name: a.b\n    source: {topics: [events]}\n    sinks: [{type: s3}]\n    extra: 1\n",
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("2:11: route name `a.b`"), "{p:?}");
    assert!(
        p[1].starts_with("5:5: unknown key `extra` in a route"),
        "{p:?}"
    );
    let p = problems(
        "routes:\n  - name: a\n    source: {topics: [events]}\n    sinks: [{type: s3}]\n    filter: {field: type}\n",
    );
    assert_eq!(
        p,
        [
            "5:13: missing operator (one of: eq, ==, ne, !=, in, exists, lt, <, le, <=, gt, >, ge, >=, matches)"
        ]
    );
    let p = problems(
        "routes:\n  - name: a\n    source: {topics: [events]}\n    sinks: [{type: s3}]\n    filter: {field: type, eq: a, ne: b}\n",
    );
    assert_eq!(
        p,
        ["5:13: a condition takes exactly one operator; combine several with `and`"]
    );
    let syntax = problems("routes: [\n");
    assert_eq!(syntax.len(), 1);
    assert!(syntax[0].starts_with("2:1: "), "{syntax:?}");
}

#[test]
fn shipped_routes_file_checks() {
    let text = include_str!("../../../config/routes.yaml");
    let routes = check_routes(text).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(!routes.routes.is_empty());
    assert!(
        routes
            .routes
            .iter()
            .all(|r| r.sinks.iter().any(|s| s.kind == "s3"))
    );
}

#[test]
fn sink_specs_keep_their_settings_and_labels() {
    let text = "routes:\n  - name: r\n    source: {topics: [events]}\n    sinks:\n      - {type: s3, prefix: lake}\n      - {type: s3}\n";
    let routes = check_routes(text).unwrap();
    let s = &routes.routes[0].sinks;
    assert_eq!((s[0].label.as_str(), s[1].label.as_str()), ("s3", "s3#2"));
    assert_eq!(
        s[0].spec.get("prefix").and_then(|v| v.as_str()),
        Some("lake")
    );
    let named = "routes:\n  - name: r\n    source: {topics: [events]}\n    sinks:\n      - {type: s3, name: archive}\n      - {type: s3}\n      - {type: s3, name: s3}\n";
    let p: Vec<String> = check_routes(named)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        p,
        ["7:9: two sinks of this route are called `s3`: give them distinct `name`s"]
    );
}

#[test]
fn shipped_sink_specs_are_valid_sink_configs() {
    use headwater_sinks::config::SinkConfig;
    let check = |s: &SinkSpec| {
        let config: SinkConfig =
            yaml_serde::from_value(s.spec.clone()).map_err(|e| e.to_string())?;
        match config.validate("sink").as_slice() {
            [] => Ok(()),
            problems => Err(format!("{problems:?}")),
        }
    };
    let text = include_str!("../../../config/routes.yaml");
    check_routes_with(text, &check).unwrap_or_else(|p| panic!("{p:?}"));
    let bad = "routes:\n  - name: r\n    source: {topics: [events]}\n    sinks:\n      - {type: s3, buckit: x}\n";
    let p = check_routes_with(bad, &check).unwrap_err();
    assert_eq!((p[0].line, p[0].column), (5, 9));
    assert!(p[0].message.contains("buckit"), "{}", p[0].message);
}

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        "[a-c.]{0,3}".prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-c0-2]{1,2}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn filters_and_projections_never_panic(payload in arb_json(), raw in prop::collection::vec(any::<u8>(), 0..32)) {
        let r = route("    filter: {or: [{field: payload.a.b, gt: 1}, {field: payload.a.0, matches: x}, {field: payload.b, in: [1, a, null]}, {not: {field: payload.c, exists: true}}, {field: payload, eq: 3}]}\n    projection: {include: [a.b, a.0, c], rename: {a.b: c.d.e, c: a}}\n");
        let _ = r.decide(env(payload.clone()));
        let mut e = env(payload.clone());
        e.payload = Bytes::from(raw);
        let _ = r.decide(e);
        let x = route("    projection: {exclude: [a, b.a, c.c.c], rename: {b: a.b.c}}\n");
        let _ = x.decide(env(payload));
    }
}

#[test]
fn sink_checks_are_reported_at_the_sink() {
    let text = "routes:\n  - name: r\n    source: {topics: [events]}\n    sinks:\n      - type: s3\n        bucket: 7\n";
    let check = |s: &SinkSpec| match s.spec.get("bucket") {
        Some(b) if !b.is_string() => Err("bucket must be a string".to_owned()),
        _ => Ok(()),
    };
    let p: Vec<String> = check_routes_with(text, &check)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(p, ["5:9: sink s3: bucket must be a string"]);
    assert!(check_routes(text).is_ok());
}
