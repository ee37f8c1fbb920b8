"""Start, watch and stop the stream's worker processes (demo, benchmark, tests).

Workers are started as `python -m pipeline.cli <role>` with their settings in the environment,
each in its own process group, and stopped by pid (Faust can ignore SIGTERM for a long time, so a
stop escalates to SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..config import Settings, settings_env


def start_worker(
    role: str, settings: Settings, log_path: str | Path, extra_env: dict | None = None, argv: list[str] | None = None
) -> subprocess.Popen:
    """Launch `jump <role>` (sessionizer or inference) with `settings`; output to log_path. `argv`:
    another Python command line instead (e.g. `-m faust -A pipeline.sessionizer worker`)."""
    env = {**os.environ, **settings_env(settings), **(extra_env or {})}
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, *(argv or ["-m", "pipeline.cli", role])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen | None, grace_s: float = 5.0, sig=signal.SIGTERM) -> None:
    """Stop a worker's process group: `sig`, then SIGKILL after grace_s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL, no grace (crash tests)."""
    stop(proc, grace_s=0.0, sig=signal.SIGKILL)


def scrape(port: int, timeout_s: float = 2.0) -> dict[str, float]:
    """The worker's /metrics as {'name{label="v",...}': value} (text format, no parsing library needed
    beyond prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s).read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def metric_sum(samples: dict[str, float], name: str) -> float:
    """Sum of a metric's samples over all label values."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def wait_metrics(
    port: int, proc: subprocess.Popen | None = None, timeout_s: float = 60.0, log_path: str | Path | None = None
) -> dict[str, float]:
    """Wait until the worker serves /metrics (it does so once started); raise if it dies."""
    deadline = time.time() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            tail = Path(log_path).read_text()[-3000:] if log_path else ""
            raise RuntimeError(f"worker exited with {proc.returncode} before serving metrics:\n{tail}")
        try:
            return scrape(port)
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"no metrics on port {port} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.25, what: str = "condition"):
    """Poll predicate() until truthy; returns its value or raises TimeoutError."""
    deadline = time.time() + timeout_s
    while True:
        v = predicate()
        if v:
            return v
        if time.time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
