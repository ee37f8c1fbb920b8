"""JUMP: A Joint Predictor for User Click and Dwell Time (Zhou et al., IJCAI 2018).

One readable model file. Sections follow the paper, bottom-up:
  embedding (eq. 16) -> fast-slow layer of RH-MI cells (eq. 14-15) -> attention (eq. 12-13)
  -> tied softmax click head (eq. 9) + per-item linear dwell head (eq. 11)
  -> joint log-likelihood (eq. 17-18) with the censored log-normal dwell density (eq. 10).

Documented choices where the paper is silent or ambiguous (tested in tests/test_model.py):
  * Eq. 14 is circular as printed (the slow cell reads h_1^F, which needs the slow state). We
    follow the FS-RNN ordering of Mujika et al. (2017): the first fast cell reads the input, the
    slow cell reads the first fast cell's output, the second fast cell reads the slow state, and
    the remaining fast cells have no input:
        h_0^F = F(h_{j-1}, x_j);  h_j^S = S(h_{j-1}^S, h_0^F);  h_1^F = F(h_0^F, h_j^S);
        h_k^F = F(h_{k-1}^F) for 2 <= k <= n_j;  output h_j = h_{n_j}^F.
    F is one cell (one set of weights) for every fast step, as eq. 14 writes a single F.
  * n_j = clamp(ceil(tau_j / z), 1, max_fast_steps). The floor of 1 keeps the slow cell on the
    output path when tau_j = 0; the cap bounds compute (default: tau >= 8 z all take 8 steps).
  * RH-MI cells (eq. 15) carry bias terms b_c, b_g (as in Wu et al. 2016b and Zilly et al. 2016);
    the paper prints none. b_g starts at -1 so a fresh cell mostly carries its state (highway).
  * v(S_0), the feature of the empty context (needed by the k = 1 terms of eq. 17), is a learned
    vector `start_feature`: P(i_1 | S_0) is then a learned popularity prior.
  * The dwell density is that of y = log tau (eq. 10, with its normalising constants). Dwell
    times below `min_dwell` seconds are floored there before the log (tau = 0 has no log).
  * The dwell point estimate is the median of the predicted log-normal, exp(mu): it minimises
    the expected absolute error under the model (the mean exp(mu + sigma^2 / 2) is useless at
    sigma = 10).
  * Live protocol: at click k the dwell on click k is unknown. It is represented as censored at
    c2, (tau = c2, delta = 1) -- exactly how the last click of every training session looks.
    `live_features` computes that in one extra fast-slow step per position.
Item index 0 is padding / unknown item: its embedding rows are zero and it is never ranked.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import SessionBatch


@dataclass
class JumpConfig:
    n_items: int                 # catalogue size including index 0 (padding / unknown)
    dim: int = 100               # d: item, time and hidden dimension (§5.2)
    c1: float = 2000.0           # s, censoring threshold of eq. 4
    c2: float = 30.0             # s, dwell of a session's last click, eq. 4
    z: float = 60.0              # s, fast-step scale of eq. 14 (not given by the paper)
    max_fast_steps: int = 8      # cap on ceil(tau / z)
    sigma: float = 10.0          # log-dwell standard deviation, eq. 10 (§5.2)
    min_dwell: float = 0.5       # s, floor before log tau in the likelihood
    # Ablations (jump benchmark --ablations); the defaults are the paper's model.
    recurrent: str = "fast_slow"  # "fast_slow" (eq. 14), "rh" (one RH-MI cell per click), "gru" (a GRU cell)
    attention: bool = True        # eq. 12-13; False: v_k = h_k
    time_embedding: bool = True   # eq. 16's T[floor(tau)]; False: V[i] only (tau still sets n_j)
    dwell_loss: bool = True       # eq. 17's dwell term; False: clicks only (the dwell head is not trained)
    dwell_head: str = "per_item"  # eq. 11's W[i], b[i]; "shared": one W, b for every item
    # Not in the paper (an investigation knob of docs/RESULTS.md, off by default): during training,
    # feed each click's dwell to the network as the live rule's (c2, censored) with this probability,
    # so the live representation of the latest click is not only ever seen on last clicks.
    live_censor_p: float = 0.0
    # Not in the paper either (investigation knob): rows of T. "second" is eq. 16's T[floor(tau)]
    # (one row per second up to max(c1, c2)); "log" shares rows on a log scale, two per doubling:
    # row = 1 + floor(2 log2(tau)) for tau >= 1 s, row 0 below, so rare long dwells share a trained row.
    time_buckets: str = "second"

    def __post_init__(self):
        if self.recurrent not in RECURRENT_LAYERS:
            raise ValueError(f"recurrent must be one of {sorted(RECURRENT_LAYERS)}, not {self.recurrent!r}")
        if self.time_buckets not in ("second", "log"):
            raise ValueError(f"time_buckets must be 'second' or 'log', not {self.time_buckets!r}")
        if self.dwell_head not in ("per_item", "shared"):
            raise ValueError(f"dwell_head must be 'per_item' or 'shared', not {self.dwell_head!r}")

    @property
    def time_rows(self) -> int:  # rows of T: floor(tau) for tau in [0, max(c1, c2)] (or its log buckets)
        top = max(self.c1, self.c2)
        return int(math.floor(top)) + 1 if self.time_buckets == "second" else 2 + int(math.floor(2 * math.log2(max(top, 1.0))))

    def to_dict(self) -> dict:
        return asdict(self)


def censored_lognormal_loglik(log_tau: torch.Tensor, delta: torch.Tensor, mu: torch.Tensor,
                              sigma: float) -> torch.Tensor:
    """log P(log T | mu) of eq. 10: normal log-density if observed, log survival if censored."""
    zscore = (log_tau - mu) / sigma                                        # (...)
    observed = -0.5 * zscore**2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    censored = torch.special.log_ndtr(-zscore)                             # log(1 - Psi(z))
    return torch.where(delta.bool(), censored, observed)                   # (...)


class RHMICell(nn.Module):
    """Recurrent-Highway cell with multiplicative integration (eq. 15).

    m = alpha*(Wc x * Uc h) + beta*Wc x + gamma*Uc h + b_c;  c = tanh(m)
    g = sigmoid(Wg x + Ug h + b_g);  h' = (1 - g)*h + g*c
    Called without x, every term containing x is omitted: m = gamma*Uc h + b_c, g = sigmoid(Ug h + b_g).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.input_proj = nn.Linear(dim, 2 * dim, bias=False)   # [Wc; Wg]
        self.state_proj = nn.Linear(dim, 2 * dim, bias=False)   # [Uc; Ug]
        self.alpha = nn.Parameter(torch.ones(dim))    # multiplicative gate
        self.beta = nn.Parameter(torch.ones(dim))     # linear gate on the input
        self.gamma = nn.Parameter(torch.ones(dim))    # linear gate on the state
        self.cand_bias = nn.Parameter(torch.zeros(dim))
        self.gate_bias = nn.Parameter(torch.full((dim,), -1.0))

    def forward(self, h: torch.Tensor, x: torch.Tensor | None = None,
                x_proj: torch.Tensor | None = None) -> torch.Tensor:
        """h (N, d); x (N, d) or None; x_proj (N, 2d) = input_proj(x) when precomputed."""
        uc, ug = self.state_proj(h).chunk(2, dim=-1)                       # (N, d), (N, d)
        if x is None and x_proj is None:
            m = self.gamma * uc + self.cand_bias                           # (N, d)
            g = torch.sigmoid(ug + self.gate_bias)                         # (N, d)
        else:
            wc, wg = (self.input_proj(x) if x_proj is None else x_proj).chunk(2, dim=-1)
            m = self.alpha * wc * uc + self.beta * wc + self.gamma * uc + self.cand_bias
            g = torch.sigmoid(wg + ug + self.gate_bias)                    # (N, d)
        return (1 - g) * h + g * torch.tanh(m)                             # (N, d)


