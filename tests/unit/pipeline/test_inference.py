"""The inference engine: cached incremental steps == the full pass == offline live rows."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from jump_core.artifacts.checkpoint import save_checkpoint
from jump_core.contract import SessionBatch
from jump_core.model import Jump, JumpConfig
from jump_core.sessions import censor
from pipeline.core.engine import InferenceEngine

ITEMS = [f"i{n}" for n in range(40)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(1)
    model = Jump(JumpConfig(n_items=len(ITEMS) + 1, dim=16)).eval()
    path = tmp_path_factory.mktemp("m") / "m.ckpt"
    save_checkpoint(path, model, ITEMS, "test")
    return path


def sessions(seed=0, n=30):
    rng = random.Random(seed)
    out = {}
    for s in range(n):
        t, clicks = 1000.0 * s, []
        for _ in range(rng.randint(1, 12)):
            t += rng.choice([1.0, 20.0, 90.0, 700.0, 2500.0])
            clicks.append((rng.choice([*ITEMS, "unknown-item"]), t))
        out[f"s{s}@0"] = clicks
    return out


def requests_for(sess, context=100):
    reqs = []
    for sid, clicks in sess.items():
        for k in range(len(clicks)):
            window = clicks[max(0, k + 1 - context) : k + 1]
            reqs.append(
                {
                    "session_key": sid[:-2],
                    "session_id": sid,
                    "position": k,
                    "items": [c[0] for c in window],
                    "ts": [c[1] for c in window],
                    "event_ts": clicks[k][1],
                    "ingest_ts": 0.0,
                    "partition": 0,
                }
            )
    return reqs


def interleave(reqs, seed):
    """Shuffle across sessions, keeping each session's order (as a partition delivers them)."""
    rng = random.Random(seed)
    by = {}
    for r in reqs:
        by.setdefault(r["session_id"], []).append(r)
    out = []
    while by:
        sid = rng.choice(sorted(by))
        out.append(by[sid].pop(0))
        if not by[sid]:
            del by[sid]
    return out


def run(engine, reqs, batch):
    out = []
    for i in range(0, len(reqs), batch):
        out += engine.predict(reqs[i : i + batch])[0]
    return {(p["session_id"], p["position"]): p for p in out}


def same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["top_items"] == b[k]["top_items"], k
        np.testing.assert_allclose(a[k]["top_scores"], b[k]["top_scores"], rtol=1e-5, atol=1e-6)
        assert a[k]["dwell_s"] == pytest.approx(b[k]["dwell_s"], rel=1e-5)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_cached_steps_equal_full_pass(ckpt, batch):
    reqs = interleave(requests_for(sessions()), seed=batch)
    full = run(InferenceEngine(ckpt, "cpu", cache_sessions=0), reqs, batch)
    cached_engine = InferenceEngine(ckpt, "cpu")
    cached = run(cached_engine, reqs, batch)
    same(cached, full)
    st = cached_engine.stats
    assert st["cached"] + st["full"] == len(reqs)
    if batch == 1:
        assert st["cached"] > 0.8 * len(reqs)  # in-order requests hit the cache
    else:
        assert st["full"] > 0  # same-session backlogs: one pass each


def test_resent_windowed_and_evicted_requests_fall_back_correctly(ckpt):
    reqs = interleave(requests_for(sessions(seed=3), context=4), seed=5)
    reqs = reqs + reqs[:40]  # at-least-once re-sends
    full = run(InferenceEngine(ckpt, "cpu", cache_sessions=0), reqs, 16)
    tiny = InferenceEngine(ckpt, "cpu", cache_sessions=3)  # constant eviction
    same(run(tiny, reqs, 16), full)
    assert tiny.stats["full"] > 0 and tiny.stats["cached"] > 0


def test_stream_rows_equal_offline_live_rows(ckpt):
    """What the worker emits for click j == the offline `predict(batch, 'live')` row of click j."""
    engine = InferenceEngine(ckpt, "cpu")
    sess = sessions(seed=7, n=10)
    got = run(engine, interleave(requests_for(sess), 1), 32)
    index = {n: i + 1 for i, n in enumerate(ITEMS)}
    ids = [[index.get(i, 0) for i, _ in c] for c in sess.values()]
    taus = [censor([t for _, t in c], None, 2000.0, 30.0) for c in sess.values()]
    batch = SessionBatch.from_sessions(ids, [t for t, _ in taus], [d for _, d in taus])
    scores, (median, _, _) = engine.model.predict(batch, "live")
    _top_s, top_i = scores.topk(20, dim=1)
    row = 0
    for b, (sid, clicks) in enumerate(sess.items()):
        for j in range(len(clicks)):
            p = got[(sid, j)]
            assert p["dwell_s"] == pytest.approx(float(median[b, j]), rel=1e-5)
            assert p["item_known"] == (ids[b][j] != 0)
            if j < len(clicks) - 1:
                assert p["top_items"] == [ITEMS[i - 1] for i in top_i[row].tolist()]
                row += 1
    assert row == len(scores)
