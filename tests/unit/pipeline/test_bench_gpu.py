"""scripts/bench_gpu.py (`make bench-gpu`, issue 13 part 5) on the CPU at tiny sizes: the JSON has every
section, the equality check passed (CPU against a second CPU engine, cached against full passes), every
figure is > 0; its comparison catches a real difference; the time guard skips phases cleanly. The GPU
figures themselves come from a run on a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench_gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_on_cpu_writes_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    args = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "one epoch of RecSys15" in proc.stdout  # the printed table
    r = json.loads(out.read_text())
    for section in ("environment", "settings", "equality", "inference", "training", "memory", "targets", "skipped"):
        assert section in r, section
    assert r["environment"]["device"] == "cpu" and r["environment"]["torch"]
    assert r["skipped"] == [] and r["errors"] == {}

    eq = r["equality"]
    assert eq["passed"] and eq["device_check"]["honoured"] and not eq["truncated"]
    for pair in ("device_vs_cpu", "device_cached_vs_full_pass"):
        c = eq[pair]
        assert c["passed"] and c["requests"] == r["settings"]["equality_requests"] and c["missing"] == 0, c
        assert c["topk_identical_frac"] == 1.0, c
    # both of the engine's paths ran: cached steps and full passes (a backlog of one session in a batch)
    assert eq["runs"]["device"]["engine_stats"]["cached"] > 0 and eq["runs"]["device"]["engine_stats"]["full"] > 0
    assert eq["runs"]["device_no_cache"]["engine_stats"]["cached"] == 0

    assert set(r["inference"]) == {"batch_256", "batch_1024"}
    for entry in r["inference"].values():
        for level in ("model", "engine", "runner"):
            assert entry[level]["predictions_per_s"] > 0 and entry[level]["batches"] >= 2, (level, entry)
    tr = r["training"]
    assert tr["clicks_per_s"] > 0 and tr["timed_batches"] == r["settings"]["train_batches"]
    assert tr["recsys15_epoch_s"] > 0
    assert r["memory"] == {"equality": None, "inference": None, "training": None}  # no CUDA: null
    t = r["targets"]
    assert t["equal_predictions"]["met"] is True
    assert t["inference_predictions_per_s"]["value"] > 0 and t["train_epoch_recsys15_s"]["value"] > 0
    assert isinstance(t["inference_predictions_per_s"]["met"], bool) and "note" in t


def test_comparison_catches_a_real_difference_and_allows_near_ties():
    bg = load_script()
    ref = {
        ("s@1", 0): {"top_items": ["a", "b", "c"], "top_scores": [9.0, 5.0, 1.0], "dwell_s": 30.0, "item_known": True}
    }
    same = json.loads(json.dumps(list(ref.values())))[0]
    assert bg.compare(ref, {("s@1", 0): same})["passed"]
    wrong = {**same, "top_items": ["a", "c", "b"], "top_scores": [9.0, 4.0, 1.0]}  # a real reordering
    c = bg.compare(ref, {("s@1", 0): wrong})
    assert not c["passed"] and c["topk_identical_frac"] == 0.0 and c["examples"][0]["first_differing_rank"] == 2
    assert not bg.compare(ref, {("s@1", 0): {**same, "dwell_s": 31.0}})["passed"]  # dwell beyond rtol 1e-3
    assert not bg.compare(ref, {})["passed"]  # a request left unanswered

    # 1,000 requests, one of them two items within float noise of each other swapped: a near tie
    many = {("s@1", k): {**same, "top_scores": [9.0, 5.0, 5.0 - 1e-6]} for k in range(1000)}
    got = {k: dict(v) for k, v in many.items()}
    got[("s@1", 7)] = {**same, "top_items": ["a", "c", "b"], "top_scores": [9.0, 5.0, 5.0 - 1e-6]}
    c = bg.compare(many, got)
    assert c["passed"] and c["topk_identical_frac"] == 0.999 and c["topk_identical_up_to_near_ties_frac"] == 1.0


def test_time_guard_skips_phases_cleanly(tmp_path):
    bg = load_script()
    r = bg.bench_gpu("cpu", str(tmp_path / "g.json"), quick=True, budget_s=0.0)
    assert [s["phase"] for s in r["skipped"]] == ["equality", "inference", "training"]
    assert r["equality"] is r["inference"] is r["training"] is None
    assert all(v["met"] is None for k, v in r["targets"].items() if k != "note")
    assert json.loads((tmp_path / "g.json").read_text())["skipped"] == r["skipped"]
