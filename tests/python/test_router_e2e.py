"""End to end through `headwater serve`: events posted over HTTP reach the S3 server (read back
with boto3), OpenSearch (searched with opensearch-py) and a downstream topic (consumed with kcat
from Headwater's own Kafka listener), with filter, projection and sampling applied as written;
then a SIGKILL mid-run and a restart leave every event exactly once in S3 and OpenSearch; a
mapping conflict goes to router.dlq; and OpenSearch out of reach for 30 s, both ways it happens
(stopped: connections cut and refused, through a proxy the test closes; frozen: SIGSTOP, so
requests hang until their timeout), loses nothing while the S3 route keeps flowing.
"""

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from opensearchpy import OpenSearch

ROOT = Path(__file__).resolve().parents[2]


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run `scripts/services start` and source target/services/env.sh (or scripts/test)", pytrace=False)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP forwarder on a fixed port in front of OpenSearch: `stop()` closes the port and cuts
    every open connection (what the router sees when the server is stopped: connections reset,
    then refused), `start()` listens on the same port again."""

    def __init__(self, upstream: str):
        host, port = upstream.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        self.upstream = (host, int(port))
        # The port stays reserved by a bound, never-listening socket (SO_REUSEPORT lets the
        # listener share it): while stopped, connections are refused, and the kernel cannot
        # hand the port to another socket (an outgoing connection's source port, another
        # test's listener), which made `start()` fail with EADDRINUSE on a busy machine.
        self.reservation = socket.socket()
        self.reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.reservation.bind(("127.0.0.1", 0))
        self.port = self.reservation.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.conns = []
        self.listener = None
        self.running = threading.Event()

    def start(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.2)
        self.listener = sock
        self.running.set()
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock):
        while self.running.is_set():
            try:
                client, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.running.clear()
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Serve:
    def __init__(self, config: Path, http: int, kafka: int, log: Path):
        self.config, self.http, self.kafka, self.log = config, http, kafka, log
        self.proc = None

    def start(self):
        binary = os.environ.get("HEADWATER_TEST_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "headwater"))
        self.proc = subprocess.Popen([binary, "--config", str(self.config), "serve"], cwd=ROOT,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.http}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail("headwater serve did not start:\n" + self.log.read_text(errors="replace")[-3000:], pytrace=False)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


@pytest.fixture()
def world():
    s3_url, os_url = need("HEADWATER_TEST_S3"), need("HEADWATER_TEST_OPENSEARCH")
    run = uuid.uuid4().hex[:8]
    bucket, index = f"hw-e2e-{run}", f"hw-e2e-{run}"
    s3 = boto3.client("s3", endpoint_url=s3_url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    work = Path(tempfile.mkdtemp(prefix="hw-e2e-"))
    # The search route reaches OpenSearch through a proxy the tests can close.
    proxy = Proxy(os_url)
    proxy.start()
    http, kafka = free_port(), free_port()
    routes = f"""
routes:
  - name: lake
    source: {{topics: [events]}}
    batch: {{max_events: 50, max_age_ms: 500}}
    sinks:
      - {{type: s3, bucket: {bucket}, endpoint: "{s3_url}", allow_http: true, access_key_id: test,
          secret_access_key: test, prefix: lake, compression: gzip}}
  - name: search
    source: {{topics: [events], types: [playback.start]}}
    filter: {{field: payload.position_ms, ge: 100}}
    projection: {{include: [title_id, position_ms], rename: {{position_ms: pos}}}}
    batch: {{max_events: 50, max_age_ms: 500}}
    sinks:
      - {{type: opensearch, url: "{proxy.url}", index: "{index}", request_timeout_ms: 5000}}
  - name: conflicts
    source: {{topics: [events], types: [search.query]}}
    batch: {{max_events: 50, max_age_ms: 500}}
    sinks:
      - {{type: opensearch, url: "{os_url}", index: "{index}-conflict", request_timeout_ms: 5000}}
  - name: downstream
    source: {{topics: [events]}}
    sample: {{rate: 0.5, by: id}}
    batch: {{max_age_ms: 500}}
    sinks:
      - {{type: topic, topic: downstream}}
