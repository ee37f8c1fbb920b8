"""GRU4Rec: session-based recommendations with recurrent neural networks (Hidasi, Karatzoglou,
Baltrunas & Tikk, ICLR 2016), with the improved losses of "Recurrent neural networks with top-k
gains for session-based recommendations" (Hidasi & Karatzoglou, CIKM 2018; IGRU in the JUMP paper).

One class, two losses: `loss="cross-entropy"` (softmax over the mini-batch, GRU) or `"bpr-max"`
(IGRU). Follows the official PyTorch implementation (hidasib/GRU4Rec_PyTorch_Official,
gru4rec_pytorch.py):
  * One GRU layer over "constrained" (tied) embeddings: the input embedding of an item is its
    output weight row Wy[i] (the official default `constrained_embedding=True`), so embedding and
    hidden size are the same `dim` (100 by default, as the JUMP paper sets for every model).
    Scores are h . Wy[i] + By[i] (output bias By). Uniform +-sqrt(6 / (fan_in + fan_out)) init per
    gate, zero biases (the official "compatibility mode" init).
  * Dropout `dropout_embed` on the input embedding and `dropout_hidden` on the GRU output; as in
    the official code the dropped-out output is also the state carried to the next step.
  * Session-parallel mini-batches (`train_steps`, `session_parallel`): `batch_size` slots each hold
    one active session; every step feeds the current click of each slot and predicts its next
    click; a slot whose session ends takes the next session and its state is reset to zero; when
    no session is left the slot is dropped (the mini-batch shrinks, as in the official iterator).
    States are detached between steps (truncated BPTT of one step, as in the official code).
  * Negatives of a step: the other targets of the mini-batch plus `n_sample` extra items shared by
    the mini-batch, sampled with replacement proportionally to popularity**`sample_alpha`
    (training-click counts). As in the official code, a sampled item equal to a target is not
    removed, and a target repeated in the mini-batch is also a negative of the others.
  * Cross-entropy: softmax over [targets, samples] with logQ correction (official `logq`):
    scores minus logq * log(pop) for in-batch targets and log(pop**sample_alpha) for samples.
  * BPR-max: final activation ELU(`elu_param`) (linear if 0), then
    -log sum_j s_j sigmoid(r_i - r_j) + bpreg * sum_j s_j r_j^2 with s = softmax over the negatives.
  * The step loss is the summed per-target loss divided by `batch_size` (official scaling).
Choices where the official code and our harness differ (documented deviations):
  * Optimiser: the harness's Adam (fit_model) instead of the official Adagrad with momentum.
  * Session order: a seeded random order per epoch (cfg.seed, epoch) instead of by start time.
  * Defaults: sample_alpha 0.5, bpreg 1.0, elu_param 0.5 (official class defaults); logq 1.0 for
    cross-entropy and dropout_hidden 0.2 (the official best cross-entropy parameter files use
    logq 1.0 and hidden dropout 0.2-0.4; the class defaults are 0).
  * Item 0 (padding / unknown) has a zero input embedding, is never sampled and never ranked.
  * `forward` on a padded batch (validation loss only) is the full-softmax cross-entropy of every
    next click, whatever the training loss.
Dwell-blind: predict ignores the protocol and returns dwell None.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract import Loss, NeuralModel, Prediction, SessionBatch, TrainStep, check_protocol
from ..data.dataset import SessionSet

LOSSES = ("cross-entropy", "bpr-max")


def session_order(n_sessions: int, seed: int, epoch: int) -> np.ndarray:
    """Seeded random order of the training sessions for one epoch.  (S,)"""
    return np.random.default_rng([seed, epoch]).permutation(n_sessions)


def session_parallel(offsets: np.ndarray, order: np.ndarray, batch_size: int):
    """Session-parallel mini-batches over flat click arrays; yields (inp, tgt, src) per step.

    inp, tgt (A,): flat click indices of the input click and of its next click, one per active
    slot; src (A,): row of the previous step's state that slot continues, -1 for a fresh session
    (state reset to zero). Sessions with fewer than 2 clicks have no target and are skipped.
    Every click of every session is a target exactly once (except the first of each session).
    """
    lengths = np.diff(offsets)
    order = order[lengths[order] >= 2]
    n = min(batch_size, len(order))
    cur = offsets[order[:n]].copy()  # (A,) current click
    end = offsets[order[:n] + 1].copy()  # (A,) session end
    src = np.full(n, -1)  # (A,)
    nxt = n
    while len(cur):
        yield cur, cur + 1, src
        cur = cur + 1
        src = np.arange(len(cur))
        done = np.flatnonzero(cur + 1 >= end)  # slots whose session ended
        if len(done):
            new = order[nxt : nxt + len(done)]
            nxt += len(new)
            fill = done[: len(new)]
            cur[fill], end[fill], src[fill] = offsets[new], offsets[new + 1], -1
            keep = np.ones(len(cur), dtype=bool)
            keep[done[len(new) :]] = False  # no session left: drop slot
            cur, end, src = cur[keep], end[keep], src[keep]


@dataclass
class GRU4RecConfig:
    n_items: int  # catalogue size including index 0
    dim: int = 100  # embedding = hidden size (constrained embedding)
    loss: str = "cross-entropy"  # cross-entropy (GRU) or bpr-max (IGRU)
    n_sample: int = 2048  # extra negatives shared by a mini-batch
    sample_alpha: float = 0.5  # negatives ~ popularity ** sample_alpha
    logq: float = 1.0  # logQ correction of the cross-entropy (0: off)
    bpreg: float = 1.0  # BPR-max score regularisation
    elu_param: float = 0.5  # BPR-max final ELU (0: linear)
    dropout_embed: float = 0.0
    dropout_hidden: float = 0.2

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {self.loss!r}")


class GRU4Rec(NeuralModel):
    name = "gru4rec"
    ranks_clicks, predicts_dwell = True, False

    def __init__(self, config: GRU4RecConfig):
        super().__init__()
        self.config = c = config
        self.item_out = nn.Embedding(c.n_items, c.dim)  # Wy: output weights = input embedding
        self.item_bias = nn.Embedding(c.n_items, 1)  # By
        self.gru = nn.GRU(c.dim, c.dim, batch_first=True)
        self.drop_embed = nn.Dropout(c.dropout_embed)
        self.drop_hidden = nn.Dropout(c.dropout_hidden)
        self.reset_parameters()

    def reset_parameters(self):
        d = self.config.dim
        with torch.no_grad():
            s = math.sqrt(6.0 / (self.config.n_items + d))
            self.item_out.weight.uniform_(-s, s)
            self.item_out.weight[0].zero_()
            self.item_bias.weight.zero_()
            s = math.sqrt(6.0 / (2 * d))  # per gate (d, d)
            self.gru.weight_ih_l0.uniform_(-s, s)
            self.gru.weight_hh_l0.uniform_(-s, s)
            self.gru.bias_ih_l0.zero_()
            self.gru.bias_hh_l0.zero_()

    # -- layers -------------------------------------------------------------------------------
    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Tied input embedding, zero for item 0.  (...) -> (..., d)"""
        x = self.item_out(items)  # (..., d)
        return x * (items != 0).unsqueeze(-1)

    def encode(self, batch: SessionBatch) -> torch.Tensor:
        """GRU outputs h_j after clicks 1..j of every session, from a zero state.  -> (B, L, d)

        Right padding comes after the valid clicks, so it cannot change a valid output.
        """
        x = self.drop_embed(self.embed(batch.items))  # (B, L, d)
        h, _ = self.gru(x)  # (B, L, d)
        return self.drop_hidden(h)

    def full_scores(self, h: torch.Tensor) -> torch.Tensor:
        """h . Wy[i] + By[i] for every item; item 0 is never a candidate.  (N, d) -> (N, n_items)"""
        scores = h @ self.item_out.weight.t() + self.item_bias.weight.t()  # (N, n_items)
        scores[:, 0] = float("-inf")
        return scores

    def sampled_loss(
        self, h: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, pop: torch.Tensor
    ) -> torch.Tensor:
        """Summed loss of one mini-batch step over [targets, negatives] (official losses).

        h (A, d), targets (A,), negatives (S,), pop (n_items,) training counts -> scalar.
        """
        cand = torch.cat([targets, negatives])  # (A + S,)
        scores = h @ self.item_out(cand).t() + self.item_bias(cand).t()  # (A, A + S); diagonal = positives
        A = len(targets)
        if self.config.loss == "cross-entropy":
            if self.config.logq > 0:
                logp = torch.cat([torch.log(pop[targets]), self.config.sample_alpha * torch.log(pop[negatives])])
                scores = scores - self.config.logq * logp  # (A, A + S)
            return -scores.log_softmax(dim=1).diagonal().sum()
        if self.config.elu_param > 0:
            scores = F.elu(scores, self.config.elu_param)  # (A, A + S)
        pos = scores.diagonal().unsqueeze(1)  # (A, 1)
        is_neg = ~torch.eye(A, scores.shape[1], dtype=torch.bool, device=h.device)  # (A, A + S)
        weights = scores.masked_fill(~is_neg, float("-inf")).softmax(dim=1)  # (A, A + S) over negatives
        bpr = (torch.sigmoid(pos - scores) * weights).sum(1)  # (A,)
        reg = (scores**2 * weights).sum(1)  # (A,)
        return (-torch.log(bpr + 1e-24) + self.config.bpreg * reg).sum()

    # -- the model contract ----------------------------------------------------------------------
    def train_steps(self, data: SessionSet, cfg, epoch: int, device) -> Iterator[TrainStep]:
        """Session-parallel training steps (see `session_parallel`), one TrainStep per mini-batch step."""
        counts = np.bincount(data.items, minlength=self.config.n_items).astype(np.float64)
        counts[0] = 0.0
        pop = torch.from_numpy(counts).float().to(device).clamp_min(1.0)  # (n_items,) logQ (no log 0)
        sample_p = torch.from_numpy(counts**self.config.sample_alpha * (counts > 0)).float()  # (n_items,) CPU
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        items = torch.from_numpy(data.items).to(device)  # (N,)
        h = torch.zeros(1, self.config.dim, device=device)  # (1, d) every first src is -1
        for inp, tgt, src in session_parallel(data.offsets, session_order(len(data), cfg.seed, epoch), cfg.batch_size):
            src_t = torch.from_numpy(src).to(device)  # (A,)
            h = torch.where((src_t >= 0).unsqueeze(1), h.detach()[src_t.clamp_min(0)], 0.0)  # (A, d) reset new
            x = self.drop_embed(self.embed(items[torch.from_numpy(inp).to(device)]))  # (A, d)
            out, _ = self.gru(x.unsqueeze(1), h.unsqueeze(0))  # (A, 1, d)
            h = self.drop_hidden(out[:, 0])  # (A, d) carried as in the official code
            negatives = (
                torch.multinomial(sample_p, self.config.n_sample, replacement=True, generator=gen).to(device)
                if self.config.n_sample > 0
                else items.new_zeros(0)
            )  # (S,)
            loss_sum = self.sampled_loss(h, items[torch.from_numpy(tgt).to(device)], negatives, pop)
            yield TrainStep(loss_sum / cfg.batch_size, len(tgt), float(loss_sum.detach()))

    def calculate_loss(self, batch: SessionBatch) -> Loss:
        """Full-softmax cross-entropy of every next click (validation loss only: training is `train_steps`)."""
        h = self.encode(batch)  # (B, L, d)
        targets = batch.next_targets()  # (P,)
        known = targets != 0  # (P,) an unknown item is no target
        scores = self.full_scores(h[batch.next_positions()][known])  # (P', n_items)
        nll = F.cross_entropy(scores, targets[known], reduction="sum")
        return Loss(nll / batch.items.shape[0], float(nll.detach()), {})

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        """Scores (P, n_items) of the click after every next position; dwell None (dwell-blind)."""
        check_protocol(protocol)
        h = self.encode(batch)  # (B, L, d)
        return Prediction(self.full_scores(h[batch.next_positions()]), None)
