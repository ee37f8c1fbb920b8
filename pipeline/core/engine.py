"""JUMP inference on micro-batches of requests: the logic of the inference worker, without Faust.

A request carries the session's most recent clicks up to and including the current one (item ids
and event times). The dwell tuples of the context clicks come from jump_core.sessions.censor --
the function offline preparation uses -- and the current click is scored with the model's `live`
rule (its dwell is unknown: (c2, censored)), via `Jump.predict_last`. Hence the stream emits, for
every click, exactly the row that `jump evaluate --protocol live` scores offline.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from jump_core.contract import SessionBatch
from jump_core.artifacts.checkpoint import load_checkpoint
from jump_core.artifacts.model_store import model_version
from jump_core.sessions import censor
from jump_core.training.train import resolve_device


@dataclass
class _Cached:
    """A session's state after its first j clicks (all with known dwell), for `Jump.live_step`."""
    items: list[str]          # the j clicks' items ...
    ts: list[float]           # ... and event times (a request must extend exactly this prefix)
    fast: torch.Tensor        # (d,)
    slow: torch.Tensor        # (d,)
    memory: torch.Tensor      # (j, d) fast-slow outputs h_1..h_j


class InferenceEngine:
    """A loaded checkpoint and the request -> prediction function.

    Sessions are continued from cached states when the request extends the cached prefix by one
    click (the normal case: one request per click, in order), so a click costs one or two recurrent
    steps instead of a pass over its whole prefix. Anything else -- a cache miss, a re-sent request,
    an out-of-order insertion, a prefix cut by JUMP_CONTEXT_CLICKS -- takes the full pass
    (`Jump.predict_last`) over the request's clicks. Both paths compute the same function (tested).
    """

    def __init__(self, checkpoint: str | Path, device: str = "auto", top_k: int = 20, chunk: int = 64,
                 cache_sessions: int = 20_000, loaded: tuple | None = None):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        # `loaded`: (model, meta) already loaded and verified from `checkpoint` (ModelStore.verify)
        self.model, self.meta = loaded or load_checkpoint(self.path, map_location=self.device)
        self.items: list[str] = self.meta["items"]
        self.index = {name: i + 1 for i, name in enumerate(self.items)}   # 0 = unknown item
        self.top_k = min(top_k, len(self.items))
        cfg = self.model.config
        self.c1, self.c2, self.dim = cfg.c1, cfg.c2, cfg.dim
        self.version = model_version(self.path, self.meta["state_sha256"])
        self.lock = threading.Lock()
        self.chunk = chunk
        self.cache_sessions = cache_sessions
        self.cache: OrderedDict[str, _Cached] = OrderedDict()
        self.stats = {"cached": 0, "full": 0}

    def predict(self, requests: list[dict]) -> tuple[list[dict], int]:
        """Predictions (without emit_ts) for decoded request records, and the count of unknown items
        among the requests' current clicks."""
        prepared = []
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            ids = [self.index.get(x, 0) for x in r["items"]]
            tau, delta = censor(r["ts"], None, self.c1, self.c2)
            prepared.append((r, ids, tau, delta))
            groups.setdefault(r["session_id"], []).append(i)
        results: list = [None] * len(requests)
        hits, full = [], []                    # full: (prepared row, [(result index, click index)])
        with self.lock:
            for sid, idx in groups.items():
                if len(idx) == 1:
                    p = prepared[idx[0]]
                    e, has_prev = self._lookup(p[0], len(p[1]))
                    if e is not None:
                        hits.append((p, idx[0], e, has_prev))
                    else:
                        full.append((p, [(idx[0], len(p[1]) - 1)]))
                    continue
                # Several clicks of one session in one batch (a backlog): when every request is a
                # prefix of the longest, one pass over the longest answers all of them.
                longest = prepared[max(idx, key=lambda i: len(prepared[i][1]))]
                lr = longest[0]
                if all(lr["items"][:len(prepared[i][1])] == prepared[i][0]["items"]
                       and lr["ts"][:len(prepared[i][1])] == prepared[i][0]["ts"] for i in idx):
                    full.append((longest, [(i, len(prepared[i][1]) - 1) for i in idx]))
                else:
                    full += [(prepared[i], [(i, len(prepared[i][1]) - 1)]) for i in idx]
            if hits:
                self._cached(hits, results)
            # the full pass runs over the longest prefix of a chunk: group similar lengths together
            full.sort(key=lambda f: len(f[0][1]))
            for start in range(0, len(full), self.chunk):
                self._full(full[start:start + self.chunk], results)
        out, unknown = [], 0
        for (r, ids, _, _), (top_ids, top_scores, dwell) in zip(prepared, results):
            unknown += ids[-1] == 0
            out.append({"session_key": r["session_key"], "session_id": r["session_id"], "position": r["position"],
                        "item": r["items"][-1], "item_known": ids[-1] != 0, "dwell_s": float(dwell),
                        "top_items": [self.items[i - 1] for i in top_ids], "top_scores": top_scores,
                        "model_version": self.version, "event_ts": r["event_ts"], "ingest_ts": r["ingest_ts"]})
        return out, unknown

    def _lookup(self, r: dict, n: int) -> tuple[_Cached | None, bool]:
        """The cached state this request continues, and whether click n-1 must be consumed first."""
        if not self.cache_sessions:
            return None, False
        if n == 1:
            z = torch.zeros(self.dim, device=self.device)
            return _Cached([], [], z, z, torch.zeros(0, self.dim, device=self.device)), False
        e = self.cache.get(r["session_id"])
        if e is None:
            return None, False
        j = len(e.items)
        if j in (n - 2, n - 1) and e.items == r["items"][:j] and e.ts == r["ts"][:j]:
            return e, j == n - 2
        return None, False

    def _cached(self, hits: list, results: list) -> None:
        B, dev = len(hits), self.device
        M = max(e.memory.shape[0] for _, _, e, _ in hits)
        memory = torch.zeros(B, M, self.dim, device=dev)                   # (B, M, d)
        for b, (_, _, e, _) in enumerate(hits):
            memory[b, :e.memory.shape[0]] = e.memory
        fast = torch.stack([e.fast for _, _, e, _ in hits])                # (B, d)
        slow = torch.stack([e.slow for _, _, e, _ in hits])                # (B, d)
        mem_len = torch.tensor([e.memory.shape[0] for _, _, e, _ in hits], device=dev)
        has_prev = torch.tensor([hp for _, _, _, hp in hits], device=dev)
        prev_items = torch.tensor([p[1][-2] if hp else 0 for p, _, _, hp in hits], device=dev)
        prev_tau = torch.tensor([float(p[2][-2]) if hp else 0.0 for p, _, _, hp in hits], device=dev)
        items = torch.tensor([p[1][-1] for p, _, _, _ in hits], device=dev)
        scores, (median, _), (fast, slow, memory, mem_len) = self.model.live_step(
            fast, slow, memory, mem_len, prev_items, prev_tau, has_prev, items)
        self._emit(scores, median, [pos for _, pos, _, _ in hits], results)
        for b, ((r, _, _, _), _, e, hp) in enumerate(hits):
            j = int(mem_len[b])
            self._store(r["session_id"], r["items"][:j], r["ts"][:j], fast[b], slow[b], memory[b, :j])
        self.stats["cached"] += B

    def _full(self, rows: list, results: list) -> None:
        batch = SessionBatch.from_sessions([p[1] for p, _ in rows], [p[2] for p, _ in rows],
                                           [p[3] for p, _ in rows]).to(self.device)
        b_idx = [b for b, (_, targets) in enumerate(rows) for _ in targets]
        j_idx = [j for _, targets in rows for _, j in targets]
        scores, (median, _), h, slow = self.model.predict_live_at(
            batch, torch.tensor(b_idx, device=self.device), torch.tensor(j_idx, device=self.device))
        self._emit(scores, median, [i for _, targets in rows for i, _ in targets], results)
        for b, ((r, ids, _, _), targets) in enumerate(rows):
            j = len(ids) - 1                                               # clicks with known dwell
            if j > 0:                                                      # a first click needs no cache
                self._store(r["session_id"], r["items"][:j], r["ts"][:j], h[b, j - 1], slow[b, j - 1], h[b, :j])
            self.stats["full"] += len(targets)

    def _emit(self, scores: torch.Tensor, median: torch.Tensor, positions: list[int], results: list) -> None:
        top_s, top_i = scores.topk(self.top_k, dim=1)                      # (B, k)
        top_s, top_i, median = top_s.cpu().tolist(), top_i.cpu().tolist(), median.cpu().tolist()
        for b, pos in enumerate(positions):
            results[pos] = (top_i[b], top_s[b], median[b])

    def _store(self, sid: str, items: list, ts: list, fast, slow, memory) -> None:
        if not self.cache_sessions:
            return
        self.cache[sid] = _Cached(list(items), list(ts), fast.clone(), slow.clone(), memory.clone())
        self.cache.move_to_end(sid)
        while len(self.cache) > self.cache_sessions:
            self.cache.popitem(last=False)
