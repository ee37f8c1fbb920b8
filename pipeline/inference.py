"""JUMP inference on micro-batches of requests: the logic of the inference worker, without Faust.

A request carries the session's most recent clicks up to and including the current one (item ids
and event times). The dwell tuples of the context clicks come from jump_core.sessions.censor --
the function offline preparation uses -- and the current click is scored with the model's `live`
rule (its dwell is unknown: (c2, censored)), via `Jump.predict_last`. Hence the stream emits, for
every click, exactly the row that `jump evaluate --protocol live` scores offline.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import torch

from jump_core.batch import SessionBatch
from jump_core.checkpoint import load_checkpoint
from jump_core.sessions import censor
from jump_core.train import resolve_device


class InferenceEngine:
    """A loaded checkpoint and the request -> prediction function."""

    def __init__(self, checkpoint: str | Path, device: str = "auto", top_k: int = 20):
        self.path = Path(checkpoint)
        self.device = resolve_device(device)
        self.model, self.meta = load_checkpoint(self.path, map_location=self.device)
        self.items: list[str] = self.meta["items"]
        self.index = {name: i + 1 for i, name in enumerate(self.items)}   # 0 = unknown item
        self.top_k = min(top_k, len(self.items))
        cfg = self.model.config
        self.c1, self.c2 = cfg.c1, cfg.c2
        self.version = f"{self.path.stem}:{self.meta['state_sha256'][:12]}"
        self.lock = threading.Lock()

    def predict(self, requests: list[dict]) -> tuple[list[dict], int]:
        """Predictions (without emit_ts) for decoded request records, and the count of unknown items
        among the requests' current clicks."""
        items, tau, delta = [], [], []
        unknown = 0
        for r in requests:
            ids = [self.index.get(i, 0) for i in r["items"]]
            t, d = censor(r["ts"], None, self.c1, self.c2)
            items.append(ids)
            tau.append(t)
            delta.append(d)
            unknown += ids[-1] == 0
        batch = SessionBatch.from_sessions(items, tau, delta).to(self.device)
        with self.lock:
            scores, (median, _) = self.model.predict_last(batch)          # (B, n_items), (B,)
        top_scores, top_ids = scores.topk(self.top_k, dim=1)               # (B, k)
        top_scores, top_ids, median = top_scores.cpu().tolist(), top_ids.cpu().tolist(), median.cpu().tolist()
        out = []
        for r, ids, ts_, sc, dw in zip(requests, items, top_ids, top_scores, median):
            out.append({"session_key": r["session_key"], "session_id": r["session_id"], "position": r["position"],
                        "item": r["items"][-1], "item_known": ids[-1] != 0, "dwell_s": float(dw),
                        "top_items": [self.items[i - 1] for i in ts_], "top_scores": [float(x) for x in sc],
                        "model_version": self.version, "event_ts": r["event_ts"], "ingest_ts": r["ingest_ts"]})
        return out, unknown


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def now() -> float:
    return time.time()
