"""Item dwell baselines: per-item median and per-item censored log-normal (JUMP, Zhou et al., IJCAI 2018, eq. 10).

Dwell-only models with no session context (`scores` is None): the dwell of a click depends on its
item alone. They measure how much of JUMP's dwell accuracy a lookup table already gets.

Documented choices:
  * ItemMedianDwell: per-item median of the uncensored training dwells (delta = 0); items with
    fewer than `min_count` uncensored observations, items unseen in training and index 0 get the
    global median of all uncensored training dwells. Censored clicks are ignored (a median of
    lower bounds is not a median). For the log-likelihood metric `dwell_sigma` is the standard
    deviation of the uncensored training residuals log max(tau, min_dwell) - mu_item.
  * ItemLogNormalDwell: log max(tau, min_dwell) ~ N(mu_i, sigma^2) per item i, censored clicks
    contribute log S (eq. 10, `jump_core.model.censored_lognormal_loglik`). The MAP estimate of
        sum_clicks loglik(tau | mu_i, sigma) - sum_i prior_count / (2 sigma^2) (mu_i - mu_g)^2
    over (mu_i, mu_g, log sigma), full batch, float64, L-BFGS with a strong-Wolfe line search.
    The prior N(mu_g, sigma^2 / prior_count) acts as `prior_count` pseudo-observations at the
    global mu_g (uncensored data: mu_i = (sum_i log tau + prior_count mu_g) / (n_i + prior_count));
    mu_g is fitted jointly (empirical Bayes). Items without training clicks and index 0 get mu_g.
    Point estimate = the median exp(mu_i); `dwell_sigma` = the fitted sigma.
  * Dwells below `min_dwell` (0.5 s, as JUMP's) are floored before the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..contract import MIN_DWELL_S, FittedModel, Prediction, SessionBatch, check_protocol
from ..data.dataset import SessionSet
from ..model import censored_lognormal_loglik, lognormal_dwell
from ..sessions import C2_DEFAULT


@dataclass
class ItemMedianDwellConfig:
    n_items: int  # catalogue size including index 0
    min_count: int = 3  # uncensored observations an item needs for a median of its own
    min_dwell: float = MIN_DWELL_S  # s, floor before log tau


@dataclass
class ItemLogNormalDwellConfig:
    n_items: int  # catalogue size including index 0
    prior_count: float = 5.0  # pseudo-observations at the global mu (empirical Bayes shrinkage)
    min_dwell: float = MIN_DWELL_S  # s, floor before log tau
    max_iter: int = 500  # L-BFGS iterations


class _ItemTableDwell(FittedModel):
    """Shared contract code: a table mu (n_items,) of log point estimates, looked up per click."""

    ranks_clicks, predicts_dwell = False, True

    def __init__(self, config):
        self.config = config
        self.mu = torch.full((self.config.n_items,), math.log(C2_DEFAULT))  # (n_items,) before fit: c2
        self.dwell_sigma = 1.0

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        check_protocol(protocol)
        items = batch.items.clamp(0, self.config.n_items - 1)  # (B, L)
        mu = self.mu.to(batch.items.device)[items]  # (B, L)
        return Prediction(None, lognormal_dwell(batch, mu, self.dwell_sigma, self.config.min_dwell))

    def log_likelihood(self, data: SessionSet) -> np.ndarray:
        """Eq. 10 censored log-likelihood of log tau of every click of `data`.  (N,)"""
        log_tau = torch.log(torch.from_numpy(np.maximum(data.tau, self.config.min_dwell)))  # (N,)
        mu = self.mu.double()[torch.from_numpy(np.clip(data.items, 0, self.config.n_items - 1))]  # (N,)
        return censored_lognormal_loglik(log_tau, torch.from_numpy(data.delta > 0), mu, self.dwell_sigma).numpy()


class ItemMedianDwell(_ItemTableDwell):
    name = "item_median"

    def __init__(self, config: ItemMedianDwellConfig):
        super().__init__(config)
        self.global_median = C2_DEFAULT
        self.counts = np.zeros(self.config.n_items, dtype=np.int64)

    def fit(self, train: SessionSet) -> ItemMedianDwell:
        obs = train.delta == 0
        items, tau = train.items[obs], train.tau[obs]
        medians = np.full(self.config.n_items, C2_DEFAULT)
        self.counts = np.bincount(items, minlength=self.config.n_items)[: self.config.n_items]
        if len(tau):
            self.global_median = float(np.median(tau))
            medians[:] = self.global_median
            order = np.lexsort((tau, items))  # by item, then dwell
            items_s, tau_s = items[order], tau[order]
            starts = np.searchsorted(items_s, np.arange(self.config.n_items))  # (n_items,)
            n = self.counts
            ok = (n >= max(self.config.min_count, 1)) & (np.arange(self.config.n_items) > 0)
            lo = starts[ok] + (n[ok] - 1) // 2
            hi = starts[ok] + n[ok] // 2
            medians[ok] = 0.5 * (tau_s[lo] + tau_s[hi])
        self.mu = torch.from_numpy(np.log(np.maximum(medians, self.config.min_dwell))).float()
        if len(tau):
            resid = np.log(np.maximum(tau, self.config.min_dwell)) - self.mu.double().numpy()[items]
            self.dwell_sigma = float(max(np.sqrt(np.mean(resid**2)), 1e-3))
        return self


class ItemLogNormalDwell(_ItemTableDwell):
    name = "item_lognormal"

    def __init__(self, config: ItemLogNormalDwellConfig):
        super().__init__(config)
        self.global_mu = math.log(C2_DEFAULT)

    def fit(self, train: SessionSet) -> ItemLogNormalDwell:
        if train.n_clicks == 0:
            return self
        items = torch.from_numpy(np.clip(train.items, 0, self.config.n_items - 1))  # (N,)
        log_tau = torch.log(torch.from_numpy(np.maximum(train.tau, self.config.min_dwell)))  # (N,) float64
        delta = torch.from_numpy(train.delta > 0)  # (N,)
        obs = ~delta
        start = log_tau[obs].mean() if obs.any() else log_tau.mean()
        spread = log_tau[obs].std() if int(obs.sum()) > 1 else torch.tensor(1.0, dtype=torch.float64)
        mu = torch.full((self.config.n_items,), float(start), dtype=torch.float64, requires_grad=True)  # (n_items,)
        mu_g = torch.tensor(float(start), dtype=torch.float64, requires_grad=True)
        log_sigma = torch.tensor(math.log(max(float(spread), 1e-2)), dtype=torch.float64, requires_grad=True)
        seen = torch.bincount(items, minlength=self.config.n_items) > 0  # (n_items,)
        n = train.n_clicks
        opt = torch.optim.LBFGS(
            [mu, mu_g, log_sigma],
            lr=1.0,
            max_iter=self.config.max_iter,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            sigma = log_sigma.exp()
            # censored_lognormal_loglik takes a float sigma; pass it through a z-score in sigma units
            # (the observed density of log tau then lacks its -log sigma term: added back here)
            ll = censored_lognormal_loglik(log_tau / sigma, delta, mu[items] / sigma, 1.0)  # (N,)
            ll = ll - torch.where(delta, torch.zeros_like(log_sigma), log_sigma)  # (N,)
            prior = 0.5 * self.config.prior_count * (((mu - mu_g) / sigma) ** 2)[seen].sum()
            loss = -(ll.sum() - prior) / n
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            self.global_mu = float(mu_g)
            table = torch.where(seen, mu, mu_g)  # (n_items,)
            table[0] = mu_g
            self.mu = table.float()
            self.dwell_sigma = float(log_sigma.exp())
        return self
