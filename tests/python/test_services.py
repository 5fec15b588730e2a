"""Smoke tests: the Python clients work against the real services of scripts/services.

Run through scripts/test, or by hand:
    scripts/install-deps && scripts/services start
    source target/services/env.sh
    "$HEADWATER_TEST_PYTHON" -m pytest -q tests/python
"""

import os
import subprocess
import time
import uuid

import pytest


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run `scripts/install-deps && scripts/services start` "
            "and `source target/services/env.sh` first (or run scripts/test)",
            pytrace=False,
        )
    return value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_kafka_python_round_trip():
    from kafka import KafkaConsumer, KafkaProducer

    bootstrap = need("HEADWATER_TEST_KAFKA")
    topic = unique("hw-smoke-kp")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        meta = producer.send(topic, key=b"device-1", value=b"hello kafka-python").get(timeout=60)
        assert meta.topic == topic
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            break
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"device-1", b"hello kafka-python")]


def test_confluent_kafka_round_trip():
    from confluent_kafka import Consumer, Producer

    bootstrap = need("HEADWATER_TEST_KAFKA")
    topic = unique("hw-smoke-ck")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    errors = []
    producer.produce(topic, key=b"device-2", value=b"hello confluent-kafka",
                     on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(60) == 0
    assert not errors

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": unique("hw-smoke-group"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        msg = None
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                break
        assert msg is not None and not msg.error(), f"no record consumed: {msg and msg.error()}"
        assert (msg.key(), msg.value()) == (b"device-2", b"hello confluent-kafka")
    finally:
        consumer.close()


def test_kcat_round_trip():
    kcat = need("HEADWATER_TEST_KCAT")
    bootstrap = need("HEADWATER_TEST_KAFKA")
    topic = unique("hw-smoke-kcat")
    subprocess.run(
        [kcat, "-b", bootstrap, "-P", "-t", topic, "-k", "device-3"],
        input=b"hello kcat\n", check=True, timeout=60,
    )
    out = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-c", "1", "-e",
         "-f", "%k=%s\\n"],
        check=True, timeout=60, capture_output=True,
    )
    assert out.stdout.decode().strip() == "device-3=hello kcat"


def test_s3_boto3_round_trip():
    import boto3
    from botocore.config import Config

    endpoint = need("HEADWATER_TEST_S3")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = unique("hw-smoke")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.json", Body=b'{"ok":true}')
    body = s3.get_object(Bucket=bucket, Key="a/b.json")["Body"].read()
    assert body == b'{"ok":true}'
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["a/b.json"]


def test_opensearch_index_and_search():
    from opensearchpy import OpenSearch

    url = need("HEADWATER_TEST_OPENSEARCH")
    client = OpenSearch(hosts=[url], timeout=60)
    index = unique("hw-smoke")
    try:
        client.index(index=index, id="evt-1", body={"type": "smoke", "source": "device-4"},
                     refresh=True)
        hits = client.search(index=index, body={"query": {"term": {"source.keyword": "device-4"}}})
        assert hits["hits"]["total"]["value"] == 1
        assert hits["hits"]["hits"][0]["_id"] == "evt-1"
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
