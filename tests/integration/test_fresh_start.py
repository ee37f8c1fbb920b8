"""A worker started as the Procfile starts it, on a machine where nothing ran before, and its readiness
probe on a restart (issue 14)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from jump_core.data.synth import SynthConfig, write_csv
from pipeline.devtools import procs
from pipeline.devtools.broker import free_port
from pipeline.devtools.replay import replay
from pipeline.runtime.kafka import ensure_topics
from tests.helpers.stream import make_settings

pytestmark = pytest.mark.timeout(180)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_sessionizer_starts_with_the_default_data_dir_under_an_empty_tmpdir(kafka_bootstrap, tmp_path):
    root = tmp_path / "fresh-tmp"  # $TMPDIR of a fresh machine: empty, no jump-stream/ in it
    root.mkdir()
    s = replace(make_settings(kafka_bootstrap, "fresh", tmp_path), data_dir="", metrics_port=free_port())
    ensure_topics(s)
    log = tmp_path / "sessionizer.log"
    proc = procs.start_worker("sessionizer", s, log, extra_env={"TMPDIR": str(root)})
    try:
        procs.wait_metrics(s.metrics_port, proc, timeout_s=90, log_path=log)
        procs.wait_for(lambda: ready(s.metrics_port) or proc.poll() is not None, 90, what="/readyz")
        assert proc.poll() is None, log.read_text()[-3000:]
        assert ready(s.metrics_port)
        assert (root / "jump-stream" / f"{s.app_id}-sessionizer").is_dir()  # the documented default
    finally:
        procs.stop(proc)


def test_readyz_follows_the_table_recovery(kafka_bootstrap, tmp_path):
    """/readyz is 200 only while the sessionizer's Table is recovered, so a Kubernetes rolling update
    waits for a new pod: a second worker joining the group is ready only after Faust's "Restore complete",
    and the first one answers 503 while the rebalance makes it recover, then 200 again."""
    clicks = tmp_path / "clicks.csv"
    write_csv(SynthConfig(clicks=3000, seed=5), clicks)
    s = replace(make_settings(kafka_bootstrap, "ready", tmp_path), metrics_port=free_port())
    ensure_topics(s)
    options = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
    replay(s, "csv", [str(clicks)], progress=False, reader_options=options)
    s2 = replace(s, metrics_port=free_port())
    first = procs.start_worker("sessionizer", s, tmp_path / "first.log")
    second = None
    try:  # the first worker's open sessions are in the Table's changelog
        procs.wait_metrics(s.metrics_port, first, timeout_s=90, log_path=tmp_path / "first.log")
        procs.wait_for(
            lambda: procs.metric_sum(procs.scrape(s.metrics_port), "jump_clicks_accepted_total") >= 3000, 120
        )
        procs.wait_for(lambda: ready(s.metrics_port), 30, what="the first worker's /readyz")
        log = tmp_path / "second.log"
        second = procs.start_worker("sessionizer", s2, log)
        procs.wait_metrics(s2.metrics_port, second, timeout_s=90, log_path=log)
        first_dropped = second_not_ready = False
        deadline = time.monotonic() + 120
        while not ready(s2.metrics_port):
            second_not_ready = True
            first_dropped = first_dropped or not ready(s.metrics_port)
            assert second.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        text = log.read_text()  # read after the first 200: the recovery must already be logged
        assert second_not_ready and "Restore complete" in text, text[-3000:]
        assert text.index("Restore complete") < text.index("sessionizer ready: the Table is recovered")
        assert first_dropped, "the first worker stayed ready through the rebalance"
        procs.wait_for(lambda: ready(s.metrics_port), 60, what="the first worker ready again")
        assert "not ready: recovering the Table" in (tmp_path / "first.log").read_text()
    finally:
        procs.stop(second)
        procs.kill(first)
