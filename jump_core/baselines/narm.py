"""NARM: Neural Attentive Session-based Recommendation (Li, Ren, Chen, Ren, Lian & Ma, CIKM 2017).

Embedding -> GRU encoder -> global encoder c_g = h_t (last hidden state) and local encoder
c_l = sum_j alpha_tj h_j with alpha_tj from v^T sigmoid(A1 h_t + A2 h_j) over h_1..h_t ->
c_t = [c_g; c_l] -> bilinear decoder score_i = emb_i^T B c_t -> softmax cross-entropy.
Dropout 0.25 after the embedding and 0.5 before the decoder (the paper's values).

Documented choices where the paper is silent or differs from the authors' code
(lijingsdu/sessionRec_NARM, NARM.py):
  * alpha_tj is normalised with a softmax over j <= t, as in the authors' code (the paper's eq. 7
    prints unnormalised weights). Sigmoid as in the paper (the code uses hard_sigmoid).
  * The decoder's item embeddings are the input embeddings (tied, as in the authors' code and
    the paper's "emb_i"); no output bias. Item 0 (padding / unknown) has a zero embedding and is
    never ranked.
  * Training: the authors train on every prefix of every session as a separate example; here one
    padded batch scores every prefix at once (causal attention mask, O(L^2) per session) with the
    full-softmax cross-entropy, mean over the batch's next clicks. Equivalent in objective.
  * Long batches: the all-prefix attention costs B * L^2 * hidden; it is computed in chunks of
    query positions (`attn_chunk` elements), recomputed in backward (activation checkpointing)
    when more than one chunk is needed, so memory stays bounded on long sessions.
  * Default embedding and hidden size 100 (the JUMP paper sets 100 for every model; NARM's own
    experiments used 50 / 100); `hidden` defaults to `dim`, so a dimension sweep moves both.
    Init: PyTorch defaults, embeddings N(0, 0.1^2).
Dwell-blind: predict ignores the protocol and returns dwell None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..contract import Loss, NeuralModel, Prediction, SessionBatch, check_protocol


@dataclass
class NARMConfig:
    n_items: int  # catalogue size including index 0
    dim: int = 100  # item embedding size
    hidden: int | None = None  # GRU size (None: dim, so a dimension sweep moves both)
    dropout_embed: float = 0.25  # the paper's values
    dropout_context: float = 0.5
    attn_chunk: int = 2**24  # elements of the all-prefix attention computed at once (memory bound)


class NARM(NeuralModel):
    name = "narm"
    ranks_clicks, predicts_dwell = True, False

    def __init__(self, config: NARMConfig):
        super().__init__()
        self.config = c = config
        hidden = c.dim if c.hidden is None else c.hidden
        self.item_emb = nn.Embedding(c.n_items, c.dim, padding_idx=0)
        self.gru = nn.GRU(c.dim, hidden, batch_first=True)
        self.query_proj = nn.Linear(hidden, hidden, bias=False)  # A1 (on h_t)
        self.key_proj = nn.Linear(hidden, hidden, bias=False)  # A2 (on h_j)
        self.attn_vec = nn.Linear(hidden, 1, bias=False)  # v
        self.bilinear = nn.Linear(2 * hidden, c.dim, bias=False)  # B: c_t -> item space
        self.drop_embed = nn.Dropout(c.dropout_embed)
        self.drop_context = nn.Dropout(c.dropout_context)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # -- layers -------------------------------------------------------------------------------
    def attend(self, q: torch.Tensor, k: torch.Tensor, h: torch.Tensor, first: int) -> torch.Tensor:
        """Local encoder for queries first..first+Q-1 over keys 0..K-1 (K = first + Q), causal.

        q (B, Q, H) = A1 h_t; k, h (B, K, H) = A2 h_j, h_j -> c_l (B, Q, H).
        """
        Q, K = q.shape[1], k.shape[1]
        e = self.attn_vec(torch.sigmoid(q.unsqueeze(2) + k.unsqueeze(1))).squeeze(-1)  # (B, Q, K)
        rows = torch.arange(first, first + Q, device=q.device)  # (Q,) query positions
        future = torch.arange(K, device=q.device) > rows.unsqueeze(1)  # (Q, K) key j > query t
        alpha = e.masked_fill(future, float("-inf")).softmax(dim=-1)  # (B, Q, K)
        return alpha @ h  # (B, Q, H)

    def local_context(self, h: torch.Tensor) -> torch.Tensor:
        """c_l for every prefix at once, in query chunks of about `attn_chunk` elements.  (B, L, H)."""
        B, L, H = h.shape
        q, k = self.query_proj(h), self.key_proj(h)  # (B, L, H) x2
        step = max(1, self.config.attn_chunk // max(1, B * L * H))
        if step >= L:
            return self.attend(q, k, h, 0)  # (B, L, H)
        outs = []
        for a in range(0, L, step):
            b = min(L, a + step)
            args = (q[:, a:b], k[:, :b], h[:, :b], a)
            outs.append(
                checkpoint(self.attend, *args, use_reentrant=False) if torch.is_grad_enabled() else self.attend(*args)
            )  # (B, b - a, H)
        return torch.cat(outs, dim=1)  # (B, L, H)

    def context(self, batch: SessionBatch) -> torch.Tensor:
        """c_t = [c_g; c_l] after every click t, seeing clicks 1..t only.  -> (B, L, 2H)"""
        x = self.drop_embed(self.item_emb(batch.items))  # (B, L, d)
        h, _ = self.gru(x)  # (B, L, H) padding is after valid clicks
        c = torch.cat([h, self.local_context(h)], dim=-1)  # (B, L, 2H)
        return self.drop_context(c)

    def scores(self, c: torch.Tensor) -> torch.Tensor:
        """Bilinear decoder emb_i^T B c for every item; item 0 never ranked.  (N, 2H) -> (N, n_items)"""
        s = self.bilinear(c) @ self.item_emb.weight.t()  # (N, n_items)
        s[:, 0] = float("-inf")
        return s

    # -- the model contract ----------------------------------------------------------------------
    def calculate_loss(self, batch: SessionBatch) -> Loss:
        """Full-softmax cross-entropy of every next click of every session (mean over clicks)."""
        c = self.context(batch)  # (B, L, 2H)
        targets = batch.next_targets()  # (P,)
        known = targets != 0  # (P,) an unknown item is no target
        logits = self.scores(c[batch.next_positions()][known])  # (P', n_items)
        nll = F.cross_entropy(logits, targets[known], reduction="sum")
        return Loss(nll / max(1, int(known.sum())), float(nll.detach()), {})

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        """Scores (P, n_items) of the click after every next position; dwell None (dwell-blind)."""
        check_protocol(protocol)
        c = self.context(batch)  # (B, L, 2H)
        return Prediction(self.scores(c[batch.next_positions()]), None)
