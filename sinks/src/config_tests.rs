//! Tests of sink configuration: parsing, validation, and inheriting the deployment defaults by
//! deep-merging at the YAML level.

use std::collections::BTreeMap;

use crate::config::*;
use crate::{ConfigError, error_chain};

fn parse(yaml: &str) -> Result<SinkConfig, String> {
    yaml_serde::from_str(yaml).map_err(|e| e.to_string())
}

/// A routes.yaml entry over `defaults`, as the binary's factory reads it.
fn entry(yaml: &str, defaults: &SinksConfig) -> Result<SinkConfig, ConfigError> {
    let value: yaml_serde::Value = yaml_serde::from_str(yaml).unwrap();
    SinkConfig::from_entry(&value, defaults)
}

fn deployment() -> SinksConfig {
    SinksConfig {
        s3: S3Config {
            bucket: "lake".into(),
            endpoint: "http://minio:9000".into(),
            allow_http: true,
            compression_level: 9,
            ..S3Config::default()
        },
        elasticsearch: ElasticsearchConfig {
            url: "http://es:9200".into(),
            username: "ops".into(),
            password: "secret".into(),
            tls: TlsConfig {
                ca_file: "/etc/ca.pem".into(),
                insecure_skip_verify: false,
            },
            ..ElasticsearchConfig::default()
        },
        kafka: KafkaDefaults {
            brokers: "k:9092".into(),
            options: BTreeMap::from([("security.protocol".into(), "SSL".into())]),
        },
    }
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
    let same = entry("type: s3", &SinksConfig::default()).unwrap();
    assert_eq!(same, c);
}

#[test]
fn every_type_parses() {
    let es = parse("type: opensearch\nurl: http://localhost:9200\nindex: logs-{tenant}\n").unwrap();
    assert_eq!(es.kind(), "elasticsearch");
    assert!(es.validate("x").is_empty());
    let t = parse("type: topic\ntopic: out\nname: copy\n").unwrap();
    assert_eq!(t.label(), "copy");
    assert!(t.validate("x").is_empty());
    let os = entry(
        "type: opensearch\nurl: http://o:9200\n",
        &SinksConfig::default(),
    )
    .unwrap();
    assert_eq!(os.kind(), "elasticsearch");
}

#[test]
fn unknown_fields_and_types_are_refused() {
    assert!(
        parse("type: s3\nbukket: x\n")
            .unwrap_err()
            .contains("bukket")
    );
    assert!(parse("type: ftp\n").is_err());
    let defaults = SinksConfig::default();
    let err = entry("type: s3\nbukket: x\n", &defaults).unwrap_err();
    assert!(
        error_chain(&err).contains("unknown field `bukket`"),
        "{err}"
    );
    let err = entry("type: ftp\n", &defaults).unwrap_err();
    assert!(error_chain(&err).starts_with("unknown sink type `ftp`: expected one of s3, "));
    let err = entry("bucket: b\n", &defaults).unwrap_err();
    assert!(matches!(err, ConfigError::MissingType { .. }), "{err}");
    let err = entry("- type: s3\n", &defaults).unwrap_err();
    assert!(matches!(err, ConfigError::NotAMapping), "{err}");
}

#[test]
fn a_wrong_value_names_its_key() {
    let defaults = SinksConfig::default();
    let err = entry("type: s3\ncompression: brotli\n", &defaults).unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.starts_with("invalid `compression`: unknown variant `brotli`"),
        "{text}"
    );
    let err = entry(
        "type: elasticsearch\ntls: {insecure_skip_verify: maybe}\n",
        &defaults,
    )
    .unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.starts_with("invalid `tls.insecure_skip_verify`: "),
        "{text}"
    );
}

