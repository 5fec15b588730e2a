"""confluent-kafka against the Kafka port of `headwater serve` with authentication on: SASL_SSL
with PLAIN (the tenant `acme`, with its API key from `gateway.auth.keys`), SCRAM-SHA-512 (the
service `router`) and SCRAM-SHA-256 (the operator `ops`), credentials made by `headwater
scram-credential`, a private CA made here with `cryptography`.

What a tenant produces is stamped with its tenant and validated against the schemas; a forged
tenant or an invalid payload is refused with INVALID_RECORD; DeleteTopics and DescribeAcls are
the operator's (kafka-python shows the tenant's DescribeAcls refusal, which librdkafka drops).

Needs the headwater binary (`cargo build -p headwater`, target/debug/headwater) or
HEADWATER_TEST_BIN.
"""

import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
import kafka.errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kafka import KafkaAdminClient
from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
from kafka.admin import ResourceType as KPResourceType

ROOT = Path(__file__).resolve().parents[2]

ACME_KEY = "acme-api-key"
ROUTER_SECRET = "router-secret"
OPS_SECRET = "ops-secret"

SCHEMA = {
    "type": "object",
    "properties": {"position_ms": {"type": "integer", "minimum": 0}},
    "required": ["position_ms"],
}
VALID = json.dumps({"position_ms": 5})

# How long the server may take to report its Kafka listener, and any client call to answer.
START_WITHIN_S = 60
ANSWER_WITHIN_S = 20


def binary() -> str:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = os.environ.get("HEADWATER_TEST_BIN", str(target / "debug" / "headwater"))
    if not os.path.exists(path):
        pytest.fail(f"{path} does not exist: run `cargo build -p headwater` (scripts/test does) or set HEADWATER_TEST_BIN", pytrace=False)
    return path


def write_pki(directory: Path) -> None:
    """A private CA (ca.pem) and a server certificate for 127.0.0.1 and localhost
    (server.pem, server.key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("headwater test CA"))
        .issuer_name(name("headwater test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def scram_credential(mechanism: str, password: str) -> str:
    """The stored credential `headwater scram-credential` prints for `password`."""
    out = subprocess.run([binary(), "scram-credential", "--mechanism", mechanism], input=password.encode(),
                         capture_output=True, timeout=30, check=True)
    return out.stdout.decode().strip()


class Server:
    """`headwater serve` on 127.0.0.1:0 with JSON logs; a thread reads its stderr to the end
    (so it never blocks on a full pipe), keeps every line, and finds the Kafka listener's
    address in the "kafka protocol listening" line: no port is guessed free beforehand."""

    def __init__(self, config: Path):
        env = dict(os.environ, HEADWATER_LOGGING__FORMAT="json", RUST_LOG="info")
        self.proc = subprocess.Popen([binary(), "--config", str(config), "serve"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = []
        self.kafka = None
        self.reported = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            # The crate's own line says `addr`; serve's says `kafka`.
            if fields.get("message") == "kafka protocol listening" and "kafka" in fields:
                self.kafka = fields["kafka"]
                self.reported.set()
        self.reported.set()  # the process ended: stop waiting

    def bootstrap(self) -> str:
        if not self.reported.wait(START_WITHIN_S) or self.kafka is None:
            self.stop()
            log = "\n".join(self.lines[-40:])
            pytest.fail(f"headwater serve did not report its Kafka listener:\n{log}", pytrace=False)
        return self.kafka

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


class Secured:
    """The running server and client settings per principal."""

    def __init__(self, bootstrap: str, ca: Path):
        self.bootstrap, self.ca = bootstrap, ca

    def client(self, mechanism: str, user: str, password: str, **extra) -> dict:
        config = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str(self.ca),
            "socket.timeout.ms": 10000,
        }
        config.update(extra)
        return config

    def acme(self, **extra) -> dict:
        return self.client("PLAIN", "acme", ACME_KEY, **extra)

    def router(self, **extra) -> dict:
        return self.client("SCRAM-SHA-512", "router", ROUTER_SECRET, **extra)

    def ops(self, **extra) -> dict:
        return self.client("SCRAM-SHA-256", "ops", OPS_SECRET, **extra)


@pytest.fixture(scope="module")
def secured():
    work = Path(tempfile.mkdtemp(prefix="hw-kafka-auth-py-"))
    pki = work / "pki"
    pki.mkdir()
    write_pki(pki)
    schemas = work / "schemas"
    schemas.mkdir()
    (schemas / "playback.start.v1.schema.json").write_text(json.dumps(SCHEMA))
    # No routes: nothing but the clients here reads the topics.
    routes = work / "routes.yaml"
    routes.write_text("routes: []\n")
    acme = hashlib.sha256(ACME_KEY.encode()).hexdigest()
    router = scram_credential("SCRAM-SHA-512", ROUTER_SECRET)
    ops = scram_credential("SCRAM-SHA-256", OPS_SECRET)
    config = work / "headwater.yaml"
    config.write_text(f"""
