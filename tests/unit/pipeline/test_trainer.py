"""The trainer without Kafka (pipeline/core/trainer.py, TrainerCore): counts, triggers, promoted /
rejected / failed runs, records that fit the codec and the AsyncAPI schemas.

The trainer and inference processes on a broker are tests/integration/test_trainer_loop.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from jump_core.artifacts.model_store import ModelStore
from pipeline import codec, metrics
from pipeline.codec import Msg
from pipeline.core.trainer import TrainerCore
from tests.helpers.continual import as_record, logged_sessions
from tests.helpers.stream import TRAINER, make_settings
from tests.unit.deploy.test_asyncapi import check, schema_of

pytestmark = pytest.mark.timeout(300)
SESSIONS = [s for s in logged_sessions() if len(s.items) > 1]


def msgs(records, topic="jump-training-log", start=0):
    return [
        Msg(
            topic,
            0,
            start + k,
            (r.get("session_id") or "x").encode() if isinstance(r, dict) else None,
            codec.encode("training_log", r) if isinstance(r, dict) else r,
            0.0,
        )
        for k, r in enumerate(records)
    ]


def counter(c, *labels) -> float:
    return (c.labels(*labels) if labels else c)._value.get()


class Clock:
    def __init__(self):
        self.t = 1_700_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def core(tmp_path):
    s = make_settings("127.0.0.1:1", "core", tmp_path, **TRAINER)
    return TrainerCore(s, ModelStore(s.model_dir, 3), clock=Clock())


def test_ingest_counts_add_up_and_bad_records_are_dead_lettered(core):
    before = [
        counter(metrics.trainer_consumed),
        counter(metrics.trainer_windowed),
        counter(metrics.trainer_skipped, "duplicate"),
        counter(metrics.trainer_skipped, "too_short"),
        counter(metrics.dead_letters, "bad_training_log"),
    ]
    single = next(s for s in logged_sessions() if len(s.items) == 1)
    good = [as_record(s) for s in SESSIONS[:50]]
    broken = {**good[0], "session_id": "broken", "tau": good[0]["tau"][:-1]}
    batch = [*msgs(good + good[:5] + [as_record(single), broken]), Msg("t", 1, 9, None, b"\xc1junk", 0.0)]
    dead = core.ingest(batch)
    after = [
        counter(metrics.trainer_consumed),
        counter(metrics.trainer_windowed),
        counter(metrics.trainer_skipped, "duplicate"),
        counter(metrics.trainer_skipped, "too_short"),
        counter(metrics.dead_letters, "bad_training_log"),
    ]
    consumed, windowed, dup, short, bad = (a - b for a, b in zip(after, before))
    assert (consumed, windowed, dup, short, bad) == (58, 50, 5, 1, 2)
    assert consumed == windowed + dup + short + bad
    assert len(core.window) == 50 and len(dead) == 2
    for topic, key, value, headers in dead:
        rec = codec.decode("dead_letter", value)
        assert topic == core.s.topic_dead_letters and rec["reason"] == "bad_training_log"
        assert check(rec, schema_of("dead_letter")) == []
        assert key == rec["key"] and dict(headers)["jump-id"] == codec.identity("dead_letter", rec).encode()
    assert {codec.decode("dead_letter", v)["source_offset"] for _, _, v, _ in dead} == {56, 9}


def test_ingest_reads_json_training_log_records(core):
    """JUMP_OUTPUT_FORMAT=json: the trainer reads the JSON training log like the msgpack one."""
    records = [as_record(s) for s in SESSIONS[:20]]
    raw = [codec.encode("training_log", r, "json") for r in records]
    assert all(v[:1] == b"{" for v in raw)
    assert core.ingest([Msg("jump-training-log", 0, k, None, v, 0.0) for k, v in enumerate(raw)]) == []
    assert len(core.window) == 20


def test_runs_are_triggered_by_new_sessions_or_by_time(core):
    core.ingest(msgs([as_record(s) for s in SESSIONS[:399]]))
    assert core.due() is None  # below JUMP_TRAINER_MIN_SESSIONS
    core.ingest(msgs([as_record(s) for s in SESSIONS[399:700]]))
    assert core.due() is None  # 700 new < 800, and no time passed
    core.clock.t += 3600
    assert core.due() == "time"
    core.ingest(msgs([as_record(s) for s in SESSIONS[700:800]]))
    assert core.due() == "sessions"
    core.new_sessions = 0
    assert core.due() is None  # nothing new: no run, however long ago


def test_a_first_run_promotes_then_a_worse_candidate_is_rejected(core):
    core.s = replace(core.s, trainer_epochs=3, trainer_lr=0.01)  # a first model clearly better than an untrained one
    core.ingest(msgs([as_record(s) for s in SESSIONS[:1500]]))
    update, rec = core.run("sessions")
    assert rec["result"] == "promoted" and rec["mode"] == "initial" and rec["serving_version"] is None
    assert update["version"] == rec["candidate_version"] == core.serving[2] == core.store.current()["version"]
    for kind, r in (("model_update", update), ("training_metrics", rec)):
        obj = codec.decode(kind, codec.encode(kind, r))
        assert check(obj, schema_of(kind)) == [], obj
    assert core.new_sessions == 0 and rec["sessions_train"] + rec["sessions_holdout"] <= 1500
    # a candidate that cannot learn (learning rate ~ 0, retrained from scratch) loses and is not published
    core.s = replace(core.s, trainer_mode="retrain", trainer_lr=1e-9)
    update2, rec2 = core.run("time")
    assert update2 is None and rec2["result"] == "rejected" and rec2["candidate_version"] is None
    assert rec2["candidate_recall20"] < rec2["serving_recall20"] - core.s.trainer_margin
    assert core.store.current() == update and [seq for seq, _ in core.store.checkpoints()] == [1]
    assert (
        check(codec.decode("training_metrics", codec.encode("training_metrics", rec2)), schema_of("training_metrics"))
        == []
    )


def test_a_failed_run_is_reported_and_changes_nothing(core, monkeypatch):
    import pipeline.core.trainer as trainer

    core.ingest(msgs([as_record(s) for s in SESSIONS[:500]]))
    failed = counter(metrics.trainer_runs, "failed")

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(trainer, "train_candidate", boom)
    update, rec = core.run("sessions")
    assert update is None and rec["result"] == "failed" and "out of memory" in rec["reason"]
    assert counter(metrics.trainer_runs, "failed") == failed + 1 and core.store.current() is None
    assert (
        check(codec.decode("training_metrics", codec.encode("training_metrics", rec)), schema_of("training_metrics"))
        == []
    )


def test_training_thread_passes_its_exception_to_the_loop():
    """A failing training run must fail the awaiting loop, not leave it waiting forever."""
    import asyncio

    from pipeline.runtime.trainer import _in_thread

    def boom():
        raise ValueError("bad run")

    async def main():
        ok = await asyncio.wait_for(_in_thread(lambda x: x + 1, 41), 10)
        with pytest.raises(ValueError, match="bad run"):
            await asyncio.wait_for(_in_thread(boom), 10)
        return ok

    assert asyncio.run(main()) == 42
