"""JUMP_LOG_FORMAT (pipeline/logs.py): the JSON formatter, the workers' logging set-up (`jump` and the
Faust worker's own configuration), and `jump <worker>` without a broker writing JSON lines only.

A Faust worker on a broker logging JSON only: tests/integration/test_json_logs.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from datetime import datetime, timedelta

import pytest

from pipeline import logs
from pipeline.config import Settings
from pipeline.devtools.broker import free_port

FIELDS = {"time", "worker", "level", "logger", "message", "pid"}


@pytest.fixture
def root_logging():
    """Restore the root logger (handlers, level) and warnings capture after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def record(msg="hello %s", args=("world",), level=logging.INFO, name="jump.test", exc_info=None):
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_json_formatter_writes_one_object_per_line_with_the_fields():
    rec = record()
    obj = json.loads(logs.JsonFormatter("sessionizer").format(rec))
    assert set(obj) == FIELDS
    assert obj["worker"] == "sessionizer" and obj["level"] == "INFO" and obj["logger"] == "jump.test"
    assert obj["message"] == "hello world" and obj["pid"] == os.getpid()
    # ISO 8601 in UTC, to the millisecond, of the record's creation
    t = datetime.fromisoformat(obj["time"])
    assert t.utcoffset() == timedelta(0) and len(obj["time"]) == len("2024-01-01T00:00:00.000+00:00")
    assert abs(t.timestamp() - rec.created) < 0.001


def test_json_formatter_keeps_a_multi_line_message_and_traceback_on_one_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        exc = sys.exc_info()
    line = logs.JsonFormatter("inference").format(
        record("first line\nsecond line: %r ünïcode", ({"k": 1},), logging.ERROR, exc_info=exc)
    )
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "first line\nsecond line: {'k': 1} ünïcode" and obj["level"] == "ERROR"
    assert obj["exc_info"].startswith("Traceback") and "ValueError: bad\nvalue" in obj["exc_info"]
    # a record without an exception has no exc_info field
    assert "exc_info" not in json.loads(logs.JsonFormatter().format(record()))


def test_json_formatter_survives_unserialisable_arguments():
    obj = json.loads(logs.JsonFormatter().format(record("%s", (object(),))))
    assert obj["message"].startswith("<object object at")


def test_setup_json_sends_every_record_and_warning_as_json(root_logging, capfd):
    logs.setup(Settings.from_env(env={"JUMP_LOG_FORMAT": "json", "JUMP_LOG_LEVEL": "debug"}), "trainer")
    assert logs.json_enabled()
    logging.getLogger("aiokafka.conn").debug("a library's record")
    logging.getLogger("jump.trainer").info("ours")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    lines = capfd.readouterr().err.strip().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [(o["logger"], o["level"]) for o in objs] == [
        ("aiokafka.conn", "DEBUG"),
        ("jump.trainer", "INFO"),
        ("py.warnings", "WARNING"),
    ]
    assert {o["worker"] for o in objs} == {"trainer"} and "a deprecation" in objs[2]["message"]


def test_setup_text_keeps_the_plain_format(root_logging, capsys):
    root_logging.handlers[:] = []  # basicConfig leaves a configured root alone
    logs.setup(Settings.from_env(env={}), "sessionizer")
    assert not logs.json_enabled()
    logging.getLogger("jump.x").warning("plain %d", 1)
    line = capsys.readouterr().err.strip()
    assert line.endswith("[WARNING] plain 1") and line.startswith("[")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_faust_worker_logs_json_with_the_options(root_logging, capsys):
    """mode's Worker replaces the root handlers at start with a colour formatter of its own; with
    faust_worker_options it installs the JSON one instead, and stays quiet on the console."""
    import faust

    assert logs.faust_worker_options(Settings()) == {}
    s = Settings.from_env(env={"JUMP_LOG_FORMAT": "json"})
    logs.setup(s, "sessionizer")
    app = faust.App("jump-test-logs", broker="kafka://127.0.0.1:1", autodiscover=False)
    worker = faust.Worker(app, loglevel="info", redirect_stdouts=False, **logs.faust_worker_options(s))
    assert worker.quiet
    worker._setup_logging()  # what the worker does first when it starts (mode: default_on_first_start)
    logging.getLogger("faust.transport.drivers.aiokafka").info("Starting consumer")
    logging.getLogger("mode.worker").warning("a warning")
    worker.say("a console line")  # quiet: not written
    out = capsys.readouterr()
    assert out.out == ""
    objs = [json.loads(line) for line in out.err.strip().splitlines()]
    assert [(o["logger"], o["worker"]) for o in objs] == [
        ("faust.transport.drivers.aiokafka", "sessionizer"),
        ("mode.worker", "sessionizer"),
    ]
    # without the options, mode's own (non-JSON) format: the check above can fail
    plain = faust.Worker(app, loglevel="info", redirect_stdouts=False)
    plain._setup_logging()
    logging.getLogger("mode.worker").warning("a warning")
    with pytest.raises(json.JSONDecodeError):
        json.loads(capsys.readouterr().err.strip().splitlines()[-1])


def run_jump(command: str, tmp_path, **env) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "JUMP_BROKER_WAIT_S": "1",
        "JUMP_METRICS_PORT": "0",
        "TMPDIR": str(tmp_path),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", command], env=env, capture_output=True, text=True, timeout=90
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["sessionizer", "inference", "trainer"])
def test_worker_without_a_broker_writes_only_json_lines_and_exits_2(command, tmp_path):
    r = run_jump(command, tmp_path, JUMP_LOG_FORMAT="json")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) >= 2
    objs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(set(o) >= FIELDS and o["worker"] == command for o in objs), objs
    assert "connecting to Kafka at" in objs[0]["message"] and "KAFKA_BOOTSTRAP_SERVERS" in objs[0]["message"]
    last = objs[-1]
    assert last["level"] == "ERROR" and last["logger"] == "jump.pipeline"
    assert last["message"].startswith(f"jump {command}: error: no Kafka broker answered at 127.0.0.1:")
    assert "Traceback" not in r.stderr


def test_a_bad_log_format_is_one_line_naming_the_variable(tmp_path):
    r = run_jump("sessionizer", tmp_path, JUMP_LOG_FORMAT="xml")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "jump sessionizer: error: JUMP_LOG_FORMAT: must be text or json, not 'xml'"
    ]
