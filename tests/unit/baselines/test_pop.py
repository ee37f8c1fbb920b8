"""POP (jump_core/baselines/pop.py) against a hand-computed example."""

import math

import numpy as np
import pytest
import torch

from jump_core.contract import SessionBatch
from jump_core.data.dataset import SessionSet


def test_popularity_hand_computed():
    from jump_core.baselines.pop import Popularity, PopularityConfig

    # training clicks: session A = [1, 2, 2] with dwells 10, 20, 30 (last click censored),
    # session B = [2, 0, 3] with dwells 40, 50, 30 (last censored); 0 = unknown item
    items = np.array([1, 2, 2, 2, 0, 3])
    tau = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 30.0])
    delta = np.array([0, 0, 1, 0, 0, 1], dtype=np.uint8)
    train = SessionSet(items, np.arange(6, dtype=np.float64), tau, delta, np.array([0, 3, 6]), np.array([b"A", b"B"]))
    model = Popularity(PopularityConfig(5)).fit(train)

    batch = SessionBatch.from_sessions([[3, 1, 4], [2, 2]], [[1.0, 2.0, 3.0], [4.0, 5.0]], [[0, 0, 1], [0, 1]])
    scores, (median, mu, _) = model.predict(batch, "live")
    # counts: item 1 once, item 2 three times, item 3 once, item 4 never; column 0 -inf
    expected = torch.tensor([-math.inf, 1.0, 3.0, 1.0, 0.0])
    # next positions: 2 in the first session, 1 in the second -> 3 identical rows
    assert scores.shape == (3, 5)
    assert torch.equal(scores, expected.expand(3, -1))
    assert torch.equal(scores, model.predict(batch, "paper")[0])
    # median dwell of the uncensored clicks 10, 20, 40, 50 (the unknown item's click counts too)
    assert model.median_dwell == pytest.approx(30.0)
    assert median.shape == (2, 3) and torch.allclose(median, torch.full((2, 3), 30.0))
    assert torch.allclose(mu, torch.full((2, 3), math.log(30.0)))
    # log-normal sigma: std of log 10, log 20, log 40, log 50
    assert model.dwell_sigma == pytest.approx(float(np.log([10, 20, 40, 50]).std()))
