"""Soak: 1 M clicks through the sessionizer and the inference worker, memory sampled (issue 14, item 5).

Starts an embedded broker (or uses $KAFKA_BOOTSTRAP_SERVERS), writes a seeded synthetic clickstream
(`jump synth`: 1 M clicks over 30 days of event time, 25k users), a random-weight JUMP at d = 16 over
its items, starts `jump sessionizer` and `jump inference` as deployed (their own processes), replays
every click as fast as the broker takes them, and samples each worker's RSS (/proc) and the open
sessions every 10 s until every click has its prediction. Pass: after warm-up (the first sample at
>= 20 % of the clicks predicted) RSS grows by < 10 %, and the open sessions never exceed the bound the
gap implies (the most users with a click within the last gap + grace of event time, computed
offline). Writes JSON and a PNG of the curves.

    .venv/bin/python scripts/soak_stream.py --clicks 1000000 --out runs/soak
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import torch

from jump_core.artifacts.checkpoint import save_checkpoint
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.model import Jump, JumpConfig
from pipeline.config import Settings
from pipeline.devtools import procs
from pipeline.devtools.broker import EmbeddedBroker, free_port
from pipeline.devtools.replay import replay
from pipeline.runtime.kafka import ensure_topics

OPTIONS = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_bound(path: Path, window_s: float) -> tuple[int, list[str]]:
    """The most users with a click within the last `window_s` of event time (clicks in time order)."""
    recent, last, best, items = deque(), {}, 0, set()
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((float(r["timestamp"]), r["user_id"]))
            items.add(r["item_id"])
    rows.sort()
    for ts, user in rows:
        last[user] = ts
        recent.append((ts, user))
        while recent and recent[0][0] < ts - window_s:
            old_ts, old_user = recent.popleft()
            if last.get(old_user) == old_ts:
                del last[old_user]
        best = max(best, len(last))
    return best, sorted(items)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clicks", type=int, default=1_000_000)
    p.add_argument("--out", default="runs/soak")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--timeout", type=float, default=3600.0)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="jump-soak-"))
    clicks = work / "clicks.csv"
    stats = write_csv(SynthConfig(clicks=a.clicks, seed=11), clicks)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if bootstrap else EmbeddedBroker(log_path=str(work / "tansu.log")).start()
    token = f"soak-{int(time.time())}"
    s = Settings.from_env(
        env={},
        bootstrap_servers=bootstrap or broker.bootstrap,
        app_id=f"jump-{token}",
        topic_clicks=f"clicks-{token}",
        data_dir=str(work / "faust"),
        checkpoint=str(work / "model.ckpt"),
        device="cpu",
    )
    bound, items = open_bound(clicks, s.session_gap_s + s.grace_s)
    torch.manual_seed(0)
    save_checkpoint(work / "model.ckpt", Jump(JumpConfig(n_items=len(items) + 1, dim=16)).eval(), items, "soak")
    ensure_topics(s)
    ports = {"sessionizer": free_port(), "inference": free_port()}
    workers = {
        role: procs.start_worker(role, replace(s, metrics_port=ports[role]), work / f"{role}.log") for role in ports
    }
    samples, t0 = [], time.time()
    try:
        for role, port in ports.items():
            procs.wait_metrics(port, workers[role], timeout_s=120, log_path=work / f"{role}.log")
        feeder = threading.Thread(
            target=replay, args=(s, "csv", [str(clicks)]), kwargs={"progress": False, "reader_options": OPTIONS}
        )
        feeder.start()
        while time.time() - t0 < a.timeout:
            time.sleep(a.interval)
            dead = [r for r, w in workers.items() if w.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited; logs in {work}")
            m_s, m_i = procs.scrape(ports["sessionizer"]), procs.scrape(ports["inference"])
            row = {
                "t_s": round(time.time() - t0, 1),
                "consumed": procs.metric_sum(m_s, "jump_clicks_consumed_total"),
                "predicted": procs.metric_sum(m_i, "jump_predictions_total"),
                "open_sessions": procs.metric_sum(m_s, "jump_open_sessions"),
                "rss_sessionizer_mib": round(rss_mib(workers["sessionizer"].pid), 1),
                "rss_inference_mib": round(rss_mib(workers["inference"].pid), 1),
            }
            samples.append(row)
            print(json.dumps(row), flush=True)
            if row["predicted"] >= a.clicks:
                break
        feeder.join(timeout=60)
    finally:
        for w in workers.values():
            procs.stop(w)
        if broker is not None:
            broker.stop()
    warm = next((i for i, r in enumerate(samples) if r["predicted"] >= 0.2 * a.clicks), None)
    result = {"clicks": a.clicks, "synth": stats, "open_session_bound": bound, "samples": samples, "work": str(work)}
    if warm is not None:
        for role in ("sessionizer", "inference"):
            base = samples[warm][f"rss_{role}_mib"]
            peak = max(r[f"rss_{role}_mib"] for r in samples[warm:])
            result[f"rss_{role}_growth_after_warmup"] = round(peak / base - 1, 4)
    result["max_open_sessions"] = max((r["open_sessions"] for r in samples), default=0)
    result["all_predicted"] = bool(samples) and samples[-1]["predicted"] >= a.clicks
    result["passed"] = (
        result["all_predicted"]
        and result["max_open_sessions"] <= bound
        and all(result.get(f"rss_{r}_growth_after_warmup", 1.0) < 0.10 for r in ("sessionizer", "inference"))
    )
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    plot(samples, bound, out / "soak.png")
    growth = {r: result.get(f"rss_{r}_growth_after_warmup") for r in ("sessionizer", "inference")}
    print(
        f"{a.clicks:,} clicks in {samples[-1]['t_s'] if samples else 0:.0f} s; RSS growth after warm-up: "
        f"sessionizer {growth['sessionizer']}, inference {growth['inference']}; open sessions max "
        f"{result['max_open_sessions']:.0f} (bound {bound}); passed: {result['passed']}"
    )
    return 0 if result["passed"] else 1


def plot(samples: list[dict], bound: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    t = [r["t_s"] for r in samples]
    ax1.plot(t, [r["rss_sessionizer_mib"] for r in samples], label="sessionizer")
    ax1.plot(t, [r["rss_inference_mib"] for r in samples], label="inference (d = 16)")
    ax1.set_ylabel("RSS (MiB)")
    ax1.legend()
    ax1.set_title("Soak: RSS and open sessions, sampled every 10 s")
    ax2.plot(t, [r["open_sessions"] for r in samples], label="open sessions")
    ax2.axhline(bound, color="grey", linestyle="--", label=f"bound from the gap ({bound})")
    ax2.set_ylabel("open sessions")
    ax2.set_xlabel("seconds")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
