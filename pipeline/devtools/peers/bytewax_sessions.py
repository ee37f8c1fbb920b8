"""Bytewax peer of `jump bench stream --workload sessions`: session windows over the source clicks.

Run by the harness as `python -m bytewax.run pipeline/devtools/peers/bytewax_sessions.py:flow -w 1`
(one worker) with the bench interpreter and the environment of common.Env. The flow, in Bytewax
0.21.1 terms:

    KafkaSource(tail=False)   # bounded: every partition read from the beginning to its end, then EOF
      -> map: msgpack decode (as the sessionizer decodes the value)
      -> key_on the user
      -> collect_window(EventClock(ts from the value, wait 0), SessionWindower(gap))
      -> map: JSON {ts: [...]} keyed by the user -> KafkaSink(output topic)

When a session closes (bytewax/operators/windowing.py, 0.21.1): the clock and the windower are kept
per key, so the watermark is the key's own largest event time (plus the system time elapsed since
it was seen, which over a benchmark run is seconds against a 1 h gap). A session closes when that
watermark - gap passes its last click, i.e. when the user's next click opens a new session
(rule "key" of sessions_workload.expected_closed) -- and at EOF the watermark jumps to the end of
time and every open session closes. The bounded run therefore closes every session (rule "all").

`to_system_utc` returns None: closes then happen on the key's next click or at EOF only -- the same
closes. Bytewax's default reads the next possible close (an event time, years in the past here) as
the system time to wake the key up at, so wake-ups are always due; in a 50,000-click trial on Tansu
it cost ~40 % more CPU per click (42 vs 30 µs) for the same output. Window state is in memory (no
recovery store configured); the sink is at-least-once.

The meter counts a message when the window operator reads its timestamp (the EventClock's
ts_getter runs once per item).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, SessionWindower, collect_window

from pipeline.devtools.peers.common import Env, Meter, decode

env = Env()
meter = Meter(env, "bytewax", version("bytewax"))
_CONF = {"fetch.wait.max.ms": "50"}  # Tansu answers a waiting fetch late (as JUMP_FETCH_MAX_WAIT_MS)


def _click(msg) -> tuple[float, str, str]:
    meter.first()
    obj = decode(msg.value)
    return float(obj["ts"]), str(obj["item"]), str(obj["user"])


def _event_time(click: tuple[float, str, str]) -> datetime:
    meter.tick()
    return datetime.fromtimestamp(click[0], tz=UTC)


def _record(key_window) -> KafkaSinkMessage:
    key, (_window_id, clicks) = key_window
    return KafkaSinkMessage(key.encode(), json.dumps({"ts": [c[0] for c in clicks]}).encode())


flow = Dataflow("jump-bench-sessions")
raw = op.input("clicks", flow, KafkaSource([env.bootstrap], [env.src], tail=False, add_config=_CONF))
clicks = op.map("decode", raw, _click)
keyed = op.key_on("user", clicks, lambda c: c[2])
clock = EventClock(_event_time, wait_for_system_duration=timedelta(0), to_system_utc=lambda t: None)
windows = collect_window("sessions", keyed, clock, SessionWindower(gap=timedelta(seconds=env.gap_s)))
op.output("out", op.map("encode", windows.down, _record), KafkaSink([env.bootstrap], env.out))
