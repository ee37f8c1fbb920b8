"""`jump replay`: a click file (any `jump prepare` format) produced to the clicks topic, in event-time
order, optionally paced by event time.

Kafka settings come from `pipeline.config.Settings.from_env()` (KAFKA_BOOTSTRAP_SERVERS,
JUMP_TOPIC_CLICKS, ...). The demo and the tests replay through `replay(...)`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from jump_core.cli import add_csv_options, reader_options_from_args

from ..config import Settings
from ..runtime.kafka import ensure_topics, kafka_errors_as_runtime, wait_for_broker

#: reader options that are not format options (key_kind() rejects them)
_READ_ONLY_OPTIONS = ("skip_bad",)


def _topic_exists(settings: Settings, topic: str) -> bool:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_python_kwargs(), client_id=f"{settings.app_id}-tools")
    try:
        return topic in set(admin.list_topics())
    finally:
        admin.close()


def _ensure_clicks_topic(settings: Settings) -> None:
    """The clicks topic must exist with JUMP_PARTITIONS partitions (many clusters do not auto-create
    topics; Tansu would create it with 4 on the producer's first send)."""
    if _topic_exists(settings, settings.topic_clicks):
        return
    if not settings.create_topics:
        raise RuntimeError(
            f"topic {settings.topic_clicks} does not exist (create it with `jump topics`, "
            "or set JUMP_CREATE_TOPICS=true)"
        )
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
    return (
        np.frombuffer(kc, dtype=np.int64),
        list(key_ids),
        np.frombuffer(ic, dtype=np.int64),
        list(item_ids),
        np.frombuffer(ts, dtype=np.float64),
    )


# --------------------------------------------------------------------------- replay


def replay(
    settings: Settings,
    fmt: str,
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    speed: float | None = None,
    key_field: str | None = None,
    limit: int | None = None,
    json_every: int = 0,
    event_id_prefix: str | None = None,
    progress: bool = True,
    reader_options: dict | None = None,
) -> dict:
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

    from ..codec import encode_click

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
    stats: dict[str, Any] = {
        "clicks": n,
        "topic": settings.topic_clicks,
        "key_field": key_field,
        "event_id_prefix": prefix,
        "seconds": 0.0,
        "clicks_per_s": 0.0,
        "first_ts": float(ts[order[0]]) if n else None,
        "last_ts": float(ts[order[-1]]) if n else None,
    }
    if n == 0:
        return stats
    key_bytes = [k.encode("utf-8") for k in keys]

    _ensure_clicks_topic(settings)
    producer = KafkaProducer(
        **settings.kafka_python_kwargs(),
        client_id=f"{settings.app_id}-replay",
        enable_idempotence=False,  # Tansu (and some clusters) lack it
        acks=1,
        linger_ms=5,
        batch_size=256 * 1024,
        retries=5,
        max_in_flight_requests_per_connection=1,
    )  # keep order across retries
    errors: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        errors.append(exc)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"replay -> {settings.topic_clicks}", unit="click", file=sys.stderr, mininterval=0.5)
    t0 = time.monotonic()
    ts0 = float(ts[order[0]])
    step = 0
    chunk = 65536  # python lists per chunk, not per replay (memory)
    try:
        for start in range(0, n, chunk):
            idx = order[start : start + chunk]
            c_keys, c_items, c_ts = kcodes[idx].tolist(), icodes[idx].tolist(), ts[idx].tolist()
            for j, (k, it, t) in enumerate(zip(c_keys, c_items, c_ts)):
                i = start + j
                if speed is not None:
                    wait = (t - ts0) / speed - (time.monotonic() - t0)
                    if wait > 0.002:
                        producer.flush()  # what is due is on the wire before we sleep
                        time.sleep(wait)
                value = encode_click(
                    keys[k],
                    items[it],
                    t,
                    f"{prefix}:{i}",
                    key_field,
                    fmt="json" if json_every and i % json_every == 0 else "msgpack",
                )
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


# --------------------------------------------------------------------------- CLI


def add_replay(subparsers) -> None:
    from jump_core.data.readers import FORMATS

    p = subparsers.add_parser(
        "replay",
        help="produce a click file to the clicks topic, in event-time order",
        description="Read clicks (any `jump prepare` format), sort them by time and produce them to the clicks "
        "topic ($JUMP_TOPIC_CLICKS at $KAFKA_BOOTSTRAP_SERVERS), keyed by session key.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="input file(s) (.gz read transparently)")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--speed",
        type=float,
        default=None,
        help="pace by event time at this many times real time (e.g. 60: an hour per minute)",
    )
    g.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    p.add_argument("--limit", type=int, default=None, help="send only the first N clicks in time order")
    p.add_argument("--json-every", type=int, default=0, help="write every N-th value as JSON (0: all msgpack)")
    p.add_argument(
        "--key-field",
        choices=("user", "session"),
        default=None,
        help="value field holding the key (default: the format's key kind)",
    )
    p.add_argument("--event-id-prefix", default=None, help="event ids are PREFIX:i (default: the first file's name)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows instead of failing")
    p.add_argument("--no-progress", action="store_true")
    add_csv_options(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(a) -> int:
    settings = Settings.from_env()
    wait_for_broker(settings, say=lambda line: print(f"jump replay: {line}", file=sys.stderr))
    stats = kafka_errors_as_runtime(
        lambda: replay(
            settings,
            a.fmt,
            a.inputs,
            speed=a.speed,
            key_field=a.key_field,
            limit=a.limit,
            json_every=a.json_every,
            event_id_prefix=a.event_id_prefix,
            progress=not a.no_progress,
            reader_options=reader_options_from_args(a),
        )
    )
    print(json.dumps(stats, indent=2))
    return 0
