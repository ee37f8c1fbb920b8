"""Malformed input at scale through a running sessionizer (issue 14, item 6): every message is dead-lettered
with a reason, the worker does not crash, and the counts add up.

Starts an embedded broker (or uses $KAFKA_BOOTSTRAP_SERVERS), creates the topics, starts `jump sessionizer`
as deployed (its own process), produces N seeded malformed click records of every kind (random bytes,
non-map values, missing fields, wrong types, NaN / infinite / negative / far-future times, deep nesting,
1 MB values, odd unicode keys, a foreign schema), waits for N dead letters, then checks the worker's
metrics and prints a table by reason (and --json).

    .venv/bin/python scripts/fuzz_stream.py --messages 10000 --json runs/fuzz/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgpack

from pipeline import codec
from pipeline.config import Settings
from pipeline.devtools import procs
from pipeline.devtools.broker import EmbeddedBroker, free_port
from pipeline.runtime.kafka import ensure_topics

NOW = time.time()
ODD_KEYS = ["\u202e", "\U0001f600", "\x00", "ts\u200b", "\uff35ser", "user ", "", "\ud7ff"]


def deep(n: int):
    v = 0
    for _ in range(n):
        v = [v]
    return v


def malformed(rng: random.Random, i: int) -> tuple[str, bytes]:
    """(kind, value) for message i: never a usable click."""
    kind = [
        "random_bytes",
        "not_a_map",
        "missing_field",
        "wrong_type",
        "bad_ts",
        "deep_nesting",
        "huge_value",
        "odd_keys",
        "foreign_schema",
        "json_garbage",
    ][i % 10]
    pack = msgpack.packb
    if kind == "random_bytes":
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        return kind, data if not data.lstrip().startswith((b"{", b"[")) else b"\xc1" + data
    if kind == "not_a_map":
        return kind, pack(rng.choice([[1, 2], "user", 3.5, None, True, {"a": 1}.keys().__len__()]))
    if kind == "missing_field":
        full = {"user": f"u{i}", "item": "i", "ts": NOW}
        full.pop(rng.choice(list(full)))
        return kind, pack(full)
    if kind == "wrong_type":
        field, bad = rng.choice(
            [
                ("user", [1]),
                ("user", {"a": 1}),
                ("user", True),
                ("item", 1.5),
                ("ts", "now"),
                ("ts", True),
                ("user", "x" * 300),
            ]
        )
        rec = {"user": f"u{i}", "item": "i", "ts": NOW, field: bad}
        return kind, pack(rec) if not isinstance(bad, float) else json.dumps(rec).encode()
    if kind == "bad_ts":
        ts = rng.choice([float("nan"), float("inf"), -1.0, 1e308, NOW + 1e9])
        return kind, pack({"user": f"u{i}", "item": "i", "ts": ts})
    if kind == "deep_nesting":
        return kind, pack({"user": deep(rng.randint(100, 500)), "item": "i", "ts": NOW})
    if kind == "huge_value":  # one in 20 is a full megabyte, the others 64 KiB
        size = (1 << 20) if i % 200 == 6 else (1 << 16)
        return kind, pack({"user": "u" * size, "item": "i", "ts": NOW})
    if kind == "odd_keys":
        return kind, pack({rng.choice(ODD_KEYS): f"u{i}", "item": "i", "ts": NOW, rng.choice(ODD_KEYS): None})
    if kind == "foreign_schema":
        return kind, pack({"schema": rng.choice([0, 2, "1", 99]), "user": f"u{i}", "item": "i", "ts": NOW})
    return kind, b"{" + bytes(rng.getrandbits(7) for _ in range(rng.randint(0, 50)))


def run(bootstrap: str, n: int, seed: int, work: Path, timeout_s: float) -> dict:
    from kafka import KafkaConsumer, KafkaProducer

    token = f"fuzz-{seed}-{int(time.time())}"
    s = Settings.from_env(
        env={},
        bootstrap_servers=bootstrap,
        app_id=f"jump-{token}",
        topic_clicks=f"clicks-{token}",
        topic_dead_letters=f"dead-{token}",
        topic_requests=f"req-{token}",
        topic_training_log=f"log-{token}",
        topic_rekeyed=f"rekey-{token}",
        data_dir=str(work / "faust"),
        metrics_port=free_port(),
    )
    ensure_topics(s)
    log = work / "sessionizer.log"
    worker = procs.start_worker("sessionizer", s, log)
    procs.wait_metrics(s.metrics_port, worker, timeout_s=90, log_path=log)
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 << 20, linger_ms=5, acks="all")
    kinds, sent_bytes = Counter(), 0
    t0 = time.time()
    for i in range(n):
        kind, value = malformed(rng, i)
        key = rng.choice([None, b"", f"u{i}".encode(), bytes(rng.getrandbits(8) for _ in range(8))])
        producer.send(s.topic_clicks, key=key, value=value)
        kinds[kind] += 1
        sent_bytes += len(value)
    producer.flush()
    produce_s = time.time() - t0
    reasons, dead = Counter(), 0
    consumer = KafkaConsumer(
        s.topic_dead_letters,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    deadline = time.time() + timeout_s
    while dead < n and time.time() < deadline and worker.poll() is None:
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                d = codec.decode("dead_letter", r.value)
                reasons[d["reason"]] += 1
                dead += 1
    consumer.close()
    alive = worker.poll() is None
    m = procs.scrape(s.metrics_port) if alive else {}
    procs.stop(worker)
    consumed = procs.metric_sum(m, "jump_clicks_consumed_total")
    dead_metric = procs.metric_sum(m, "jump_dead_letters_total")
    accepted = procs.metric_sum(m, "jump_clicks_accepted_total")
    return {
        "messages": n,
        "seed": seed,
        "bytes_sent": sent_bytes,
        "kinds": dict(kinds),
        "dead_letters_read": dead,
        "dead_letter_reasons": dict(reasons),
        "worker_alive_at_end": alive,
        "metrics": {"consumed": consumed, "dead_letters": dead_metric, "accepted": accepted},
        "all_dead_lettered": dead == n and consumed == n == dead_metric and accepted == 0,
        "produce_seconds": round(produce_s, 1),
        "seconds": round(time.time() - t0, 1),
        "worker_log": str(log),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jump-fuzz-"))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if bootstrap else EmbeddedBroker(log_path=str(work / "tansu.log")).start()
    try:
        r = run(bootstrap or broker.bootstrap, a.messages, a.seed, work, a.timeout)
    finally:
        if broker is not None:
            broker.stop()
    print(f"{r['messages']:,} malformed messages ({r['bytes_sent'] / 2**20:.1f} MiB) in {r['seconds']} s")
    print("| reason | dead letters |\n|---|---:|")
    for reason, count in sorted(r["dead_letter_reasons"].items(), key=lambda kv: -kv[1]):
        print(f"| {reason} | {count:,} |")
    print(
        f"worker alive at the end: {r['worker_alive_at_end']}; consumed {r['metrics']['consumed']:,.0f}, "
        f"dead letters {r['metrics']['dead_letters']:,.0f} (read back {r['dead_letters_read']:,}), "
        f"accepted {r['metrics']['accepted']:,.0f}"
    )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(r, indent=2))
    ok = r["all_dead_lettered"] and r["worker_alive_at_end"]
    print("OK: every message dead-lettered with a reason" if ok else f"FAILED (log: {r['worker_log']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
