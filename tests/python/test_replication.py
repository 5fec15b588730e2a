"""kafka-python and confluent-kafka against three `headwater log-node` processes forming one
cluster (`log.cluster`): each client writes through a leader kill (SIGKILL) and the killed
node's restart; every acknowledged record is read back once, at the offset it was
acknowledged with, and offsets stay dense. Topics created at run time (CreateTopics and
auto-creation, through the cluster's metadata partition) are replicated on every node, and
DeleteTopics removes them everywhere.

Needs the headwater binary built by `cargo test` (target/debug/headwater), or HEADWATER_TEST_BIN.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import Producer as CKProducer
from confluent_kafka import TopicPartition as CKTopicPartition
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "orders"
PARTITIONS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Three log nodes on loopback ports chosen up front (each must know the others')."""

    def __init__(self):
        self.binary = os.environ.get(
            "HEADWATER_TEST_BIN",
            str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "headwater"),
        )
        if not os.path.exists(self.binary):
            pytest.fail(f"{self.binary} does not exist: run `cargo build` or set HEADWATER_TEST_BIN", pytrace=False)
        self.root = tempfile.mkdtemp(prefix="hw-replication-py-")
        self.kafka = {i: free_port() for i in (1, 2, 3)}
        nodes = "".join(
            f'      - {{ id: {i}, replication: "127.0.0.1:{free_port()}", kafka: "127.0.0.1:{self.kafka[i]}" }}\n'
            for i in (1, 2, 3)
        )
        self.config = os.path.join(self.root, "headwater.yaml")
        with open(self.config, "w") as f:
            f.write(
                "log:\n  flush: { mode: every_append }\n"
                f"  topics:\n    {TOPIC}: {{ partitions: {PARTITIONS} }}\n"
                f"  cluster:\n    id: python-replication\n    nodes:\n{nodes}"
            )
        self.procs = {}

    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka.values())

    def start(self, i: int):
        log = open(os.path.join(self.root, f"node-{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(
            [
                self.binary, "log-node", "--config", self.config, "--node-id", str(i),
                "--data-dir", os.path.join(self.root, f"data-{i}"),
                "--listen", f"127.0.0.1:{free_port()}", "--kafka-listen", f"127.0.0.1:{self.kafka[i]}",
            ],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.kafka[i]), timeout=1).close()
                return
            except OSError:
                if time.time() > deadline or self.procs[i].poll() is not None:
                    pytest.fail(f"node {i} did not start:\n{self.logs()}", pytrace=False)
                time.sleep(0.1)

    def kill(self, i: int):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    def logs(self) -> str:
        out = []
        for i in (1, 2, 3):
            path = os.path.join(self.root, f"node-{i}.log")
            if os.path.exists(path):
                out.append(f"--- node {i}\n" + open(path, "rb").read()[-3000:].decode(errors="replace"))
        return "\n".join(out)

    def leader(self, partition: int, exclude=()) -> int:
        """The leader of `partition` once every partition has one (not in `exclude`)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap()})
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                md = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
                if md and len(md.partitions) == PARTITIONS and all(
                    p.leader > 0 and p.leader not in exclude for p in md.partitions.values()
                ):
                    return md.partitions[partition].leader
            except Exception:  # a node being killed answers nothing
                pass
            time.sleep(0.2)
        pytest.fail(f"no leaders within 60 s:\n{self.logs()}", pytrace=False)


@pytest.fixture
def cluster():
    c = Cluster()
    for i in (1, 2, 3):
        c.start(i)
    yield c
    c.stop()
    shutil.rmtree(c.root, ignore_errors=True)


def read_all(bootstrap: str, expected: int):
    """Every record of both partitions, from offset 0, until `expected` were read (bounded)."""
    consumer = CKConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
    })
    consumer.assign([CKTopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    out = []
    deadline = time.time() + 60
    while len(out) < expected and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            out.append((m.partition(), m.offset(), m.value().decode()))
    consumer.close()
    return out


def check(acked, read):
    by_value = {}
    for partition, offset, value in read:
        assert value not in by_value, f"{value} read twice"
        by_value[value] = (partition, offset)
    for value, at in acked.items():
        assert by_value.get(value) == at, f"{value} acknowledged at {at}, read at {by_value.get(value)}"
    assert len(read) == len(acked), "nothing but what was acknowledged"
    for p in range(PARTITIONS):
        offsets = sorted(o for (q, o, _) in read if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: dense offsets from 0"


def test_confluent_kafka_idempotent_producer_survives_a_killed_leader(cluster):
    acked = {}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[msg.value().decode()] = (msg.partition(), msg.offset())

    producer = CKProducer({
        "bootstrap.servers": cluster.bootstrap(),
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 60000,
        "linger.ms": 5,
        "topic.metadata.refresh.interval.ms": 500,
    })

    def send(tag, n):
        for i in range(n):
            producer.produce(TOPIC, value=f"{tag}-{i}".encode(), partition=i % PARTITIONS, on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(60) == 0, f"undelivered after 60 s:\n{cluster.logs()}"

    send("before", 200)
    leader = cluster.leader(0)
    for i in range(100):
        producer.produce(TOPIC, value=f"during-{i}".encode(), partition=i % PARTITIONS, on_delivery=delivered)
    cluster.kill(leader)
    assert producer.flush(60) == 0, f"undelivered after the kill:\n{cluster.logs()}"
    assert cluster.leader(0, exclude=(leader,)) != leader
    send("after", 200)
    cluster.start(leader)
    send("rejoined", 100)
    assert not errors, errors
    check(acked, read_all(cluster.bootstrap(), len(acked)))


def test_kafka_python_producer_follows_a_leader_move(cluster):
    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap(),
        acks="all",
        retries=20,
        retry_backoff_ms=200,
        request_timeout_ms=10000,
        metadata_max_age_ms=1000,
        max_in_flight_requests_per_connection=1,
        enable_idempotence=True,
    )
    acked = {}

    def send(tag, n):
        futures = [(f"{tag}-{i}", producer.send(TOPIC, value=f"{tag}-{i}".encode(), partition=i % PARTITIONS)) for i in range(n)]
        for value, f in futures:
            md = f.get(timeout=60)
            acked[value] = (md.partition, md.offset)

    send("before", 150)
    leader = cluster.leader(0)
    cluster.kill(leader)
    send("after", 150)
    cluster.start(leader)
    send("rejoined", 50)
    producer.close()
    check(acked, read_all(cluster.bootstrap(), len(acked)))


def described(port: int, topic: str):
    """`topic` as the broker on `port` describes it, once each partition has a leader; None
    while it does not know the topic or a leader is missing."""
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    try:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
    except KafkaException:
        return None
    if md is None or md.error is not None or not md.partitions:
        return None
    if any(p.leader < 0 for p in md.partitions.values()):
        return None
    return md


def until(what, check, cluster, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"never: {what}\n{cluster.logs()}", pytrace=False)


def create_error(admin, topic: NewTopic):
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([topic])[topic.topic].result(30)
    return refused.value.args[0].code()


def test_topics_are_created_at_run_time_and_deleted_through_the_cluster(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    name = f"created-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=3)])[name].result(30)
    assert create_error(admin, NewTopic(name, 1, 3)) == KafkaError.TOPIC_ALREADY_EXISTS
    assert create_error(admin, NewTopic(f"wide-{name}", 1, 4)) == KafkaError.INVALID_REPLICATION_FACTOR
    assert create_error(admin, NewTopic(TOPIC, 1, 3)) == KafkaError.TOPIC_ALREADY_EXISTS

    # Every broker describes it alike: three partitions, three replicas each, a leader each.
    for i, port in cluster.kafka.items():
        md = until(f"node {i} describes {name}", lambda: described(port, name), cluster)
        assert sorted(md.partitions) == [0, 1, 2]
        for p in md.partitions.values():
            assert sorted(p.replicas) == [1, 2, 3], (i, p)

    acked = {}
    producer = CKProducer({
        "bootstrap.servers": cluster.bootstrap(),
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 60000,
    })
    for i in range(90):
        producer.produce(
            name, value=f"v-{i}".encode(), partition=i % 3,
            on_delivery=lambda err, msg: err is None and acked.__setitem__(msg.value().decode(), (msg.partition(), msg.offset())),
        )
    assert producer.flush(60) == 0
    assert len(acked) == 90
    consumer = CKConsumer({"bootstrap.servers": cluster.bootstrap(), "group.id": f"r-{name}", "enable.auto.commit": False})
    consumer.assign([CKTopicPartition(name, p, 0) for p in range(3)])
    read = {}
    deadline = time.time() + 60
    while len(read) < 90 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            read[m.value().decode()] = (m.partition(), m.offset())
    consumer.close()
    assert read == acked

    # A producer's first use of a topic creates it (log.auto_create_topics, on by default).
    auto = f"auto-{uuid.uuid4().hex[:8]}"
    delivered = []
    producer.produce(auto, value=b"first", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(60) == 0 and delivered == [None], delivered
    md = until(f"{auto} is described", lambda: described(cluster.kafka[2], auto), cluster)
    assert all(sorted(p.replicas) == [1, 2, 3] for p in md.partitions.values())

    admin.delete_topics([name])[name].result(30)
    for i, port in cluster.kafka.items():
        until(
            f"node {i} forgets {name}",
            lambda: name not in AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=5).topics,
            cluster,
        )
    with pytest.raises(KafkaException) as refused:
        admin.delete_topics([TOPIC])[TOPIC].result(30)
    assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
