"""Closed sessions as the sessionizer logs them, from the synthetic generator (trainer tests)."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from jump_core.data.prepare import read_sessions
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.training.continual import LoggedSession


@lru_cache(maxsize=4)
def logged_sessions(clicks: int = 20_000, seed: int = 5) -> tuple[LoggedSession, ...]:
    """Every session (length >= 1) of a synthetic clickstream, with eq. 4's (tau, delta), by end time."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clicks.csv"
        write_csv(SynthConfig(clicks=clicks, seed=seed), path)
        raw = read_sessions(
            "csv",
            [str(path)],
            3600.0,
            2000.0,
            30.0,
            options={"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"},
        )
    out = []
    for k in range(len(raw.sessions)):
        s = raw.sessions.session(k)
        out.append(
            LoggedSession(
                s["session_id"],
                tuple(raw.item_names[i] for i in s["items"]),
                tuple(s["ts"]),
                tuple(s["tau"]),
                tuple(int(d) for d in s["delta"]),
            )
        )
    return tuple(sorted(out, key=lambda s: (s.end_ts, s.session_id)))


def as_record(s: LoggedSession, close_reason: str = "gap") -> dict:
    """The training_log record of a session (codec fields, without schema)."""
    return {
        "session_key": s.session_id.rsplit("@", 1)[0],
        "session_id": s.session_id,
        "start_ts": s.ts[0],
        "end_ts": s.ts[-1],
        "n_clicks": len(s.items),
        "items": list(s.items),
        "ts": list(s.ts),
        "tau": list(s.tau),
        "delta": list(s.delta),
        "close_reason": close_reason,
    }
