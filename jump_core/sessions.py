"""Sessionization and censored dwell time (JUMP §3.2, eq. 4) as pure functions.

This module is the single implementation used by offline preparation (`jump prepare`) and by
the stream's sessionizer, so train and serve cannot drift apart. Every function accepts plain
floats/lists (one click or one session, as the stream has them) or numpy arrays (millions of
clicks, as `jump prepare` has them) and applies the same rule elementwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

C1_DEFAULT = 2000.0  # s: users do not lose attention within c1 seconds of a click (§3.2, §5.2)
C2_DEFAULT = 30.0  # s: the dwell of a session's last click is at least c2 (§3.2, §5.2)
REDDIT_GAP = 3600.0  # s: REDDIT sessions are split by one hour of inactivity (§5.1)


def is_new_session(prev_ts, ts, gap: float | None):
    """True where a click at `ts` starts a new session after a click at `prev_ts` of the same key.

    The rule: inactivity strictly longer than `gap` seconds. `gap=None` means the data gives
    session ids and time never splits a session. Scalars or arrays (elementwise).
    """
    if isinstance(ts, float | int) and isinstance(prev_ts, float | int):  # the stream's case, per click
        return gap is not None and bool(ts - prev_ts > gap)
    if gap is None:
        return np.zeros(np.shape(ts), dtype=bool) if np.ndim(ts) else False
    return (np.asarray(ts) - np.asarray(prev_ts) > gap) if np.ndim(ts) else bool(ts - prev_ts > gap)


def session_starts(keys: np.ndarray, ts: np.ndarray, gap: float | None) -> np.ndarray:
    """Mark the first click of every session in clicks sorted by (key, ts): (N,) bool."""
    starts = np.ones(len(ts), dtype=bool)
    if len(ts) > 1:
        starts[1:] = (keys[1:] != keys[:-1]) | is_new_session(ts[:-1], ts[1:], gap)
    return starts


def session_id(key: str, start_ts: float) -> str:
    """Stable id of a session: its key and the millisecond Unix time of its first click."""
    return f"{key}@{round(start_ts * 1000)}"


def split_sessions(timestamps: Sequence[float], gap: float | None) -> list[tuple[int, int]]:
    """Split one key's time-sorted clicks into sessions: [start, end) index pairs."""
    ts = np.asarray(timestamps, dtype=np.float64)
    starts = np.flatnonzero(session_starts(np.zeros(len(ts), dtype=np.int8), ts, gap))
    ends = np.append(starts[1:], len(ts))
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def censor_gap(gap, c1: float = C1_DEFAULT):
    """Eq. 4 for a click that is not the last of its session, given Delta = t_{k+1} - t_k.

    Delta >= c1 means the user was distracted: the dwell is censored at c1, (c1, 1).
    Otherwise the dwell is observed: (Delta, 0). delta = 1 marks a censored observation (eq. 2).
    Scalars or arrays (elementwise). A negative or non-finite Delta is an error: clicks must
    be in time order.
    """
    g = np.asarray(gap, dtype=np.float64)
    # one pass each for min and max: a NaN makes the min comparison false, an inf the max check
    if g.size and not (g.min() >= 0 and np.isfinite(g.max())):
        raise ValueError(f"clicks must be in time order with finite times (gap {gap})")
    censored = g >= c1
    tau, delta = np.where(censored, float(c1), g), censored.astype(np.uint8)
    if g.ndim == 0:
        return float(tau), int(delta)
    return tau, delta


def censor(
    ts: Sequence[float], offsets: Sequence[int] | None = None, c1: float = C1_DEFAULT, c2: float = C2_DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """Censored dwell tuples (tau_k, delta_k) of eq. 4 for every click.

    `ts` holds the time-sorted clicks of one session, or of many sessions laid end to end with
    `offsets` (S+1,) marking their bounds. The last click of each session gets (c2, 1); every
    other click gets censor_gap(t_{k+1} - t_k, c1). Returns tau (N,) float64, delta (N,) uint8.
    """
    ts = np.asarray(ts, dtype=np.float64)
    n = len(ts)
    tau, delta = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.uint8)
    if offsets is None:  # one session (the stream's case, per closed session): the same, without masks
        if n:
            tau[:-1], delta[:-1] = censor_gap(ts[1:] - ts[:-1], c1)
            tau[-1], delta[-1] = float(c2), 1
        return tau, delta
    offsets = np.asarray(offsets, dtype=np.int64)
    last = np.zeros(n, dtype=bool)
    last[offsets[1:][offsets[1:] > offsets[:-1]] - 1] = True
    inner = np.flatnonzero(~last)
    tau[inner], delta[inner] = censor_gap(ts[inner + 1] - ts[inner], c1)
    tau[last], delta[last] = float(c2), 1
    return tau, delta
