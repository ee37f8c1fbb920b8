"""deploy/asyncapi.yaml through the official AsyncAPI parser (@asyncapi/parser, npm), where Node is
available: installed once into .cache/asyncapi-parser (pinned), skipped with the reason when Node,
npm or the npm registry is not there. The parser must also reject a broken copy (the check can fail)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PARSER = "@asyncapi/parser@3.6.3"
CACHE = ROOT / ".cache" / "asyncapi-parser"
SCRIPT = ROOT / "scripts" / "validate_asyncapi.mjs"


@pytest.fixture(scope="module")
def parser_dir() -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js / npm not installed: the AsyncAPI parser check needs them")
    stamp = CACHE / f".installed-{PARSER.replace('/', '_')}"
    if not stamp.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        try:
            out = subprocess.run(
                ["npm", "install", "--prefix", str(CACHE), "--no-save", "--no-audit", "--no-fund", PARSER],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install {PARSER} timed out (no npm registry?)")
        if out.returncode != 0:
            pytest.skip(f"npm install {PARSER} failed (no npm registry?): {out.stderr.strip()[-300:]}")
        stamp.touch()
    return CACHE


def _validate(parser_dir: Path, doc: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(SCRIPT), str(doc)],
        env={"ASYNCAPI_PARSER_DIR": str(parser_dir), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_document_is_valid_asyncapi(parser_dir):
    out = _validate(parser_dir, ROOT / "deploy" / "asyncapi.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid AsyncAPI 3." in out.stdout


def test_the_parser_rejects_a_broken_document(parser_dir, tmp_path):
    doc = yaml.safe_load((ROOT / "deploy" / "asyncapi.yaml").read_text())
    doc["channels"]["predictions"]["messages"]["prediction"] = {"$ref": "#/components/messages/no-such-message"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    out = _validate(parser_dir, broken)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error" in out.stdout
