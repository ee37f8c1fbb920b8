"""The sessionizer's rules, without Kafka: SessionizerCore on hand-made message batches.

(The same core runs inside the Faust agent; tests/integration/test_pipeline.py drives it through a real broker.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jump_core.data import readers
from jump_core.data.prepare import read_sessions
from pipeline import codec
from pipeline.config import Settings
from pipeline.core.sessionizer import Message, Session, SessionizerCore

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
REDDIT = DATA / "reddit" / "kaggle-head-sample" / "reddit_sample.csv"
NOW = 2_000_000_000.0


def settings(**kw):
    base = {
        "session_gap_s": 3600.0,
        "grace_s": 60.0,
        "idle_close_s": 10.0,
        "max_session_clicks": 1000,
        "context_clicks": 50,
    }
    base.update(kw)
    return Settings.from_env(env={}, **base)


class Feed:
    """Offsets per partition and a fake wall clock, for building message batches."""

    def __init__(self, core_settings=None, partitions=1):
        self.s = core_settings or settings()
        self.clock = [NOW]
        self.core = SessionizerCore(self.s, clock=lambda: self.clock[0])
        self.offsets = {}
        self.partitions = partitions

    def msg(self, key, item, ts, event_id=None, partition=0, raw=None, msg_key=None, topic=0):
        off = self.offsets.get((topic, partition), -1) + 1
        self.offsets[(topic, partition)] = off
        value = raw if raw is not None else codec.encode_click(key, item, ts, event_id)
        k = msg_key if msg_key is not None else (key.encode() if key is not None else None)
        return Message(topic, partition, off, k, value, NOW)

    def tick(self, partition=0):
        off = self.offsets.get((0, partition), -1) + 1
        self.offsets[(0, partition)] = off
        return Message(0, partition, off, codec.TICK_KEY, codec.encode("tick", {"tick": True, "wall_ts": 0.0}), NOW)


def logs(out):
    return [codec.decode("training_log", v) for _, _, v in out.training_log]


def requests(out):
    return [codec.decode("request", v) for _, _, v in out.requests]


def test_gap_closes_and_request_carries_prefix():
    f = Feed()
    out = f.core.process([f.msg("u", "a", 100.0), f.msg("u", "b", 160.0), f.msg("u", "c", 160.0 + 3601)])
    reqs = requests(out)
    assert [r["items"] for r in reqs] == [["a"], ["a", "b"], ["c"]]
    assert [r["position"] for r in reqs] == [0, 1, 0]
    assert reqs[0]["session_id"] == "u@100000" and reqs[2]["session_id"] == "u@3761000"
    (log,) = logs(out)
    assert log["items"] == ["a", "b"] and log["tau"] == [60.0, 30.0] and log["delta"] == [0, 1]
    assert log["close_reason"] == "gap" and log["n_clicks"] == 2
    assert out.counts == {"consumed": 3, "accepted": 3}


def test_context_cap_keeps_most_recent_clicks():
    f = Feed(settings(context_clicks=3))
    out = f.core.process([f.msg("u", str(i), 100.0 + i) for i in range(6)])
    assert requests(out)[-1]["items"] == ["3", "4", "5"]
    assert requests(out)[-1]["ts"] == [103.0, 104.0, 105.0]


def test_stream_time_closes_after_gap_plus_grace():
    f = Feed()
    out = f.core.process([f.msg("u", "a", 100.0), f.msg("v", "x", 100.0 + 3600 + 60)])
    assert logs(out) == []  # not yet: stream time == deadline
    out = f.core.process([f.msg("v", "y", 100.0 + 3600 + 61)])
    (log,) = logs(out)
    assert log["session_key"] == "u" and log["close_reason"] == "stream_time"


def test_out_of_order_within_grace_is_inserted_later_is_late():
    f = Feed()
    f.core.process([f.msg("u", "a", 100.0), f.msg("u", "c", 200.0)])
    out = f.core.process([f.msg("u", "b", 150.0)])  # 50 s behind, grace 60
    assert requests(out)[0]["items"] == ["a", "b"] and requests(out)[0]["position"] == 2
    f.core.process([f.msg("w", "q", 250.0)])  # stream time 250: 120 is 130 s behind
    late = f.msg("u", "z", 120.0)
    out = f.core.process([late])
    (dead,) = [codec.decode("dead_letter", v) for _, _, v in out.dead_letters]
    assert dead["reason"] == "late" and dead["value"] == late.value and dead["source_offset"] == late.offset
    log = logs(f.core.flush_all())
    assert [g["items"] for g in log if g["session_key"] == "u"] == [["a", "b", "c"]]


def test_duplicate_event_ids_dropped_and_counts_add_up():
    f = Feed(settings(max_session_clicks=3))
    batch = [
        f.msg("u", "a", 1.0, "e1"),
        f.msg("u", "a", 1.0, "e1"),
        f.msg("u", "b", 2.0, "e2"),
        f.msg("u", "c", 3.0, "e3"),
        f.msg("u", "d", 4.0, "e4"),  # 4th click: too long
        f.msg(None, None, 0, raw=b"\xc1garbage", msg_key=b"k"),
        f.msg("u", "x", float("nan"), "e5"),
        f.msg("v", "y", 5.0, msg_key=b"not-v"),
    ]
    out = f.core.process(batch)
    c = out.counts
    assert c["duplicates"] == 1 and c["rekeyed"] == 1 and c["accepted"] == 3
    assert out.dead_reasons == {"session_too_long": 1, "undecodable": 1, "bad_timestamp": 1}
    assert c["consumed"] == len(batch) == c["accepted"] + c["dead_lettered"] + c["duplicates"] + c["rekeyed"]
    assert out.rekeyed == [(None, b"v", batch[-1].value)]


def test_idle_tick_closes_partition_sessions():
    f = Feed()
    f.core.process([f.msg("u", "a", 1.0), f.msg("v", "b", 2.0, partition=1)])
    f.clock[0] += 5
    assert logs(f.core.process([f.tick(0)])) == []  # idle 5 s < 10 s
    f.clock[0] += 6
    out = f.core.process([f.tick(0)])
    assert [g["session_key"] for g in logs(out)] == ["u"] and logs(out)[0]["close_reason"] == "idle"
    assert f.core.open_sessions == 1 and out.counts == {"ticks": 1}


def _writes(out) -> list:
    """The agent's Table writes for one batch, in its order: states, meta records, deletions."""
    return (
        [(key, sess.pack()) for key, (_, sess) in out.state.items()]
        + [(key, raw) for key, raw in out.meta.values()]
        + [(key, None) for key in out.deletes]
    )


