"""JUMP inference on micro-batches of requests: the model side of the inference worker, without Kafka.

A request carries the session's most recent clicks up to and including the current one (item ids
and event times). The dwell tuples of the context clicks come from jump_core.sessions.censor --
the function offline preparation uses -- and the current click is scored with the model's `live`
rule (its dwell is unknown: (c2, censored)), via `Jump.live_predict` / `Jump.live_step`. Hence the
stream emits, for every click, exactly the row that `jump evaluate --protocol live` scores offline.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from jump_core.artifacts.checkpoint import load_checkpoint
from jump_core.artifacts.model_store import model_version
from jump_core.contract import SessionBatch
from jump_core.model import LiveState
from jump_core.sessions import censor
from jump_core.training.train import resolve_device


class Request(NamedTuple):
    """A decoded request and its model input."""

    record: dict  # the request record (codec "request")
    ids: list[int]  # vocabulary index of each context click (0: unknown item)
    tau: np.ndarray  # (n,) eq. 4 dwell of each context click; the last one is the live click's
    delta: np.ndarray  # (n,) censored flags


class Cached(NamedTuple):
    """A session's state after its first j clicks (all with known dwell), for `Jump.live_step`."""

    items: list[str]  # the j clicks' items ...
    ts: list[float]  # ... and event times (a request must extend exactly this prefix)
    fast: torch.Tensor  # (d,)
    slow: torch.Tensor  # (d,)
    memory: torch.Tensor  # (j, d) fast-slow outputs h_1..h_j


class CacheHit(NamedTuple):
    """A request answered by one `live_step` from its session's cached state."""

    request: Request
    slot: int  # its index in the micro-batch (and in the results)
    cached: Cached
    has_prev: bool  # click n-1 must be consumed first (its dwell just became known)


class FullPass(NamedTuple):
    """Requests answered by one pass over the longest of them (a backlog of one session's clicks)."""

    request: Request  # the longest request
    targets: list[tuple[int, int]]  # (slot, click index in `request`) of every request it answers


class Result(NamedTuple):
    top_items: list[int]  # vocabulary indices, best first
    top_scores: list[float]
    dwell_s: float  # predicted dwell on the current click (median)