"""
    (work / "routes.yaml").write_text(routes)
    # An index where payload.query is an integer: a text query is a mapping conflict.
    requests.put(f"{os_url}/{index}-conflict", timeout=30,
                 json={"mappings": {"properties": {"payload": {"properties": {"query": {"type": "integer"}}}}}}).raise_for_status()
    (work / "headwater.yaml").write_text(f"""
data_dir: {work / 'data'}
gateway: {{listen: "127.0.0.1:{http}"}}
log: {{kafka_listen: "127.0.0.1:{kafka}"}}
schemas: {{dir: {ROOT / 'schemas' / 'events'}}}
router: {{routes: {work / 'routes.yaml'}}}
""")
    serve = Serve(work / "headwater.yaml", http, kafka, work / "serve.log")
    serve.start()
    yield {"serve": serve, "s3": s3, "bucket": bucket, "index": index, "os_url": os_url,
           "search": OpenSearch(hosts=[os_url]), "http": http, "kafka": kafka, "proxy": proxy}
    serve.stop()
    proxy.stop()
    shutil.rmtree(work, ignore_errors=True)


def post(world, first: int, count: int):
    events = [{"id": f"e-{i}", "type": "playback.start", "source": f"tv-{i % 10}",
               "payload": {"title_id": f"t-{i}", "position_ms": i * 10, "device": "x"}} for i in range(first, first + count)]
    r = requests.post(f"http://127.0.0.1:{world['http']}/v1/events", json=events, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == count, r.text


def s3_ids(world):
    ids = []
    pages = world["s3"].get_paginator("list_objects_v2").paginate(Bucket=world["bucket"], Prefix="lake/")
    for page in pages:
        for obj in page.get("Contents", []):
            assert obj["Key"].endswith(".ndjson.gz"), obj["Key"]
            body = world["s3"].get_object(Bucket=world["bucket"], Key=obj["Key"])["Body"].read()
            for line in gzip.decompress(body).decode().splitlines():
                ids.append(json.loads(line)["id"])
    return ids


def search_count(world):
    try:
        world["search"].indices.refresh(index=world["index"])
        return world["search"].count(index=world["index"])["count"]
    except Exception:
        return 0


def wait_for(predicate, what: str, seconds: float = 60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}", pytrace=False)


def test_events_reach_s3_opensearch_and_a_topic_as_routed(world):
    post(world, 0, 200)
    wait_for(lambda: len(s3_ids(world)) >= 200, "200 events in S3")
    ids = s3_ids(world)
    assert sorted(ids) == sorted(f"e-{i}" for i in range(200)), "each event once in S3"

    wait_for(lambda: search_count(world) >= 190, "190 documents in OpenSearch")
    assert search_count(world) == 190, "the filter keeps position_ms >= 100"
    # `_id` = tenant (open mode: `default`), source and event id, length-prefixed (sinks/README.md).
    doc = world["search"].get(index=world["index"], id="7:default:4:tv-2:e-42")["_source"]
    assert doc["payload"] == {"title_id": "t-42", "pos": 420}, doc

    kcat = need("HEADWATER_TEST_KCAT")
    def downstream():
        out = subprocess.run([kcat, "-b", f"127.0.0.1:{world['kafka']}", "-C", "-t", "downstream", "-e", "-q",
                              "-f", "%k %h\n"], capture_output=True, text=True, timeout=60)
        return [line for line in out.stdout.splitlines() if line]
    wait_for(lambda: len(downstream()) > 0, "sampled events in the downstream topic")
    time.sleep(1.5)
    lines = downstream()
    ids = [h.split("hw.id=")[1].split(",")[0] for h in (line.split(" ", 1)[1] for line in lines)]
    assert len(ids) == len(set(ids)), "no duplicates downstream"
    assert 50 <= len(ids) <= 150, f"about half sampled: {len(ids)}"
    assert all(line.startswith("tv-") for line in lines), "keys (source ids) preserved"


def test_sigkill_mid_run_then_restart_leaves_every_event_once(world):
    serve = world["serve"]
    post(world, 0, 300)
    time.sleep(0.3)
    serve.kill9()
    serve.start()
    post(world, 300, 200)
    wait_for(lambda: len(s3_ids(world)) >= 500, "500 events in S3", 90)
    time.sleep(2)
    ids = s3_ids(world)
    assert len(ids) == 500 and len(set(ids)) == 500, f"{len(ids)} lines, {len(set(ids))} distinct"
    expected = sum(1 for i in range(500) if i * 10 >= 100)
    wait_for(lambda: search_count(world) >= expected, f"{expected} documents in OpenSearch", 90)
    time.sleep(2)
    assert search_count(world) == expected


def dead_letters(world):
    kcat = need("HEADWATER_TEST_KCAT")
    out = subprocess.run([kcat, "-b", f"127.0.0.1:{world['kafka']}", "-C", "-t", "router.dlq", "-e", "-q",
                          "-f", "%h\n"], capture_output=True, text=True, timeout=60)
    return [line for line in out.stdout.splitlines() if line]


def test_a_mapping_conflict_sends_those_items_to_router_dlq_and_the_rest_land(world):
    events = [{"id": f"q-{i}", "type": "search.query", "source": "tv-q",
               "payload": {"query": str(i) if i % 2 == 0 else f"text {i}", "results": i}} for i in range(20)]
    r = requests.post(f"http://127.0.0.1:{world['http']}/v1/events", json=events, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 20, r.text
    index = f"{world['index']}-conflict"
    def landed():
        try:
            world["search"].indices.refresh(index=index)
            return world["search"].count(index=index)["count"]
        except Exception:
            return 0
    wait_for(lambda: landed() >= 10 and len(dead_letters(world)) >= 10, "10 documents and 10 dead letters")
    time.sleep(1)
    assert landed() == 10, "the numeric queries land"
    letters = dead_letters(world)
    assert len(letters) == 10, letters
    for headers in letters:
        assert "hw.route=conflicts" in headers, headers
        assert "mapper_parsing_exception" in headers or "failed to parse" in headers, headers


def route_lag(world, route: str) -> float:
    text = requests.get(f"http://127.0.0.1:{world['http']}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("headwater_router_consumer_lag{") and f'route="{route}"' in line)


def sink_retries(world, route: str) -> float:
    text = requests.get(f"http://127.0.0.1:{world['http']}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("headwater_sink_retries_total{") and f'route="{route}"' in line)


def test_opensearch_unreachable_for_30s_loses_nothing_and_other_routes_keep_flowing(world):
    """OpenSearch stopped as the router sees it: open connections cut, then refused for 30 s."""
    started = time.time()
    world["proxy"].stop()
    try:
        post(world, 0, 100)
        wait_for(lambda: len(s3_ids(world)) >= 100, "S3 keeps flowing while OpenSearch is unreachable", 25)
        wait_for(lambda: sink_retries(world, "search") > 0, "the search route retrying", 25)
        assert search_count(world) == 0, "nothing reached OpenSearch while it was unreachable"
        time.sleep(max(0.0, 30 - (time.time() - started)))
    finally:
        world["proxy"].start()
    expected = sum(1 for i in range(100) if i * 10 >= 100)
    wait_for(lambda: search_count(world) >= expected, "OpenSearch catches up", 150)
    time.sleep(2)
    assert search_count(world) == expected, "nothing lost, nothing doubled"
    assert sorted(s3_ids(world)) == sorted(f"e-{i}" for i in range(100)), "S3 unaffected"
    wait_for(lambda: route_lag(world, "search") == 0, "the search route's lag back to 0", 30)


def test_opensearch_down_for_30s_loses_nothing_and_other_routes_keep_flowing(world):
    pids = dict(line.split() for line in (ROOT / "target" / "services" / "pids").read_text().splitlines() if line.strip())
    pid = int(pids["opensearch"])
    started = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        post(world, 0, 100)
        wait_for(lambda: len(s3_ids(world)) >= 100, "S3 keeps flowing while OpenSearch is down", 25)
        time.sleep(max(0.0, 30 - (time.time() - started)))
    finally:
        os.kill(pid, signal.SIGCONT)
    expected = sum(1 for i in range(100) if i * 10 >= 100)
    wait_for(lambda: search_count(world) >= expected, "OpenSearch catches up", 150)
    time.sleep(2)
    assert search_count(world) == expected, "nothing lost, nothing doubled"
    wait_for(lambda: route_lag(world, "search") == 0, "the search route's lag back to 0", 30)