#[test]
fn validation_names_the_key() {
    let c = parse("type: elasticsearch\nindex: 'a-{nope}'\n").unwrap();
    let errors = c.validate("routes[2].sinks[0]");
    let keys: Vec<_> = errors.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["routes[2].sinks[0].url", "routes[2].sinks[0].index"]);
    let c = parse("type: s3\nmultipart_part_bytes: 1000\n").unwrap();
    assert_eq!(
        c.validate("r").first().map(|p| p.key.as_str()),
        Some("r.multipart_part_bytes")
    );
    let c = parse("type: topic\n").unwrap();
    assert_eq!(c.validate("r")[0].key, "r.topic");
    let err = c.check().unwrap_err();
    assert_eq!(err.to_string(), "topic: required");
}

#[test]
fn a_value_written_in_the_entry_wins_even_when_it_is_the_built_in_default() {
    let defaults = deployment();
    let SinkConfig::S3(inherited) = entry("type: s3\n", &defaults).unwrap() else {
        panic!("not s3")
    };
    assert_eq!(
        inherited.compression_level, 9,
        "not written: the deployment's"
    );
    let written = "type: s3\ncompression_level: 0\nallow_http: false\n";
    let SinkConfig::S3(own) = entry(written, &defaults).unwrap() else {
        panic!("not s3")
    };
    assert_eq!(
        own.compression_level, 0,
        "written, equal to the built-in default"
    );
    assert!(!own.allow_http);
    assert_eq!(own.bucket, "lake");
}

#[test]
fn entries_inherit_deployment_defaults() {
    let defaults = deployment();
    let SinkConfig::S3(s3) = entry("type: s3\nprefix: p\n", &defaults).unwrap() else {
        panic!("not s3")
    };
    assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("lake", "p"));
    assert!(s3.allow_http);
    let SinkConfig::S3(local) = entry("type: s3\nlocal_dir: /tmp/x\n", &defaults).unwrap() else {
        panic!("not s3")
    };
    assert!(
        local.bucket.is_empty(),
        "its own destination: no default bucket"
    );
    assert!(check(&local).is_ok());
    let SinkConfig::S3(named) = entry("type: s3\nname: cold\n", &defaults).unwrap() else {
        panic!("not s3")
    };
    assert_eq!(named.name, "cold");
    let es = entry("type: elasticsearch\n", &defaults).unwrap();
    assert!(es.validate("x").is_empty());
    let SinkConfig::Topic(t) = entry("type: topic\ntopic: t\n", &defaults).unwrap() else {
        panic!("not topic")
    };
    assert_eq!(t.brokers, "k:9092");
    assert_eq!(t.options.len(), 1);
}

#[test]
fn nested_keys_merge_and_groups_are_taken_whole() {
    let defaults = deployment();
    let yaml = "type: elasticsearch\napi_key: abc\ntls: {insecure_skip_verify: true}\n";
    let SinkConfig::Elasticsearch(es) = entry(yaml, &defaults).unwrap() else {
        panic!("not es")
    };
    assert_eq!(
        es.tls.ca_file, "/etc/ca.pem",
        "nested mappings merge key by key"
    );
    assert!(es.tls.insecure_skip_verify);
    assert_eq!((es.username.as_str(), es.password.as_str()), ("", ""));
    assert!(check(&es).is_ok(), "{es:?}");
    let yaml = "type: topic\ntopic: t\noptions: {compression.type: lz4}\n";
    let SinkConfig::Topic(t) = entry(yaml, &defaults).unwrap() else {
        panic!("not topic")
    };
    assert_eq!(t.options.len(), 2, "options merge over the deployment's");
    let yaml = "type: topic\ntopic: t\nbrokers: other:9092\n";
    let SinkConfig::Topic(t) = entry(yaml, &defaults).unwrap() else {
        panic!("not topic")
    };
    assert!(
        t.options.is_empty(),
        "another cluster: none of the default options"
    );
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
            let config = SinkConfig::from_entry(sink, &SinksConfig::default()).unwrap();
            let at = format!("routes[{r}].sinks[{s}]");
            assert_eq!(config.validate(&at), Vec::new(), "{at}");
            entries += 1;
        }
    }
    assert!(entries > 0);
}