class InferenceEngine:
    """A loaded checkpoint and the request -> prediction function.

    Sessions are continued from cached states when the request extends the cached prefix by one
    click (the normal case: one request per click, in order), so a click costs one or two recurrent
    steps instead of a pass over its whole prefix. Anything else -- a cache miss, a re-sent request,
    an out-of-order insertion, a prefix cut by JUMP_CONTEXT_CLICKS -- takes the full pass
    (`Jump.live_predict`) over the request's clicks. Both paths compute the same function (tested).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        device: str = "auto",
        top_k: int = 20,
        chunk: int = 64,
        cache_sessions: int = 20_000,
        loaded: tuple | None = None,
    ):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        # `loaded`: (model, meta) already loaded and verified from `checkpoint` (ModelStore.verify, which
        # loads onto the CPU): moved to this engine's device here, or its inputs and weights would differ
        self.model, self.meta = loaded or load_checkpoint(self.path, map_location=self.device)
        self.model = self.model.to(self.device).eval()
        self.items: list[str] = self.meta["items"]
        self.index = {name: i + 1 for i, name in enumerate(self.items)}  # 0 = unknown item
        self.top_k = min(top_k, len(self.items))
        cfg = self.model.config
        self.c1, self.c2, self.dim = cfg.c1, cfg.c2, cfg.dim
        self.version = model_version(self.path, self.meta["state_sha256"])
        self.lock = threading.Lock()
        self.chunk = chunk
        self.cache_sessions = cache_sessions
        self.cache: OrderedDict[str, Cached] = OrderedDict()
        self.stats = {"cached": 0, "full": 0}
        # the state before a session's first click, shared (read-only: `_cached` copies, `_store` clones)
        zero = torch.zeros(self.dim, device=self.device)
        self._first = Cached([], [], zero, zero, torch.zeros(0, self.dim, device=self.device))

    def predict(self, requests: list[dict]) -> tuple[list[dict], int]:
        """Predictions (without emit_ts) for decoded request records, and the count of unknown items
        among the requests' current clicks."""
        prepared: list[Request] = []
        groups: dict[str, list[int]] = {}
        for slot, r in enumerate(requests):
            tau, delta = censor(r["ts"], None, self.c1, self.c2)
            prepared.append(Request(r, [self.index.get(x, 0) for x in r["items"]], tau, delta))
            groups.setdefault(r["session_id"], []).append(slot)
        results: list[Result | None] = [None] * len(requests)
        hits: list[CacheHit] = []
        full: list[FullPass] = []
        with self.lock:
            for slots in groups.values():
                if len(slots) == 1:
                    req = prepared[slots[0]]
                    cached, has_prev = self._lookup(req)
                    if cached is not None:
                        hits.append(CacheHit(req, slots[0], cached, has_prev))
                    else:
                        full.append(FullPass(req, [(slots[0], len(req.ids) - 1)]))
                    continue
                # Several clicks of one session in one batch (a backlog): when every request is a
                # prefix of the longest, one pass over the longest answers all of them.
                longest = max((prepared[i] for i in slots), key=lambda q: len(q.ids))
                lr = longest.record
                if all(
                    lr["items"][: len(prepared[i].ids)] == prepared[i].record["items"]
                    and lr["ts"][: len(prepared[i].ids)] == prepared[i].record["ts"]
                    for i in slots
                ):
                    full.append(FullPass(longest, [(i, len(prepared[i].ids) - 1) for i in slots]))
                else:
                    full += [FullPass(prepared[i], [(i, len(prepared[i].ids) - 1)]) for i in slots]
            if hits:
                self._cached(hits, results)
            # the full pass runs over the longest prefix of a chunk: group similar lengths together
            full.sort(key=lambda f: len(f.request.ids))
            for start in range(0, len(full), self.chunk):
                self._full(full[start : start + self.chunk], results)
        out, unknown = [], 0
        for req, res in zip(prepared, results):
            r, known = req.record, req.ids[-1] != 0
            unknown += not known
            out.append(
                {
                    "session_key": r["session_key"],
                    "session_id": r["session_id"],
                    "position": r["position"],
                    "item": r["items"][-1],
                    "item_known": known,
                    "dwell_s": float(res.dwell_s),
                    "top_items": [self.items[i - 1] for i in res.top_items],
                    "top_scores": res.top_scores,
                    "model_version": self.version,
                    "event_ts": r["event_ts"],
                    "ingest_ts": r["ingest_ts"],
                }
            )
        return out, unknown

    def _lookup(self, req: Request) -> tuple[Cached | None, bool]:
        """The cached state this request continues, and whether click n-1 must be consumed first."""
        if not self.cache_sessions:
            return None, False
        n, r = len(req.ids), req.record
        if n == 1:
            return self._first, False
        e = self.cache.get(r["session_id"])
        if e is None:
            return None, False
        j = len(e.items)
        if j in (n - 2, n - 1) and e.items == r["items"][:j] and e.ts == r["ts"][:j]:
            return e, j == n - 2
        return None, False

    def _cached(self, hits: list[CacheHit], results: list) -> None:
        B, dev = len(hits), self.device
        M = max(h.cached.memory.shape[0] for h in hits)
        memory = torch.zeros(B, M, self.dim, device=dev)  # (B, M, d)
        for b, h in enumerate(hits):
            memory[b, : h.cached.memory.shape[0]] = h.cached.memory
        state = LiveState(
            torch.stack([h.cached.fast for h in hits]),  # (B, d)
            torch.stack([h.cached.slow for h in hits]),  # (B, d)
            memory,
            torch.tensor([h.cached.memory.shape[0] for h in hits], device=dev),
        )  # (B,)
        has_prev = torch.tensor([h.has_prev for h in hits], device=dev)  # (B,)
        prev_items = torch.tensor([h.request.ids[-2] if h.has_prev else 0 for h in hits], device=dev)
        prev_tau = torch.tensor([float(h.request.tau[-2]) if h.has_prev else 0.0 for h in hits], device=dev)
        items = torch.tensor([h.request.ids[-1] for h in hits], device=dev)
        out, state = self.model.live_step(state, prev_items, prev_tau, has_prev, items)
        self._emit(out.scores, out.median, [h.slot for h in hits], results)
        lengths = state.length.tolist()  # one host copy (on CUDA, int() of each element waits for the device)
        for b, h in enumerate(hits):
            j, r = lengths[b], h.request.record
            self._store(r["session_id"], r["items"][:j], r["ts"][:j], state.fast[b], state.slow[b], state.memory[b, :j])
        self.stats["cached"] += B

    def _full(self, passes: list[FullPass], results: list) -> None:
        batch = SessionBatch.from_sessions(
            [f.request.ids for f in passes], [f.request.tau for f in passes], [f.request.delta for f in passes]
        ).to(self.device)
        rows = [b for b, f in enumerate(passes) for _ in f.targets]
        clicks = [j for f in passes for _, j in f.targets]
        out, h, slow = self.model.live_predict(
            batch, torch.tensor(rows, device=self.device), torch.tensor(clicks, device=self.device)
        )
        self._emit(out.scores, out.median, [slot for f in passes for slot, _ in f.targets], results)
        for b, f in enumerate(passes):
            j, r = len(f.request.ids) - 1, f.request.record  # clicks with known dwell
            if j > 0:  # a first click needs no cache
                self._store(r["session_id"], r["items"][:j], r["ts"][:j], h[b, j - 1], slow[b, j - 1], h[b, :j])
            self.stats["full"] += len(f.targets)

    def _emit(self, scores: torch.Tensor, median: torch.Tensor, slots: list[int], results: list) -> None:
        top_s, top_i = scores.topk(self.top_k, dim=1)  # (B, k)
        top_s, top_i, median = top_s.cpu().tolist(), top_i.cpu().tolist(), median.cpu().tolist()
        for b, slot in enumerate(slots):
            results[slot] = Result(top_i[b], top_s[b], median[b])

    def _store(self, sid: str, items: list, ts: list, fast, slow, memory) -> None:
        if not self.cache_sessions:
            return
        self.cache[sid] = Cached(list(items), list(ts), fast.clone(), slow.clone(), memory.clone())
        self.cache.move_to_end(sid)
        while len(self.cache) > self.cache_sessions:
            self.cache.popitem(last=False)