def _persist(table: dict, out, upto: int | None = None) -> None:
    """Apply the batch's first `upto` writes (all by default) to `table`, as the changelog has them."""
    for key, raw in _writes(out)[:upto]:
        if raw is None:
            table.pop(key, None)
        else:
            table[key] = raw


def test_restart_reprocessing_neither_loses_nor_duplicates():
    """A crash after some state writes: the restarted core replays from the committed offset."""
    f = Feed()
    msgs = [f.msg(k, f"i{n}", 10.0 * n) for n, k in enumerate("uvuvwuvw" * 3)]
    table: dict = {}
    out1 = f.core.process(msgs[:8])
    _persist(table, out1)
    for _p, (key, raw) in out1.meta.items():
        table[key] = raw
    out2 = f.core.process(msgs[8:16])
    # crash: only the state of key u from batch 2 reached the changelog, not its meta record
    table[b"u"] = out2.state[b"u"][1].pack()
    restarted = SessionizerCore(f.s, clock=lambda: NOW)
    restarted.load(table.items())
    out = restarted.process(msgs[8:])  # re-delivered from offset 8
    assert out.counts["replayed"] == 3  # u's clicks of batch 2
    log = logs(restarted.flush_all())
    clean = SessionizerCore(f.s, clock=lambda: NOW)
    clean.process(msgs)
    expected = logs(clean.flush_all())
    assert sorted((g["session_id"], g["items"]) for g in log) == sorted((g["session_id"], g["items"]) for g in expected)
    # every click got a request: the re-sent ones carry the same (session_id, position) keys
    seen = {(r["session_id"], r["position"]) for o in (out1, out2, out) for r in requests(o)}
    assert len(seen) == len(msgs)


