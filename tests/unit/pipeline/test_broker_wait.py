"""No broker at start: every worker and tool says what it waits for, then exits 2 with one line (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipeline.config import Settings
from pipeline.devtools.broker import free_port
from pipeline.runtime.kafka import wait_for_broker


def test_wait_for_broker_logs_the_servers_then_fails_naming_the_setting():
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    s = Settings.from_env(env={"KAFKA_BOOTSTRAP_SERVERS": servers, "JUMP_BROKER_WAIT_S": "3"})
    lines = []
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as e:
        wait_for_broker(s, say=lines.append, every_s=1.0)
    assert time.monotonic() - t0 < 15
    assert lines[0] == f"connecting to Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS)"
    assert any(line.startswith(f"waiting for Kafka at {servers}") for line in lines[1:])
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(e.value) and "within 3 s" in str(e.value) and "\n" not in str(e.value)


def test_bad_broker_wait_setting_is_refused():
    with pytest.raises(ValueError, match="JUMP_BROKER_WAIT_S"):
        Settings.from_env(env={"JUMP_BROKER_WAIT_S": "0"})


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["sessionizer", "inference", "trainer", "tail"])
def test_command_without_a_broker_exits_2_with_one_line(command, tmp_path):
    servers = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers,
        "JUMP_BROKER_WAIT_S": "3",
        "JUMP_METRICS_PORT": "0",
        "TMPDIR": str(tmp_path),
    }
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", command], env=env, capture_output=True, text=True, timeout=90
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    assert "Traceback" not in r.stderr
    out = r.stdout + r.stderr
    assert f"connecting to Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS)" in out
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"jump {command}: error: no Kafka broker answered at {servers} within 3 s")
    assert "KAFKA_BOOTSTRAP_SERVERS" in last
