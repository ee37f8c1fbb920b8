"""POP: next click by training popularity; dwell by the global median (a log-normal baseline).

The simplest honest baselines of the field (Ludewig & Jannach 2018): every position gets the
same ranking, and every click the same dwell prediction. Same contract as JUMP (contract.py).
The dwell log-likelihood treats the global median as a log-normal location with sigma = the
standard deviation of the uncensored training log-dwells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..contract import MIN_DWELL_S, Dwell, FittedModel, Prediction, SessionBatch, check_protocol
from ..data.dataset import SessionSet
from ..model import censored_lognormal_loglik
from ..sessions import C2_DEFAULT


@dataclass
class PopularityConfig:
    n_items: int  # catalogue size including index 0
    min_dwell: float = MIN_DWELL_S  # s, floor before log tau


class Popularity(FittedModel):
    name = "pop"
    ranks_clicks = predicts_dwell = True

    def __init__(self, config: PopularityConfig):
        self.config = config
        self.counts = torch.zeros(config.n_items)
        self.median_dwell = C2_DEFAULT  # before fit: the dwell eq. 4 gives a last click
        self.dwell_sigma = 1.0

    def fit(self, train: SessionSet) -> Popularity:
        counts = np.bincount(train.items, minlength=self.config.n_items).astype(np.float32)
        counts[0] = -np.inf  # unknown item is never a candidate
        self.counts = torch.from_numpy(counts)
        observed = train.tau[train.delta == 0]
        if len(observed):
            self.median_dwell = float(np.median(observed))
            logs = np.log(np.maximum(observed, self.config.min_dwell))
            self.dwell_sigma = float(max(logs.std(), 1e-3))
        return self

    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        check_protocol(protocol)
        n = int(batch.next_positions().sum())
        scores = self.counts.to(batch.items.device).expand(n, -1)  # (P, n_items)
        median = torch.full(batch.items.shape, self.median_dwell, device=batch.items.device)  # (B, L)
        mu = torch.full_like(median, math.log(self.median_dwell))  # (B, L)
        loglik = censored_lognormal_loglik(batch.log_tau(self.config.min_dwell), batch.delta, mu, self.dwell_sigma)
        return Prediction(scores, Dwell(median, mu, loglik))
