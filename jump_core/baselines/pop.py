"""POP: next click by training popularity; dwell by the global median (a log-normal baseline).

The simplest honest baselines of the field (Ludewig & Jannach 2018): every position gets the
same ranking, and every click the same dwell prediction. Same contract as JUMP (evaluate.py).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..contract import SessionBatch
from ..data.dataset import SessionSet


class Popularity:
    name = "pop"

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.counts = torch.zeros(n_items)
        self.median_dwell = 30.0
        self.dwell_sigma = 1.0
        self.min_dwell = 0.5

    def fit(self, train: SessionSet) -> "Popularity":
        counts = np.bincount(train.items, minlength=self.n_items).astype(np.float32)
        counts[0] = -np.inf                       # unknown item is never a candidate
        self.counts = torch.from_numpy(counts)
        observed = train.tau[train.delta == 0]
        if len(observed):
            self.median_dwell = float(np.median(observed))
            logs = np.log(np.maximum(observed, self.min_dwell))
            self.dwell_sigma = float(max(logs.std(), 1e-3))
        return self

    def next_scores(self, batch: SessionBatch, protocol: str = "paper") -> torch.Tensor:
        n = int(batch.next_positions().sum())
        return self.counts.to(batch.items.device).expand(n, -1)           # (P, n_items)

    def predict(self, batch: SessionBatch, protocol: str = "paper"):
        return self.next_scores(batch, protocol), self.predict_dwell(batch)

    def predict_dwell(self, batch: SessionBatch):
        median = torch.full(batch.items.shape, self.median_dwell, device=batch.items.device)  # (B, L)
        return median, torch.full_like(median, math.log(self.median_dwell))
