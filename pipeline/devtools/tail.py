"""`jump tail`: a topic's records (default: predictions) as JSON lines, the way a downstream
consumer sees them.

Reads every partition by manual assignment (no consumer group, no commits). Kafka settings come
from `pipeline.config.Settings.from_env()` (KAFKA_BOOTSTRAP_SERVERS, JUMP_TOPIC_*, ...).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from typing import IO

from .. import codec
from ..config import Settings
from ..runtime.kafka import kafka_errors_as_runtime, wait_for_broker


def _jsonable(obj):
    """A JSON-serialisable copy of a decoded record (bytes as base64 text)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (bytes, bytearray)) else _jsonable(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _key_text(key: bytes | None):
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii")


def _decoder(settings: Settings, topic: str):
    """raw value -> decoded object for `topic` (raises on undecodable values)."""
    kinds = {
        settings.topic_predictions: "prediction",
        settings.topic_training_log: "training_log",
        settings.topic_dead_letters: "dead_letter",
        settings.topic_requests: "request",
    }
    kind = kinds.get(topic)
    if kind is not None:
        return lambda raw: codec.decode(kind, raw)

    def any_map(raw: bytes):
        if raw is None:
            return None
        if raw.lstrip()[:1] == b"{":
            return json.loads(raw)
        return codec.unpack(raw)

    return any_map


def record_line(record, decode) -> str:
    """One JSON line for a ConsumerRecord: topic, partition, offset, timestamp_ms, key, value
    (decoded), or error plus the raw value in base64 when it does not decode."""
    out = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp,
        "key": _key_text(record.key),
    }
    try:
        out["value"] = _jsonable(decode(record.value))
    except Exception as e:
        out["error"] = f"undecodable value: {type(e).__name__}: {e}"
        out["value"] = _jsonable(record.value)
    return json.dumps(out, ensure_ascii=False, default=str)


def assign_all(consumer, topic: str, timeout_s: float = 10.0) -> list:
    from kafka import TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} does not exist")
        time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps


def _seek_to_true_end(consumer, tps: list, timeout_s: float = 5.0) -> None:
    """Seek to the end of each partition by the fetch high watermark: Tansu's ListOffsets answers
    the base offset of the last batch, so `seek_to_end` alone would re-read that batch. Records
    that arrive during this warm-up (well under a second) are skipped, as a tail does."""
    consumer.seek_to_end(*tps)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=100)
        if all(consumer.highwater(tp) is not None for tp in tps):
            break
    for tp in tps:
        hw = consumer.highwater(tp)
        if hw is not None:
            consumer.seek(tp, hw)


def tail(
    settings: Settings,
    *,
    topic: str | None = None,
    from_beginning: bool = False,
    max_records: int | None = None,
    timeout_s: float | None = None,
    out: IO[str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Print the records of `topic` (default: predictions) as JSON lines; returns how many.

    Reads every partition by manual assignment (no consumer group, no commits). Stops after
    `max_records`, or after `timeout_s` without a record (None: run until interrupted).
    `on_ready` is called once the start positions are set (records produced after it are printed).
    """
    from kafka import KafkaConsumer

    out = sys.stdout if out is None else out
    topic = topic or settings.topic_predictions
    if max_records is not None and max_records <= 0:
        return 0
    decode = _decoder(settings, topic)
    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(),
        client_id=f"{settings.app_id}-tail",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    printed = 0
    try:
        tps = assign_all(consumer, topic)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            _seek_to_true_end(consumer, tps)
        if on_ready is not None:
            on_ready()
        last = time.monotonic()
        while True:
            wait_ms = 500 if timeout_s is None else max(1, int(min(0.5, timeout_s) * 1000))
            batches = consumer.poll(timeout_ms=wait_ms)
            records = [r for tp in sorted(batches, key=lambda tp: tp.partition) for r in batches[tp]]
            for r in records:
                out.write(record_line(r, decode) + "\n")
                printed += 1
                if max_records is not None and printed >= max_records:
                    out.flush()
                    return printed
            if records:
                out.flush()
                last = time.monotonic()
            elif timeout_s is not None and time.monotonic() - last >= timeout_s:
                return printed
    except KeyboardInterrupt:
        return printed
    finally:
        consumer.close()


# --------------------------------------------------------------------------- CLI


def add_tail(subparsers) -> None:
    p = subparsers.add_parser(
        "tail",
        help="print a topic's records as JSON lines (default: predictions)",
        description="Read every partition of a topic (no consumer group) and print one JSON line per record: "
        "topic, partition, offset, timestamp_ms, key, value (decoded; bytes as base64).",
    )
    p.add_argument("--topic", default=None, help="topic (default: $JUMP_TOPIC_PREDICTIONS)")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not at the end")
    p.add_argument("--max", dest="max_records", type=int, default=None, help="stop after N records")
    p.add_argument("--timeout", type=float, default=None, help="stop after S seconds without a record")
    p.set_defaults(func=cmd_tail)


def cmd_tail(a) -> int:
    settings = Settings.from_env()
    wait_for_broker(settings, say=lambda line: print(f"jump tail: {line}", file=sys.stderr))
    n = kafka_errors_as_runtime(
        lambda: tail(
            settings, topic=a.topic, from_beginning=a.from_beginning, max_records=a.max_records, timeout_s=a.timeout
        )
    )
    print(f"{n} record(s)", file=sys.stderr)
    return 0
