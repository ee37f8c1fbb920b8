"""The stream's worker processes for the broker-backed tests (tests/integration/): settings with
per-test topics, a random-weight model, and `Pipeline` (a sessionizer, an inference worker and
optionally a trainer on their own topics); plus the trainer settings of the trainer tests.
"""

from __future__ import annotations

import uuid
from dataclasses import fields, replace
from pathlib import Path

import torch

from jump_core.artifacts.checkpoint import save_checkpoint
from jump_core.model import Jump, JumpConfig
from pipeline import codec
from pipeline.config import Settings
from pipeline.devtools import procs
from pipeline.devtools.broker import free_port
from pipeline.runtime.kafka import ensure_topics
from tests.helpers.kafka import consume_all

#: the trainer settings of the trainer tests (small, fast runs)
TRAINER = {
    "trainer_every_sessions": 800,
    "trainer_min_sessions": 400,
    "trainer_window_sessions": 3000,
    "trainer_epochs": 1,
    "trainer_dim": 16,
    "trainer_lr": 0.003,
    "trainer_time_budget_s": 60.0,
    "trainer_every_s": 3600.0,
}


def make_settings(bootstrap: str, tag: str, tmp: Path, **kw) -> Settings:
    token = f"{tag}-{uuid.uuid4().hex[:8]}"
    topics = {f.name: f"{f.default}-{token}" for f in fields(Settings) if f.name.startswith("topic_")}
    base = {
        "bootstrap_servers": bootstrap,
        "app_id": f"jump-test-{token}",
        "partitions": 2,
        "output_partitions": 2,
        "tick_interval_s": 1.0,
        "idle_close_s": 3.0,
        "context_clicks": 100,
        "max_session_clicks": 100,
        "checkpoint": str(tmp / "model.ckpt"),
        "model_dir": str(tmp / "models"),
        "device": "cpu",
        "data_dir": str(tmp / "faust"),
        "top_k": 20,
        "max_future_s": 300.0,
        "reload_check_s": 1.0,
    }
    base.update(kw)
    return Settings.from_env(env={}, **topics, **base)


def random_model(path: Path, items: list[str], dim: int = 16) -> Jump:
    """Untrained weights suffice for parity: both paths must compute the same function."""
    torch.manual_seed(0)
    model = Jump(JumpConfig(n_items=len(items) + 1, dim=dim)).eval()
    save_checkpoint(path, model, items, "test")
    return model


def output_identity(settings: Settings, kind: str, r) -> bytes:
    """The identity (`jump-id` header) of a consumed output record (kafka-python ConsumerRecord),
    after checking the output conventions on it; other kinds: the Kafka key."""
    if kind not in codec.FORMATTED:
        return r.key
    from aiokafka.partitioner import murmur2

    rec = codec.decode(kind, r.value)
    headers = dict(r.headers or ())
    ident = codec.identity(kind, rec).encode()
    assert headers.get(codec.ID_HEADER) == ident, (headers, ident)
    fmt = "json" if r.value[:1] == b"{" else "msgpack"
    assert headers.get("content-type") == codec.OUTPUT_FORMATS[fmt] and fmt == settings.output_format, headers
    if kind != "dead_letter":
        assert r.key == rec["session_key"].encode(), (r.key, rec["session_key"])
    if r.key is not None:  # Kafka's default partitioner: murmur2(key) over the topic's partitions
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % settings.output_partitions, (r.key, r.partition)
    return ident


class Pipeline:
    """A sessionizer and an inference worker process on their own topics."""

    def __init__(self, settings: Settings, tmp: Path):
        self.s, self.tmp = settings, tmp
        self.ports = {"sessionizer": free_port(), "inference": free_port()}
        self.procs = {}
        ensure_topics(settings)

    def start(self, role: str, extra_env: dict | None = None):
        log = self.tmp / f"{role}.log"
        s = replace(self.s, metrics_port=self.ports[role])
        self.procs[role] = procs.start_worker(role, s, log, extra_env)
        procs.wait_metrics(self.ports[role], self.procs[role], timeout_s=90, log_path=log)

    def metrics(self, role: str) -> dict:
        return procs.scrape(self.ports[role])

    def log(self, role: str) -> str:
        return (self.tmp / f"{role}.log").read_text()[-4000:]

    def stop(self):
        for p in self.procs.values():
            procs.stop(p)

    def records(self, topic: str, kind: str, idle_s: float = 1.0) -> list[tuple[bytes, dict]]:
        """(identity, record) of every record: the key of a prediction / training-log record / dead
        letter is the session key, its identity the `jump-id` header (checked here on every record:
        the header equals the value's identity, the content type its format, the partition the
        key's under Kafka's default partitioner)."""
        return [
            (output_identity(self.s, kind, r), codec.decode(kind, r.value))
            for r in consume_all(self.s, topic, idle_s=idle_s)
        ]

    def wait_count(self, topic: str, kind: str, n: int, timeout_s: float = 120.0):
        """Wait until `topic` holds n distinct identities; returns {identity: record} (last copy wins)."""

        def done():
            recs = dict(self.records(topic, kind))
            return recs if len(recs) >= n else None

        try:
            return procs.wait_for(done, timeout_s, interval_s=1.0, what=f"{n} records on {topic}")
        except TimeoutError:
            raise AssertionError(
                f"{topic}: fewer than {n} records\n--- sessionizer\n{self.log('sessionizer')}"
                f"\n--- inference\n{self.log('inference')}"
            ) from None
