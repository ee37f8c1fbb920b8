"""Everything under tests/integration/ needs the Kafka-compatible broker (the `kafka_bootstrap`
fixture of tests/conftest.py: $KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu broker) and is marked
`integration`: `pytest -m "not integration"` runs the unit tests only, `make test` runs both."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
