"""Right-padded mini-batches of sessions: the one input type of every model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass
class SessionBatch:
    items: torch.Tensor    # (B, L) long, 0 = padding / unknown item
    tau: torch.Tensor      # (B, L) float, censored dwell (eq. 4), 0 at padding
    delta: torch.Tensor    # (B, L) bool, censored flag
    lengths: torch.Tensor  # (B,) long

    @property
    def mask(self) -> torch.Tensor:
        L = self.items.shape[1]
        return torch.arange(L, device=self.items.device) < self.lengths.unsqueeze(1)   # (B, L)

    def next_positions(self) -> torch.Tensor:
        """(B, L) bool: positions j that have a next click j+1 in the same session."""
        L = self.items.shape[1]
        return torch.arange(L, device=self.items.device) < (self.lengths - 1).unsqueeze(1)

    def next_targets(self) -> torch.Tensor:
        """Item of click j+1 for every next position, in `next_positions()` order.  (P,)"""
        shifted = torch.nn.functional.pad(self.items[:, 1:], (0, 1))      # (B, L)
        return shifted[self.next_positions()]

    def to(self, device) -> "SessionBatch":
        return SessionBatch(self.items.to(device), self.tau.to(device), self.delta.to(device),
                            self.lengths.to(device))

    @staticmethod
    def from_sessions(items: Sequence[Sequence[int]], tau: Sequence[Sequence[float]],
                      delta: Sequence[Sequence[int]], dtype=torch.float32) -> "SessionBatch":
        lengths = [len(s) for s in items]
        B, L = len(items), max(lengths)
        it = np.zeros((B, L), dtype=np.int64)
        ta = np.zeros((B, L), dtype=np.float64)
        de = np.zeros((B, L), dtype=bool)
        for b, n in enumerate(lengths):
            it[b, :n], ta[b, :n], de[b, :n] = items[b], tau[b], delta[b]
        return SessionBatch(torch.from_numpy(it), torch.from_numpy(ta).to(dtype),
                            torch.from_numpy(de), torch.tensor(lengths, dtype=torch.long))
