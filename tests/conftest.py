"""Shared fixtures: one Kafka-compatible broker per test session, per-test topics and groups.

`kafka_bootstrap` is $KAFKA_BOOTSTRAP_SERVERS when set (a real cluster), else an embedded Tansu
broker started once for the session. `stream_settings` gives every test its own topics and app id.
Helpers: `from tests.conftest import consume_all` (defined in tests/helpers/kafka.py).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.*` importable without a pytest pythonpath setting
    sys.path.insert(0, str(ROOT))

from tests.helpers.kafka import consume_all, kafka_kwargs, produce  # noqa: E402  (re-exported)

__all__ = ["consume_all", "kafka_kwargs", "produce"]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """Bootstrap servers of the test cluster: $KAFKA_BOOTSTRAP_SERVERS, else an embedded broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from pipeline.devtools.broker import EmbeddedBroker, tansu_binary

    try:
        tansu_binary()
    except RuntimeError as e:
        pytest.skip(f"no Kafka for the stream tests: KAFKA_BOOTSTRAP_SERVERS unset and {e}")
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = EmbeddedBroker(log_path=str(log))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def stream_settings(kafka_bootstrap, request, tmp_path):
    """Settings on the test cluster with topics and app id unique to this test (2 + 2 partitions)."""
    from pipeline.config import Settings

    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:40]
    token = f"{name}-{uuid.uuid4().hex[:8]}"
    topics = {f.name: f"{f.default}-{token}" for f in fields(Settings) if f.name.startswith("topic_")}
    return Settings.from_env(
        env={},
        bootstrap_servers=kafka_bootstrap,
        app_id=f"jump-test-{token}",
        partitions=2,
        output_partitions=2,
        metrics_port=0,
        model_dir=str(tmp_path / "models"),
        **topics,
    )


@pytest.fixture(scope="session")
def synthetic_prepared(tmp_path_factory):
    """A prepared synthetic dataset with structure (40k clicks, seed 5): POP is weak on it, a
    sequence model is not. Shared by the baseline and benchmark tests. -> PreparedDataset."""
    from jump_core.data.dataset import load_prepared
    from jump_core.data.prepare import PrepareConfig, prepare
    from jump_core.data.synth import SynthConfig, write_csv

    d = tmp_path_factory.mktemp("synthetic_prepared")
    write_csv(SynthConfig(clicks=40_000, seed=5), d / "clicks.csv")
    prepare(
        PrepareConfig(
            "csv",
            [str(d / "clicks.csv")],
            str(d / "data"),
            reader_options={"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"},
        ),
        log=lambda *_: None,
    )
    return load_prepared(d / "data")
