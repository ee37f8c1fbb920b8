"""JUMP_LOG_FORMAT=json on the broker: the Faust workers (the sessionizer, and the inference worker
on its Faust runtime) write nothing but JSON lines -- Faust's and mode's own records included --
from start to a SIGTERM shutdown. Without a broker, and the formatter: tests/unit/pipeline/test_logs.py.
"""

from __future__ import annotations

import json

import pytest

from pipeline.devtools import procs
from tests.helpers.stream import Pipeline, make_settings, random_model

READY = '"logger": "faust.worker", "message": "[^Worker]: Ready"'  # Faust's start-up end, as JSON


@pytest.mark.timeout(240)
def test_faust_workers_write_only_json_lines(kafka_bootstrap, tmp_path):
    random_model(tmp_path / "model.ckpt", [f"i{n}" for n in range(20)])
    settings = make_settings(kafka_bootstrap, "jsonlogs", tmp_path, log_format="json", inference_runtime="faust")
    pipe = Pipeline(settings, tmp_path)
    roles = ("sessionizer", "inference")
    try:
        for role in roles:
            pipe.start(role)
        try:
            procs.wait_for(
                lambda: all(READY in (tmp_path / f"{r}.log").read_text() for r in roles),
                90,
                what="both Faust workers to log that they are ready",
            )
        except TimeoutError as e:
            raise AssertionError(f"{e}\n" + "\n".join(f"--- {r}\n{pipe.log(r)}" for r in roles)) from None
    finally:
        pipe.stop()  # SIGTERM: Faust logs its shutdown too
    for role in roles:
        text = (tmp_path / f"{role}.log").read_text()  # the worker's stdout and stderr
        lines = text.splitlines()
        assert lines, role
        objs = []
        for line in lines:
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{role}: a line that is not JSON: {line!r}\n{text[-3000:]}")
        assert all(isinstance(o, dict) and o["worker"] == role and o["level"] and o["time"] for o in objs)
        loggers = {o["logger"] for o in objs}
        assert "jump.pipeline" in loggers  # ours (the broker wait)
        assert any(name.startswith(("faust", "mode")) for name in loggers), loggers  # Faust's own records
        assert any(o["logger"] == "faust.worker" and o["message"].endswith("Stopping...") for o in objs)
