"""The trainer and hot reload as processes on a real broker (embedded Tansu, or $KAFKA_BOOTSTRAP_SERVERS).

- `jump trainer` and `jump inference` as processes: the trainer reads the training log, trains and
  announces; the inference worker, started with no model at all, waits, then serves the announced one.
- Hot reload under a steady replay, on both inference runtimes: models announced while clicks flow;
  no prediction lost or duplicated, every prediction names its model, a session never goes back to
  an older model, and a corrupt checkpoint is refused while the old model keeps serving.
- `jump models promote` announces a rollback, `jump models list` shows it.

(TrainerCore without Kafka: tests/unit/test_trainer.py.)
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
import torch

from jump_core.artifacts.model_store import ModelStore
from jump_core.model import Jump, JumpConfig
from pipeline import codec
from pipeline.devtools import procs
from pipeline.devtools.broker import free_port
from tests.helpers.continual import as_record, logged_sessions
from tests.helpers.kafka import consume_all, produce
from tests.helpers.stream import TRAINER, Pipeline, make_settings
from tests.unit.deploy.test_asyncapi import check, schema_of

pytestmark = pytest.mark.timeout(300)
SESSIONS = [s for s in logged_sessions() if len(s.items) > 1]


def test_trainer_and_inference_processes_close_the_loop(kafka_bootstrap, tmp_path):
    """The inference worker starts with no model, the trainer trains on the training log and
    announces, the worker serves the announced model; then a second run fine-tunes."""
    s = make_settings(kafka_bootstrap, "trainer", tmp_path, **TRAINER)
    pipe = Pipeline(s, tmp_path)
    pipe.ports["trainer"] = free_port()
    records = [as_record(s_) for s_ in SESSIONS[:900]]
    produce(
        s,
        s.topic_training_log,
        [(r["session_id"].encode(), codec.encode("training_log", r)) for r in records]
        + [(b"junk", b"\xc1 not a record")]
        + [(r["session_id"].encode(), codec.encode("training_log", r)) for r in records[:10]],
    )
    try:
        pipe.start("inference")  # no model anywhere yet: alive, not ready, waiting
        port = pipe.ports["inference"]
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert e.value.code == 503
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        pipe.start("trainer")
        first = procs.wait_for(
            lambda: [codec.decode("model_update", r.value) for r in consume_all(s, s.topic_model_updates, idle_s=0.5)],
            120,
            what="the first model announcement",
        )
        assert len(first) == 1 and first[0]["seq"] == 1 and first[0]["parent_version"] is None
        procs.wait_for(
            lambda: pipe.metrics("inference").get(
                f'jump_model_info{{device="cpu",model_version="{first[0]["version"]}"}}'
            ),
            60,
            what="the inference worker to serve the first model",
        )

        # jump_model_info is set when the model is loaded; the worker is ready once its consumer has
        # also started (a group join on the embedded broker takes a few seconds)
        def ready():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
            except urllib.error.HTTPError:
                return False

        procs.wait_for(ready, 30, what="the inference worker to be ready")
        m = pipe.metrics("trainer")
        assert m["jump_trainer_records_consumed_total"] == 911
        assert m["jump_trainer_records_consumed_total"] == (
            m["jump_trainer_sessions_windowed_total"]
            + procs.metric_sum(m, "jump_trainer_sessions_skipped_total")
            + m['jump_dead_letters_total{reason="bad_training_log"}']
        )
        assert m['jump_trainer_sessions_skipped_total{reason="duplicate"}'] == 10
        dead = [codec.decode("dead_letter", r.value) for r in consume_all(s, s.topic_dead_letters, idle_s=0.5)]
        assert [d["reason"] for d in dead] == ["bad_training_log"]
        # more sessions: a second run fine-tunes the first model
        more = [as_record(s_) for s_ in SESSIONS[900:1800]]
        produce(s, s.topic_training_log, [(r["session_id"].encode(), codec.encode("training_log", r)) for r in more])
        runs = procs.wait_for(
            lambda: (lambda rs: rs if len(rs) >= 2 else None)(
                [
                    codec.decode("training_metrics", r.value)
                    for r in consume_all(s, s.topic_training_metrics, idle_s=0.5)
                ]
            ),
            120,
            what="a second training run",
        )
        assert [r["mode"] for r in runs] == ["initial", "finetune"] and runs[1]["serving_version"] == first[0][
            "version"
        ]
        # the later sessions bring items the first model lacks: they enter the fine-tuned vocabulary
        assert runs[1]["new_items"] > 0 and runs[1]["n_items"] == runs[0]["n_items"] + runs[1]["new_items"]
        assert runs[1]["result"] in ("promoted", "rejected")
        for r in runs:
            assert check(r, schema_of("training_metrics")) == []
        if runs[1]["result"] == "promoted":
            updates = [codec.decode("model_update", r.value) for r in consume_all(s, s.topic_model_updates, idle_s=0.5)]
            assert [u["seq"] for u in updates] == [1, 2] and updates[1]["parent_version"] == first[0]["version"]
            procs.wait_for(
                lambda: pipe.metrics("inference").get(
                    f'jump_model_info{{device="cpu",model_version="{updates[1]["version"]}"}}'
                ),
                60,
                what="the inference worker to serve the second model",
            )
        assert pipe.metrics("trainer")[f'jump_trainer_runs_total{{result="{runs[1]["result"]}"}}'] >= 1
        assert all(p.poll() is None for p in pipe.procs.values())
    finally:
        pipe.stop()


def _model(items, seed):
    torch.manual_seed(seed)
    return Jump(JumpConfig(n_items=len(items) + 1, dim=16)).eval()


@pytest.mark.parametrize("runtime", ["aiokafka", "faust"])
def test_hot_reload_under_a_steady_replay_loses_and_duplicates_nothing(kafka_bootstrap, tmp_path, runtime):
    s = make_settings(kafka_bootstrap, "reload", tmp_path, reload_check_s=2.0, max_batch=64, inference_runtime=runtime)
    sessions = SESSIONS[:700]
    items = sorted({i for x in sessions for i in x.items})
    store = ModelStore(s.model_dir)
    versions = {1: store.publish(_model(items, 1), items, "test")}
    clicks = sorted(
        (
            (t, x.session_id, item, f"{x.session_id}#{k}")
            for x in sessions
            for k, (item, t) in enumerate(zip(x.items, x.ts))
        )
    )
    values = [(key.encode(), codec.encode_click(key, item, t, eid)) for t, key, item, eid in clicks]
    pipe = Pipeline(s, tmp_path)

    def announce(seq, corrupt=False):
        rec = store.publish(_model(items, seq), items, "test", make_current=not corrupt)
        if corrupt:  # flip a byte after publication: the checksum catches it
            path = store.resolve(rec)
            blob = bytearray(path.read_bytes())
            blob[len(blob) // 2] ^= 0xFF
            path.write_bytes(bytes(blob))
        produce(s, s.topic_model_updates, [(rec["version"].encode(), codec.encode("model_update", rec))], partition=0)
        versions[seq] = rec

    try:
        pipe.start("sessionizer")
        pipe.start("inference")
        chunks = [values[k : k + 50] for k in range(0, len(values), 50)]
        done = threading.Event()

        def replay():  # ~50 clicks every 0.25 s
            for chunk in chunks:
                produce(s, s.topic_clicks, chunk)
                time.sleep(0.25)
            done.set()

        sender = threading.Thread(target=replay)
        sender.start()
        try:

            def reloads(result):
                return pipe.metrics("inference").get(f'jump_model_reloads_total{{result="{result}"}}', 0)

            procs.wait_for(
                lambda: procs.metric_sum(pipe.metrics("inference"), "jump_predictions_total") > 0,
                60,
                what="predictions to flow",
            )
            for seq, corrupt, (result, n) in (
                (2, False, ("loaded", 1)),
                (3, True, ("refused", 1)),
                (4, False, ("loaded", 2)),
            ):
                announce(seq, corrupt)
                procs.wait_for(lambda result=result, n=n: reloads(result) >= n, 30, what=f"model {seq} to be {result}")
                assert not done.is_set(), "the replay ended before the swaps: slow it down"
        finally:
            sender.join()
        # a last session after the final swap: it must be answered by model 4
        tail = [
            (b"after-swap", codec.encode_click("after-swap", items[k], clicks[-1][0] + 10 * k, f"as{k}"))
            for k in range(3)
        ]
        produce(s, s.topic_clicks, tail)
        n = len(values) + len(tail)
        preds = pipe.wait_count(s.topic_predictions, "prediction", n, timeout_s=120)
        raw = consume_all(s, s.topic_predictions, idle_s=1.0)
        assert len(raw) == len(preds) == n  # every click answered exactly once
        sm = pipe.metrics("sessionizer")
        assert sm["jump_clicks_accepted_total"] == n and sm["jump_clicks_consumed_total"] == n
        by_version = {v["version"]: seq for seq, v in versions.items()}
        used = defaultdict(int)
        per_session = defaultdict(list)
        for p in preds.values():
            used[p["model_version"]] += 1
            per_session[p["session_id"]].append((p["position"], by_version[p["model_version"]]))
        assert versions[3]["version"] not in used  # the corrupt model never answered
        assert {versions[1]["version"], versions[4]["version"]} <= set(used)
        for sid, seq in per_session.items():  # a session never returns to an older model
            order = [v for _, v in sorted(seq)]
            assert order == sorted(order), sid
        assert {by_version[p["model_version"]] for p in preds.values() if p["session_key"] == "after-swap"} == {4}
        m = pipe.metrics("inference")
        assert m['jump_model_refusals_total{reason="checksum"}'] == 1
        assert m['jump_model_reloads_total{result="refused"}'] == 1
        assert m['jump_model_reloads_total{result="loaded"}'] == len(used) - 1  # one swap per later model
        assert m[f'jump_model_info{{device="cpu",model_version="{versions[4]["version"]}"}}'] == 1
        assert m["jump_model_created_timestamp_seconds"] == pytest.approx(versions[4]["created_ts"])
        assert pipe.procs["inference"].poll() is None
    finally:
        pipe.stop()


def test_jump_models_promote_announces_a_rollback_and_list_shows_it(kafka_bootstrap, tmp_path):
    import json
    import subprocess
    import sys

    from pipeline.config import settings_env

    s = make_settings(kafka_bootstrap, "models", tmp_path)
    from pipeline.runtime.kafka import ensure_topics

    ensure_topics(s)
    store = ModelStore(s.model_dir)
    items = ["a", "b", "c"]
    first = store.publish(_model(items, 1), items, "test")
    store.publish(_model(items, 2), items, "test")
    env = {**__import__("os").environ, **settings_env(s)}

    def jump(*args):
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "models", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = jump("promote", first["version"])
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["seq"] == 3 and rec["state_sha256"] == first["state_sha256"]
    announced = [codec.decode("model_update", r.value) for r in consume_all(s, s.topic_model_updates, idle_s=0.5)]
    assert announced == [{"schema": codec.SCHEMA, **rec}]
    listing = jump("list")
    assert listing.returncode == 0 and listing.stdout.count("\n") == 3
    assert [line.startswith("*") for line in listing.stdout.splitlines()] == [False, False, True]
    bad = jump("promote", "jump-v000099:000000000000")
    assert bad.returncode == 2 and "no such checkpoint" in bad.stderr and bad.stderr.count("\n") == 1
