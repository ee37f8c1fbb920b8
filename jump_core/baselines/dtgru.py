"""DTGRU: a dwell-aware GRU next-click model (the JUMP paper's DTGRU baseline, cited as Li et al., 2016).

The JUMP paper (Zhou et al., IJCAI 2018, §5) compares against "DTGRU [Li et al., 2016]" without
describing it; the issue defines it as a session GRU whose input is the clicked item with its dwell
embedded (in the spirit of Dallmann et al., 2017, "exploiting dwell time"). Documented choices:
  * Input of click j: x_j = E[i_j] + D[bucket(tau_j, delta_j)] (sum of an item and a dwell embedding).
    Dwell buckets on a log scale, `buckets_per_doubling` (2) per octave: an uncensored dwell gets
        b = clamp(floor(2 log2(max(tau, 1 s))), 0, n_dwell_buckets - 1)
    i.e. [0, 1.41) s -> 0, [1.41, 2) -> 1, [2, 2.83) -> 2, ..., [22.6, 32) -> 9, ..., the last
    bucket (23 of the default 24) open-ended at >= 2^11.5 = 2896 s. (Half octaves: the synthetic
    dwells have a per-item log-sd of 0.6, finer than one octave = 0.69.) Every censored dwell
    (delta = 1: a session's last click, a gap above c1, and the live click) gets ONE extra bucket,
    index n_dwell_buckets, whatever its tau: a censored tau is only a lower bound.
  * One GRU layer (hidden = dim, default 100), `dropout` (default 0) on its input and output; the
    output h_j scores click j+1 with a linear layer hidden -> n_items with bias (`tied=True`
    instead scores with the input item embeddings, h_j . E[i], as JUMP's eq. 9). Column 0
    (padding / unknown) is -inf.
  * Loss: full-softmax cross-entropy of click j+1 from h_j at every position j that has a next
    click, mean over those positions (every prefix of every padded training session).
  * Protocols: 'paper' scores click j+1 from the GRU state after click j with its true
    (tau_j, delta_j); 'live' re-runs only the last step of each prefix with (c2, censored)
    for click j (every earlier click keeps its true dwell): one extra GRU step per position from
    the state after click j-1, for all positions at once (as JUMP's `live_features`).
    With the single censored bucket, the live input of click j is the input of any censored
    click, so c2 only matters through `delta`; c1, c2 are accepted for the common interface.
  * Option `censor_p` (default 0, the plain baseline): during training each click's dwell input
    is replaced by the censored bucket with this probability, so the model also learns to predict
    from a click whose dwell is unknown (what the live protocol feeds). An augmentation of ours.
  * No dwell prediction (predict returns dwell None).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract import Loss, NeuralModel, Prediction, SessionBatch, latest_dwell
from ..sessions import C1_DEFAULT, C2_DEFAULT


@dataclass
class DTGRUConfig:
    n_items: int  # catalogue size including index 0
    dim: int = 100  # embedding = hidden size
    n_dwell_buckets: int = 24  # uncensored log-dwell buckets (one more for every censored dwell)
    buckets_per_doubling: int = 2
    tied: bool = False  # score with the input item embeddings (eq. 9-style) instead of a linear layer
    dropout: float = 0.0
    censor_p: float = 0.0  # training augmentation of ours: hide a dwell as censored with this probability
    c1: float = C1_DEFAULT  # s, eq. 4 (accepted for the common interface)
    c2: float = C2_DEFAULT  # s, the live click's dwell input (only its delta matters here)


class DTGRU(NeuralModel):
    name = "dtgru"
    ranks_clicks, predicts_dwell, dwell_aware = True, False, True

    def __init__(self, config: DTGRUConfig):
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items, c.dim, padding_idx=0)  # E
        self.dwell_emb = nn.Embedding(c.n_dwell_buckets + 1, c.dim)  # D (last row: censored)
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.dim, c.dim, batch_first=True)
        self.out = None if c.tied else nn.Linear(c.dim, c.n_items)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.dwell_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def dwell_bucket(self, tau: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Log2 buckets of uncensored dwells, one extra bucket for censored ones.  (...) long."""
        b = torch.floor(self.config.buckets_per_doubling * torch.log2(tau.clamp_min(1.0))).long()  # (...)
        b = b.clamp(0, self.config.n_dwell_buckets - 1)
        return torch.where(delta.bool(), torch.full_like(b, self.config.n_dwell_buckets), b)

    def embed(self, items: torch.Tensor, tau: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """x = E[i] + D[bucket(tau, delta)].  (B, L) -> (B, L, d)"""
        return self.drop(self.item_emb(items) + self.dwell_emb(self.dwell_bucket(tau, delta)))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item from GRU outputs.  (..., d) -> (..., n_items), column 0 -inf."""
        out = h @ self.item_emb.weight.t() if self.config.tied else self.out(h)  # (..., n_items)
        out[..., 0] = float("-inf")
        return out

    def states(self, batch: SessionBatch) -> torch.Tensor:
        """GRU outputs h_1..h_L with every dwell known (right padding cannot reach valid steps).  (B, L, d)"""
        delta = batch.delta
        if self.training and self.config.censor_p > 0:  # live-protocol augmentation
            delta = delta | (torch.rand(delta.shape, device=delta.device) < self.config.censor_p)
        h, _ = self.gru(self.embed(batch.items, batch.tau, delta))  # (B, L, d)
        return h

    def live_states(self, batch: SessionBatch, h: torch.Tensor, latest_tau: float) -> torch.Tensor:
        """h'_j: the state after click j stepped with (latest_tau, censored) from h_{j-1}.  (B, L, d)"""
        B, L, d = h.shape
        x = self.embed(batch.items, torch.full_like(batch.tau, latest_tau), torch.ones_like(batch.delta))  # (B, L, d)
        prev = F.pad(h, (0, 0, 1, 0))[:, :L]  # (B, L, d) state after j-1
        live, _ = self.gru(x.reshape(B * L, 1, d), prev.reshape(1, B * L, d).contiguous())  # (B*L, 1, d)
        return live.view(B, L, d)

    def calculate_loss(self, batch: SessionBatch) -> Loss:
        nxt = batch.next_positions() & (F.pad(batch.items[:, 1:], (0, 1)) > 0)  # (B, L) known next item
        h = self.states(batch)  # (B, L, d)
        target = F.pad(batch.items[:, 1:], (0, 1))[nxt]  # (P,)
        ce = F.cross_entropy(self.logits(self.drop(h[nxt])), target, reduction="none")  # (P,)
        loss = ce.mean() if len(ce) else h.sum() * 0.0
        return Loss(loss, float(ce.detach().sum()), {})

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        latest = latest_dwell(protocol, self.config.c2)  # None: paper; c2: live; E: elapsed:E
        h = self.states(batch)  # (B, L, d)
        if latest is not None:
            h = self.live_states(batch, h, latest)  # (B, L, d)
        return Prediction(self.logits(h[batch.next_positions()]), None)  # (P, n_items)