data_dir: {work / 'data'}
gateway:
  listen: 127.0.0.1:0
  auth:
    keys:
      - {{tenant: acme, sha256: {acme}}}
schemas:
  dir: {schemas}
router:
  routes: {routes}
log:
  kafka_listen: 127.0.0.1:0
  kafka_tls: {{cert_file: {pki / 'server.pem'}, key_file: {pki / 'server.key'}}}
  kafka_sasl: {{enabled: true}}
  principals:
    - {{name: router, role: service, scram_sha512: "{router}"}}
    - {{name: ops, role: operator, scram_sha256: "{ops}"}}
  acls:
    - {{principal: "User:acme", resource_type: topic, pattern_type: prefixed, name: "acme.", operations: [read, write]}}
""")
    server = Server(config)
    try:
        yield Secured(server.bootstrap(), pki / "ca.pem")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def produce(config: dict, topic: str, value: str, headers: list):
    """Produces one record with a producer of its own; (error or None, partition, offset)."""
    producer = Producer(dict(config, **{"message.timeout.ms": ANSWER_WITHIN_S * 1000, "enable.idempotence": True}))
    reports = []
    producer.produce(topic, key="tv-1", value=value, headers=headers,
                     on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
    left = producer.flush(ANSWER_WITHIN_S + 10)
    assert left == 0 and len(reports) == 1, f"no delivery report within {ANSWER_WITHIN_S + 10} s"
    return reports[0]


def read(config: dict, topic: str, partition: int, offset: int):
    """The record at `offset` of `topic`/`partition`, read as `config` (fails after a deadline)."""
    consumer = Consumer(dict(config, **{"group.id": f"py-auth-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                pytest.fail(f"reading {topic}/{partition}@{offset}: {message.error()}", pytrace=False)
            if message.offset() == offset:
                return message
        pytest.fail(f"{topic}/{partition}@{offset} not read within {ANSWER_WITHIN_S} s", pytrace=False)
    finally:
        consumer.close()


def headers_of(message) -> dict:
    return {key: value.decode() for key, value in message.headers() or []}


def error_code(future):
    """The Kafka error code a failed admin future carries (fails when it succeeded)."""
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=ANSWER_WITHIN_S)
    return raised.value.args[0].code()


def test_a_tenants_event_is_stamped_by_the_broker_and_read_by_the_service(secured):
    error, partition, offset = produce(secured.acme(), "events", VALID, [("hw.type", "playback.start")])
    assert error is None, error

    message = read(secured.router(), "events", partition, offset)
    headers = headers_of(message)
    assert headers.get("hw.tenant") == "acme", headers
    assert headers.get("hw.type") == "playback.start", headers
    assert int(headers["hw.received_at"]) > 1_700_000_000_000, headers
    assert json.loads(message.value()) == {"position_ms": 5}


def test_a_forged_tenant_and_an_invalid_payload_are_refused_with_invalid_record(secured):
    # Claiming its own tenant is fine; claiming another is refused.
    own, _, _ = produce(secured.acme(), "events", VALID, [("hw.type", "playback.start"), ("hw.tenant", "acme")])
    assert own is None, own
    for value, headers in [
        (VALID, [("hw.type", "playback.start"), ("hw.tenant", "victim")]),
        (json.dumps({"position_ms": -1}), [("hw.type", "playback.start")]),
        (json.dumps({"title": "no position"}), [("hw.type", "playback.start")]),
        (VALID, [("hw.type", "no.such.type")]),
    ]:
        error, _, _ = produce(secured.acme(), "events", value, headers)
        assert error is not None, f"{value} {headers} was accepted"
        assert error.code() == KafkaError.INVALID_RECORD, f"{value} {headers}: {error}"


def test_delete_topics_is_refused_to_a_tenant_and_allowed_to_the_operator(secured):
    topic = f"scratch-{uuid.uuid4().hex[:8]}"
    ops = AdminClient(secured.ops())
    created = ops.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                operation_timeout=10, request_timeout=ANSWER_WITHIN_S)
    created[topic].result(timeout=ANSWER_WITHIN_S)

    acme = AdminClient(secured.acme())
    refused = acme.delete_topics([topic], operation_timeout=10, request_timeout=ANSWER_WITHIN_S)
    assert error_code(refused[topic]) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert topic in ops.list_topics(timeout=ANSWER_WITHIN_S).topics, "the tenant deleted it"

    deleted = ops.delete_topics([topic], operation_timeout=10, request_timeout=ANSWER_WITHIN_S)
    deleted[topic].result(timeout=ANSWER_WITHIN_S)
    assert topic not in ops.list_topics(timeout=ANSWER_WITHIN_S).topics


def test_describe_acls_lists_entries_to_the_operator_only(secured):
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    # Each client is kept while its future is pending: a dropped client fails it (_DESTROY).
    ops = AdminClient(secured.ops())
    bindings = ops.describe_acls(everything, request_timeout=ANSWER_WITHIN_S)
    found = {
        (b.restype, b.name, b.resource_pattern_type, b.principal, b.operation, b.permission_type)
        for b in bindings.result(timeout=ANSWER_WITHIN_S)
    }
    allow = AclPermissionType.ALLOW
    for operation in (AclOperation.READ, AclOperation.WRITE):
        configured = (ResourceType.TOPIC, "acme.", ResourcePatternType.PREFIXED, "User:acme", operation, allow)
        assert configured in found, f"the configured entry: {sorted(map(str, found))}"
    builtin = (ResourceType.TOPIC, "events", ResourcePatternType.LITERAL, "User:acme", AclOperation.WRITE, allow)
    assert builtin in found, f"the tenant's built-in write: {sorted(map(str, found))}"
    service = (ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:router", AclOperation.ALL, allow)
    assert service in found, f"the service's built-in all: {sorted(map(str, found))}"

    # librdkafka reads DescribeAcls' error code and drops it (rd_kafka_DescribeAclsResponse_parse
    # returns no error whatever the broker said), so the refused tenant sees an empty list here...
    acme = AdminClient(secured.acme())
    assert acme.describe_acls(everything, request_timeout=ANSWER_WITHIN_S).result(timeout=ANSWER_WITHIN_S) == []
    # ...and kafka-python, which raises the broker's code, shows the refusal.
    tenant = KafkaAdminClient(
        bootstrap_servers=secured.bootstrap, security_protocol="SASL_SSL", ssl_cafile=str(secured.ca),
        sasl_mechanism="PLAIN", sasl_plain_username="acme", sasl_plain_password=ACME_KEY,
        request_timeout_ms=ANSWER_WITHIN_S * 1000,
    )
    try:
        with pytest.raises(kafka.errors.ClusterAuthorizationFailedError):
            tenant.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                           permission_type=ACLPermissionType.ANY,
                                           resource_pattern=ResourcePatternFilter(KPResourceType.ANY, None, ACLResourcePatternType.ANY)))
    finally:
        tenant.close()
