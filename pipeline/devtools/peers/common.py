"""What every peer script shares: its settings (environment), the value decoder and the meter.

Environment (set by pipeline/devtools/sessions_bench.py): BENCH_BOOTSTRAP (host:port), BENCH_SRC (the
source topic), BENCH_OUT (the output topic), BENCH_N (clicks in the source topic), BENCH_GROUP
(consumer group / flow id), BENCH_GAP_S, BENCH_GRACE_S, BENCH_STATE_DIR, BENCH_RESULT (the path of
the JSON result file).

The meter defines the figures the harness turns into events/s and CPU per click, the same way for
every peer: `t_first` is the wall time at which the first source message was consumed (decoded),
`t_n` the wall time at which the N-th source message had been handed to the session window
operator, and `cpu_first` / `cpu_n` the process's CPU time (`time.process_time()`: user + system of
every thread, librdkafka's included) at those two moments.
"""

from __future__ import annotations

import json
import os
import time

import msgpack


class Env:
    def __init__(self, environ=os.environ):
        self.bootstrap = environ["BENCH_BOOTSTRAP"]
        self.src = environ["BENCH_SRC"]
        self.out = environ["BENCH_OUT"]
        self.n = int(environ["BENCH_N"])
        self.group = environ["BENCH_GROUP"]
        self.gap_s = float(environ["BENCH_GAP_S"])
        self.grace_s = float(environ.get("BENCH_GRACE_S", "0"))
        self.state_dir = environ.get("BENCH_STATE_DIR", "")
        self.result = environ["BENCH_RESULT"]


def decode(raw: bytes) -> dict:
    """A click value as the project's sessionizer reads it (pipeline.codec: msgpack map, `raw=False`,
    `strict_map_key=False`); raises on anything else, as the benchmark's source holds only clicks."""
    obj = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if not isinstance(obj, dict):
        raise ValueError(f"value is a {type(obj).__name__}, expected a map")
    return obj


class Meter:
    """Counts source messages; samples wall and CPU time at the first one and at the N-th, then writes
    the result file once (see the module docstring)."""

    def __init__(self, env: Env, framework: str, version: str):
        self.env, self.count = env, 0
        self.t_first = self.cpu_first = self.t_n = self.cpu_n = None
        self.info = {"framework": framework, "version": version}

    def first(self) -> None:
        if self.t_first is None:
            self.t_first, self.cpu_first = time.time(), time.process_time()

    def tick(self) -> bool:
        """One more message through; True exactly when it is the N-th."""
        self.first()
        self.count += 1
        if self.count != self.env.n:
            return False
        self.t_n, self.cpu_n = time.time(), time.process_time()
        self.write()
        return True

    def write(self, **extra) -> None:
        out = {
            **self.info,
            "n": self.env.n,
            "consumed": self.count,
            "t_first": self.t_first,
            "t_n": self.t_n,
            "cpu_first": self.cpu_first,
            "cpu_n": self.cpu_n,
            **extra,
        }
        tmp = self.env.result + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, self.env.result)  # the harness never reads a half-written file
