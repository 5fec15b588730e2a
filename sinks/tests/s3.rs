//! The S3 sink against the real S3-compatible server from `scripts/services` (moto), and the
//! local-filesystem store in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{batch, event, ndjson, service, unique};
use futures::TryStreamExt;
use headwater_sinks::{
    Batch, Compression, S3Config, S3Sink, Sink, SinkConfig, SinkContext, SinkError, build,
};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use rand::Rng;
use rand::distr::Alphanumeric;

fn config(bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        endpoint: service("HEADWATER_TEST_S3"),
        region: "us-east-1".to_owned(),
        access_key_id: "testing".to_owned(),
        secret_access_key: "testing".to_owned(),
        allow_http: true,
        prefix: "lake/raw".to_owned(),
        max_retries: 1,
        retry_timeout_ms: 5_000,
        ..S3Config::default()
    }
}

/// Creates a fresh bucket and returns it with a reader of it.
async fn bucket() -> (String, Arc<dyn ObjectStore>) {
    let endpoint = service("HEADWATER_TEST_S3");
    let name = unique("hw-sinks");
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .expect("S3 server answers");
    assert!(
        response.status().is_success(),
        "create bucket: {response:?}"
    );
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_bucket_name(&name)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .expect("reader store");
    (name, Arc::new(store))
}

async fn list(store: &dyn ObjectStore) -> Vec<ObjectMeta> {
    let mut objects: Vec<ObjectMeta> = store.list(None).try_collect().await.expect("list");
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    objects
}

async fn read(store: &dyn ObjectStore, key: &Path) -> Vec<u8> {
    store
        .get(key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body")
        .to_vec()
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

fn unzstd(body: &[u8]) -> String {
    String::from_utf8(zstd::decode_all(body).expect("zstd")).expect("utf-8")
}

#[tokio::test]
async fn batch_lands_as_one_object_and_resend_overwrites() {
    let (name, reader) = bucket().await;
    let sink = S3Sink::new(&config(&name), &SinkContext::default()).expect("sink");
    sink.healthcheck().await.expect("healthy");
    let b = batch("all", 100, 50);
    let delivery = sink.send(b.clone()).await.expect("send");
    assert!(delivery.is_complete());

    let objects = list(reader.as_ref()).await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let expected_key = "lake/raw/all/dt=2023-11-14/hr=22/events-3-100-149.ndjson.zst";
    assert_eq!(objects[0].location.as_ref(), expected_key);
    let body = read(reader.as_ref(), &objects[0].location).await;
    assert_eq!(unzstd(&body), ndjson(&b.events));

    // The router crashed before committing: the same batch comes again.
    assert!(sink.send(b.clone()).await.expect("resend").is_complete());
    let again = list(reader.as_ref()).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        unzstd(&read(reader.as_ref(), &again[0].location).await),
        ndjson(&b.events)
    );
}

#[tokio::test]
async fn gzip_bodies() {
    let (name, reader) = bucket().await;
    let cfg = S3Config {
        compression: Compression::Gzip,
        prefix: String::new(),
        ..config(&name)
    };
    let sink = S3Sink::new(&cfg, &SinkContext::default()).expect("sink");
    let b = batch("search", 0, 10);
    sink.send(b.clone()).await.expect("send");
    let objects = list(reader.as_ref()).await;
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0].location.as_ref(),
        "search/dt=2023-11-14/hr=22/events-3-0-9.ndjson.gz"
    );
    assert_eq!(
        gunzip(&read(reader.as_ref(), &objects[0].location).await),
        ndjson(&b.events)
    );
}

#[tokio::test]
async fn large_batch_goes_up_as_multipart() {
    let (name, reader) = bucket().await;
    let cfg = S3Config {
        multipart_threshold_bytes: 1024 * 1024,
        multipart_part_bytes: 5 * 1024 * 1024,
        ..config(&name)
    };
    let sink = S3Sink::new(&cfg, &SinkContext::default()).expect("sink");
    let mut rng = rand::rng();
    let events: Vec<_> = (0..9_000i64)
        .map(|i| {
            let noise: String = (&mut rng)
                .sample_iter(Alphanumeric)
                .take(1_000)
                .map(char::from)
                .collect();
            event(i, &format!("big-{i}"), &format!(r#"{{"noise":"{noise}"}}"#))
        })
        .collect();
    let b = Batch {
        route: Arc::from("big"),
        topic: Arc::from("events"),
        partition: 3,
        first_offset: 0,
        last_offset: 8_999,
        events,
    };
    assert!(sink.send(b.clone()).await.expect("send").is_complete());
    let objects = list(reader.as_ref()).await;
    assert_eq!(objects.len(), 1);
    assert!(
        objects[0].size > 5 * 1024 * 1024,
        "size {}",
        objects[0].size
    );
    // S3's ETag of a multipart object ends in `-<parts>`.
    let etag = objects[0].e_tag.clone().unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-2"), "etag {etag}");
    let body = read(reader.as_ref(), &objects[0].location).await;
    assert_eq!(unzstd(&body), ndjson(&b.events));
}

#[tokio::test]
async fn missing_bucket_is_a_config_error() {
    let cfg = config(&unique("hw-no-such-bucket"));
    let sink = S3Sink::new(&cfg, &SinkContext::default()).expect("sink");
    let err = sink.send(batch("all", 0, 3)).await.expect_err("no bucket");
    assert!(matches!(err, SinkError::Config { .. }), "{err}");
    assert!(!err.is_retryable());
    let err = sink.healthcheck().await.expect_err("no bucket");
    assert!(matches!(err, SinkError::Config { .. }), "{err}");
}

#[tokio::test]
async fn dead_endpoint_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        max_retries: 1,
        retry_timeout_ms: 1_000,
        ..config("whatever")
    };
    let sink = S3Sink::new(&cfg, &SinkContext::default()).expect("sink");
    let err = sink.send(batch("all", 0, 3)).await.expect_err("dead");
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn local_filesystem_under_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = SinkContext {
        data_dir: dir.path().to_path_buf(),
        log: None,
    };
    // `type: s3` with nothing else, as in the shipped routes.yaml.
    let entry: SinkConfig = yaml_serde::from_str("type: s3").expect("entry");
    let sink = build(&entry, &ctx).expect("sink");
    sink.healthcheck().await.expect("healthy");
    let b = batch("lake", 7, 5);
    sink.send(b.clone()).await.expect("send");
    sink.send(b.clone()).await.expect("resend");
    let file = dir
        .path()
        .join("lake/lake/dt=2023-11-14/hr=22/events-3-7-11.ndjson.zst");
    let body = std::fs::read(&file).expect("object file");
    assert_eq!(unzstd(&body), ndjson(&b.events));
    let files: Vec<_> = std::fs::read_dir(file.parent().expect("parent"))
        .expect("dir")
        .collect();
    assert_eq!(files.len(), 1, "no temporary or duplicate files");

    // And an explicit directory.
    let other = tempfile::tempdir().expect("tempdir");
    let cfg = S3Config {
        local_dir: other.path().display().to_string(),
        compression: Compression::Gzip,
        ..S3Config::default()
    };
    let sink = build(&SinkConfig::S3(cfg), &ctx).expect("sink");
    sink.send(b.clone()).await.expect("send");
    let body = std::fs::read(
        other
            .path()
            .join("lake/dt=2023-11-14/hr=22/events-3-7-11.ndjson.gz"),
    )
    .expect("object file");
    assert_eq!(gunzip(&body), ndjson(&b.events));
}
