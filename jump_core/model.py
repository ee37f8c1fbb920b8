"""JUMP: A Joint Predictor for User Click and Dwell Time (Zhou et al., IJCAI 2018).

One readable model file. Sections follow the paper, bottom-up:
  embedding (eq. 16) -> fast-slow layer of RH-MI cells (eq. 14-15) -> attention (eq. 12-13)
  -> tied softmax click head (eq. 9) + per-item linear dwell head (eq. 11)
  -> joint log-likelihood (eq. 17-18) with the censored log-normal dwell density (eq. 10).

Documented choices where the paper is silent or ambiguous (tested in tests/unit/test_model.py):
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
    `Jump.live_context` computes that in one extra fast-slow step per position.
Item index 0 is padding / unknown item: its embedding rows are zero and it is never ranked.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .contract import MIN_DWELL_S, Dwell, Loss, NeuralModel, Prediction, SessionBatch, latest_dwell
from .sessions import C1_DEFAULT, C2_DEFAULT

SIGMA_MODES = ("fixed", "global", "per_item")
OBJECTIVES = ("live", "paper", "both")
DWELL_POINTS = ("observed_median", "median")
LAST_CLICK_DWELL = ("censored", "skip")
# The paper's settings of the fields above whose defaults depart from it (`jump train --paper`).
# A checkpoint written before these fields existed was trained with them, so it loads with them.
PAPER_SETTINGS = {
    "sigma": 10.0,
    "sigma_mode": "fixed",
    "objective": "paper",
    "dwell_point": "median",
    "dwell_calibration": False,
    "dwell_item_blend": False,
    "last_click_dwell": "censored",
    "dropout": 0.0,
    "time_buckets": "second",
    "z": 60.0,
}


@dataclass
class JumpConfig:
    n_items: int  # catalogue size including index 0 (padding / unknown)
    dim: int = 100  # d: item, time and hidden dimension (§5.2)
    c1: float = C1_DEFAULT  # s, censoring threshold of eq. 4 (2000, §5.2)
    c2: float = C2_DEFAULT  # s, dwell of a session's last click, eq. 4 (30, §5.2)
    # s, fast-step scale of eq. 14, not given by the paper: 90 from the RecSys15 tuning run (docs/results/tuning.md;
    # validation only), 60 under --paper (our earlier choice)
    z: float = 90.0
    max_fast_steps: int = 8  # cap on ceil(tau / z)
    # Log-dwell standard deviation of eq. 10. The paper fixes it (§5.2: sigma = 10, `sigma_mode="fixed"`).
    # A fixed large sigma lets the censored clicks push mu far above the data (dwell MAE in the
    # thousands of seconds), so by default sigma is learned with everything else by maximum censored
    # likelihood: "global" (one sigma) or "per_item" (log sigma_i = log sigma + an item offset,
    # which starts at 0). `sigma` is then its starting value.
    sigma: float = 1.0
    sigma_mode: str = "global"  # "fixed" (the paper), "global", "per_item"
    min_dwell: float = MIN_DWELL_S  # s, floor before log tau in the likelihood (tau = 0 has no log)
    # The next-click term of eq. 17. "paper": P(i_{k+1} | v_k) with the dwell of click k known, as
    # printed; but the stream scores click k before its dwell is known (the live rule, see
    # `Jump.live_context`), so by default the term is computed from exactly that live representation
    # of click k ("live": train as served). "both": the sum of the two terms.
    objective: str = "live"
    # The dwell point estimate, for absolute error. "median": exp(mu), the median of the predicted
    # log-normal (the paper's model; it minimises the expected absolute error of the full dwell).
    # "observed_median" (default): the median of the dwell given that it ends with a next click
    # within c1 (tau < c1), the clicks whose dwell is observed and scored: exp(mu + sigma q) with
    # q = Phi^-1(Phi((log c1 - mu) / sigma) / 2).
    dwell_point: str = "observed_median"
    # Not in the paper: after training, the point estimate is multiplied by the one scale that minimises the
    # absolute error on the validation split's observed dwells (`Jump.after_fit`; a weighted median). The
    # censored terms (every last click is "at least c2", eq. 4) pull mu above the observed dwells, and a
    # scalar fixes that bias without touching the likelihood. `dwell_scale` is the fitted value (1 = none).
    dwell_calibration: bool = True
    # The dwell term of a session's last click: eq. 4 writes it (c2, censored), "at least c2 s", which is a
    # convention, not an observation (the user may have left after 2 s); it pulls mu up. "censored": the
    # paper's term; "skip": no dwell term for last clicks (their click terms are unchanged).
    last_click_dwell: str = "skip"
    dwell_scale: float = 1.0
    # Not in the paper: after training, the log point estimate is blended with the log of the item's median
    # observed dwell in the training split and the global one (ItemMedianDwell's table: an item's own median
    # with >= 3 observations, else the global one; the global one is row 0):
    #     log p = w_m log p_model + w_i log median_item + (1 - w_m - w_i) log median_global,
    # then scaled as above. (w_m, w_i) on a 0.1 grid is the pair with the least absolute error on the
    # validation split (`Jump.after_fit`). Eq. 11's per-item head is noisy for rare items, and the medians are
    # the strongest dwell baselines; the blend keeps what the session context adds, and the fitted weights say
    # how much that is. `dwell_blend` = w_m (1 = the model alone), `dwell_blend_item` = w_i; the table is the
    # `dwell_item_log_median` buffer.
    dwell_item_blend: bool = True
    dwell_blend: float = 1.0
    dwell_blend_item: float = 0.0
    # Not in the paper: dropout on the click embeddings (eq. 16's output) and on the session features
    # before both heads, in training only (serving is unchanged). 0 = the paper's model; 0.3 from the
    # RecSys15 tuning run (without it JUMP overfits after 4 epochs of the extract).
    dropout: float = 0.3
    # Ablations (jump benchmark --ablations); the defaults are the paper's model.
    recurrent: str = "fast_slow"  # "fast_slow" (eq. 14), "rh" (one RH-MI cell per click), "gru" (a GRU cell)
    attention: bool = True  # eq. 12-13; False: v_k = h_k
    time_embedding: bool = True  # eq. 16's T[floor(tau)]; False: V[i] only (tau still sets n_j)
    dwell_loss: bool = True  # eq. 17's dwell term; False: clicks only (the dwell head is not trained)
    dwell_head: str = "per_item"  # eq. 11's W[i], b[i]; "shared": one W, b for every item
    # Not in the paper (an investigation knob of docs/RESULTS.md, off by default): during training,
    # feed each click's dwell to the network as the live rule's (c2, censored) with this probability,
    # so the live representation of the latest click is not only ever seen on last clicks.
    live_censor_p: float = 0.0
    # Not in the paper: rows of T. "second" is eq. 16's T[floor(tau)] (one row per second up to max(c1, c2));
    # "log" (default, the RecSys15 tuning run's choice) shares rows on a log scale, two per doubling:
    # row = 1 + floor(2 log2(tau)) for tau >= 1 s, row 0 below, so rare long dwells share a trained row.
    time_buckets: str = "log"
    # Not a modelling choice: the same function computed two ways (equal to float tolerance, tested in
    # tests/unit/test_model_fast_path.py). True: RH-MI cells with their gates folded into the weights once
    # per batch, the extra fast steps (k >= 2) only on the rows that take them (see `FastSlowLayer`), no
    # live step for a session's last click in the loss (nothing reads it): about 1.3-1.4x the reference's
    # training clicks/s on a CPU (`jump bench train`, docs in README). False: the reference, eq. 14-15 as
    # printed, one torch.where over the full batch per fast step; kept as the yardstick of the benchmark.
    fast_path: bool = True

    def __post_init__(self):
        if self.recurrent not in RECURRENT_LAYERS:
            raise ValueError(f"recurrent must be one of {sorted(RECURRENT_LAYERS)}, not {self.recurrent!r}")
        if self.time_buckets not in ("second", "log"):
            raise ValueError(f"time_buckets must be 'second' or 'log', not {self.time_buckets!r}")
        if self.dwell_head not in ("per_item", "shared"):
            raise ValueError(f"dwell_head must be 'per_item' or 'shared', not {self.dwell_head!r}")
        for name, allowed in (
            ("sigma_mode", SIGMA_MODES),
            ("objective", OBJECTIVES),
            ("dwell_point", DWELL_POINTS),
            ("last_click_dwell", LAST_CLICK_DWELL),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, not {self.sigma!r}")

    @property
    def time_rows(self) -> int:  # rows of T: floor(tau) for tau in [0, max(c1, c2)] (or its log buckets)
        top = max(self.c1, self.c2)
        return math.floor(top) + 1 if self.time_buckets == "second" else 2 + math.floor(2 * math.log2(max(top, 1.0)))

    def to_dict(self) -> dict:
        return asdict(self)


def censored_lognormal_loglik(
    log_tau: torch.Tensor, delta: torch.Tensor, mu: torch.Tensor, sigma: float | torch.Tensor
) -> torch.Tensor:
    """log P(log T | mu, sigma) of eq. 10: normal log-density if observed, log survival if censored.

    sigma: a float or a tensor that broadcasts with mu (learned, per item)."""
    sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
    zscore = (log_tau - mu) / sigma  # (...)
    observed = -0.5 * zscore**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    censored = torch.special.log_ndtr(-zscore)  # log(1 - Psi(z))
    return torch.where(delta.bool(), censored, observed)  # (...)


def observed_median(mu: torch.Tensor, sigma: float | torch.Tensor, c1: float) -> torch.Tensor:
    """Median of a LogNormal(mu, sigma) dwell given that it is below c1 (observed, eq. 4).  (...) s"""
    sigma = torch.as_tensor(sigma, dtype=mu.dtype, device=mu.device)
    below = torch.special.ndtr((math.log(c1) - mu) / sigma)  # (...) P(tau < c1)
    q = torch.special.ndtri((0.5 * below).clamp_min(1e-12))  # (...)
    return torch.exp(mu + sigma * q)


def lognormal_dwell(
    batch: SessionBatch,
    mu: torch.Tensor,
    sigma: float | torch.Tensor,
    min_dwell: float = MIN_DWELL_S,
    point: torch.Tensor | None = None,
) -> Dwell:
    """The contract's Dwell of a log-normal model with location mu (B, L): the point estimate (by default
    the median exp(mu)), and eq. 10's censored log-likelihood of every click's (tau, delta)."""
    loglik = censored_lognormal_loglik(batch.log_tau(min_dwell), batch.delta, mu, sigma)
    return Dwell(torch.exp(mu) if point is None else point, mu, loglik)


class RHMICell(nn.Module):
    """Recurrent-Highway cell with multiplicative integration (eq. 15).

    m = alpha*(Wc x * Uc h) + beta*Wc x + gamma*Uc h + b_c;  c = tanh(m)
    g = sigmoid(Wg x + Ug h + b_g);  h' = (1 - g)*h + g*c
    Called without x, every term containing x is omitted: m = gamma*Uc h + b_c, g = sigmoid(Ug h + b_g).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.input_proj = nn.Linear(dim, 2 * dim, bias=False)  # [Wc; Wg]
        self.state_proj = nn.Linear(dim, 2 * dim, bias=False)  # [Uc; Ug]
        self.alpha = nn.Parameter(torch.ones(dim))  # multiplicative gate
        self.beta = nn.Parameter(torch.ones(dim))  # linear gate on the input
        self.gamma = nn.Parameter(torch.ones(dim))  # linear gate on the state
        self.cand_bias = nn.Parameter(torch.zeros(dim))
        self.gate_bias = nn.Parameter(torch.full((dim,), -1.0))

    def forward(
        self, h: torch.Tensor, x: torch.Tensor | None = None, x_proj: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h (N, d); x (N, d) or None; x_proj (N, 2d) = input_proj(x) when precomputed."""
        uc, ug = self.state_proj(h).chunk(2, dim=-1)  # (N, d), (N, d)
        if x is None and x_proj is None:
            m = self.gamma * uc + self.cand_bias  # (N, d)
            g = torch.sigmoid(ug + self.gate_bias)  # (N, d)
        else:
            wc, wg = (self.input_proj(x) if x_proj is None else x_proj).chunk(2, dim=-1)
            m = self.alpha * wc * uc + self.beta * wc + self.gamma * uc + self.cand_bias
            g = torch.sigmoid(wg + ug + self.gate_bias)  # (N, d)
        return (1 - g) * h + g * torch.tanh(m)  # (N, d)


class FusedRHMI(NamedTuple):
    """An RH-MI cell's weights with its gates folded in, built once per batch for the fast path.

    Eq. 15 regrouped: m = (alpha*Wc x + gamma)*Uc h + (beta*Wc x + b_c), so the input's three terms
    come from one affine map of x, and the cell without input is one affine map of h. Per step this
    is 4-7 tensor ops instead of ~15: fewer ops, and fewer autograd nodes to walk back through.
    """

    wx: torch.Tensor  # (3d, d) [alpha*Wc; beta*Wc; Wg]
    bx: torch.Tensor  # (3d,) [gamma; b_c; b_g]
    u: torch.Tensor  # (2d, d) [Uc; Ug]
    u0: torch.Tensor  # (2d, d) [gamma*Uc; Ug]: the cell without input
    b0: torch.Tensor  # (2d,) [b_c; b_g]


def fuse_rhmi(cell: RHMICell) -> FusedRHMI:
    """The cell's parameters as `FusedRHMI` (differentiable: gradients flow back to the parameters)."""
    d = cell.alpha.shape[0]
    wc, wg = cell.input_proj.weight.split(d)  # (d, d) x2
    uc, ug = cell.state_proj.weight.split(d)  # (d, d) x2
    return FusedRHMI(
        torch.cat([cell.alpha[:, None] * wc, cell.beta[:, None] * wc, wg]),
        torch.cat([cell.gamma, cell.cand_bias, cell.gate_bias]),
        cell.state_proj.weight,
        torch.cat([cell.gamma[:, None] * uc, ug]),
        torch.cat([cell.cand_bias, cell.gate_bias]),
    )


def rhmi_input_terms(w: FusedRHMI, x: torch.Tensor) -> torch.Tensor:
    """[alpha*Wc x + gamma, beta*Wc x + b_c, Wg x + b_g] in one affine map.  (..., d) -> (..., 3d)"""
    return F.linear(x, w.wx, w.bx)


def rhmi_step(
    w: FusedRHMI, h: torch.Tensor, terms: torch.Tensor | None = None, u: torch.Tensor | None = None
) -> torch.Tensor:
    """`RHMICell.forward` with folded weights: h (N, d), terms (N, 3d) = rhmi_input_terms(x) or None;
    u (N, 2d) = h @ w.u.T when already computed."""
    if terms is None:
        m, g = F.linear(h, w.u0, w.b0).chunk(2, dim=-1)  # gamma*Uc h + b_c, Ug h + b_g  (N, d) x2
    else:
        uc, ug = (h @ w.u.t() if u is None else u).chunk(2, dim=-1)  # Uc h, Ug h  (N, d) x2
        a, b, gx = terms.chunk(3, dim=-1)  # (N, d) x3
        m, g = torch.addcmul(b, a, uc), gx + ug  # (N, d) x2
    return torch.lerp(h, torch.tanh(m), torch.sigmoid(g))  # (1 - g)*h + g*c  (N, d)


class RecurrentLayer(nn.Module):
    """The loop over clicks shared by the fast-slow layer and its ablations (`project` + `step`)."""

    def forward(self, x: torch.Tensor, n_fast: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, d), n_fast (B, L), mask (B, L) -> outputs h (B, L, d), slow states (B, L, d).

        Right-padded batches: a padded position never updates the carried states, so every
        valid output is independent of padding and of the other sequences in the batch.
        """
        B, L, d = x.shape
        x_proj = self.project(x)  # (B, L, 2d), once for all steps
        fast = x.new_zeros(B, d)  # (B, d)
        slow = x.new_zeros(B, d)  # (B, d)
        outs, slows = [], []
        for j in range(L):
            f, s = self.step(fast, slow, x_proj[:, j], n_fast[:, j])  # (B, d), (B, d)
            valid = mask[:, j].unsqueeze(-1)  # (B, 1)
            fast, slow = torch.where(valid, f, fast), torch.where(valid, s, slow)
            outs.append(fast)
            slows.append(slow)
        return torch.stack(outs, 1), torch.stack(slows, 1)  # (B, L, d) x2


class FastSlowLayer(RecurrentLayer):
    """Fast-slow RNN of eq. 14 (FS-RNN ordering, see the module docstring) over RH-MI cells.

    Two implementations of one function (JumpConfig.fast_path): the reference steps the cells as
    eq. 15 prints them and runs max(n_j) fast steps over the whole batch, keeping rows that need
    fewer with torch.where; the fast path folds the cells' gates into their weights once per batch
    (`FusedRHMI`), keeps a click's rows sorted by their fast-step count n_j so that the rows taking
    fast step k are a prefix of them, steps only that prefix, and leaves padded rows (n = 0, sorted
    last) out rather than masking them. Most clicks need few fast steps (n_j = 1 below z seconds),
    so the reference mostly computes steps that torch.where throws away.
    """

    def __init__(self, dim: int, fast_path: bool = True):
        super().__init__()
        self.fast_cell = RHMICell(dim)
        self.slow_cell = RHMICell(dim)
        self.fast_path = fast_path

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The first fast cell's input terms, computed once per click: (..., d) -> (..., 2d) input_proj(x)
        (reference), or (..., 3d) `rhmi_input_terms` (fast path)."""
        return rhmi_input_terms(fuse_rhmi(self.fast_cell), x) if self.fast_path else self.fast_cell.input_proj(x)

    def step(
        self, fast: torch.Tensor, slow: torch.Tensor, x_proj: torch.Tensor, n_fast: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One click for N sequences: fast/slow (N, d) states, x_proj (N, 2d or 3d, see `project`), n_fast (N,) >= 1."""
        if not self.fast_path:
            return self.reference_step(fast, slow, x_proj, n_fast)
        if fast.shape[0] == 0:
            return fast, slow
        w = self._fused()
        order, counts = fast_step_plan(n_fast)  # (N,), [N, rows with n_j >= 2, ...]
        if len(counts) == 1:  # one fast step each: no reordering
            return self._sorted_step(w, fast, slow, x_proj, counts)
        f, s = self._sorted_step(w, fast[order], slow[order], x_proj[order], counts)  # rows in `order`
        back = order.argsort()  # (N,) the inverse permutation
        return f[back], s[back]

    def reference_step(
        self, fast: torch.Tensor, slow: torch.Tensor, x_proj: torch.Tensor, n_fast: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` as eq. 14-15 print it (the reference of the fast path); x_proj (N, 2d) = input_proj(x)."""
        f = self.fast_cell(fast, x_proj=x_proj)  # h_0^F (N, d)
        slow = self.slow_cell(slow, f)  # h_j^S (N, d)
        f = self.fast_cell(f, slow)  # h_1^F (N, d)
        # The ceil(tau/z) fast-step loop: sequences with fewer steps keep their state, so a batch
        # runs max(n_fast) steps and every sequence gets exactly its own n_j.
        for k in range(2, int(n_fast.max()) + 1):
            f = torch.where((n_fast >= k).unsqueeze(-1), self.fast_cell(f), f)  # h_k^F (N, d)
        return f, slow

    def _fused(self) -> tuple[FusedRHMI, FusedRHMI, torch.Tensor, torch.Tensor]:
        """The fast path's weights, once per batch: both cells folded, and the two maps of h_0^F (the slow
        cell's input terms, the fast cell's state projection) stacked into one (5d, d) matmul."""
        wf, ws = fuse_rhmi(self.fast_cell), fuse_rhmi(self.slow_cell)
        return wf, ws, torch.cat([ws.wx, wf.u]), torch.cat([ws.bx, torch.zeros_like(wf.b0)])

    def _sorted_step(self, w: tuple, fast: torch.Tensor, slow: torch.Tensor, terms: torch.Tensor, counts: list):
        """One click on N rows sorted by n_j, descending: fast/slow (N, d), terms (N, 3d) of the click;
        counts[k - 1] = how many rows take fast step k (a prefix: counts[0] = N, non-increasing)."""
        wf, ws, w0, b0 = w
        f = rhmi_step(wf, fast, terms)  # h_0^F (N, d)
        slow_terms, u = F.linear(f, w0, b0).split([w0.shape[0] - wf.u.shape[0], wf.u.shape[0]], dim=-1)
        slow = rhmi_step(ws, slow, slow_terms)  # h_j^S (N, d)
        f = rhmi_step(wf, f, rhmi_input_terms(wf, slow), u)  # h_1^F (N, d)
        done = []  # rows past their last fast step, by descending count
        for c in counts[1:]:  # h_k^F for 2 <= k <= n_j: only the first c rows take step k
            if c < f.shape[0]:
                f, rest = f.split([c, f.shape[0] - c])  # (c, d), (., d)
                done.append(rest)
            f = rhmi_step(wf, f)  # (c, d)
        return torch.cat([f, *done[::-1]]) if done else f, slow  # (N, d) x2

    def forward(self, x: torch.Tensor, n_fast: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`RecurrentLayer.forward` (same contract). The fast path keeps the carried states in the order of
        the current click's `fast_step_plan` (valid rows by descending n_j, padded rows last): one
        gather per click moves them from the previous click's order, one per output restores the batch's."""
        if not self.fast_path:
            return super().forward(x, n_fast, mask)
        B, L, d = x.shape
        w = self._fused()  # once per batch
        order, counts = fast_step_plan((n_fast * mask).t())  # (L, B), L lists; padded clicks take 0 steps
        rank = order.argsort(dim=1)  # (L, B): where row b sits in click j's order
        moves = rank[:-1].gather(1, order[1:])  # (L-1, B): click j's rows in click j-1's order
        still = (moves == torch.arange(B, device=x.device)).all(1).tolist()  # (L-1,) the same order twice
        terms = rhmi_input_terms(w[0], x).transpose(0, 1)  # (L, B, 3d) = project(x)
        terms = terms.gather(1, order.unsqueeze(-1).expand(terms.shape))  # (L, B, 3d) each click's rows sorted
        fast = x.new_zeros(B, d)  # (B, d) in click j's order
        slow = x.new_zeros(B, d)  # (B, d)
        outs, slows = [], []
        for j in range(L):
            if j and not still[j - 1]:
                fast, slow = fast[moves[j - 1]], slow[moves[j - 1]]  # (B, d) x2
            c = counts[j]  # c[k - 1]: rows of click j that take fast step k (c[0]: its valid rows)
            v = c[0] if c else 0
            if v == B:
                fast, slow = self._sorted_step(w, fast, slow, terms[j], c)
            elif v > 0:  # padded rows carry their states
                (f, f_pad), (s, s_pad) = fast.split([v, B - v]), slow.split([v, B - v])  # (V, d), (B-V, d)
                f, s = self._sorted_step(w, f, s, terms[j, :v], c)  # (V, d) x2
                fast, slow = torch.cat([f, f_pad]), torch.cat([s, s_pad])  # (B, d) x2
            outs.append(fast)
            slows.append(slow)
        back = rank.unsqueeze(-1).expand(L, B, d)  # (L, B, d): each click's rows back in batch order
        h = torch.stack(outs).gather(1, back).transpose(0, 1)  # (B, L, d)
        return h, torch.stack(slows).gather(1, back).transpose(0, 1)  # (B, L, d) x2


def fast_step_plan(n_fast: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Rows sorted by fast-step count, and how many rows take each fast step (the fast path's plan).

    n_fast (..., N) long, 0 for a row that takes no step -> order (..., N), the rows by descending
    count; counts: for each leading index, the list [#rows with n >= k for k = 1..max n] with its
    trailing zeros dropped. One host sync for the whole tensor.
    """
    order = n_fast.argsort(dim=-1, descending=True)  # (..., N)
    top = int(n_fast.max()) if n_fast.numel() else 0
    k = torch.arange(1, max(top, 1) + 1, device=n_fast.device)  # (K,)
    counts = (n_fast.unsqueeze(-1) >= k).sum(-2).tolist()  # (..., K)

    def strip(c):
        return [x for x in c if x > 0] if c and isinstance(c[0], int) else [strip(r) for r in c]

    return order, strip(counts)


class RHLayer(RecurrentLayer):
    """Ablation: one RH-MI cell step per click, no fast-slow structure (the slow state stays 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.cell = RHMICell(dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell.input_proj(x)  # (..., 2d)

    def step(self, fast, slow, x_proj, n_fast):
        return self.cell(fast, x_proj=x_proj), slow  # (N, d), (N, d)


class GRULayer(RecurrentLayer):
    """Ablation: a GRU cell per click (GRU4Rec's recurrence), no fast-slow, no RH-MI."""

    def __init__(self, dim: int):
        super().__init__()
        self.cell = nn.GRUCell(dim, dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (..., d): the GRU projects itself

    def step(self, fast, slow, x_proj, n_fast):
        return self.cell(x_proj, fast), slow  # (N, d), (N, d)


RECURRENT_LAYERS = {"fast_slow": FastSlowLayer, "rh": RHLayer, "gru": GRULayer}


def attend(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, include_query: bool = False) -> torch.Tensor:
    """Eq. 12-13: v = sum_i softmax_i(h_i . q / sqrt(d)) h_i over the outputs h_i that `mask` allows.

    query (B, Q, d); keys (B, K, d), which are also the values; mask (Q, K) or (B, Q, K), True where
    key i may be attended. With `include_query` the query is one more key (and value) of its own row:
    the live representation attends over h_1..h_{j-1} and its own h'_j.  -> (B, Q, d)
    """
    scale = math.sqrt(query.shape[-1])
    scores = (query @ keys.transpose(-1, -2) / scale).masked_fill(~mask, float("-inf"))  # (B, Q, K)
    if not include_query:
        return scores.softmax(dim=-1) @ keys  # (B, Q, d)
    own = (query * query).sum(-1, keepdim=True) / scale  # (B, Q, 1)
    weights = torch.cat([scores, own], dim=-1).softmax(dim=-1)  # (B, Q, K + 1)
    return weights[..., :-1] @ keys + weights[..., -1:] * query  # (B, Q, d)


class LiveState(NamedTuple):
    """Sessions after their first j clicks, every dwell known: what `Jump.live_step` continues from."""

    fast: torch.Tensor  # (B, d) fast-slow output h_j
    slow: torch.Tensor  # (B, d) slow state
    memory: torch.Tensor  # (B, M, d) outputs h_1..h_j, right-padded (the attention keys of eq. 12)
    length: torch.Tensor  # (B,) j


class LivePrediction(NamedTuple):
    """What the stream emits at a click n whose own dwell is still unknown (the live rule)."""

    scores: torch.Tensor  # (R, n_items) next click, column 0 -inf
    median: torch.Tensor  # (R,) s, predicted dwell on click n: the point estimate (JumpConfig.dwell_point)
    mu: torch.Tensor  # (R,)


class Jump(NeuralModel):
    """JUMP (§4): one pass over a session gives every click's next-click scores (eq. 9) and dwell (eq. 11).

    The model contract (jump_core/contract.py): `calculate_loss` (eq. 17-18), `predict` (both protocols,
    one pass), trained by training.train.fit_model. The stream's serving path, live rule only:
    `live_predict` (any clicks of a padded batch, from scratch) and `live_step` (one more click per
    session from a `LiveState`); both equal `predict(..., 'live')` on the same prefix (tested).
    """

    name = "jump"
    ranks_clicks = predicts_dwell = dwell_aware = True

    def __init__(self, config: JumpConfig):
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items, c.dim, padding_idx=0)  # V (eq. 9, 16)
        self.time_emb = nn.Embedding(c.time_rows, c.dim)  # T (eq. 16)
        self.emb_norm = nn.BatchNorm1d(c.dim)  # eq. 16
        self.drop = nn.Dropout(c.dropout)  # training only (JumpConfig.dropout)
        layer = RECURRENT_LAYERS[c.recurrent]
        self.fast_slow = layer(c.dim, c.fast_path) if layer is FastSlowLayer else layer(c.dim)  # eq. 14-15
        self.start_feature = nn.Parameter(torch.zeros(c.dim))  # v(S_0)
        dwell_rows, pad = (c.n_items, 0) if c.dwell_head == "per_item" else (1, None)
        self.dwell_weight = nn.Embedding(dwell_rows, c.dim, padding_idx=pad)  # W (eq. 11)
        self.dwell_bias = nn.Embedding(dwell_rows, 1, padding_idx=pad)  # b (eq. 11)
        if c.sigma_mode != "fixed":
            self.dwell_log_sigma = nn.Parameter(torch.tensor(math.log(c.sigma)))  # log sigma (eq. 10), learned
        if c.sigma_mode == "per_item":
            self.dwell_log_sigma_item = nn.Embedding(c.n_items, 1)  # per-item offset of log sigma
            nn.init.zeros_(self.dwell_log_sigma_item.weight)
        if c.dwell_item_blend:  # log of each item's median training dwell (JumpConfig.dwell_item_blend)
            self.register_buffer("dwell_item_log_median", torch.full((c.n_items,), math.log(c.c2)))
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.time_emb.weight, std=0.1)
        nn.init.zeros_(self.dwell_weight.weight)
        nn.init.constant_(self.dwell_bias.weight, math.log(c.c2))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            if c.dwell_head == "per_item":
                self.dwell_bias.weight[0].zero_()

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
        x = self.item_emb(items)  # (B, L, d)
        if self.config.time_embedding:
            x = x + self.time_emb(self.time_row(tau))  # (B, L, d)
        out = torch.zeros_like(x)  # (B, L, d)
        out[mask] = self.drop(self.emb_norm(x[mask]))  # (n_valid, d)
        return out

    def features(self, batch: SessionBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Session features v_1..v_L with every dwell known (paper protocol).

        Returns v (B, L, d), fast-slow outputs h (B, L, d), slow states (B, L, d).
        """
        x = self.embed(batch.items, batch.tau, batch.mask)  # (B, L, d)
        h, slow = self.fast_slow(x, self.n_fast(batch.tau), batch.mask)  # (B, L, d) x2
        if not self.config.attention:
            return h, h, slow
        causal = torch.ones(h.shape[1], h.shape[1], dtype=torch.bool, device=h.device).tril()  # key i <= query k
        return attend(h, h, causal), h, slow  # v (B, L, d)

    def live_context(
        self,
        fast: torch.Tensor,
        slow: torch.Tensor,
        items: torch.Tensor,
        valid: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        latest_tau: float | None = None,
        needed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The live rule: features v'_j of clicks j whose own dwell is unknown.

        Click j is embedded as (tau = c2, censored) -- how every session's last click looks in
        training -- stepped once from the states after click j-1, and attends over the earlier
        outputs h_1..h_{j-1} and its own h'_j. fast, slow (B, Q, d): states after click j-1;
        items, valid (B, Q); memory (B, K, d) with memory_mask (Q, K) or (B, Q, K). latest_tau: the censored
        dwell of click j instead of c2 (the 'elapsed:E' protocol: E). needed (B, Q) bool or None: only those
        rows are stepped, the others are left 0 (the loss needs no feature of a last click).  -> (B, Q, d)
        """
        c = self.config
        B, Q, d = fast.shape
        tau = torch.full(items.shape, c.c2 if latest_tau is None else latest_tau, dtype=fast.dtype, device=fast.device)
        x = self.embed(items, tau, valid).reshape(B * Q, d)  # (BQ, d) batch statistics over every valid click
        fast, slow, n_fast = fast.reshape(B * Q, d), slow.reshape(B * Q, d), self.n_fast(tau).reshape(B * Q)
        if needed is None:
            live_h, _ = self.fast_slow.step(fast, slow, self.fast_slow.project(x), n_fast)  # (BQ, d)
        else:
            rows = needed.reshape(B * Q).nonzero().squeeze(1)  # (R,)
            x, fast, slow, n_fast = x[rows], fast[rows], slow[rows], n_fast[rows]
            live_h = fast.new_zeros(B * Q, d).index_copy(
                0, rows, self.fast_slow.step(fast, slow, self.fast_slow.project(x), n_fast)[0]
            )  # (BQ, d)
        live_h = live_h.view(B, Q, d)  # (B, Q, d)
        return attend(live_h, memory, memory_mask, include_query=True) if c.attention else live_h

    def live_features(
        self,
        batch: SessionBatch,
        h: torch.Tensor,
        slow: torch.Tensor,
        latest_tau: float | None = None,
        needed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`live_context` at every position j of a batch (or the `needed` ones), from its paper-protocol states,
        the latest dwell as (latest_tau or c2, censored).  -> (B, L, d)"""
        L = h.shape[1]
        prev_fast = F.pad(h, (0, 0, 1, 0))[:, :L]  # (B, L, d) state after j-1
        prev_slow = F.pad(slow, (0, 0, 1, 0))[:, :L]  # (B, L, d)
        past = torch.ones(L, L, dtype=torch.bool, device=h.device).tril(-1)  # key i < query j
        return self.live_context(prev_fast, prev_slow, batch.items, batch.mask, h, past, latest_tau, needed)

    def context(self, v: torch.Tensor) -> torch.Tensor:
        """v(S_{k-1}) for every click k: [v(S_0), v_1, ..., v_{L-1}].  (B, L, d) -> (B, L, d)."""
        start = self.start_feature.expand(v.shape[0], 1, -1)  # (B, 1, d)
        return torch.cat([start, v[:, :-1]], dim=1)  # (B, L, d)

    def click_logits(self, v: torch.Tensor) -> torch.Tensor:
        """Eq. 9 with V tied to the input embedding; index 0 is never a candidate.  (..., n_items)."""
        if self.config.fast_path:  # -inf as a bias: no in-place write into (and copy of) the whole logits
            bias = torch.zeros(self.item_emb.num_embeddings, dtype=v.dtype, device=v.device)  # (n_items,)
            bias[0] = float("-inf")
            return F.linear(v, self.item_emb.weight, bias)  # (..., n_items)
        logits = v @ self.item_emb.weight.t()  # (..., n_items)
        logits[..., 0] = float("-inf")
        return logits

    def dwell_rows(self, items: torch.Tensor) -> torch.Tensor:
        """Row of eq. 11's W, b for each item: its own, or row 0 for every item (shared-head ablation)."""
        return items if self.config.dwell_head == "per_item" else torch.zeros_like(items)

    def dwell_mu(self, ctx: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Eq. 11: mu = W[i] . v(S_{k-1}) + b[i].  ctx (B, L, d), items (B, L) -> (B, L)."""
        rows = self.dwell_rows(items)  # (B, L)
        return (self.dwell_weight(rows) * ctx).sum(-1) + self.dwell_bias(rows).squeeze(-1)

    def dwell_sigma(self, items: torch.Tensor) -> float | torch.Tensor:
        """Sigma of eq. 10 for each click: the fixed float, or the learned value ((), or (B, L) per item)."""
        c = self.config
        if c.sigma_mode == "fixed":
            return c.sigma
        log_sigma = self.dwell_log_sigma  # ()
        if c.sigma_mode == "per_item":
            log_sigma = log_sigma + self.dwell_log_sigma_item(items).squeeze(-1)  # (B, L)
        return log_sigma.clamp(math.log(0.05), math.log(50.0)).exp()  # a floor: a spike of equal dwells

    def dwell(self, batch: SessionBatch, mu: torch.Tensor) -> Dwell:
        """The contract's Dwell for mu (B, L): point estimate (see `dwell_point`) and eq. 10's log-likelihood."""
        point = self.dwell_point_estimate(mu, batch.items)  # (B, L)
        return lognormal_dwell(batch, mu, self.dwell_sigma(batch.items), self.config.min_dwell, point)

    def dwell_point_estimate(self, mu: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The point estimate (s) for mu and items of the same shape (the stream's path)."""
        c = self.config
        sigma = self.dwell_sigma(items)
        point = observed_median(mu, sigma, c.c1) if c.dwell_point == "observed_median" else torch.exp(mu)
        if c.dwell_item_blend and c.dwell_blend != 1.0:
            table = self.dwell_item_log_median
            w_global = 1.0 - c.dwell_blend - c.dwell_blend_item
            prior = c.dwell_blend_item * table[items] + w_global * table[0]  # (...)
            point = torch.exp(c.dwell_blend * torch.log(point) + prior)
        return point * c.dwell_scale if c.dwell_scale != 1.0 else point

    @torch.no_grad()
    def after_fit(self, train, val, batch_size: int = 100) -> dict:
        """The post-hoc dwell settings, fitted on the validation sessions (never the test split):
        `dwell_item_blend`'s table from the training sessions and its weights (w_m, w_i), then
        `dwell_calibration`'s scale s. For each pair on the grid, s minimises sum |tau - s p| over the
        observed dwells tau (the p-weighted median of tau / p); the triple with the least absolute error is kept."""
        c = self.config
        if not (c.dwell_calibration or c.dwell_item_blend) or len(val) == 0:
            return {}
        self.eval()
        c.dwell_scale, c.dwell_blend, c.dwell_blend_item = 1.0, 1.0, 0.0
        if c.dwell_item_blend:
            from .baselines.item_dwell import ItemMedianDwell, ItemMedianDwellConfig  # its table, one implementation

            table = ItemMedianDwell(ItemMedianDwellConfig(c.n_items, min_dwell=c.min_dwell)).fit(train).mu  # (n_items,)
            self.dwell_item_log_median.copy_(table.to(self.dwell_item_log_median))
        points, priors, taus = [], [], []
        for _, batch in val.batches(batch_size):
            batch = batch.to(self.device)
            obs = batch.mask & ~batch.delta  # (B, L) observed dwells: the ones the MAE scores
            mu = self.dwell_mu(self.context(self.features(batch)[0]), batch.items)  # (B, L), no click head needed
            points.append(self.dwell_point_estimate(mu, batch.items)[obs].double().cpu())
            if c.dwell_item_blend:
                priors.append(self.dwell_item_log_median[batch.items[obs]].double().cpu())
            taus.append(batch.tau[obs].double().cpu())
        p, tau = torch.cat(points), torch.cat(taus)
        if len(p) == 0:
            return {}
        log_p = torch.log(p)  # (n_obs,)
        item = torch.cat(priors) if priors else None  # (n_obs,)
        glob = float(self.dwell_item_log_median[0]) if c.dwell_item_blend else 0.0
        grid = [(m / 10, i / 10) for m in range(11) for i in range(11 - m)] if c.dwell_item_blend else [(1.0, 0.0)]
        before = float((tau - p).abs().mean())
        best = None
        for w_m, w_i in grid:
            pw = p if w_m == 1.0 else torch.exp(w_m * log_p + w_i * item + (1 - w_m - w_i) * glob)  # (n_obs,)
            scale = 1.0
            if c.dwell_calibration:
                ratio, order = torch.sort(tau / pw)
                weight = pw[order].cumsum(0)
                scale = float(ratio[int(torch.searchsorted(weight, weight[-1] / 2))])
            mae = float((tau - scale * pw).abs().mean())
            if best is None or mae < best[0]:
                best = (mae, w_m, w_i, scale)
        mae, c.dwell_blend, c.dwell_blend_item, c.dwell_scale = best
        fitted = {"dwell_scale": c.dwell_scale, "val_dwell_mae_before_s": before, "val_dwell_mae_s": mae}
        if c.dwell_item_blend:
            fitted.update(dwell_blend=c.dwell_blend, dwell_blend_item=c.dwell_blend_item)
        return fitted

    # -- the model contract ----------------------------------------------------------------------
    def calculate_loss(self, batch: SessionBatch) -> Loss:
        """Joint negative log-likelihood of eq. 17-18 (mean over sessions); parts click_ll, dwell_ll (n_valid,)."""
        c = self.config
        inputs = batch
        if self.training and c.live_censor_p > 0:
            hide = torch.rand(batch.tau.shape, device=batch.tau.device) < c.live_censor_p  # (B, L)
            inputs = SessionBatch(
                batch.items,
                torch.where(hide, torch.full_like(batch.tau, c.c2), batch.tau),
                batch.delta | hide,
                batch.lengths,
            )
        v, h, slow = self.features(inputs)  # (B, L, d)
        ctx = self.drop(self.context(v))  # (B, L, d) v(S_{k-1}): every dwell of S_{k-1} known
        m = batch.mask  # (B, L)
        targets = batch.items[m]  # (n_valid,)
        click_ll = 0.0
        if c.objective in ("paper", "both"):
            click_ll = click_ll - F.cross_entropy(self.click_logits(ctx[m]), targets, reduction="none")
        if c.objective in ("live", "both"):
            # click k+1 from the live representation of click k: what the stream emits at click k
            # (fast path: the rows of last clicks and padding are not stepped; nothing reads them)
            needed = F.pad(batch.mask[:, 1:], (0, 1)) if c.fast_path else None  # (B, L) click j+1 exists
            live_ctx = self.drop(self.context(self.live_features(inputs, h, slow, needed=needed)))  # (B, L, d)
            click_ll = click_ll - F.cross_entropy(self.click_logits(live_ctx[m]), targets, reduction="none")
        sigma = self.dwell_sigma(batch.items)
        sigma = sigma[m] if isinstance(sigma, torch.Tensor) and sigma.dim() else sigma
        dwell_ll = censored_lognormal_loglik(
            batch.log_tau(c.min_dwell)[m], batch.delta[m], self.dwell_mu(ctx, batch.items)[m], sigma
        )  # (n_valid,)
        if c.last_click_dwell == "skip":
            last = torch.arange(m.shape[1], device=m.device) == (batch.lengths - 1).unsqueeze(1)  # (B, L)
            dwell_ll = torch.where(last[m], torch.zeros_like(dwell_ll), dwell_ll)  # (n_valid,)
        nll = -(click_ll.sum() + dwell_ll.sum()) if c.dwell_loss else -click_ll.sum()
        return Loss(
            nll / batch.items.shape[0], nll.item(), {"click_ll": click_ll.detach(), "dwell_ll": dwell_ll.detach()}
        )

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        """Next-click scores (P, n_items) and every click's dwell, from one pass (the contract).

        The dwell of click k comes from its item and clicks 1..k-1, whose dwells are known when
        click k arrives (click k fixes tau_{k-1}): it is the same under both protocols.
        """
        latest = latest_dwell(protocol, self.config.c2)  # None: paper; c2: live; E: elapsed:E
        v, h, slow = self.features(batch)  # (B, L, d)
        mu = self.dwell_mu(self.context(v), batch.items)  # (B, L)
        if latest is not None:
            v = self.live_features(batch, h, slow, latest)  # (B, L, d)
        return Prediction(self.click_logits(v[batch.next_positions()]), self.dwell(batch, mu))

    # -- the stream's serving path (live rule) ----------------------------------------------------
    @torch.no_grad()
    def live_predict(
        self, batch: SessionBatch, rows: torch.Tensor, clicks: torch.Tensor
    ) -> tuple[LivePrediction, torch.Tensor, torch.Tensor]:
        """What the stream emits at click clicks[r] (0-based) of session rows[r], seeing only the clicks
        up to it: the `predict(..., 'live')` row of that click and its dwell. Also returns the
        fast-slow outputs h and slow states (B, L, d), from which `live_step` continues a session."""
        v, h, slow = self.features(batch)  # (B, L, d)
        mu = self.dwell_mu(self.context(v), batch.items)[rows, clicks]  # (R,)
        live = self.live_features(batch, h, slow)[rows, clicks]  # (R, d)
        point = self.dwell_point_estimate(mu, batch.items[rows, clicks])  # (R,)
        return LivePrediction(self.click_logits(live), point, mu), h, slow

    @torch.no_grad()
    def live_step(
        self,
        state: LiveState,
        prev_items: torch.Tensor,
        prev_tau: torch.Tensor,
        has_prev: torch.Tensor,
        items: torch.Tensor,
    ) -> tuple[LivePrediction, LiveState]:
        """`live_predict` for one more click n per session, from its cached state (the stream's fast path).

        When click n arrives the dwell of click n-1 becomes known: rows with has_prev (B,) first consume
        click n-1 (prev_items, prev_tau (B,)); then click n (items (B,)) is scored with the live rule.
        Returns the prediction and the state after click n-1.
        """
        c = self.config
        fast, slow, memory, length = state
        B, d = fast.shape
        x = self.embed(prev_items[:, None], prev_tau[:, None], has_prev[:, None])[:, 0]  # (B, d)
        f, s = self.fast_slow.step(fast, slow, self.fast_slow.project(x), self.n_fast(prev_tau))
        fast = torch.where(has_prev[:, None], f, fast)  # (B, d)
        slow = torch.where(has_prev[:, None], s, slow)  # (B, d)
        rows = torch.arange(B, device=fast.device)
        memory = torch.cat([memory, memory.new_zeros(B, 1, d)], dim=1)  # (B, M+1, d)
        memory[rows[has_prev], length[has_prev]] = fast[has_prev]
        length = length + has_prev.long()  # (B,)
        keys = (torch.arange(memory.shape[1], device=fast.device) < length[:, None])[:, None]  # (B, 1, M+1)
        # v_{n-1} (eq. 12-13): the latest output attends over h_1..h_{n-1}; v(S_0) before any click
        v = attend(fast[:, None], memory, keys)[:, 0] if c.attention else fast  # (B, d)
        v = torch.where((length > 0)[:, None], v, self.start_feature.expand(B, d))
        mu = self.dwell_mu(v[:, None], items[:, None])[:, 0]  # (B,)
        live = self.live_context(
            fast[:, None], slow[:, None], items[:, None], torch.ones_like(has_prev)[:, None], memory, keys
        )[:, 0]  # (B, d)
        point = self.dwell_point_estimate(mu, items)  # (B,)
        return LivePrediction(self.click_logits(live), point, mu), LiveState(fast, slow, memory, length)