def test_a_crash_at_any_write_of_a_closing_batch_loses_and_adds_no_session():
    """A session that gets its last clicks and closes (stream time) in the same batch: whatever
    prefix of that batch's Table writes reached the changelog, the restarted core replaying from
    the batch's first offset yields exactly the clean run's sessions (duplicates identical).
    Deleting the closed key before the meta record used to make the replayed clicks a new,
    extra session."""
    gap = 3600.0
    f = Feed()
    first = [f.msg("u", "a", 0.0), f.msg("u", "b", 10.0), f.msg("v", "x", 20.0)]
    # batch 2: u's tail (c, d), then v's next click far ahead: stream time closes u (v's first
    # session closes by gap)
    closing = [
        f.msg("u", "c", 30.0),
        f.msg("u", "d", 40.0),
        f.msg("v", "y", 40.0 + gap + 100),
        f.msg("w", "z", 50.0 + gap + 100),
    ]
    later = [f.msg("v", "y2", 60.0 + gap + 100), f.msg("u", "e", 10 * gap)]
    clean = SessionizerCore(f.s, clock=lambda: NOW)
    expected = logs(clean.process(first + closing + later)) + logs(clean.flush_all())
    want = {(g["session_id"], tuple(g["items"])) for g in expected}
    n_writes = None
    upto = 0
    while n_writes is None or upto <= n_writes:
        core = SessionizerCore(f.s, clock=lambda: NOW)
        table: dict = {}
        out1 = core.process(first)
        _persist(table, out1)
        out2 = core.process(closing)
        assert ["a", "b", "c", "d"] in [g["items"] for g in logs(out2)]  # u closed by stream time
        n_writes = len(_writes(out2))
        _persist(table, out2, upto)  # the crash: only the first `upto` writes of batch 2 persisted
        restarted = SessionizerCore(f.s, clock=lambda: NOW)
        restarted.load(table.items())
        got = logs(out1) + logs(out2) + logs(restarted.process(closing + later)) + logs(restarted.flush_all())
        sessions = {(g["session_id"], tuple(g["items"])) for g in got}
        assert sessions == want, f"crash after {upto} of {n_writes} writes"
        upto += 1
    assert n_writes >= 4  # u's final state, v and w's states, the meta record, u's deletion


def test_session_state_round_trip():
    s = Session("u@1", 3, ["a", "b"], [1.0, 2.0], ["e1", None], 2, [5, -1])
    assert Session.unpack(s.pack()) == s


def _stream(core_settings, clicks, batch=257):
    """Time-sorted clicks through the core in batches; all sessions flushed at the end."""
    f = Feed(core_settings, partitions=1)
    logs_ = []
    for i in range(0, len(clicks), batch):
        out = f.core.process([f.msg(k, it, ts) for k, it, ts in clicks[i : i + batch]])
        assert not out.dead_letters, [codec.decode("dead_letter", v)["detail"] for _, _, v in out.dead_letters]
        logs_ += logs(out)
    return logs_ + logs(f.core.flush_all())


def test_training_log_equals_offline_preparation_on_real_reddit_sample():
    if not REDDIT.exists():
        pytest.skip(f"real sample absent: {REDDIT}")
    clicks = list(readers.read_clicks("reddit", [REDDIT]))
    order = np.argsort(np.array([c[2] for c in clicks]), kind="stable")
    stream_logs = _stream(settings(max_session_clicks=10_000), [clicks[i] for i in order])
    raw = read_sessions("reddit", [str(REDDIT)], 3600.0, 2000.0, 30.0)
    offline = {}
    for s in range(len(raw.sessions)):
        d = raw.sessions.session(s)
        offline[d["session_id"]] = ([raw.item_names[i] for i in d["items"]], d["ts"], d["tau"], d["delta"])
    streamed = {g["session_id"]: (g["items"], g["ts"], g["tau"], g["delta"]) for g in stream_logs}
    assert len(streamed) == len(stream_logs) == len(offline) == 1861
    assert streamed == offline


def test_reload_keeps_partitions_owned_through_a_rebalance():
    """A Table rolled back by re-recovery must not roll back partitions this process kept."""
    f = Feed(partitions=2)
    first = f.core.process([f.msg("u", "a", 1.0, partition=0), f.msg("v", "b", 2.0, partition=1)])
    stale = {}
    _persist(stale, first)
    f.core.process([f.msg("u", "c", 3.0, partition=0), f.msg("v", "d", 4.0, partition=1)])
    f.core.load(stale.items(), keep={0})  # partition 0 kept, partition 1 newly assigned
    assert f.core.sessions[b"u"].items == ["a", "c"]  # in-memory state kept
    assert f.core.sessions[b"v"].items == ["b"]  # taken from the Table
