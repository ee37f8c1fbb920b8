"""`jump demo-stream`: the stream end to end on embedded defaults.

Starts the embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set), creates the topics, starts a
sessionizer and an inference worker, replays the held-out sessions of a prepared dataset as live
clicks, prints predictions as they arrive, and summarises throughput, click->prediction latency and
the live predictions' Recall@20 / MRR@20 against the clicks that actually came next -- next to the
offline `jump evaluate --protocol live` figures for the same sessions. Stops everything it started.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import numpy as np


def add_demo(sub):
    p = sub.add_parser(
        "demo-stream",
        help="run the stream end to end on a prepared dataset's held-out sessions",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--data", required=True, help="prepared dataset (its test split is replayed)")
    p.add_argument("--model", required=True, help="checkpoint served by the inference worker")
    p.add_argument("--out", required=True, help="work directory (logs, replay file, summary)")
    p.add_argument("--offline-json", default=None, help="`jump evaluate --protocol live` JSON to compare with")
    p.add_argument("--sessions", type=int, default=None, help="replay only the first N held-out sessions")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="pace the replay by event time so that it lasts about S seconds (default 20)",
    )
    g.add_argument("--max", action="store_true", help="replay as fast as possible (throughput, queueing latency)")
    p.add_argument("--show", type=int, default=5, help="live predictions to print")
    p.add_argument("--timeout", type=float, default=300.0, help="give up waiting for predictions after S seconds")
    p.add_argument(
        "--no-trainer",
        action="store_true",
        help="do not run the trainer (by default it fine-tunes the model on the sessions the stream "
        "closes, and the inference worker swaps in each promoted model)",
    )
    p.set_defaults(func=cmd_demo)


def export_heldout(data_dir: str, out_csv: Path, n_sessions: int | None = None) -> tuple[int, int]:
    """Write the test split's sessions as raw clicks (session, item, ts). Unknown items (index 0,
    unseen in training) get a unique name, so the model treats them as unknown, as offline."""
    from jump_core.data.dataset import load_prepared

    data = load_prepared(data_dir)
    test = data.test if n_sessions is None else data.test.subset(np.arange(min(n_sessions, len(data.test))))
    rows = 0
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session", "item", "ts"])
        for s in range(len(test)):
            d = test.session(s)
            key = d["session_id"].rsplit("@", 1)[0]  # the session key (jump_core.sessions.session_id)
            for i, ts in zip(d["items"], d["ts"]):
                w.writerow([key, data.items[i - 1] if i else f"__unseen_{rows}", repr(ts)])
                rows += 1
    return len(test), rows


class Collector(threading.Thread):
    """Reads the predictions topic from the beginning, keeps one record per key, prints a few."""

    def __init__(self, settings, show: int):
        super().__init__(daemon=True)
        self.s, self.show = settings, show
        self.records: dict[tuple, dict] = {}  # (session_id, position) -> prediction
        self.stop_flag = threading.Event()
        self.ready = threading.Event()

    def run(self):
        from kafka import KafkaConsumer, TopicPartition

        from .. import codec

        consumer = KafkaConsumer(
            **self.s.kafka_python_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        try:
            while not (parts := consumer.partitions_for_topic(self.s.topic_predictions)):
                time.sleep(0.1)
            tps = [TopicPartition(self.s.topic_predictions, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self.ready.set()
            self.shown = 0
            while not self.stop_flag.is_set():
                for records in consumer.poll(timeout_ms=200, max_records=5000).values():
                    for r in records:
                        p = codec.decode("prediction", r.value)
                        self.records[(p["session_id"], p["position"])] = p  # its identity (the key: the session key)
                        if self.shown < self.show and p["session_key"] != "__demo_warmup__":
                            self.shown += 1
                            print(
                                f"  prediction  session {p['session_id']} click #{p['position']} item {p['item']}: "
                                f"dwell {p['dwell_s']:.0f} s, next {p['top_items'][:5]} ... "
                                f"({(p['emit_ts'] - p['ingest_ts']) * 1000:.0f} ms after the click)",
                                flush=True,
                            )
        finally:
            consumer.close()


def live_metrics(records: dict, heldout_csv: Path, k: int = 20) -> dict:
    """Recall@k / MRR@k of each prediction against the click that actually came next in its session."""
    sessions: dict[str, list[str]] = {}
    with open(heldout_csv) as f:
        for row in csv.DictReader(f):
            sessions.setdefault(row["session"], []).append(row["item"])
    by_pos = {(p["session_key"], p["position"]): p["top_items"][:k] for p in records.values()}
    hits, rr, n = 0, 0.0, 0
    for key, items in sessions.items():
        for j in range(len(items) - 1):
            top = by_pos.get((key, j))
            n += 1
            if top is not None and items[j + 1] in top:
                hits += 1
                rr += 1.0 / (top.index(items[j + 1]) + 1)
    return {f"recall@{k}": hits / n if n else None, f"mrr@{k}": rr / n if n else None, "n_predictions_scored": n}


def read_records(settings, topic: str, kind: str, timeout_s: float = 10.0) -> list[dict]:
    """Every record of a (small) topic, decoded, in offset order (no consumer group)."""
    from kafka import KafkaConsumer

    from .. import codec
    from .tail import assign_all

    consumer = KafkaConsumer(
        **settings.kafka_python_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=200,
    )
    try:
        tps = assign_all(consumer, topic)
        consumer.seek_to_beginning(*tps)
        out, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            out += [codec.decode(kind, r.value) for records in batch.values() for r in records]
            if not batch and all(
                consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp) for tp in tps
            ):
                break
        return out
    finally:
        consumer.close()


def cmd_demo(a) -> int:
    from ..config import Settings
    from ..runtime.kafka import ensure_topics
    from . import procs
    from .broker import EmbeddedBroker, free_port
    from .replay import replay

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    heldout = out / "heldout.csv"
    n_sessions, n_clicks = export_heldout(a.data, heldout, a.sessions)
    print(f"== held-out sessions as a live stream: {n_sessions:,} sessions, {n_clicks:,} clicks -> {heldout}")
    broker = None
    workers = {}
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = EmbeddedBroker(log_path=str(out / "broker.log")).start()
            bootstrap = broker.bootstrap
            print(f"== embedded broker (Tansu, in memory) on {bootstrap}, pid {broker.pid}")
        run_id = time.strftime("%Y%m%d%H%M%S")
        # The trainer runs about three times during the replay, fine-tuning on the sessions closed so far.
        every = max(100, n_sessions // 4)
        s = Settings.from_env(
            bootstrap_servers=bootstrap,
            app_id=f"jump-demo-{run_id}",
            checkpoint=a.model,
            tick_interval_s=1.0,
            idle_close_s=5.0,
            context_clicks=200,
            data_dir=str(out / "faust"),
            model_dir=str(out / "models" / run_id),
            trainer_every_sessions=every,
            trainer_min_sessions=every,
            trainer_window_sessions=max(2 * every, n_sessions),
            trainer_epochs=2,
            trainer_time_budget_s=20.0,
            reload_check_s=2.0,
        )
        s = replace(
            s, **{f.name: f"{getattr(s, f.name)}-{run_id}" for f in fields(Settings) if f.name.startswith("topic_")}
        )
        print("== topics:", json.dumps(ensure_topics(s)))
        ports = {}
        roles = (("sessionizer", 9464), ("inference", 9465)) + (() if a.no_trainer else (("trainer", 9466),))
        for role, default in roles:
            ports[role] = default if _port_free(default) else free_port()
            log = out / f"{role}.log"
            workers[role] = procs.start_worker(role, replace(s, metrics_port=ports[role]), log)
        for role, proc in workers.items():
            procs.wait_metrics(ports[role], proc, timeout_s=120, log_path=out / f"{role}.log")
            print(
                f"== {role} worker pid {proc.pid}: metrics at http://127.0.0.1:{ports[role]}/metrics "
                f"(log {out / (role + '.log')})"
            )
        collector = Collector(s, a.show)
        collector.start()
        collector.ready.wait(30)
        # warm-up: one click through both workers, so the figures below exclude start-up and group
        # joins; its event time precedes the replay's (a later one would advance stream time past it)
        from .. import codec
        from ..runtime.kafka import produce_records

        with open(heldout) as f:
            ts = [float(r["ts"]) for r in csv.DictReader(f)]
        produce_records(
            s,
            s.topic_clicks,
            [
                (
                    b"__demo_warmup__",
                    codec.encode_click("__demo_warmup__", "warmup", min(ts) - 1.0, "warmup-0", "session"),
                )
            ],
        )
        procs.wait_for(
            lambda: any(p["session_key"] == "__demo_warmup__" for p in list(collector.records.values())),
            120,
            interval_s=0.2,
            what="the warm-up prediction",
        )
        collector.records.clear()
        collector.shown = 0
        speed = None if a.max else max(1e-9, (max(ts) - min(ts)) / a.duration)
        print(
            f"== replaying {n_clicks:,} clicks "
            f"({'max speed' if speed is None else f'paced by event time, {speed:,.0f}x real time, ~{a.duration:g} s'})"
        )
        t0 = time.time()
        stats = replay(
            s,
            "csv",
            [heldout],
            speed=speed,
            progress=False,
            event_id_prefix="demo",
            reader_options={"session_col": "session", "item_col": "item", "time_col": "ts"},
        )
        print(f"   produced {stats['clicks']:,} clicks in {stats['seconds']:.1f} s")
        procs.wait_for(
            lambda: len(collector.records) >= n_clicks, a.timeout, interval_s=0.5, what=f"{n_clicks} predictions"
        )
        collector.stop_flag.set()
        collector.join(5)
        recs = collector.records
        emit = np.array([p["emit_ts"] for p in recs.values()])
        lat = np.array([p["emit_ts"] - p["ingest_ts"] for p in recs.values()])
        m_inf = procs.scrape(ports["inference"])
        m_ses = procs.scrape(ports["sessionizer"])
        summary = {
            "clicks": n_clicks,
            "predictions": len(recs),
            "replay": "max" if speed is None else f"{a.duration:g} s paced",
            "events_per_s": n_clicks / (emit.max() - t0),
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p99_s": float(np.percentile(lat, 99)),
            "inference_batches": procs.metric_sum(m_inf, "jump_inference_batch_size_count"),
            "mean_batch_size": (
                procs.metric_sum(m_inf, "jump_inference_batch_size_sum")
                / max(1.0, procs.metric_sum(m_inf, "jump_inference_batch_size_count"))
            ),
            "dead_letters": procs.metric_sum(m_ses, "jump_dead_letters_total"),
            "open_sessions": procs.metric_sum(m_ses, "jump_open_sessions"),
            **{f"live_{k}": v for k, v in live_metrics(recs, heldout).items()},
            "predictions_by_model": dict(Counter(p["model_version"] for p in recs.values())),
            "training_runs": [] if a.no_trainer else read_records(s, s.topic_training_metrics, "training_metrics"),
        }
        if a.offline_json and Path(a.offline_json).exists():
            off = json.loads(Path(a.offline_json).read_text())
            summary["offline_live_recall@20"] = off.get("recall@20")
            summary["offline_live_mrr@20"] = off.get("mrr@20")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print("== stream summary")
        print(
            f"   {summary['clicks']:,} clicks -> {summary['predictions']:,} predictions at "
            f"{summary['events_per_s']:,.0f} events/s (first click produced to last prediction emitted)"
        )
        print(
            f"   click->prediction latency p50 {summary['latency_p50_s'] * 1000:.0f} ms, "
            f"p99 {summary['latency_p99_s'] * 1000:.0f} ms; {summary['inference_batches']:.0f} inference batches, "
            f"mean size {summary['mean_batch_size']:.1f}"
        )
        line = (
            f"   live Recall@20 {summary['live_recall@20']:.4f}, MRR@20 {summary['live_mrr@20']:.4f} "
            f"over {summary['live_n_predictions_scored']:,} next clicks"
        )
        if "offline_live_recall@20" in summary:
            line += (
                f"  (offline `jump evaluate --protocol live`: Recall@20 {summary['offline_live_recall@20']:.4f}, "
                f"MRR@20 {summary['offline_live_mrr@20']:.4f})"
            )
        print(line)
        for version, n in summary["predictions_by_model"].items():
            print(f"   {n:,} predictions by model {version}")
        for r in summary["training_runs"]:
            serving = "none" if r["serving_recall20"] is None else f"{r['serving_recall20']:.4f}"
            cand = "-" if r["candidate_recall20"] is None else f"{r['candidate_recall20']:.4f}"
            print(
                f"   trainer {r['run_id']}: {r['mode']} on {r['sessions_train']:,} sessions, held-out Recall@20 "
                f"{cand} vs serving {serving} -> {r['result']} ({r['duration_s']:.1f} s)"
            )
        promoted = [r["candidate_version"] for r in summary["training_runs"] if r["result"] == "promoted"]
        if promoted:
            key = f'jump_model_info{{device="{m_inf_device(m_inf)}",model_version="{promoted[-1]}"}}'
            try:
                procs.wait_for(lambda: procs.scrape(ports["inference"]).get(key), 30, what="the hot reload")
                summary["serving_after_replay"] = promoted[-1]
                print(f"   the inference worker now serves {promoted[-1]} (hot reload between micro-batches)")
            except TimeoutError:
                print(f"   the inference worker did not load {promoted[-1]} within 30 s (see inference.log)")
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"   dead letters {summary['dead_letters']:.0f}; summary written to {out / 'summary.json'}")
        return 0
    finally:
        for proc in workers.values():
            procs.stop(proc)
        if broker is not None:
            broker.stop()
        print("== stopped the workers" + (" and the broker" if broker is not None else ""))


def m_inf_device(samples: dict) -> str:
    """The device label of the served model's jump_model_info series."""
    for k in samples:
        if k.startswith("jump_model_info{"):
            return k.split('device="', 1)[1].split('"', 1)[0]
    return "cpu"


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
