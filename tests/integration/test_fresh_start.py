"""A worker started as the Procfile starts it, on a machine where nothing ran before (issue 14)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from pipeline.devtools import procs
from pipeline.devtools.broker import free_port
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
