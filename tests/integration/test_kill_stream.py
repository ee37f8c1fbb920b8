"""Repeated kills, the short version of scripts/kill_stream.py (issue 14): the sessionizer, the
inference worker and the trainer are SIGKILLed at seeded random moments while clicks flow, and
restarted at once. Every session reaches the training log with identical content, every click
gets a prediction, and duplicate predictions of one model are identical. The README's figures
come from the full run (`scripts/kill_stream.py --json runs/kill/kill.json`: 10/5/3 kills)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_repeated_kills_lose_nothing(kafka_bootstrap, tmp_path):
    out = tmp_path / "kill.json"
    args = [
        sys.executable,
        str(ROOT / "scripts" / "kill_stream.py"),
        "--clicks", "3000",
        "--duration", "45",
        "--sessionizer-kills", "3",
        "--inference-kills", "2",
        "--trainer-kills", "1",
        "--seed", "1",
        "--timeout", "300",
        "--json", str(out),
    ]  # fmt: skip
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), f"no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    r = json.loads(out.read_text())
    assert r["kills"] == {"sessionizer": 3, "inference": 2, "trainer": 1}
    assert r["sessions_missing"] == 0 and r["sessions_extra"] == 0 and r["sessions_with_wrong_content"] == 0, r
    assert r["clicks_predicted"] == 3000, r
    assert r["duplicates_differing_under_one_model"] == 0, r
    assert r["passed"] and proc.returncode == 0
