"""DTGRU: dwell buckets, the live protocol (one extra GRU step), padding invariance, learning."""

import math

import pytest
import torch

from jump_core.baselines.dtgru import DTGRU, DTGRUConfig
from jump_core.baselines.pop import Popularity, PopularityConfig
from jump_core.contract import SessionBatch
from jump_core.training.evaluate import evaluate
from jump_core.training.train import seed_everything
from tests.helpers.baselines import fit_briefly

N_ITEMS = 12
ITEMS = [[3, 5, 1, 7, 2], [4, 4, 9], [11, 2]]
TAU = [[12.0, 300.0, 3.0, 45.0, 30.0], [80.0, 2000.0, 30.0], [7.0, 30.0]]
DELTA = [[0, 0, 0, 0, 1], [0, 1, 1], [0, 1]]


def fresh(**kw) -> DTGRU:
    torch.manual_seed(0)
    m = DTGRU(DTGRUConfig(N_ITEMS, dim=16, **kw))
    with torch.no_grad():  # distinct dwell rows, so dwell matters
        m.dwell_emb.weight.normal_(0.0, 1.0)
    return m.eval()


def test_dwell_buckets_hand_computed():
    m = DTGRU(DTGRUConfig(N_ITEMS, dim=8))  # 24 buckets, 2 per doubling; 24 = censored
    tau = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 30.0, 100.0, 5000.0, 30.0, 2000.0])
    delta = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    # floor(2 log2(max(tau, 1))): 1.5 -> 1.17 -> 1; 30 -> 9.8 -> 9; 100 -> 13.3 -> 13; 5000 -> 24.6 -> 23 (cap)
    assert m.dwell_bucket(tau, delta).tolist() == [0, 0, 0, 1, 2, 9, 13, 23, 24, 24]


def test_rows_shape_order_and_column_zero():
    m = fresh()
    batch = SessionBatch.from_sessions(ITEMS, TAU, DELTA)
    for protocol in ("paper", "live"):
        scores, dwell = m.predict(batch, protocol)
        assert dwell is None
        assert scores.shape == (4 + 2 + 1, N_ITEMS)
        assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    with pytest.raises(ValueError):
        m.predict(batch, "oracle")


def test_batched_equals_one_by_one():
    m = fresh()
    batch = SessionBatch.from_sessions(ITEMS, TAU, DELTA)
    for protocol in ("paper", "live"):
        scores = m.predict(batch, protocol)[0]
        rows = [m.predict(SessionBatch.from_sessions([i], [t], [d]), protocol)[0] for i, t, d in zip(ITEMS, TAU, DELTA)]
        assert torch.allclose(scores, torch.cat(rows), atol=1e-5)


def test_live_row_is_the_paper_row_with_the_last_dwell_censored_at_c2():
    m = fresh()
    items, tau, delta = ITEMS[0], TAU[0], DELTA[0]
    live = m.predict(SessionBatch.from_sessions([items], [tau], [delta]), "live")[0]  # (4, n)
    for j in range(4):  # prefix 1..j+1 with tau_j -> (c2, censored)
        t, d = tau[: j + 2], delta[: j + 2]
        t[j], d[j] = m.config.c2, 1
        paper = m.predict(SessionBatch.from_sessions([items[: j + 2]], [t], [d]), "paper")[0]
        assert torch.allclose(live[j], paper[j], atol=1e-5)


def test_live_row_ignores_its_own_dwell_paper_row_does_not():
    m = fresh()
    items, delta = [ITEMS[0]] * 2, [DELTA[0]] * 2
    tau = [TAU[0], list(TAU[0])]
    tau[1][1] = 4.0  # change tau_2 (300 s -> 4 s)
    batch = SessionBatch.from_sessions(items, tau, delta)
    paper, live = m.predict(batch, "paper")[0].view(2, 4, -1), m.predict(batch, "live")[0].view(2, 4, -1)
    assert torch.equal(live[0, :2], live[1, :2])  # rows 1-2: tau_2 not yet known in live
    assert not torch.allclose(live[0, 2], live[1, 2])  # row 3 has seen tau_2
    assert torch.equal(paper[0, 0], paper[1, 0])
    assert not torch.allclose(paper[0, 1], paper[1, 1])  # paper row 2 sees tau_2


def test_tied_output_and_training_step():
    m = DTGRU(DTGRUConfig(N_ITEMS, dim=16, tied=True, censor_p=0.5)).train()
    batch = SessionBatch.from_sessions(ITEMS, TAU, DELTA)
    loss, loss_sum, _ = m.calculate_loss(batch)
    loss.backward()
    assert math.isfinite(loss.item()) and loss_sum == pytest.approx(loss.item() * 7, rel=1e-5)
    assert m.item_emb.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def trained(synthetic_prepared):
    seed_everything(0)
    model = DTGRU(DTGRUConfig(synthetic_prepared.n_items, dim=32))
    fit_briefly(model, synthetic_prepared, lr=0.01, epochs=3)
    return model


def test_dtgru_beats_pop_and_uses_dwell(synthetic_prepared, trained):
    data = synthetic_prepared
    pop = evaluate(Popularity(PopularityConfig(data.n_items)).fit(data.train), data.test, "live")
    live = evaluate(trained, data.test, "live")
    paper = evaluate(trained, data.test, "paper")
    assert live["recall@20"] > pop["recall@20"] + 0.15, (live["recall@20"], pop["recall@20"])
    assert live["mrr@20"] > 2 * pop["mrr@20"]
    # the dwell on the last click carries information in the synthetic data
    assert paper["mrr@20"] >= live["mrr@20"] - 0.002, (paper["mrr@20"], live["mrr@20"])
    assert paper["recall@20"] >= live["recall@20"] - 0.005, (paper["recall@20"], live["recall@20"])
