"""A real Prometheus scraping real workers on the broker, through the repository's relabel_configs
and rules (deploy/prometheus/; the static checks and the relabelling alone are
tests/unit/test_prometheus.py). Skipped without the prometheus binary (scripts/ensure-prometheus.sh).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from jump_core.data import readers
from jump_core.data.prepare import read_sessions
from jump_core.data.synth import SynthConfig, write_csv
from pipeline.devtools import procs
from pipeline.devtools.replay import replay
from tests.helpers.prometheus import JOB, Prometheus, file_sd_variant, load_rules, need, pod
from tests.helpers.stream import Pipeline, make_settings, random_model


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return need("prometheus")


@pytest.mark.timeout(240)
def test_prometheus_scrapes_the_workers_and_evaluates_the_rules(prometheus_bin, kafka_bootstrap, tmp_path):
    """A sessionizer and an inference worker on the test broker, scraped every second by a real
    Prometheus through the repository's relabel_configs and rules: the counters Prometheus sees
    add up to the clicks replayed, latency quantiles are finite, every rule evaluates without
    error, and a stopped worker shows as down."""
    clicks_csv = tmp_path / "clicks.csv"
    write_csv(SynthConfig(clicks=1500, seed=11), clicks_csv)
    options = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
    clicks = list(readers.read_clicks("csv", [str(clicks_csv)], **options))
    counts = Counter(c[1] for c in clicks)
    random_model(tmp_path / "model.ckpt", sorted(i for i, n in counts.items() if n >= 2))
    longest = int(read_sessions("csv", [str(clicks_csv)], 3600.0, 2000.0, 30.0, options=options).sessions.lengths.max())
    cap = max(100, longest + 1)  # no session_too_long dead letter
    pipe = Pipeline(
        make_settings(kafka_bootstrap, "prom", tmp_path, context_clicks=cap, max_session_clicks=cap), tmp_path
    )
    (tmp_path / "targets.json").write_text(
        json.dumps(
            [pod("127.0.0.1", pipe.ports[role], role, f"jump-{role}-0") for role in ("sessionizer", "inference")]
        )
    )
    prom = Prometheus(prometheus_bin, file_sd_variant(tmp_path / "targets.json", scrape_interval="1s"), tmp_path)

    def logs():
        return "\n".join(f"--- {role}\n{pipe.log(role)}" for role in pipe.procs)

    try:
        pipe.start("sessionizer")
        pipe.start("inference")
        prom.wait_ready()
        up = prom.wait(
            "both workers up",
            lambda: (u := prom.query(f'up{{job="{JOB}"}}')) and len(u) == 2 and all(v == 1 for v in u.values()) and u,
            timeout_s=30,
            extra=logs,
        )
        assert {re.search(r'component="(\w+)"', k).group(1) for k in up} == {"sessionizer", "inference"}

        sent = replay(pipe.s, "csv", [str(clicks_csv)], progress=False, reader_options=options)["clicks"]
        assert sent == len(clicks)
        consumed = 'sum(jump_clicks_consumed_total{job="jump-stream", component="sessionizer"})'
        accepted = 'sum(jump_clicks_accepted_total{job="jump-stream", component="sessionizer"})'
        preds = 'sum(jump_predictions_total{job="jump-stream", component="inference"})'
        count = 'sum(jump_click_to_prediction_seconds_count{job="jump-stream", component="inference"})'
        prom.wait(f"{sent} clicks consumed", lambda: prom.value(consumed) == sent, timeout_s=90, extra=logs)
        n_accepted = prom.value(accepted)
        assert n_accepted == sent  # clean input: every click accepted
        prom.wait(
            "a prediction per accepted click",
            lambda: prom.value(preds) == n_accepted and prom.value(count) == n_accepted,
            timeout_s=90,
            extra=logs,
        )
        # the predictions carry the served model's version (one here); every worker exports its process
        by_version = prom.query('sum by (model_version) (jump_predictions_total{job="jump-stream"})')
        assert len(by_version) == 1 and list(by_version.values()) == [n_accepted], by_version
        assert re.fullmatch(r'model_version="model:[0-9a-f]{12}"', next(iter(by_version))), by_version
        rss = prom.query('process_resident_memory_bytes{job="jump-stream"}')
        assert {re.search(r'component="(\w+)"', k).group(1) for k in rss} == {"sessionizer", "inference"}
        assert all(v > 10e6 for v in rss.values()), rss
        cpu = prom.query('sum by (component) (process_cpu_seconds_total{job="jump-stream"})')
        assert len(cpu) == 2 and all(v > 0 for v in cpu.values()), cpu
        assert len(prom.query('python_info{job="jump-stream"}')) == 2
        assert prom.query('jump_gpu_memory_reserved_bytes{job="jump-stream"}') == {}  # CPU workers: no GPU series
        # nothing counted twice: every other process reports zero of what it does not own
        assert prom.value('sum(jump_clicks_consumed_total{job="jump-stream"})') == sent
        assert prom.value('sum(jump_predictions_total{job="jump-stream"})') == n_accepted

        p99 = prom.value(
            'histogram_quantile(0.99, sum by (le) (jump_click_to_prediction_seconds_bucket{job="jump-stream"}))'
        )
        assert p99 is not None and math.isfinite(p99) and p99 > 0

        # recording rules on live data (evaluated every second)
        rec_p99 = prom.wait(
            "the p99 recording rule to be finite and > 0",
            lambda: (
                (v := prom.value("jump:click_to_prediction_seconds:p99_5m")) is not None
                and math.isfinite(v)
                and v > 0
                and v
            ),
            timeout_s=15,
        )
        assert prom.query("jump:click_to_prediction_seconds:p99_5m") == {
            'component="inference",job="jump-stream",namespace="jump"': rec_p99
        }
        assert prom.wait(
            "the dead-letter ratio", lambda: prom.query("jump:dead_letter_ratio:rate5m"), timeout_s=15
        ) == {'component="sessionizer",job="jump-stream",namespace="jump"': 0.0}
        lag = prom.wait(
            "the group lag of both components",
            lambda: (q := prom.query("jump:consumer_lag_messages:sum")) and len(q) == 2 and q,
            timeout_s=15,
        )
        assert all(v >= 0 for v in lag.values())

        # every rule of the repository loaded and evaluated without error
        def evaluated():
            groups = prom.get("/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None

        rules = prom.wait(
            "every rule evaluated without error",
            evaluated,
            timeout_s=15,
            extra=lambda: json.dumps(prom.get("/api/v1/rules"))[:3000],
        )
        ours = load_rules()
        assert Counter((r["type"], r["name"]) for r in rules) == Counter(
            ("alerting", r["alert"]) if "alert" in r else ("recording", r["record"]) for r in ours
        )
        assert {r["type"] for r in rules} == {"alerting", "recording"}

        # the alerts on a healthy stream: the trainer is missing (not part of this test); the replay is
        # one burst, so the p99 of click-to-prediction may exceed 1 s for a while; nothing else, and
        # nothing firing yet (every for: is longer than the test)
        alerts = prom.get("/api/v1/alerts")["alerts"]
        active = {(a["labels"]["alertname"], a["labels"].get("component")) for a in alerts}
        assert ("JumpComponentAbsent", "trainer") in active
        assert active <= {("JumpComponentAbsent", "trainer"), ("JumpClickToPredictionP99High", "inference")}, alerts
        assert {a["state"] for a in alerts} == {"pending"}, alerts

        procs.stop(pipe.procs["inference"])
        inf_up = f'up{{job="{JOB}", component="inference"}}'
        prom.wait("the stopped inference worker to be down", lambda: prom.value(inf_up) == 0, timeout_s=30)
        assert prom.value(f'up{{job="{JOB}", component="sessionizer"}}') == 1
        prom.wait(
            "JumpWorkerDown pending for the inference worker",
            lambda: any(
                a["labels"]["alertname"] == "JumpWorkerDown"
                and a["labels"]["component"] == "inference"
                and a["labels"]["pod"] == "jump-inference-0"
                and a["state"] == "pending"
                for a in prom.get("/api/v1/alerts")["alerts"]
            ),
            timeout_s=15,
        )
    finally:
        prom.stop()
        pipe.stop()
