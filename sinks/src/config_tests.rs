//! Tests of sink configuration: parsing, validation, inheritance.

use std::collections::BTreeMap;

use crate::config::*;

fn parse(yaml: &str) -> Result<SinkConfig, String> {
    yaml_serde::from_str(yaml).map_err(|e| e.to_string())
}

#[test]
fn shipped_default_entry_parses_and_validates() {
    let c = parse("type: s3").unwrap();
    assert_eq!(c, SinkConfig::S3(S3Config::default()));
    assert!(c.validate("routes[0].sinks[0]").is_empty());
    assert_eq!(c.label(), "s3");
    assert_eq!(c.clone().named("s3#2").label(), "s3#2");
    let named = parse("type: s3\nname: lake\n").unwrap();
    assert_eq!(named.named("s3#2").label(), "lake");
}

#[test]
fn every_type_parses() {
    let es = parse("type: opensearch\nurl: http://localhost:9200\nindex: logs-{tenant}\n").unwrap();
    assert_eq!(es.kind(), "elasticsearch");
    assert!(es.validate("x").is_empty());
    let t = parse("type: topic\ntopic: out\nname: copy\n").unwrap();
    assert_eq!(t.label(), "copy");
    assert!(t.validate("x").is_empty());
}

#[test]
fn unknown_fields_and_types_are_refused() {
    assert!(
        parse("type: s3\nbukket: x\n")
            .unwrap_err()
            .contains("bukket")
    );
    assert!(parse("type: ftp\n").is_err());
}

#[test]
fn validation_names_the_key() {
    let c = parse("type: elasticsearch\nindex: 'a-{nope}'\n").unwrap();
    let errors = c.validate("routes[2].sinks[0]");
    let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["routes[2].sinks[0].url", "routes[2].sinks[0].index"]);
    let c = parse("type: s3\nmultipart_part_bytes: 1000\n").unwrap();
    assert_eq!(
        c.validate("r").first().map(|e| e.0.as_str()),
        Some("r.multipart_part_bytes")
    );
    let c = parse("type: topic\n").unwrap();
    assert_eq!(c.validate("r")[0].0, "r.topic");
}

#[test]
fn entries_inherit_deployment_defaults() {
    let defaults = SinksConfig {
        s3: S3Config {
            bucket: "lake".into(),
            endpoint: "http://minio:9000".into(),
            allow_http: true,
            ..S3Config::default()
        },
        elasticsearch: ElasticsearchConfig {
            url: "http://es:9200".into(),
            ..ElasticsearchConfig::default()
        },
        kafka: KafkaDefaults {
            brokers: "k:9092".into(),
            options: BTreeMap::new(),
        },
    };
    let SinkConfig::S3(s3) = parse("type: s3\nprefix: p\n")
        .unwrap()
        .with_defaults(&defaults)
    else {
        panic!("not s3")
    };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("lake", "p"));
    assert!(s3.allow_http);
    let SinkConfig::S3(local) = parse("type: s3\nlocal_dir: /tmp/x\n")
        .unwrap()
        .with_defaults(&defaults)
    else {
        panic!("not s3")
    };
    assert!(local.bucket.is_empty());
    let es = parse("type: elasticsearch")
        .unwrap()
        .with_defaults(&defaults);
    assert!(es.validate("x").is_empty());
    let SinkConfig::Topic(t) = parse("type: topic\ntopic: t\n")
        .unwrap()
        .with_defaults(&defaults)
    else {
        panic!("not topic")
    };
    assert_eq!(t.brokers, "k:9092");
}

#[test]
fn shipped_routes_sink_entries_parse_and_validate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/routes.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let routes = doc["routes"].as_sequence().unwrap();
    let mut entries = 0;
    for (r, route) in routes.iter().enumerate() {
        for (s, sink) in route["sinks"].as_sequence().unwrap().iter().enumerate() {
            let config: SinkConfig = yaml_serde::from_value(sink.clone()).unwrap();
            let at = format!("routes[{r}].sinks[{s}]");
            let config = config.with_defaults(&SinksConfig::default());
            assert_eq!(config.validate(&at), Vec::new(), "{at}");
            entries += 1;
        }
    }
    assert!(entries > 0);
}
