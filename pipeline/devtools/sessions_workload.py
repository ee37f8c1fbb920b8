"""The sessionizing workload of `jump bench stream --workload sessions` (issue 13).

A deterministic click stream with many sessions open at once, as a real site has: `keys` users,
`clicks` clicks in all, each user's clicks in sessions separated by event-time gaps that are never
within [`unsure_lo`, `unsure_hi`] = [3000, 3700] s. Any contender whose closing gap lies in that
band (this project's 3600 s, Quix Streams' and Bytewax's one-hour windows, with or without a grace
of up to 100 s) therefore cuts exactly the same sessions; only *when* a session is declared closed
differs between their rules, and `expected_closed` says which sessions each rule has closed by the
end of the stream.

Shapes: `generate` -> list of `Click(key, item, ts, event_id)` sorted by event time (ties by key);
`sessions` -> {key: [[ts, ...] per session]}; `closed_sessions` / `expected_closed` -> the sessions
(count) a closing rule has closed at the end of the stream; `compare_sessions` -> exact differences.
Pure functions, no Kafka: the benchmark produces the clicks, the tests check the rules here.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

GAP_S = 3600.0  # the closing gap every contender uses (1 h)
UNSURE = (3000.0, 3700.0)  # no within-key gap falls here: every gap rule in this band agrees


class Click(NamedTuple):
    key: str
    item: str
    ts: float
    event_id: str


@dataclasses.dataclass(frozen=True)
class Workload:
    clicks: int = 200_000
    keys: int = 5_000
    partitions: int = 4
    items: int = 20_000
    seed: int = 0
    mean_session_clicks: float = 4.0  # geometric; ~clicks / 4 sessions
    within_mean_s: float = 90.0  # exponential gap inside a session, capped below UNSURE[0]
    between_mean_s: float = 4 * 3600.0  # exponential gap between sessions, added to UNSURE[1]
    start_spread_s: float = 6 * 3600.0  # users start uniformly over this span
    t0: float = 1_700_000_000.0  # first possible event time (Unix s)


def generate(w: Workload = Workload()) -> list[Click]:
    """`w.clicks` clicks over `w.keys` users, sorted by (ts, key): a deterministic function of `w`."""
    if w.clicks < w.keys or w.keys < 1:
        raise ValueError("need clicks >= keys >= 1")
    rng = np.random.default_rng(w.seed)
    per_key = np.full(w.keys, w.clicks // w.keys, dtype=np.int64)
    per_key[: w.clicks - int(per_key.sum())] += 1  # exactly w.clicks in all
    # Zipf-like item popularity over a fixed catalogue
    pop = 1.0 / np.arange(1, w.items + 1) ** 1.05
    pop /= pop.sum()
    out: list[Click] = []
    lo, hi = UNSURE
    for k in range(w.keys):
        n = int(per_key[k])
        key = f"u{k:05d}"
        t = w.t0 + float(rng.uniform(0.0, w.start_spread_s))
        # a new session starts after each click with probability 1 / mean_session_clicks
        new = rng.random(n) < 1.0 / w.mean_session_clicks
        within = np.minimum(rng.exponential(w.within_mean_s, n), lo - 1.0)
        between = hi + 1.0 + rng.exponential(w.between_mean_s, n)
        items = rng.choice(w.items, size=n, p=pop)
        for i in range(n):
            if i:
                t += float(between[i] if new[i] else within[i])
            out.append(Click(key, f"i{int(items[i])}", round(t, 3), f"{key}:{i}"))
    out.sort(key=lambda c: (c.ts, c.key))
    return out


def sessions(clicks: list[Click], gap_s: float = GAP_S) -> dict[str, list[list[float]]]:
    """Each key's sessions (their click times, in order) under `gap > gap_s` starts a new session."""
    by_key: dict[str, list[list[float]]] = {}
    for c in clicks:
        ss = by_key.setdefault(c.key, [])
        if not ss or c.ts - ss[-1][-1] > gap_s:
            ss.append([c.ts])
        else:
            ss[-1].append(c.ts)
    return by_key


