"""Module boundaries, checked by reading every import statement (at any depth: a lazy import inside a
function counts as much as one at the top):

- jump_core imports none of kafka, aiokafka, faust, prometheus_client, pipeline (it is the model
  and its offline tooling; the stream builds on it, never the reverse);
- pipeline/core/ imports none of kafka, aiokafka, faust, nor a runtime or a development tool
  (pipeline.runtime, pipeline.devtools): the workers' logic runs and is tested without Kafka.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA = {"kafka", "aiokafka", "faust"}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ROOT).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                if node.module:
                    base.append(node.module)
                names = [".".join([*base, alias.name]) for alias in node.names]
                out.update(names if not node.module else [".".join(base), *names])
            else:
                out.add(node.module)
                out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def violations(folder: str, forbidden: set[str]) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_import_scan_resolves_relative_imports(tmp_path):
    assert {"pipeline.runtime.kafka", "pipeline.runtime.kafka.ensure_topics", "pipeline.codec"} <= imported_modules(
        ROOT / "pipeline" / "runtime" / "faust_app.py"
    )
    assert "pipeline.codec.Msg" in imported_modules(ROOT / "pipeline" / "core" / "inference.py")
    assert {"aiokafka", "aiokafka.AIOKafkaConsumer"} <= imported_modules(ROOT / "pipeline" / "runtime" / "kafka.py")


def test_jump_core_imports_no_stream_library_and_not_the_pipeline():
    assert violations("jump_core", KAFKA | {"prometheus_client", "pipeline"}) == {}


def test_pipeline_core_imports_no_kafka_client_and_no_runtime():
    assert violations("pipeline/core", KAFKA | {"pipeline.runtime", "pipeline.devtools"}) == {}


@pytest.mark.parametrize(
    "modules, forbidden",
    [
        (
            ["pipeline.core.sessionizer", "pipeline.core.inference", "pipeline.core.trainer", "pipeline.core.engine"],
            sorted(KAFKA),
        ),
        (["jump_core.cli"], sorted(KAFKA | {"prometheus_client", "pipeline"})),
    ],
)
def test_importing_the_cores_loads_no_kafka_client(modules, forbidden):
    """The same boundary at run time: what importing the modules loads (top-level imports, transitively)."""
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
