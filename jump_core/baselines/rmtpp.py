"""RMTPP: Recurrent Marked Temporal Point Process (Du et al., KDD 2016; the JUMP paper's RMTP baseline).

Framing: the events are a session's clicks, the marker of click j is its item, and the time to the
next event is the censored dwell (tau_j, delta_j) of eq. 4 of JUMP (Zhou et al., IJCAI 2018):
delta_j = 1 for a session's last click (tau = c2) and for a gap above c1 (tau = c1).
  * State: h_j = RNN(h_{j-1}, x_j), x_j = E[i_j] + W_t [log1p(tau_{j-1} / s), delta_{j-1}] (the
    item embedding plus a linear time feature of the previous gap; zero feature for j = 1).
    Du et al. use a ReLU RNN; the default here is a GRU (`cell="gru"`, stable under the common
    training loop), `cell="rnn"` gives theirs.
  * Marker head: P(i_{j+1} | h_j) = softmax(Linear(h_j)), full softmax. RMTPP predicts the next
    marker from h_j without the gap tau_j, so its scores are the same under both protocols
    (the 'paper' and 'live' rows are identical).
  * Time head (Du et al. eq. 11-13), t = time since click j in units of `time_scale` s (60: minutes,
    so typical dwells are O(1) and w t stays moderate for t <= c1):
        lambda(t) = exp(a_j + w t),  a_j = v . h_j + b,  w = softplus(w_raw) > 0
        log S(t)  = -exp(a_j) (exp(w t) - 1) / w
        log f(t)  = a_j + w t + log S(t)
        median    = log1p(w ln 2 exp(-a_j)) / w          (S(median) = 1/2)
    w > 0 keeps S(inf) = 0 (a proper distribution); softplus is the smooth positivity map. The time
    unit only conditions the optimisation (the family is scale-free); w starts at time_scale / c1
    (w t = 1 at t = c1) and b at log(time_scale / c2): a larger start makes the c1-censored gaps
    cost ~exp(w c1) and the first steps explode.
    The exponent of log S is clamped at 60 (a density below exp(-e^60) is 0 in float32 anyway).
  * Loss = mean marker cross-entropy over positions with a next click + `time_weight` x mean
    censored time negative log-likelihood over all clicks (log f if observed, log S if censored).
    The time likelihood is that of y = log tau (Jacobian + log u, a constant in the parameters), so
    `loss_sum` and the predicted `Dwell.loglik` are on the scale of JUMP's eq. 10 and the log-normal baselines.
    Dwells below `min_dwell` (0.5 s) are floored first, as JUMP's.
  * Gap-censored clicks (tau = c1, delta = 1) are in the time likelihood as eq. 4 says. The
    Gompertz tail is light, so a few clicks known to last >= c1 force w -> 0 (an exponential law)
    and inflate every median: on the synthetic data (2 % distraction gaps) even a per-item MLE of
    this family has a dwell MAE (74 s) above the global median's (50 s); without those clicks,
    42 s. `drop_gap_censored=True` leaves them out of the time loss (not of `Dwell.loglik`).
  * Dwell of click k: the median of the time distribution from h_k (which has seen item i_k and
    tau_{k-1}, both known when click k arrives), in seconds; mu = log(median).
  * `predict` returns, with the medians, the censored log-density of every click's log tau (0 at padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract import MIN_DWELL_S, Dwell, Loss, NeuralModel, Prediction, SessionBatch, check_protocol
from ..sessions import C1_DEFAULT, C2_DEFAULT

LN2 = math.log(2.0)
MAX_EXPONENT = 60.0


def log_expm1(x: torch.Tensor) -> torch.Tensor:
    """log(exp(x) - 1) for x > 0, stable at both ends."""
    return torch.where(x > 20, x, torch.log(torch.expm1(x.clamp(1e-12, 20.0))))


@dataclass
class RMTPPConfig:
    n_items: int  # catalogue size including index 0
    dim: int = 100  # embedding = hidden size
    cell: str = "gru"  # gru (stable under the common loop) or rnn (Du et al.'s ReLU RNN)
    time_scale: float = 60.0  # s per model time unit (conditions the optimisation only)
    time_weight: float = 1.0  # weight of the time term in the loss
    drop_gap_censored: bool = False  # leave gaps censored at c1 out of the time loss
    min_dwell: float = MIN_DWELL_S  # s, floor before the log
    c1: float = C1_DEFAULT  # s, eq. 4
    c2: float = C2_DEFAULT  # s, eq. 4 (the initial intensity is ~1 / c2)

    def __post_init__(self):
        if self.cell not in ("gru", "rnn"):
            raise ValueError(f"cell must be 'gru' or 'rnn', not {self.cell!r}")


class RMTPP(NeuralModel):
    name = "rmtpp"
    ranks_clicks, predicts_dwell = True, True

    def __init__(self, config: RMTPPConfig):
        super().__init__()
        self.config = c = config
        dim = c.dim
        self.item_emb = nn.Embedding(c.n_items, dim, padding_idx=0)  # marker embedding
        self.time_proj = nn.Linear(2, dim, bias=False)  # W_t on [log1p(tau/s), delta]
        self.rnn = (
            nn.GRU(dim, dim, batch_first=True)
            if c.cell == "gru"
            else nn.RNN(dim, dim, nonlinearity="relu", batch_first=True)
        )
        self.marker_head = nn.Linear(dim, c.n_items)
        self.time_head = nn.Linear(dim, 1)  # v, b
        w0 = c.time_scale / c.c1  # w u = 1 at u = c1 at start
        self.w_raw = nn.Parameter(torch.tensor(math.log(math.expm1(w0))))  # w = softplus(w_raw)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        nn.init.normal_(self.time_proj.weight, std=0.1)  # same scale as the items
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
            self.time_head.weight.zero_()
            self.time_head.bias.fill_(-math.log(c.c2 / c.time_scale))  # intensity ~ 1 / c2 at start

    @property
    def w(self) -> torch.Tensor:
        return F.softplus(self.w_raw)

    # -- layers -------------------------------------------------------------------------------
    def scaled(self, tau: torch.Tensor) -> torch.Tensor:
        """Dwell in model time units, floored at min_dwell.  (...)"""
        return tau.clamp_min(self.config.min_dwell) / self.config.time_scale

    def states(self, batch: SessionBatch) -> torch.Tensor:
        """h_1..h_L: click j's item and the previous gap (tau_{j-1}, delta_{j-1}).  (B, L, d)"""
        feat = torch.stack([torch.log1p(self.scaled(batch.tau)), batch.delta.float()], -1)  # (B, L, 2)
        feat = F.pad(feat, (0, 0, 1, 0))[:, :-1]  # (B, L, 2) previous gap, 0 at j=1
        x = self.item_emb(batch.items) + self.time_proj(feat)  # (B, L, d)
        h, _ = self.rnn(x)  # (B, L, d)
        return h

    def intensity_base(self, h: torch.Tensor) -> torch.Tensor:
        """a_j = v . h_j + b.  (..., d) -> (...)"""
        return self.time_head(h).squeeze(-1)

    def log_survival(self, a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """log S(u) = -exp(a) (exp(w u) - 1) / w, u in model time units.  (...)"""
        w = self.w
        return -torch.exp((a + log_expm1(w * u) - torch.log(w)).clamp(max=MAX_EXPONENT))

    def log_density(self, a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """log f(u) = log lambda(u) + log S(u), density per model time unit.  (...)"""
        return a + self.w * u + self.log_survival(a, u)

    def median(self, a: torch.Tensor) -> torch.Tensor:
        """Median time to the next click in model time units: S(median) = 1/2.  (...)"""
        w = self.w
        return torch.log1p(w * LN2 * torch.exp((-a).clamp(max=MAX_EXPONENT))) / w

    def time_loglik(self, a: torch.Tensor, tau: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Censored log-likelihood of y = log tau: log f(u) + log u if observed, log S(u) if censored."""
        u = self.scaled(tau)  # (...)
        return torch.where(delta, self.log_survival(a, u), self.log_density(a, u) + torch.log(u))

    def marker_logits(self, h: torch.Tensor) -> torch.Tensor:
        out = self.marker_head(h)  # (..., n_items)
        out[..., 0] = float("-inf")
        return out

    # -- the model contract ----------------------------------------------------------------------
    def calculate_loss(self, batch: SessionBatch) -> Loss:
        h = self.states(batch)  # (B, L, d)
        nxt_items = F.pad(batch.items[:, 1:], (0, 1))  # (B, L)
        nxt = batch.next_positions() & (nxt_items > 0)  # (B, L) known next item
        ce = F.cross_entropy(self.marker_logits(h[nxt]), nxt_items[nxt], reduction="none")  # (P,)
        m = batch.mask  # (B, L)
        if self.config.drop_gap_censored:  # gaps above c1: no dwell info
            m = m & ~(batch.delta & (batch.tau >= self.config.c1))
        nll = -self.time_loglik(self.intensity_base(h[m]), batch.tau[m], batch.delta[m])  # (n_valid,)
        zero = h.sum() * 0.0
        loss = (ce.mean() if len(ce) else zero) + self.config.time_weight * (nll.mean() if len(nll) else zero)
        loss_sum = float(ce.detach().sum() + self.config.time_weight * nll.detach().sum())
        return Loss(loss, loss_sum, {"marker_ce": ce.detach(), "time_nll": nll.detach()})

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        check_protocol(protocol)
        h = self.states(batch)  # (B, L, d)
        a = self.intensity_base(h)  # (B, L)
        median = self.median(a) * self.config.time_scale  # (B, L) seconds
        loglik = self.time_loglik(a, batch.tau, batch.delta)  # (B, L) of log tau
        dwell = Dwell(median, torch.log(median), torch.where(batch.mask, loglik, torch.zeros_like(loglik)))
        return Prediction(self.marker_logits(h[batch.next_positions()]), dwell)
