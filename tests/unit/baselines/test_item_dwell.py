"""Item dwell baselines: hand-computed medians, the censored log-normal MAP against scipy, the contract."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from jump_core.baselines.item_dwell import (
    ItemLogNormalDwell,
    ItemLogNormalDwellConfig,
    ItemMedianDwell,
    ItemMedianDwellConfig,
)
from jump_core.baselines.pop import Popularity, PopularityConfig
from jump_core.contract import SessionBatch
from jump_core.data.dataset import SessionSet
from jump_core.training.evaluate import evaluate


def session_set(sessions):
    """sessions: list of [(item, tau, delta), ...] -> SessionSet."""
    items = np.array([c[0] for s in sessions for c in s], dtype=np.int64)
    tau = np.array([c[1] for s in sessions for c in s], dtype=np.float64)
    delta = np.array([c[2] for s in sessions for c in s], dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])]).astype(np.int64)
    ts = np.cumsum(tau)
    return SessionSet(items, ts, tau, delta, offsets, np.array([str(i).encode() for i in range(len(sessions))]))


TINY = session_set(
    [
        [(1, 10.0, 0), (2, 5.0, 0), (1, 20.0, 0), (3, 30.0, 1)],
        [(1, 40.0, 0), (4, 1.0, 0), (4, 2.0, 0), (2, 100.0, 0), (3, 2000.0, 1)],
        [(4, 3.0, 0), (4, 4.0, 0), (3, 7.0, 0), (1, 30.0, 1)],
    ]
)


def test_item_median_hand_computed_with_min_count_fallback():
    m = ItemMedianDwell(ItemMedianDwellConfig(6, min_count=3)).fit(TINY)
    # uncensored: item 1 {10, 20, 40} -> 20; item 4 {1, 2, 3, 4} -> 2.5; item 2 {5, 100} (2 < 3),
    # item 3 {7} (censored ones ignored), unseen item 5 and unknown 0 -> global median of
    # {10, 5, 20, 40, 1, 2, 100, 3, 4, 7} = (5 + 7) / 2 = 6
    assert m.global_median == pytest.approx(6.0)
    expected = [6.0, 20.0, 6.0, 6.0, 2.5, 6.0]
    assert torch.exp(m.mu).tolist() == pytest.approx(expected, rel=1e-6)
    batch = SessionBatch.from_sessions([[1, 4, 0, 5], [2, 3]], [[1, 1, 1, 1], [1, 1]], [[0, 0, 0, 1], [0, 1]])
    scores, (median, mu, _) = m.predict(batch, "live")
    assert scores is None
    assert torch.allclose(median, torch.tensor([[20.0, 2.5, 6.0, 6.0], [6.0, 6.0, 6.0, 6.0]]))
    assert torch.allclose(mu, torch.log(median))
    # min_count = 1: item 2 gets its own median (5 + 100) / 2, item 3 gets 7
    m1 = ItemMedianDwell(ItemMedianDwellConfig(6, min_count=1)).fit(TINY)
    assert torch.exp(m1.mu)[[2, 3]].tolist() == pytest.approx([52.5, 7.0], rel=1e-6)


def scipy_map(data: SessionSet, n_items: int, prior_count: float, min_dwell: float = 0.5):
    """The same MAP objective written with scipy.stats, minimised by scipy (seen items only)."""
    seen = np.unique(data.items)
    idx = np.searchsorted(seen, data.items)
    y = np.log(np.maximum(data.tau, min_dwell))
    cens = data.delta > 0

    def neg(theta):
        mu, mu_g, sigma = theta[: len(seen)], theta[-2], math.exp(theta[-1])
        ll = np.where(cens, stats.norm.logsf(y, mu[idx], sigma), stats.norm.logpdf(y, mu[idx], sigma)).sum()
        return -(ll - 0.5 * prior_count * np.sum(((mu - mu_g) / sigma) ** 2))

    x0 = np.concatenate([np.full(len(seen), y.mean()), [y.mean(), 0.0]])
    res = optimize.minimize(neg, x0, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-10})
    mu = np.full(n_items, res.x[-2])
    mu[seen] = res.x[: len(seen)]
    return mu, math.exp(res.x[-1]), -neg(res.x)


def test_item_lognormal_censored_loglik_matches_scipy():
    m = ItemLogNormalDwell(ItemLogNormalDwellConfig(6, prior_count=2.0)).fit(TINY)
    y = np.log(np.maximum(TINY.tau, 0.5))
    mu_click = m.mu.double().numpy()[TINY.items]
    by_scipy = np.where(
        TINY.delta > 0, stats.norm.logsf(y, mu_click, m.dwell_sigma), stats.norm.logpdf(y, mu_click, m.dwell_sigma)
    )
    assert m.log_likelihood(TINY) == pytest.approx(by_scipy, abs=1e-5)
    # the evaluation path (dwell_sigma + mu through eq. 10) gives the same mean
    assert evaluate(m, TINY, "live")["dwell_loglik"] == pytest.approx(by_scipy.mean(), abs=1e-4)
    # and the fit is the MAP of the objective written independently with scipy
    mu, sigma, _best = scipy_map(TINY, 6, 2.0)
    assert m.dwell_sigma == pytest.approx(sigma, rel=1e-3)
    assert m.mu.double().numpy()[1:5] == pytest.approx(mu[1:5], abs=2e-3)
    assert float(m.mu[0]) == pytest.approx(m.global_mu, abs=1e-6)  # unknown item -> global mu
    assert float(m.mu[5]) == pytest.approx(m.global_mu, abs=1e-6)  # unseen item -> global mu


def test_item_lognormal_without_prior_is_the_closed_form_mle():
    data = session_set([[(1, 10.0, 0), (2, 0.1, 0), (1, 40.0, 0)], [(2, 8.0, 0), (2, 2.0, 0)]])
    m = ItemLogNormalDwell(ItemLogNormalDwellConfig(3, prior_count=0.0)).fit(data)
    y = np.log(np.maximum(data.tau, 0.5))  # 0.1 s is floored at 0.5 s
    mu1, mu2 = y[[0, 2]].mean(), y[[1, 3, 4]].mean()
    sigma = np.sqrt(np.mean((y - np.array([mu1, mu2, mu1, mu2, mu2])) ** 2))
    assert m.mu[1:].tolist() == pytest.approx([mu1, mu2], abs=1e-4)
    assert m.dwell_sigma == pytest.approx(sigma, rel=1e-4)


@pytest.mark.parametrize(
    "cls, config", [(ItemMedianDwell, ItemMedianDwellConfig), (ItemLogNormalDwell, ItemLogNormalDwellConfig)]
)
def test_batched_equals_one_by_one(cls, config):
    m = cls(config(6)).fit(TINY)
    batch = TINY.batch(np.arange(len(TINY)))
    median, mu, _ = m.predict(batch, "paper").dwell
    for s in range(len(TINY)):
        one_median, one_mu, _ = m.predict(TINY.batch(np.array([s])), "live").dwell
        n = int(TINY.lengths[s])
        assert torch.equal(one_median[0, :n], median[s, :n]) and torch.equal(one_mu[0, :n], mu[s, :n])


def test_item_models_beat_global_median(synthetic_prepared):
    data = synthetic_prepared
    pop = evaluate(Popularity(PopularityConfig(data.n_items)).fit(data.train), data.test, "live")
    for cls, config in ((ItemMedianDwell, ItemMedianDwellConfig), (ItemLogNormalDwell, ItemLogNormalDwellConfig)):
        r = evaluate(cls(config(data.n_items)).fit(data.train), data.test, "live")
        assert r["recall@20"] is None  # dwell only
        assert r["dwell_mae_s"] < 0.85 * pop["dwell_mae_s"], (cls.name, r["dwell_mae_s"], pop["dwell_mae_s"])
        assert r["dwell_loglik"] > pop["dwell_loglik"], (cls.name, r["dwell_loglik"], pop["dwell_loglik"])