def check_gaps(clicks: list[Click]) -> int:
    """Number of within-key gaps inside the unsure band (0 for `generate`'s output)."""
    last: dict[str, float] = {}
    bad = 0
    for c in clicks:
        if c.key in last and UNSURE[0] <= c.ts - last[c.key] <= UNSURE[1]:
            bad += 1
        last[c.key] = c.ts
    return bad


RULES = ("all", "key", "key_time", "partition_stream_time", "watermark")


def closed_sessions(
    clicks: list[Click], rule: str, partition_of=None, gap_s: float = GAP_S, grace_s: float = 0.0
) -> list[tuple[str, list[float]]]:
    """The sessions, as (key, [ts, ...]), a contender has closed once it has read every click, under its
    closing rule (key order, then time order):

    * "all": every session (a rule that flushes open sessions at the end of the input: a bounded
      Bytewax flow at EOF);
    * "key": a session closes when its key's next click starts a new one: all but each key's last
      session;
    * "key_time": a session closes once its key's own largest event time is more than
      2 * gap + grace past its last click, compared in whole milliseconds (Quix Streams 3.28
      session windows with closing_strategy="key": the session's exclusive end, last + 1 ms, must be
      <= the key's watermark - 2 * gap - grace). Not a superset of "key": a session followed by a
      short one stays open;
    * "partition_stream_time": "key", plus the last session when the partition's stream time (its
      largest event time so far) passes last + gap + grace (this project's sessionizer,
      `partition_of(key)` -> partition);
    * "watermark": "key", plus the last session when the largest event time seen by the whole stream
      passes last + gap + grace (one watermark over all partitions).
    """
    if rule not in RULES:
        raise ValueError(f"unknown closing rule {rule!r}")
    by_key = sessions(clicks, gap_s)
    if rule == "all":
        return [(k, s) for k, ss in by_key.items() for s in ss]
    if rule == "key_time":
        after_ms = round((2.0 * gap_s + grace_s) * 1000.0)
        out = []
        for k, ss in by_key.items():
            wm_ms = round(ss[-1][-1] * 1000.0)  # the key's largest event time (sessions are time-ordered)
            out.extend((k, s) for s in ss if wm_ms - round(s[-1] * 1000.0) > after_ms)
        return out
    out = [(k, s) for k, ss in by_key.items() for s in ss[:-1]]  # every session but each key's last one
    if rule == "key":
        return out
    if rule == "watermark":
        end = max(c.ts for c in clicks)
        return out + [(k, ss[-1]) for k, ss in by_key.items() if ss[-1][-1] + gap_s + grace_s < end]
    if partition_of is None:  # partition_stream_time
        raise ValueError("partition_stream_time needs partition_of")
    ends: dict[int, float] = {}
    for c in clicks:
        p = partition_of(c.key)
        ends[p] = max(ends.get(p, c.ts), c.ts)
    return out + [(k, ss[-1]) for k, ss in by_key.items() if ss[-1][-1] + gap_s + grace_s < ends[partition_of(k)]]


def expected_closed(
    clicks: list[Click], rule: str, partition_of=None, gap_s: float = GAP_S, grace_s: float = 0.0
) -> int:
    """Number of sessions a contender has closed once it has read every click, under its closing rule
    (one of RULES, defined at `closed_sessions`)."""
    return len(closed_sessions(clicks, rule, partition_of, gap_s, grace_s))


def compare_sessions(got: list[tuple[str, list[float]]], expected: list[tuple[str, list[float]]]) -> dict:
    """Exact comparison of closed sessions (key, click times), as multisets: `matched`, `missing`
    (expected, not emitted), `extra` (emitted, not expected: a wrong cut, or a duplicate) and up to
    three examples of each difference."""
    from collections import Counter

    want = Counter((k, tuple(ts)) for k, ts in expected)
    have = Counter((k, tuple(ts)) for k, ts in got)
    missing, extra = want - have, have - want
    return {
        "matched": sum((want & have).values()),
        "missing": sum(missing.values()),
        "extra": sum(extra.values()),
        "examples_missing": [[k, list(ts)] for k, ts in sorted(missing)[:3]],
        "examples_extra": [[k, list(ts)] for k, ts in sorted(extra)[:3]],
    }


def kafka_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key, positive, mod partitions), as every Java,
    librdkafka (consistent_random), kafka-python and aiokafka producer computes it for a keyed record."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions
