"""`jump bench stream --rate / --set` parsing (pipeline.devtools.stream_bench); no broker."""

from __future__ import annotations

import pytest


def test_rate_and_worker_settings():
    from pipeline.devtools.stream_bench import _parse_rate, _parse_set, _worker_overrides

    assert _parse_rate(None) is None and _parse_rate("half") == "half" and _parse_rate("250") == 250.0
    for bad in ("0", "-5", "inf", "nan", "fast"):
        with pytest.raises(ValueError):
            _parse_rate(bad)
    env = _parse_set(["JUMP_FETCH_MAX_WAIT_MS=10", "JUMP_SESSIONIZER_WAIT_S=0.005"])
    assert _worker_overrides(env) == {"fetch_max_wait_ms": 10, "sessionizer_wait_s": 0.005}
    with pytest.raises(ValueError):
        _parse_set(["JUMP_MAX_WAIT_S"])
    with pytest.raises(ValueError):
        _worker_overrides({"JUMP_NO_SUCH_SETTING": "1"})
    with pytest.raises(ValueError):
        _worker_overrides({"JUMP_FETCH_MAX_WAIT_MS": "0"})  # validated as Settings.from_env does