class RecurrentLayer(nn.Module):
    """The loop over clicks shared by the fast-slow layer and its ablations (`project` + `step`)."""

    def forward(self, x: torch.Tensor, n_fast: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, d), n_fast (B, L), mask (B, L) -> outputs h (B, L, d), slow states (B, L, d).

        Right-padded batches: a padded position never updates the carried states, so every
        valid output is independent of padding and of the other sequences in the batch.
        """
        B, L, d = x.shape
        x_proj = self.project(x)                                           # (B, L, 2d), once for all steps
        fast = x.new_zeros(B, d)                                           # (B, d)
        slow = x.new_zeros(B, d)                                           # (B, d)
        outs, slows = [], []
        for j in range(L):
            f, s = self.step(fast, slow, x_proj[:, j], n_fast[:, j])       # (B, d), (B, d)
            valid = mask[:, j].unsqueeze(-1)                               # (B, 1)
            fast, slow = torch.where(valid, f, fast), torch.where(valid, s, slow)
            outs.append(fast)
            slows.append(slow)
        return torch.stack(outs, 1), torch.stack(slows, 1)                 # (B, L, d) x2


class FastSlowLayer(RecurrentLayer):
    """Fast-slow RNN of eq. 14 (FS-RNN ordering, see the module docstring) over RH-MI cells."""

    def __init__(self, dim: int):
        super().__init__()
        self.fast_cell = RHMICell(dim)
        self.slow_cell = RHMICell(dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input projection of the first fast cell, computed once per click.  (..., d) -> (..., 2d)"""
        return self.fast_cell.input_proj(x)

    def step(self, fast: torch.Tensor, slow: torch.Tensor, x_proj: torch.Tensor,
             n_fast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One click for N sequences: fast/slow (N, d) states, x_proj (N, 2d), n_fast (N,) >= 1."""
        f = self.fast_cell(fast, x_proj=x_proj)                            # h_0^F (N, d)
        slow = self.slow_cell(slow, f)                                     # h_j^S (N, d)
        f = self.fast_cell(f, slow)                                        # h_1^F (N, d)
        # The ceil(tau/z) fast-step loop: sequences with fewer steps keep their state, so a batch
        # runs max(n_fast) steps and every sequence gets exactly its own n_j.
        for k in range(2, int(n_fast.max()) + 1):
            f = torch.where((n_fast >= k).unsqueeze(-1), self.fast_cell(f), f)   # h_k^F (N, d)
        return f, slow

class RHLayer(RecurrentLayer):
    """Ablation: one RH-MI cell step per click, no fast-slow structure (the slow state stays 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.cell = RHMICell(dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell.input_proj(x)                                     # (..., 2d)

    def step(self, fast, slow, x_proj, n_fast):
        return self.cell(fast, x_proj=x_proj), slow                        # (N, d), (N, d)


class GRULayer(RecurrentLayer):
    """Ablation: a GRU cell per click (GRU4Rec's recurrence), no fast-slow, no RH-MI."""

    def __init__(self, dim: int):
        super().__init__()
        self.cell = nn.GRUCell(dim, dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x                                                           # (..., d): the GRU projects itself

    def step(self, fast, slow, x_proj, n_fast):
        return self.cell(x_proj, fast), slow                               # (N, d), (N, d)


RECURRENT_LAYERS = {"fast_slow": FastSlowLayer, "rh": RHLayer, "gru": GRULayer}


def causal_attention(h: torch.Tensor) -> torch.Tensor:
    """Eq. 12-13: v_k = sum_{i<=k} softmax_i(h_i . h_k / sqrt(d)) h_i.  h (B, L, d) -> (B, L, d)."""
    L, d = h.shape[1], h.shape[2]
    scores = h @ h.transpose(1, 2) / math.sqrt(d)                          # (B, L_query, L_key)
    future = torch.ones(L, L, dtype=torch.bool, device=h.device).triu(1)   # key i > query k
    attn = scores.masked_fill(future, float("-inf")).softmax(dim=-1)       # (B, L, L)
    return attn @ h                                                        # (B, L, d)


class Jump(nn.Module):
    def __init__(self, config: JumpConfig):
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items, c.dim, padding_idx=0)      # V (eq. 9, 16)
        self.time_emb = nn.Embedding(c.time_rows, c.dim)                   # T (eq. 16)
        self.emb_norm = nn.BatchNorm1d(c.dim)                              # eq. 16
        self.fast_slow = RECURRENT_LAYERS[c.recurrent](c.dim)              # eq. 14-15 (unless ablated)
        self.start_feature = nn.Parameter(torch.zeros(c.dim))              # v(S_0)
        dwell_rows, pad = (c.n_items, 0) if c.dwell_head == "per_item" else (1, None)
        self.dwell_weight = nn.Embedding(dwell_rows, c.dim, padding_idx=pad)   # W (eq. 11)
        self.dwell_bias = nn.Embedding(dwell_rows, 1, padding_idx=pad)         # b (eq. 11)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.time_emb.weight, std=0.1)
        nn.init.zeros_(self.dwell_weight.weight)
        nn.init.constant_(self.dwell_bias.weight, math.log(c.c2))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            if c.dwell_head == "per_item":
                self.dwell_bias.weight[0].zero_()

    @property
    def dwell_sigma(self) -> float:
        return self.config.sigma

    @property
    def min_dwell(self) -> float:
        return self.config.min_dwell

    # -- layers -------------------------------------------------------------------------------
    def n_fast(self, tau: torch.Tensor) -> torch.Tensor:
        """Fast-step count per click: clamp(ceil(tau / z), 1, max_fast_steps).  (...) long."""
        c = self.config
        return torch.ceil(tau / c.z).clamp(1, c.max_fast_steps).long()

    def time_row(self, tau: torch.Tensor) -> torch.Tensor:
        """Row of T for each dwell (eq. 16: floor(tau); or its log bucket, see JumpConfig).  (...) long"""
        c = self.config
        if c.time_buckets == "second":
            rows = torch.floor(tau)
        else:
            rows = torch.where(tau >= 1, 1 + torch.floor(2 * torch.log2(tau.clamp_min(1.0))), torch.zeros_like(tau))
        return rows.long().clamp(0, c.time_rows - 1)

    def embed(self, items: torch.Tensor, tau: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 16: BatchNorm(V[i] + T[floor(tau)]).  (B, L) -> (B, L, d).

        Batch statistics use valid positions only, so padding cannot change any output.
        """
        x = self.item_emb(items)                                           # (B, L, d)
        if self.config.time_embedding:
            x = x + self.time_emb(self.time_row(tau))                      # (B, L, d)
        out = torch.zeros_like(x)                                          # (B, L, d)
        out[mask] = self.emb_norm(x[mask])                                 # (n_valid, d)
        return out

    def features(self, batch: SessionBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Session features v_1..v_L with every dwell known (paper protocol).

        Returns v (B, L, d), fast-slow outputs h (B, L, d), slow states (B, L, d).
        """
        x = self.embed(batch.items, batch.tau, batch.mask)                 # (B, L, d)
        h, slow = self.fast_slow(x, self.n_fast(batch.tau), batch.mask)    # (B, L, d) x2
        return (causal_attention(h) if self.config.attention else h), h, slow   # v (B, L, d)

    def live_features(self, batch: SessionBatch, h: torch.Tensor, slow: torch.Tensor) -> torch.Tensor:
        """Features v'_j of the prefix 1..j with the dwell on click j unknown (live protocol).

        Click j is re-embedded with (tau = c2, delta = 1) and stepped from the states after
        click j-1; attention runs over h_1..h_{j-1} and the live h'_j.  -> (B, L, d)
        """
        c = self.config
        B, L, d = h.shape
        live_tau = torch.full_like(batch.tau, c.c2)                        # (B, L)
        x = self.embed(batch.items, live_tau, batch.mask)                  # (B, L, d)
        prev_fast = F.pad(h, (0, 0, 1, 0))[:, :L]                          # (B, L, d) state after j-1
        prev_slow = F.pad(slow, (0, 0, 1, 0))[:, :L]                       # (B, L, d)
        x_proj = self.fast_slow.project(x)                                 # (B, L, 2d)
        live_h, _ = self.fast_slow.step(prev_fast.reshape(B * L, d), prev_slow.reshape(B * L, d),
                                        x_proj.reshape(B * L, -1), self.n_fast(live_tau).reshape(B * L))
        live_h = live_h.view(B, L, d)                                      # (B, L, d)
        if not c.attention:
            return live_h
        scale = math.sqrt(d)
        past = (live_h @ h.transpose(1, 2)) / scale                        # (B, L_query, L_key)
        not_past = torch.ones(L, L, dtype=torch.bool, device=h.device).triu(0)  # key i >= query j
        past = past.masked_fill(not_past, float("-inf"))
        own = (live_h * live_h).sum(-1, keepdim=True) / scale              # (B, L, 1)
        attn = torch.cat([past, own], dim=-1).softmax(dim=-1)              # (B, L, L+1)
        return attn[..., :L] @ h + attn[..., L:] * live_h                  # (B, L, d)

    def context(self, v: torch.Tensor) -> torch.Tensor:
        """v(S_{k-1}) for every click k: [v(S_0), v_1, ..., v_{L-1}].  (B, L, d) -> (B, L, d)."""
        start = self.start_feature.expand(v.shape[0], 1, -1)               # (B, 1, d)
        return torch.cat([start, v[:, :-1]], dim=1)                        # (B, L, d)

    def click_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Eq. 9 with V tied to the input embedding; index 0 is never a candidate.  (..., n_items)."""
        logits = v @ self.item_emb.weight.t()                              # (..., n_items)
        logits[..., 0] = float("-inf")
        return logits

    def dwell_rows(self, items: torch.Tensor) -> torch.Tensor:
        """Row of eq. 11's W, b for each item: its own, or row 0 for every item (shared-head ablation)."""
        return items if self.config.dwell_head == "per_item" else torch.zeros_like(items)

    def dwell_mu(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Eq. 11: mu = W[i] . v(S_{k-1}) + b[i].  ctx (B, L, d), items (B, L) -> (B, L)."""
        rows = self.dwell_rows(items)                                      # (B, L)
        return (self.dwell_weight(rows) * ctx).sum(-1) + self.dwell_bias(rows).squeeze(-1)

    # -- the model contract ----------------------------------------------------------------------
    def forward(self, batch: SessionBatch) -> tuple[dict, torch.Tensor]:
        """Joint negative log-likelihood of eq. 17-18 (mean over sessions) and its parts."""
        c = self.config
        inputs = batch
        if self.training and c.live_censor_p > 0:
            hide = torch.rand(batch.tau.shape, device=batch.tau.device) < c.live_censor_p        # (B, L)
            inputs = SessionBatch(batch.items, torch.where(hide, torch.full_like(batch.tau, c.c2), batch.tau),
                                  batch.delta | hide, batch.lengths)
        v, _, _ = self.features(inputs)                                    # (B, L, d)
        ctx = self.context(v)                                              # (B, L, d)
        m = batch.mask                                                     # (B, L)
        click_ll = -F.cross_entropy(self.click_logits(ctx[m]), batch.items[m], reduction="none")
        log_tau = torch.log(batch.tau[m].clamp_min(c.min_dwell))           # (n_valid,)
        dwell_ll = censored_lognormal_loglik(log_tau, batch.delta[m], self.dwell_mu(ctx, batch.items)[m],
                                             c.sigma)                      # (n_valid,)
        n_sessions = batch.items.shape[0]
        nll = -(click_ll.sum() + dwell_ll.sum()) if c.dwell_loss else -click_ll.sum()
        loss = nll / n_sessions
        outputs = {"click_ll": click_ll.detach(), "dwell_ll": dwell_ll.detach(), "loss_sum": nll.item()}
        return outputs, loss

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper"
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Next-click scores and dwell predictions from one pass over the batch.

        Returns (scores (P, n_items), (median (B, L), mu (B, L))): row p of scores ranks the
        candidates for click j+1 given clicks 1..j, in `batch.next_positions()` order
        (protocol 'paper': the dwell on click j known; 'live': unknown). The dwell of click k
        is predicted from its item and clicks 1..k-1, whose dwells are known at that time in
        both protocols (click k's arrival fixes tau_{k-1}), so it does not depend on protocol.
        """
        if protocol not in ("paper", "live"):
            raise ValueError(f"protocol must be 'paper' or 'live', not {protocol!r}")
        v, h, slow = self.features(batch)                                  # (B, L, d)
        mu = self.dwell_mu(self.context(v), batch.items)                   # (B, L)
        if protocol == "live":
            v = self.live_features(batch, h, slow)                         # (B, L, d)
        return self.click_logits(v[batch.next_positions()]), (torch.exp(mu), mu)

    @torch.no_grad()
    def predict_last(self, batch: SessionBatch, with_state: bool = False):
        """The stream's prediction at each session's latest click (live protocol).

        Row b answers "what comes after click L_b, and how long will the user dwell on it?":
        (scores (B, n_items), (median (B,), mu (B,))). The scores are exactly the `predict(...,
        'live')` row of that click, so offline live metrics measure what the stream emits.
        With `with_state`, also returns the fast-slow outputs h and slow states (B, L, d), from
        which `live_step` can continue the sessions one click at a time.
        """
        rows = torch.arange(batch.items.shape[0], device=batch.items.device)
        out = self.predict_live_at(batch, rows, batch.lengths - 1)
        return out if with_state else out[:2]

    @torch.no_grad()
    def predict_live_at(self, batch: SessionBatch, rows: torch.Tensor, clicks: torch.Tensor):
        """`predict_last` at any clicks: click clicks[r] (0-based) of session rows[r], seeing only the
        clicks up to it. Returns (scores (R, n_items), (median, mu) (R,), h, slow (B, L, d))."""
        v, h, slow = self.features(batch)                                  # (B, L, d)
        mu = self.dwell_mu(self.context(v), batch.items)[rows, clicks]     # (R,)
        live = self.live_features(batch, h, slow)[rows, clicks]            # (R, d)
        return self.click_logits(live), (torch.exp(mu), mu), h, slow

    @torch.no_grad()
    def live_step(self, fast: torch.Tensor, slow: torch.Tensor, memory: torch.Tensor, mem_len: torch.Tensor,
                  prev_items: torch.Tensor, prev_tau: torch.Tensor, has_prev: torch.Tensor, items: torch.Tensor):
        """`predict_last` for one more click per session, from cached states (the stream's fast path).

        State of a session after its first j clicks (all with known dwell): fast, slow (B, d) and the
        attention memory h_1..h_j (B, M, d) right-padded, mem_len (B,) = j. When click n arrives, the
        dwell of click n-1 becomes known: rows with has_prev first consume click n-1 (prev_items,
        prev_tau (B,)), then click n (items (B,)) is scored with the live rule (tau = c2). Returns
        (scores (B, n_items), (median, mu) (B,), (fast, slow, memory, mem_len) after click n-1).
        """
        c = self.config
        B, d = fast.shape
        scale = math.sqrt(d)
        rows = torch.arange(B, device=fast.device)
        x = self.embed(prev_items[:, None], prev_tau[:, None], has_prev[:, None])[:, 0]   # (B, d)
        f, s = self.fast_slow.step(fast, slow, self.fast_slow.project(x), self.n_fast(prev_tau))
        fast = torch.where(has_prev[:, None], f, fast)                     # (B, d)
        slow = torch.where(has_prev[:, None], s, slow)                     # (B, d)
        memory = torch.cat([memory, memory.new_zeros(B, 1, d)], dim=1)     # (B, M+1, d)
        memory[rows[has_prev], mem_len[has_prev]] = fast[has_prev]
        mem_len = mem_len + has_prev.long()                                # (B,)
        keys = torch.arange(memory.shape[1], device=fast.device) < mem_len[:, None]   # (B, M+1)
        # paper feature v_{n-1} (eq. 12-13): the latest output attends over h_1..h_{n-1}; v(S_0) if none
        att = ((memory @ fast[:, :, None]).squeeze(-1) / scale).masked_fill(~keys, float("-inf"))
        v = (att.softmax(-1)[:, :, None] * memory).sum(1) if c.attention else fast   # (B, d)
        v = torch.where((mem_len > 0)[:, None], v, self.start_feature.expand(B, d))
        mu = self.dwell_mu(v[:, None], items[:, None])[:, 0]               # (B,)
        # live feature of click n: stepped with (c2, censored), attends over h_1..h_{n-1} and itself
        live_tau = torch.full_like(prev_tau, c.c2)                         # (B,)
        x = self.embed(items[:, None], live_tau[:, None], torch.ones_like(has_prev)[:, None])[:, 0]
        live_h, _ = self.fast_slow.step(fast, slow, self.fast_slow.project(x), self.n_fast(live_tau))
        v_live = live_h                                                    # (B, d) without attention
        if c.attention:
            past = ((memory @ live_h[:, :, None]).squeeze(-1) / scale).masked_fill(~keys, float("-inf"))
            own = (live_h * live_h).sum(-1, keepdim=True) / scale          # (B, 1)
            attn = torch.cat([past, own], dim=-1).softmax(-1)              # (B, M+2)
            v_live = (attn[:, :-1, None] * memory).sum(1) + attn[:, -1:] * live_h   # (B, d)
        return self.click_logits(v_live), (torch.exp(mu), mu), (fast, slow, memory, mem_len)

    def next_scores(self, batch: SessionBatch, protocol: str = "paper") -> torch.Tensor:
        """The scores of `predict`.  (P, n_items)"""
        return self.predict(batch, protocol)[0]

    @torch.no_grad()
    def predict_dwell(self, batch: SessionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The dwell predictions of `predict` without scoring the catalogue: (median, mu) (B, L)."""
        v, _, _ = self.features(batch)                                     # (B, L, d)
        mu = self.dwell_mu(self.context(v), batch.items)                   # (B, L)
        return torch.exp(mu), mu
