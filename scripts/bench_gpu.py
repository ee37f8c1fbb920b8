"""The GPU path, ready to measure (issue 13, part 5): the inference worker's and training's CUDA path.

    make bench-gpu                                  # one GPU: well under 8 min, JSON in runs/bench/gpu/
    .venv/bin/python scripts/bench_gpu.py --device cpu --quick --json /tmp/gpu.json   # tiny, on a CPU (the test)

One process, four sections, each phase stopped cleanly when the time budget (--budget-s, 420 s) runs low
(what was skipped or cut short is recorded):

1. equality -- a replay of requests as the sessionizer writes them (fields of codec "request": the
   session's latest JUMP_CONTEXT_CLICKS clicks, msgpack-encoded), through `InferenceRunner.handle` -- what
   the worker runs: decode, `InferenceEngine.predict` (cached `live_step`s and full passes), encode --
   on the CPU and on --device, over one random-weight JUMP checkpoint (dwell head, item blend and scale
   randomised too, so the dwell is not a constant). Passes when the top-k item ids are identical for
   >= 99.9 % of requests and every top-k score and dwell agrees within rtol 1e-3. The device is also
   replayed with the state cache off (every request a full pass): cached == full on the device. With
   --device cpu the reference is a second CPU engine (trivially equal; it exercises the code). The
   served dtype is float32 (the checkpoint's; no half precision is served), so there is no other pair.
2. inference -- predictions/s at d = 100 over a 38k-item catalogue, micro-batches of 256 and 1024,
   warm-up excluded, torch.cuda.synchronize() around every timed batch, three levels:
   `model` (the per-batch work: `Jump.live_step` from cached states + top-k + dwell, results copied to
   the host), `engine` (`InferenceEngine.predict` on decoded requests in steady state: censoring, the
   state cache, building the tensors, Python results) and `runner` (`InferenceRunner.handle`: decode,
   engine, encode of every prediction; the Kafka client excluded).
3. training -- `jump train`'s default model and TrainConfig (batch 100, fused Adam, clipping) on a
   synthetic RecSys15-like set (jump synth's generator over the same catalogue, sessions of one click
   dropped as `jump prepare` does), a fixed number of batches timed after a warm-up, as `fit_model` runs
   them (batch building and the copy to the device included): clicks/s and the implied time of one
   epoch of the full RecSys15 (31.7 M clicks).
4. memory -- torch.cuda.max_memory_allocated / max_memory_reserved per phase (null on a CPU).

The JSON has the device name, torch version, every figure, the settings and a "targets" section (the
issue's aims, met or not); a table is printed. A phase that raises is recorded under "errors" and the
others still run. Exit status 1 when the equality check fails or a phase raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

RECSYS15_CLICKS = 31_700_000
AIM_EQUAL = 0.999  # fraction of requests whose top-k ids are identical
RTOL, ATOL = 1e-3, 1e-4  # scores and dwell
AIM_PREDICTIONS_PER_S = 1_000_000  # one H200, micro-batch 1024
AIM_EPOCH_S = 300.0  # one epoch of the full RecSys15

SIZES = {
    "full": {
        "n_items": 38_000,  # the RecSys15 catalogue
        "dim": 100,  # jump train's d
        "top_k": 20,
        "context_clicks": 50,  # JUMP_CONTEXT_CLICKS's default
        "equality_requests": 20_000,
        "equality_batch": 256,  # JUMP_MAX_BATCH's default
        "batch_sizes": [256, 1024],
        "pool_per_batch": 4,  # open sessions per request of a micro-batch (so a batch rarely holds one twice)
        "warm_batches": 8,
        "min_seconds": 3.0,  # per timed figure: at least this long ...
        "min_batches": 20,  # ... and this many batches
        "max_batches": 5000,
        "model_memory": 16,  # `model` level: cached states hold up to this many earlier clicks
        "train_clicks": 150_000,
        "train_warmup": 5,
        "train_batches": 100,
        "train_model": {},  # jump train's defaults (d = 100)
        "min_left_s": 20.0,  # a phase starts only with this much budget left
    },
    "quick": {
        "n_items": 400,
        "dim": 16,
        "top_k": 20,
        "context_clicks": 50,
        "equality_requests": 1_000,
        "equality_batch": 64,
        "batch_sizes": [256, 1024],
        "pool_per_batch": 2,
        "warm_batches": 2,
        "min_seconds": 0.05,
        "min_batches": 2,
        "max_batches": 3,
        "model_memory": 8,
        "train_clicks": 4_000,
        "train_warmup": 1,
        "train_batches": 3,
        "train_model": {"dim": 16},
        "min_left_s": 0.0,
    },
}


# --------------------------------------------------------------------------- device helpers


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev: torch.device) -> dict | None:
    if dev.type != "cuda":
        return None
    return {
        "max_allocated_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20, 1),
        "max_reserved_mib": round(torch.cuda.max_memory_reserved(dev) / 2**20, 1),
    }


# --------------------------------------------------------------------------- the model and the requests


def write_checkpoint(path: Path, n_items: int, dim: int) -> list[str]:
    """A random-weight JUMP over `n_items` items (as stream_bench's), its dwell path randomised too."""
    import math

    from jump_core.artifacts.checkpoint import save_checkpoint
    from jump_core.model import Jump, JumpConfig

    torch.manual_seed(0)
    model = Jump(JumpConfig(n_items=n_items + 1, dim=dim, dwell_blend=0.7, dwell_blend_item=0.2, dwell_scale=1.1))
    with torch.no_grad():
        # item embeddings 10x the initial spread, their norms log-normal: scores span several units and the
        # top ones stand apart, as a trained model's do (at the initial std 0.1 the top 20 of 38k items lie
        # within ~0.01 of each other and float noise alone would reorder them)
        model.item_emb.weight.normal_(0.0, 1.0).mul_(torch.randn(n_items + 1, 1).mul_(0.5).exp_())
        model.item_emb.weight[0].zero_()
        # a fresh model's dwell head is zero: every dwell would be one constant
        model.dwell_weight.weight.normal_(0.0, 0.3)
        model.dwell_bias.weight.normal_(math.log(30.0), 0.5)
        model.dwell_weight.weight[0].zero_()
        model.dwell_bias.weight[0].zero_()
        model.dwell_item_log_median.normal_(math.log(40.0), 0.5)
    items = [f"item{i}" for i in range(n_items)]
    save_checkpoint(path, model, items, "bench-gpu")
    return items


class RequestStream:
    """Inference requests as the sessionizer writes them, for `pool` sessions open at once.

    Sessions: mostly short (geometric, mean 3.3 clicks), 1 % long (15-80 clicks: past JUMP_CONTEXT_CLICKS
    the window slides and the engine takes a full pass); items Zipf-popular over the catalogue, 1 %
    unknown to the model; gaps log-normal (median 40 s), 2 % beyond c1. Each round emits the next click
    of every open session in a random order; a finished session is replaced by a new one. A request
    carries the session's latest `context` clicks up to the current one, as `SessionizerCore._on_click`.
    """

    def __init__(self, items: list[str], seed: int, pool: int, context: int, partitions: int = 4):
        self.rng = np.random.default_rng(seed)
        self.items, self.context, self.partitions = items, context, partitions
        w = 1.0 / np.arange(1, len(items) + 1)
        self.cdf = np.cumsum(w / w.sum())
        self.perm = self.rng.permutation(len(items))  # popularity does not follow the ids
        self.serial = 0
        self.active = [self._new() for _ in range(pool)]
        self.order: list[int] = []

    def _new(self) -> dict:
        rng, n = self.rng, self.serial
        self.serial += 1
        length = int(rng.integers(15, 81)) if rng.random() < 0.01 else int(rng.geometric(0.3))
        codes = self.perm[np.minimum(np.searchsorted(self.cdf, rng.random(length)), len(self.items) - 1)]
        names = [f"new{n}-{j}" if rng.random() < 0.01 else self.items[c] for j, c in enumerate(codes)]
        gaps = np.where(
            rng.random(length) < 0.02, rng.uniform(2000.0, 3500.0, length), rng.lognormal(np.log(40), 1.0, length)
        )
        start = 1_700_000_000.0 + 0.25 * n
        ts = np.round(start + np.concatenate([[0.0], np.cumsum(gaps[:-1])]), 3).tolist()
        key = f"u{n}"
        return {
            "key": key,
            "sid": f"{key}@{int(start * 1000)}",
            "items": names,
            "ts": ts,
            "next": 0,
            "p": n % self.partitions,
        }

    def batch(self, size: int) -> list[dict]:
        out = []
        while len(out) < size:
            if not self.order:
                self.order = self.rng.permutation(len(self.active)).tolist()
            slot = self.order.pop()
            s = self.active[slot]
            k = s["next"]
            s["next"] += 1
            lo = max(0, k + 1 - self.context)
            out.append(
                {
                    "session_key": s["key"],
                    "session_id": s["sid"],
                    "position": k,
                    "items": s["items"][lo : k + 1],
                    "ts": s["ts"][lo : k + 1],
                    "event_ts": s["ts"][k],
                    "ingest_ts": time.time(),
                    "partition": s["p"],
                }
            )
            if s["next"] == len(s["items"]):
                self.active[slot] = self._new()
        return out


def encode_batch(requests: list[dict], topic: str, first_offset: int) -> list:
    from pipeline import codec
    from pipeline.codec import Msg

    now = time.time()
    return [
        Msg(topic, r["partition"], first_offset + i, r["session_key"].encode(), codec.encode("request", r), now)
        for i, r in enumerate(requests)
    ]


def make_runner(ckpt: Path, model_dir: Path, device: str, top_k: int, cache_sessions: int | None = None):
    """The worker's InferenceRunner, its settings read as the worker reads them (JUMP_* variables)."""
    from pipeline.config import Settings
    from pipeline.core.inference import InferenceRunner

    env = {
        "JUMP_CHECKPOINT": str(ckpt),
        "JUMP_MODEL_DIR": str(model_dir),  # empty: the JUMP_CHECKPOINT file is served
        "JUMP_DEVICE": device,
        "JUMP_TOP_K": str(top_k),
        "JUMP_TORCH_THREADS": "0",  # torch's default threads: the CPU reference of a GPU run is not the worker
        "JUMP_RELOAD_CHECK_S": "0",
    }
    if cache_sessions is not None:
        env["JUMP_INFERENCE_CACHE_SESSIONS"] = str(cache_sessions)
    runner = InferenceRunner(Settings.from_env(env=env))
    runner.load()
    return runner


class Handler:
    """Drives `InferenceRunner.handle` on one event loop; keeps (or only counts) the encoded predictions."""

    def __init__(self, runner, keep: bool):
        self.runner, self.keep = runner, keep
        self.loop = asyncio.new_event_loop()
        self.sent: list[bytes] = []

    async def _send(self, topic, key, value, partition):
        if self.keep:
            self.sent.append(value)

    def handle(self, msgs: list) -> int:
        return self.loop.run_until_complete(self.runner.handle(msgs, self._send))

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


# --------------------------------------------------------------------------- 1. equality


def _tol(x):
    return ATOL + RTOL * np.abs(x)


def compare(ref: dict, got: dict) -> dict:
    """Predictions keyed by (session_id, position): top-k ids identical (strictly, and up to near ties),
    top-k scores (rank by rank) and dwell within tolerance.

    A near tie: where the ids differ at rank r, the reference's score at r is within the score tolerance
    of its neighbour's (r - 1 or r + 1), or r is the last rank (the swap is with the unseen rank k + 1,
    which the rank-by-rank score check bounds). Floating-point reduction order differs between devices,
    so two items that close may swap; a real difference (a wrong state, a wrong item) moves scores by
    far more. `passed`: every request answered by both, ids identical up to near ties, every score and
    dwell within tolerance, and strictly identical ids for >= AIM_EQUAL of requests."""
    keys = sorted(set(ref) & set(got))
    same_ids = same_up_to_ties = same_set = close_scores = close_dwell = known = 0
    max_score, max_dwell_rel, examples = 0.0, 0.0, []
    for key in keys:
        a, b = ref[key], got[key]
        ia, ib = a["top_items"], b["top_items"]
        sa, sb = np.asarray(a["top_scores"], dtype=np.float64), np.asarray(b["top_scores"], dtype=np.float64)
        same_ids += ia == ib
        same_set += set(ia) == set(ib)
        known += a["item_known"] == b["item_known"]
        if len(sa) == len(sb) and len(ia) == len(ib):
            diff = np.abs(sa - sb)
            max_score = max(max_score, float(diff.max(initial=0.0)))
            close_scores += bool(np.all(diff <= _tol(sa)))
            gap = np.abs(np.diff(sa))  # (k-1,) reference scores of neighbouring ranks
            near = np.zeros(len(sa), dtype=bool)
            near[:-1] |= gap <= _tol(sa[:-1])
            near[1:] |= gap <= _tol(sa[1:])
            near[-1:] = True
            same_up_to_ties += all(x == y or near[r] for r, (x, y) in enumerate(zip(ia, ib)))
        rel = abs(a["dwell_s"] - b["dwell_s"]) / max(abs(a["dwell_s"]), 1e-12)
        max_dwell_rel = max(max_dwell_rel, rel)
        close_dwell += rel <= RTOL
        if ia != ib and len(examples) < 3:
            r = next(r for r, (x, y) in enumerate(zip(ia, ib)) if x != y)
            examples.append(
                {
                    "request": list(key),
                    "first_differing_rank": r + 1,
                    "reference": [ia[r], round(float(sa[r]), 7)],
                    "device": [ib[r], round(float(sb[r]), 7)],
                }
            )
    n = len(keys)
    frac = same_ids / n if n else 0.0
    missing = len(set(ref) ^ set(got))
    return {
        "requests": n,
        "missing": missing,
        "topk_identical": same_ids,
        "topk_identical_frac": round(frac, 6),
        "topk_identical_up_to_near_ties_frac": round(same_up_to_ties / n, 6) if n else 0.0,
        "topk_same_set_frac": round(same_set / n, 6) if n else 0.0,
        "scores_within_tol_frac": round(close_scores / n, 6) if n else 0.0,
        "dwell_within_tol_frac": round(close_dwell / n, 6) if n else 0.0,
        "max_abs_score_diff": max_score,
        "max_rel_dwell_diff": max_dwell_rel,
        "examples": examples,
        "passed": bool(
            n > 0 and missing == 0 and frac >= AIM_EQUAL and same_up_to_ties == n and close_scores == n
            and close_dwell == n and known == n
        ),
    }  # fmt: skip


def replay(runner, msgs: list, batch: int, stop_at: float) -> tuple[dict, dict]:
    """Every request through `runner.handle` in micro-batches; the decoded predictions by (session_id, position)."""
    from pipeline import codec

    h = Handler(runner, keep=True)
    done, t0 = 0, time.perf_counter()
    try:
        for i in range(0, len(msgs), batch):
            if i and time.monotonic() > stop_at:
                break
            h.handle(msgs[i : i + batch])
            done = min(len(msgs), i + batch)
    finally:
        h.close()
    preds = [codec.decode("prediction", v) for v in h.sent]
    info = {
        "requests": done,
        "seconds": round(time.perf_counter() - t0, 3),
        "engine_stats": dict(runner.engine.stats),
        "served_on": str(next(runner.engine.model.parameters()).device),
        "engine_device": str(runner.engine.device),
    }
    return {(p["session_id"], p["position"]): p for p in preds}, info


def phase_equality(cfg: dict, ckpt: Path, model_dir: Path, items: list[str], device: str, stop_at: float) -> dict:
    # 1.5 sessions open per request of a micro-batch: some batches hold two clicks of a session (a backlog,
    # answered by one full pass), so both of the engine's paths run on the device
    pool = 3 * cfg["equality_batch"] // 2
    stream = RequestStream(items, seed=1, pool=pool, context=cfg["context_clicks"])
    requests = stream.batch(cfg["equality_requests"])
    msgs = encode_batch(requests, "jump-inference-requests", 0)
    k, b = cfg["top_k"], cfg["equality_batch"]
    # cut short by the time budget: each later run replays what the earlier ones did, compared on that prefix
    ref, ref_info = replay(make_runner(ckpt, model_dir, "cpu", k), msgs, b, stop_at)
    target = make_runner(ckpt, model_dir, device, k)
    got, got_info = replay(target, msgs[: ref_info["requests"]], b, stop_at)
    full, full_info = replay(
        make_runner(ckpt, model_dir, device, k, cache_sessions=0), msgs[: got_info["requests"]], b, stop_at
    )
    done = {(r["session_id"], r["position"]) for r in requests[: full_info["requests"]]}
    ref, got, full = ({key: v for key, v in d.items() if key in done} for d in (ref, got, full))
    dev = target.engine.device
    wanted = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
    served = next(target.engine.model.parameters()).device
    device_check = {
        "JUMP_DEVICE": device,
        "engine_device": str(dev),
        "model_parameters_on": str(served),
        "honoured": served.type == wanted.type and dev.type == wanted.type,
    }
    result = {
        "reference": "cpu",
        "target": str(dev),
        "served_dtype": str(next(target.engine.model.parameters()).dtype),
        "micro_batch": b,
        "tolerance": {"topk_identical_frac": AIM_EQUAL, "rtol": RTOL, "atol_scores": ATOL},
        "device_check": device_check,
        "runs": {"cpu": ref_info, "device": got_info, "device_no_cache": full_info},
        "device_vs_cpu": compare(ref, got),
        "device_cached_vs_full_pass": compare(got, full),
        "truncated": full_info["requests"] < len(msgs),
    }
    result["passed"] = bool(
        device_check["honoured"]
        and result["device_vs_cpu"]["passed"]
        and result["device_cached_vs_full_pass"]["passed"]
    )
    return result


# --------------------------------------------------------------------------- 2. inference throughput


def timed(step, prepare, dev: torch.device, cfg: dict, stop_at: float) -> dict:
    """Run step(prepare()) until min_seconds and min_batches (at most max_batches); only step is timed."""
    seconds, batches, count, truncated = 0.0, 0, 0, False
    while batches < cfg["max_batches"] and (batches < cfg["min_batches"] or seconds < cfg["min_seconds"]):
        if batches and time.monotonic() > stop_at:
            truncated = True
            break
        x = prepare()
        _sync(dev)
        t0 = time.perf_counter()
        count += step(x)
        _sync(dev)
        seconds += time.perf_counter() - t0
        batches += 1
    return {
        "batches": batches,
        "predictions": count,
        "seconds": round(seconds, 4),
        "ms_per_batch": round(1000 * seconds / max(batches, 1), 3),
        "predictions_per_s": round(count / seconds, 1) if seconds > 0 else None,
        "truncated": truncated,
    }


@torch.no_grad()
def time_model(model, B: int, cfg: dict, stop_at: float) -> dict:
    """`live_step` on B cached states + top-k + dwell, copied to the host: the model's per-batch work.
    The states hold up to `model_memory` earlier clicks (mean ~2.3, as short sessions give); the inputs
    are on the device already (the engine's host-to-device copies are in the `engine` figure)."""
    from jump_core.model import LiveState

    dev, d, M = model.device, model.config.dim, cfg["model_memory"]
    n_items = model.config.n_items
    g = torch.Generator().manual_seed(B)
    length = torch.from_numpy(np.minimum(np.random.default_rng(B).geometric(0.3, B) - 1, M))  # (B,) mean ~2.3
    memory = torch.randn(B, M, d, generator=g) * 0.5 * (torch.arange(M) < length[:, None])[..., None]
    state = LiveState(
        (torch.randn(B, d, generator=g) * 0.5).to(dev),
        (torch.randn(B, d, generator=g) * 0.5).to(dev),
        memory.to(dev),
        length.to(dev),
    )
    has_prev = (torch.rand(B, generator=g) < 0.8).to(dev)  # the rest: a session's first click, or a re-send
    prev_items = torch.randint(1, n_items, (B,), generator=g).to(dev)
    prev_tau = torch.exp(torch.randn(B, generator=g) + np.log(40.0)).to(dev)
    items = torch.randint(1, n_items, (B,), generator=g).to(dev)
    k = min(cfg["top_k"], n_items - 1)

    def step(_unused):
        out, _ = model.live_step(state, prev_items, prev_tau, has_prev, items)
        top_s, top_i = out.scores.topk(k, dim=1)
        top_s.cpu(), top_i.cpu(), out.median.cpu()  # what InferenceEngine._emit copies back
        return B

    for _ in range(3):  # warm-up: kernels, cuBLAS handles, the caching allocator
        step(None)
    r = timed(step, lambda: None, dev, cfg, stop_at)
    r["what"] = "Jump.live_step + topk + dwell, host copy"
    return r


def time_engine(engine, stream: RequestStream, B: int, cfg: dict, stop_at: float) -> dict:
    for _ in range(cfg["warm_batches"]):
        engine.predict(stream.batch(B))
    before = dict(engine.stats)
    r = timed(lambda reqs: len(engine.predict(reqs)[0]), lambda: stream.batch(B), engine.device, cfg, stop_at)
    cached, full = engine.stats["cached"] - before["cached"], engine.stats["full"] - before["full"]
    r["cached_frac"] = round(cached / max(cached + full, 1), 4)
    r["what"] = "InferenceEngine.predict on decoded requests (steady state: the session-state cache warm)"
    return r


def time_runner(runner, stream: RequestStream, B: int, cfg: dict, stop_at: float) -> dict:
    h = Handler(runner, keep=False)
    offset = [0]

    def prepare():
        msgs = encode_batch(stream.batch(B), runner.s.topic_requests, offset[0])
        offset[0] += B
        return msgs

    try:
        for _ in range(cfg["warm_batches"]):
            h.handle(prepare())
        r = timed(h.handle, prepare, runner.engine.device, cfg, stop_at)
    finally:
        h.close()
    r["what"] = "InferenceRunner.handle: decode + engine + encode (no Kafka client)"
    return r


def phase_inference(cfg: dict, ckpt: Path, model_dir: Path, items: list[str], device: str, stop_at: float) -> dict:
    out = {}
    for B in cfg["batch_sizes"]:
        if time.monotonic() > stop_at:
            out[f"batch_{B}"] = {"skipped": "time budget"}
            continue
        pool = cfg["pool_per_batch"] * B
        entry = {"micro_batch": B, "open_sessions": pool}
        runner = make_runner(ckpt, model_dir, device, cfg["top_k"])
        entry["model"] = time_model(runner.engine.model, B, cfg, stop_at)
        stream = RequestStream(items, seed=B, pool=pool, context=cfg["context_clicks"])
        entry["engine"] = time_engine(runner.engine, stream, B, cfg, stop_at)
        runner = make_runner(ckpt, model_dir, device, cfg["top_k"])  # a fresh cache, the same requests
        stream = RequestStream(items, seed=B, pool=pool, context=cfg["context_clicks"])
        entry["runner"] = time_runner(runner, stream, B, cfg, stop_at)
        out[f"batch_{B}"] = entry
    return out


# --------------------------------------------------------------------------- 3. training


def synthetic_sessions(n_items: int, clicks: int):
    """jump synth's generator over the catalogue, as `jump prepare` leaves it: item i -> index i + 1,
    eq. 4 dwell, sessions of one click dropped."""
    from jump_core.data.dataset import SessionSet
    from jump_core.data.prepare import filter_sessions
    from jump_core.data.synth import SynthConfig, generate
    from jump_core.sessions import C1_DEFAULT, C2_DEFAULT, censor

    rows = np.array(
        list(generate(SynthConfig(clicks=clicks, seed=0, n_items=n_items, n_topics=max(40, n_items // 100))))
    )
    sid = rows[:, 0].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    offsets = np.r_[starts, len(sid)].astype(np.int64)
    ts = rows[:, 3]
    tau, delta = censor(ts, offsets, C1_DEFAULT, C2_DEFAULT)
    raw = SessionSet(
        rows[:, 2].astype(np.int64) + 1, ts, tau, delta, offsets, np.array([str(s).encode() for s in sid[starts]])
    )
    data, _ = filter_sessions(raw, np.ones(len(sid), dtype=bool), 2)
    return data


def phase_training(cfg: dict, dev: torch.device, stop_at: float) -> dict:
    from jump_core import registry
    from jump_core.training.train import TrainConfig

    t0 = time.perf_counter()
    data = synthetic_sessions(cfg["n_items"], cfg["train_clicks"])
    prep_s = time.perf_counter() - t0
    tcfg = TrainConfig(device=str(dev), model=dict(cfg["train_model"]))
    windows = data.windows(tcfg.max_len)
    torch.manual_seed(tcfg.seed)
    model = registry.build("jump", cfg["n_items"] + 1, tcfg.model).to(dev)
    opt = model.configure_optimizer(tcfg)
    model.train()
    epoch = [1]
    it = iter(model.train_steps(windows, tcfg, epoch[0], dev))

    def step() -> int:  # fit_model's inner loop
        nonlocal it
        try:
            loss, n, _ = next(it)
        except StopIteration:  # the synthetic set is exhausted: the next epoch
            epoch[0] += 1
            it = iter(model.train_steps(windows, tcfg, epoch[0], dev))
            loss, n, _ = next(it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip)
        opt.step()
        return n

    for _ in range(cfg["train_warmup"]):
        step()
    _sync(dev)
    t1 = time.perf_counter()
    batches = clicks = 0
    truncated = False
    while batches < cfg["train_batches"]:
        if batches and time.monotonic() > stop_at:
            truncated = True
            break
        clicks += step()
        batches += 1
    _sync(dev)
    seconds = time.perf_counter() - t1
    rate = clicks / seconds if seconds > 0 else None
    mc = model.config
    return {
        "model": {"dim": mc.dim, "n_items": mc.n_items - 1, "objective": mc.objective, "fast_path": mc.fast_path},
        "train_config": {"batch_size": tcfg.batch_size, "lr": tcfg.lr, "clip": tcfg.clip, "max_len": tcfg.max_len},
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"sessions": len(data), "clicks": data.n_clicks, "seconds_to_build": round(prep_s, 2)},
        "warmup_batches": cfg["train_warmup"],
        "timed_batches": batches,
        "timed_clicks": clicks,
        "seconds": round(seconds, 3),
        "clicks_per_batch": round(clicks / max(batches, 1), 1),
        "clicks_per_s": round(rate, 1) if rate else None,
        "recsys15_clicks": RECSYS15_CLICKS,
        "recsys15_epoch_s": round(RECSYS15_CLICKS / rate, 1) if rate else None,
        "truncated": truncated,
    }


# --------------------------------------------------------------------------- the run


def environment(dev: torch.device) -> dict:
    env = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or "cpu"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["gpu_count"] = torch.cuda.device_count()
    return env


def targets(result: dict) -> dict:
    eq, inf, tr = result.get("equality"), result.get("inference") or {}, result.get("training")
    big = inf.get("batch_1024") or {}
    rate = (big.get("model") or {}).get("predictions_per_s")
    epoch = (tr or {}).get("recsys15_epoch_s")
    out = {
        "equal_predictions": {
            "aim": f"top-k item ids on the device identical to the CPU's for >= {AIM_EQUAL:.1%} of requests, "
            f"scores and dwell within rtol {RTOL:g}",
            "value": eq["device_vs_cpu"]["topk_identical_frac"] if eq else None,
            "met": eq["passed"] if eq else None,
        },
        "inference_predictions_per_s": {
            "aim": f">= {AIM_PREDICTIONS_PER_S:,} predictions/s on one H200 (micro-batch 1024, d = 100, "
            "38k items: forward + top-k + dwell)",
            "value": rate,
            "met": (rate >= AIM_PREDICTIONS_PER_S) if rate else None,
            "engine_predictions_per_s": (big.get("engine") or {}).get("predictions_per_s"),
            "runner_predictions_per_s": (big.get("runner") or {}).get("predictions_per_s"),
        },
        "train_epoch_recsys15_s": {
            "aim": f"<= {AIM_EPOCH_S:g} s for one epoch of the full RecSys15 ({RECSYS15_CLICKS / 1e6:.1f} M clicks) "
            "at jump train's defaults",
            "value": epoch,
            "met": (epoch <= AIM_EPOCH_S) if epoch else None,
        },
    }
    if result["environment"]["device"] == "cpu":
        out["note"] = "the aims are for one GPU; on a CPU these figures only exercise the code"
    return out


def _fmt(v, unit="") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v < 100:
        return f"{v:.4g}{unit}"
    return f"{v:,.0f}{unit}"


def table(result: dict) -> str:
    env = result["environment"]
    rows = [("figure", "value", "aim", "met")]
    tg = result["targets"]
    eq = result.get("equality")
    if eq:
        c, full = eq["device_vs_cpu"], eq["device_cached_vs_full_pass"]
        rows += [
            (f"equality: top-k ids identical ({eq['target']} vs cpu, {c['requests']:,} requests)",
             f"{c['topk_identical_frac']:.4%}", f">= {AIM_EQUAL:.1%}", _fmt(tg["equal_predictions"]["met"])),
            ("equality: top-k ids identical up to near ties", f"{c['topk_identical_up_to_near_ties_frac']:.4%}",
             "100%", ""),
            ("equality: max |score diff| / max rel dwell diff",
             f"{c['max_abs_score_diff']:.2g} / {c['max_rel_dwell_diff']:.2g}", f"rtol {RTOL:g}", ""),
            ("equality: cached == full pass on the device", f"{full['topk_identical_frac']:.4%}", "",
             _fmt(full["passed"])),
            ("equality: JUMP_DEVICE honoured (model on)", eq["device_check"]["model_parameters_on"], "",
             _fmt(eq["device_check"]["honoured"])),
        ]  # fmt: skip
    for name, entry in (result.get("inference") or {}).items():
        if "skipped" in entry:
            rows.append((f"inference {name}", "skipped", "", ""))
            continue
        for level in ("model", "engine", "runner"):
            r = entry[level]
            aim = met = ""
            if level == "model" and entry["micro_batch"] == 1024:
                aim, met = f">= {AIM_PREDICTIONS_PER_S:,}/s", _fmt(tg["inference_predictions_per_s"]["met"])
            rows.append(
                (f"inference b={entry['micro_batch']} {level} predictions/s ({r['ms_per_batch']:.3g} ms/batch)",
                 _fmt(r["predictions_per_s"]), aim, met)
            )  # fmt: skip
    tr = result.get("training")
    if tr:
        rows += [
            (f"training clicks/s (d={tr['model']['dim']}, batch {tr['train_config']['batch_size']}, "
             f"{tr['timed_batches']} batches)", _fmt(tr["clicks_per_s"]), "", ""),
            ("one epoch of RecSys15 (31.7 M clicks), s", _fmt(tr["recsys15_epoch_s"]), f"<= {AIM_EPOCH_S:g}",
             _fmt(tg["train_epoch_recsys15_s"]["met"])),
        ]  # fmt: skip
    for phase, m in result["memory"].items():
        if m is not None:
            rows.append((f"peak CUDA memory, {phase} (allocated / reserved MiB)",
                         f"{m['max_allocated_mib']:,.0f} / {m['max_reserved_mib']:,.0f}", "", ""))  # fmt: skip
    for s in result["skipped"]:
        rows.append((f"skipped: {s['phase']}", s["reason"], "", ""))
    for phase, err in result["errors"].items():
        if not phase.endswith("_traceback"):
            rows.append((f"FAILED: {phase}", err[:100], "", ""))
    cut = [p for p in ("equality", "training") if (result.get(p) or {}).get("truncated")]
    for name, entry in (result.get("inference") or {}).items():
        cut += [
            f"inference {name} {lv}" for lv in ("model", "engine", "runner") if (entry.get(lv) or {}).get("truncated")
        ]
    if cut:
        rows.append(("cut short by the time budget", ", ".join(cut), "", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = [f"jump GPU benchmark on {env['device']} ({env['device_name']}), torch {env['torch']}"]
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(str(c).ljust(w) if j == 0 else str(c).rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def bench_gpu(device: str = "auto", json_out: str | None = None, quick: bool = False, budget_s: float = 420.0) -> dict:
    from jump_core.training.train import resolve_device

    t_start = time.monotonic()
    deadline = t_start + budget_s
    cfg = dict(SIZES["quick" if quick else "full"])
    dev = resolve_device(device)  # the worker gets `device` as JUMP_DEVICE ("auto" included) and must agree
    result: dict = {
        "benchmark": "scripts/bench_gpu.py (make bench-gpu)",
        "environment": environment(dev),
        "settings": {"device_requested": device, "quick": quick, "budget_s": budget_s, **cfg},
        "equality": None,
        "inference": None,
        "training": None,
        "memory": {},
        "phase_seconds": {},
        "skipped": [],
        "errors": {},
    }

    def run_phase(phase: str, share: float, fn):
        """fn(stop_at): the phase gets `share` of the budget left (the last one all of it)."""
        left = deadline - time.monotonic()
        if left < max(cfg["min_left_s"], 0.0) or left <= 0:
            result["skipped"].append({"phase": phase, "reason": f"time budget: {left:.0f} s left"})
            result["memory"][phase] = None
            return
        print(f"== {phase} ({left:.0f} s of the budget left)", flush=True)
        _reset_peak(dev)
        t0 = time.perf_counter()
        try:
            result[phase] = fn(time.monotonic() + share * (left - (0.0 if quick else 5.0)))
        except Exception as exc:  # recorded (a CUDA error, out of memory): the other phases still run
            traceback.print_exc()
            result["errors"][phase] = f"{type(exc).__name__}: {exc}"[:2000]
            result["errors"][f"{phase}_traceback"] = traceback.format_exc()[-6000:]
        result["phase_seconds"][phase] = round(time.perf_counter() - t0, 2)
        result["memory"][phase] = _peak(dev)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        ckpt, model_dir = Path(tmp) / "model.ckpt", Path(tmp) / "models"
        items = write_checkpoint(ckpt, cfg["n_items"], cfg["dim"])
        run_phase("equality", 0.35, lambda stop: phase_equality(cfg, ckpt, model_dir, items, device, stop))
        run_phase("inference", 0.55, lambda stop: phase_inference(cfg, ckpt, model_dir, items, device, stop))
    run_phase("training", 1.0, lambda stop: phase_training(cfg, dev, stop))
    result["targets"] = targets(result)
    result["seconds"] = round(time.monotonic() - t_start, 1)
    print(table(result))
    print(f"total {result['seconds']:.0f} s (budget {budget_s:g} s)")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2))
        print(f"wrote {json_out}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the test): d = 16, 400 items, a few batches")
    p.add_argument("--budget-s", type=float, default=420.0, help="total time guard: phases stop cleanly past it")
    a = p.parse_args(argv)
    try:
        from jump_core.training.train import resolve_device

        resolve_device(a.device)
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    result = bench_gpu(a.device, a.json, a.quick, a.budget_s)
    eq = result.get("equality")
    return 1 if result["errors"] or (eq is not None and not eq["passed"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
