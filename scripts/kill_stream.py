"""Repeated kills: SIGKILL the workers at random moments while clicks flow, restart each one at once, and
check that nothing is lost (issue 14, item 4).

Starts an embedded broker (or uses $KAFKA_BOOTSTRAP_SERVERS), a sessionizer, an inference worker and a
trainer as deployed (their own processes), replays a seeded synthetic clickstream paced to last
--duration seconds, and meanwhile SIGKILLs the sessionizer --sessionizer-kills times, the inference
worker --inference-kills times and the trainer --trainer-kills times at seeded random moments,
restarting each at once. Then it waits and checks: every session of the offline preparation
(`read_sessions`, the same rules) is in the training log with identical content (duplicates too);
every click has a prediction; duplicate predictions from the same model are identical.

    .venv/bin/python scripts/kill_stream.py --json runs/kill/kill.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from jump_core.artifacts.checkpoint import save_checkpoint
from jump_core.data.prepare import read_sessions
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.model import Jump, JumpConfig
from pipeline import codec
from pipeline.config import Settings
from pipeline.devtools import procs
from pipeline.devtools.broker import EmbeddedBroker, free_port
from pipeline.devtools.replay import replay
from pipeline.runtime.kafka import ensure_topics

OPTIONS = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
ROLES = ("sessionizer", "inference", "trainer")


def read_topic(s: Settings, topic: str, kind: str) -> list[dict]:
    """Every record of `topic` up to the fetch high watermark (ListOffsets is wrong on Tansu)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=s.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        max_partition_fetch_bytes=16 << 20,
    )
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(tps)
    c.seek_to_beginning()
    out, idle = [], 0
    while idle < 3:
        batch = c.poll(timeout_ms=500)
        idle = 0 if batch else idle + 1
        for records in batch.values():
            out += [codec.decode(kind, r.value) for r in records]
    c.close()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clicks", type=int, default=20_000)
    p.add_argument("--duration", type=float, default=240.0, help="seconds the paced replay lasts")
    p.add_argument("--sessionizer-kills", type=int, default=10)
    p.add_argument("--inference-kills", type=int, default=5)
    p.add_argument("--trainer-kills", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the outputs after the replay")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="jump-kill-"))
    clicks = work / "clicks.csv"
    synth = SynthConfig(clicks=a.clicks, seed=a.seed + 3, span_days=2.0)
    write_csv(synth, clicks)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if bootstrap else EmbeddedBroker(log_path=str(work / "tansu.log")).start()
    token = f"kill-{a.seed}-{int(time.time())}"
    base = Settings.from_env(env={}, bootstrap_servers=bootstrap or broker.bootstrap)
    topics = {f: f"{getattr(base, f)}-{token}" for f in vars(base) if f.startswith("topic_")}
    s = replace(
        base,
        **topics,
        app_id=f"jump-{token}",
        partitions=2,
        output_partitions=2,
        tick_interval_s=1.0,
        # the paced replay has quiet stretches of a few wall seconds; the idle fallback (wall clock,
        # which offline preparation does not have) must not split sessions there, only close the
        # last ones after the replay
        idle_close_s=20.0,
        data_dir=str(work / "faust"),
        checkpoint=str(work / "model.ckpt"),
        model_dir=str(work / "models"),
        device="cpu",
        trainer_every_sessions=800,
        trainer_min_sessions=400,
        trainer_window_sessions=3000,
        trainer_epochs=1,
        trainer_dim=16,
        trainer_time_budget_s=30.0,
        reload_check_s=1.0,
    )
    raw = read_sessions("csv", [str(clicks)], s.session_gap_s, s.c1, s.c2, options=OPTIONS)
    offline = {}
    for i in range(len(raw.sessions)):
        d = raw.sessions.session(i)
        offline[d["session_id"]] = ([raw.item_names[x] for x in d["items"]], d["ts"], d["tau"], d["delta"])
    items = sorted(set(raw.item_names))
    torch.manual_seed(0)
    save_checkpoint(work / "model.ckpt", Jump(JumpConfig(n_items=len(items) + 1, dim=16)).eval(), items, "kill")
    ensure_topics(s)
    ports = {r: free_port() for r in ROLES}
    logs = {r: work / f"{r}.log" for r in ROLES}

    def start(role):
        return procs.start_worker(role, replace(s, metrics_port=ports[role]), logs[role])

    workers = {r: start(r) for r in ROLES}
    kills = [r for r, n in zip(ROLES, (a.sessionizer_kills, a.inference_kills, a.trainer_kills)) for _ in range(n)]
    rng.shuffle(kills)
    moments = sorted(rng.uniform(5.0, a.duration) for _ in kills)
    t0 = time.time()
    done_kills, events = Counter(), []
    try:
        for r in ROLES:
            procs.wait_metrics(ports[r], workers[r], timeout_s=120, log_path=logs[r])
        ts = [t for d in offline.values() for t in d[1]]
        span = max(ts) - min(ts)  # the clicks' event-time span (sessions run past synth's span_days)
        feeder = threading.Thread(
            target=replay,
            args=(s, "csv", [str(clicks)]),
            kwargs={"progress": False, "reader_options": OPTIONS, "speed": span / a.duration},
        )
        t0 = time.time()
        feeder.start()
        for role, at in zip(kills, moments):
            time.sleep(max(0.0, t0 + at - time.time()))
            procs.kill(workers[role])
            workers[role] = start(role)
            done_kills[role] += 1
            events.append({"t_s": round(time.time() - t0, 1), "killed": role})
            print(f"[{time.time() - t0:6.1f} s] SIGKILL {role} ({done_kills[role]}), restarted", flush=True)
        feeder.join()
        replay_s = time.time() - t0
        print(f"replay done in {replay_s:.0f} s; waiting for every session and prediction", flush=True)
        deadline = time.time() + a.timeout
        while time.time() < deadline:
            dead = [r for r, w in workers.items() if w.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited on its own; logs in {work}")
            try:
                m_s = procs.scrape(ports["sessionizer"])
                m_i = procs.scrape(ports["inference"])
            except OSError:  # a worker restarted by the last kill is not serving /metrics yet
                time.sleep(2)
                continue
            closed = procs.metric_sum(m_s, "jump_open_sessions") == 0
            if closed and procs.metric_sum(m_i, "jump_predictions_total") > 0:
                logs_ = read_topic(s, s.topic_training_log, "training_log")
                preds = read_topic(s, s.topic_predictions, "prediction")
                if {r["session_id"] for r in logs_} >= set(offline) and len(
                    {(r["session_id"], r["position"]) for r in preds}
                ) >= a.clicks:
                    break
            time.sleep(5)
        wait_s = time.time() - t0 - replay_s
        logs_ = read_topic(s, s.topic_training_log, "training_log")
        preds = read_topic(s, s.topic_predictions, "prediction")
    finally:
        for w in workers.values():
            procs.stop(w)
        if broker is not None:
            broker.stop()
    by_session = defaultdict(list)
    for r in logs_:
        by_session[r["session_id"]].append((r["items"], r["ts"], r["tau"], r["delta"]))
    missing = sorted(set(offline) - set(by_session))
    extra = sorted(set(by_session) - set(offline))
    wrong = [sid for sid, copies in by_session.items() if sid in offline and any(c != offline[sid] for c in copies)]
    by_click = defaultdict(list)
    for r in preds:
        by_click[(r["session_id"], r["position"])].append(r)
    differing = sum(
        1
        for copies in by_click.values()
        for v in {c["model_version"] for c in copies}
        if len({(c["item"], tuple(c["top_items"]), c["dwell_s"]) for c in copies if c["model_version"] == v}) > 1
    )
    result = {
        "clicks": a.clicks,
        "sessions": len(offline),
        "kills": dict(done_kills),
        "kill_events": events,
        "replay_seconds": round(replay_s, 1),
        "wait_seconds": round(wait_s, 1),
        "training_log_records": len(logs_),
        "training_log_duplicates": len(logs_) - len(by_session),
        "sessions_missing": len(missing),
        "sessions_extra": len(extra),
        "sessions_with_wrong_content": len(wrong),
        "predictions": len(preds),
        "clicks_predicted": len(by_click),
        "prediction_duplicates": len(preds) - len(by_click),
        "duplicates_differing_under_one_model": differing,
        "models_served": sorted({r["model_version"] for r in preds}),
        "work": str(work),
    }

    def brief(c):  # (clicks, first ts, last ts) of a session's content
        return (len(c[1]), c[1][0], c[1][-1]) if c[1] else (0, None, None)

    result["examples"] = {
        "extra": [(sid, [brief(c) for c in by_session[sid]]) for sid in extra[:10]],
        "wrong": [
            (sid, {"offline": brief(offline[sid]), "stream": [brief(c) for c in by_session[sid]]}) for sid in wrong[:10]
        ],
    }
    result["passed"] = not missing and not extra and not wrong and len(by_click) == a.clicks and differing == 0
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "kill_events"}, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
