#!/usr/bin/env python3
"""Failover time of a replicated Kafka-protocol cluster, as a producer sees it.

usage: bench-failover.py BOOTSTRAP TOPIC ID=PID[,ID=PID...] [--rate N] [--warmup S] [--limit S]

An idempotent acks=all producer (confluent-kafka) sends small records to partition 0 of TOPIC at
a steady rate. After the warm-up (every record acknowledged), the broker leading partition 0
(from Metadata) is killed with SIGKILL. The failover time is from the kill to the first
acknowledgement of a record *sent after the kill*: what a client waits before the partition
takes writes again (its retries and metadata refreshes included). Prints one line:
"failover_ms=... killed=ID sent=... acked=... failed=..."; a record not acknowledged within
--limit seconds of the kill counts as failed, and any failure exits 1 (nothing acknowledged may
be lost, and an idempotent producer retries through a leader change).
"""
import argparse
import os
import signal
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient


def leader_of(bootstrap, topic, deadline):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is not None and t.error is None and 0 in t.partitions and t.partitions[0].leader >= 0:
            return t.partitions[0].leader
        time.sleep(0.1)
    raise SystemExit(f"no leader of {topic}/0 in Metadata")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("pids", help="broker id to pid: 1=123,2=456,3=789")
    ap.add_argument("--rate", type=int, default=1000, help="records per second")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--limit", type=float, default=60.0)
    args = ap.parse_args()
    pids = {int(k): int(v) for k, v in (p.split("=") for p in args.pids.split(","))}

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "message.timeout.ms": int(args.limit * 1000),
        "retry.backoff.ms": 50,
        "retry.backoff.max.ms": 200,
        # librdkafka's own account of the failover on stderr (e.g. "metadata,topic,eos").
        **({"debug": os.environ["BENCH_FAILOVER_DEBUG"]} if os.environ.get("BENCH_FAILOVER_DEBUG") else {}),
    })
    state = {"sent": 0, "acked": 0, "failed": 0, "kill": None, "first_after": None}

    def delivered(err, msg, sent_at):
        if err is not None:
            state["failed"] += 1
            print(f"delivery failed: {err}", file=sys.stderr)
            return
        state["acked"] += 1
        kill = state["kill"]
        if kill is not None and sent_at >= kill and state["first_after"] is None:
            state["first_after"] = time.monotonic()

    def send():
        now = time.monotonic()
        producer.produce(args.topic, value=b"x" * 100, partition=0,
                         on_delivery=lambda err, msg, t=now: delivered(err, msg, t))
        state["sent"] += 1

    interval = 1.0 / args.rate
    start = time.monotonic()
    next_send = start
    killed = None
    while True:
        now = time.monotonic()
        if killed is None and now - start >= args.warmup:
            producer.flush(10)
            if state["acked"] != state["sent"]:
                raise SystemExit(f"warm-up: {state['acked']} of {state['sent']} acknowledged")
            killed = leader_of(args.bootstrap, args.topic, now + 10)
            os.kill(pids[killed], signal.SIGKILL)
            state["kill"] = time.monotonic()
            next_send = state["kill"]
        if state["first_after"] is not None:
            break
        if state["kill"] is not None and now - state["kill"] > args.limit:
            break
        if now >= next_send:
            send()
            next_send += interval
        producer.poll(min(0.001, max(0.0, next_send - time.monotonic())))
    producer.flush(args.limit)
    unacked = state["sent"] - state["acked"] - state["failed"]
    failover = state["first_after"]
    ms = "none" if failover is None else f"{(failover - state['kill']) * 1000:.0f}"
    print(f"failover_ms={ms} killed={killed} sent={state['sent']} acked={state['acked']} "
          f"failed={state['failed'] + unacked}")
    return 0 if failover is not None and state["failed"] + unacked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
