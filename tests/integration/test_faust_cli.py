"""Faust's own command line on the module-level app (`faust -A pipeline.sessionizer ...`), and a first
deployment with JUMP_AUTO_OFFSET_RESET=latest: the clicks already on the topic are skipped, the
internal topics are not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline import codec
from pipeline.config import settings_env
from pipeline.devtools import procs
from pipeline.devtools.broker import free_port
from pipeline.runtime.kafka import ensure_topics
from tests.helpers.kafka import consume_all, produce
from tests.helpers.stream import make_settings

pytestmark = pytest.mark.timeout(180)


def test_faust_tables_command_needs_no_broker(tmp_path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "pipeline.sessionizer", "tables"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sessions" in out.stdout and "open sessions by session key" in out.stdout


def test_faust_worker_starts_a_first_deployment_from_now(kafka_bootstrap, tmp_path):
    s = make_settings(kafka_bootstrap, "fcli", tmp_path, auto_offset_reset="latest", log_format="json")
    s = replace(s, metrics_port=free_port())
    ensure_topics(s)
    old = [(f"old-{u}".encode(), codec.encode_click(f"old-{u}", "a", 1_700_000_000 + u)) for u in range(20)]
    produce(s, s.topic_clicks, old)
    log = tmp_path / "faust-worker.log"
    proc = procs.start_worker(
        "sessionizer", s, log, argv=["-m", "faust", "-A", "pipeline.sessionizer", "worker", "-l", "info"]
    )
    try:
        procs.wait_metrics(s.metrics_port, proc, timeout_s=90, log_path=log)  # served once it prepared
        new = [(f"new-{u}".encode(), codec.encode_click(f"new-{u}", "b", 1_700_000_100 + u)) for u in range(20)]
        produce(s, s.topic_clicks, new)
        procs.wait_for(
            lambda: len(consume_all(s, s.topic_requests, idle_s=0.3)) >= len(new) or None,
            90,
            interval_s=1.0,
            what="the new clicks' requests",
        )
        keys = {codec.decode("request", r.value)["session_key"] for r in consume_all(s, s.topic_requests, idle_s=0.5)}
        assert keys == {k.decode() for k, _ in new}, "a click from before the first start was sessionized"
        # JUMP_LOG_FORMAT=json also under Faust's CLI, from the app's start on
        said = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any("start from now" in r["message"] and r["worker"] == "sessionizer" for r in said), said[-5:]
    finally:
        procs.stop(proc)
    assert settings_env(s)["JUMP_AUTO_OFFSET_RESET"] == "latest"
