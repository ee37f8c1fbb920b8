"""Metrics against hand-computed examples; the evaluation path on a tiny dataset."""

import math

import numpy as np
import pytest
import torch

from jump_core.contract import Dwell, FittedModel, Prediction, SessionBatch, SessionModel, check_protocol
from jump_core.data.dataset import SessionSet
from jump_core.training.evaluate import bucket_of, evaluate, pessimistic_ranks, ranking_metrics


def test_pessimistic_ranks_hand_computed():
    scores = torch.tensor(
        [
            [-math.inf, 0.9, 0.5, 0.5, 0.1],
            [-math.inf, 0.9, 0.5, 0.5, 0.1],
            [-math.inf, 0.2, 0.2, 0.2, 0.2],
            [-math.inf, 0.9, 0.5, 0.5, 0.1],
        ]
    )
    targets = torch.tensor([1, 2, 4, 0])
    # target 1 best -> 1; target 2 tied with 3 -> ranked below it -> 3; all tied -> last (4);
    # unknown item 0 -> never ranked (a miss)
    assert pessimistic_ranks(scores, targets).tolist() == [1, 3, 4, 2**31 - 1]


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        pessimistic_ranks(torch.tensor([[0.0, float("nan")]]), torch.tensor([1]))


def test_ranking_metrics_hand_computed():
    ranks = np.array([1, 2, 20, 21, 100])
    m = ranking_metrics(ranks, k=20)
    assert m["recall@20"] == pytest.approx(3 / 5)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 20) / 5)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(21)) / 5)
    assert m["n_predictions"] == 5


def test_buckets():
    assert bucket_of(np.array([2, 6, 7, 10, 30, 31, 150, 151, 1000])).tolist() == [
        "2-6",
        "2-6",
        "7-9",
        "10-30",
        "10-30",
        "31-150",
        "31-150",
        ">150",
        ">150",
    ]


class Oracle(FittedModel):
    """Knows the next item: scores it 1, everything else 0; predicts a dwell of 10 s everywhere."""

    name = "oracle"
    ranks_clicks = predicts_dwell = True
    config = None  # nothing to configure

    def predict(self, batch: SessionBatch, protocol="paper"):
        check_protocol(protocol)
        t = batch.next_targets()
        s = torch.zeros(len(t), 10)
        s[torch.arange(len(t)), t] = 1.0
        s[:, 0] = -math.inf
        med = torch.full(batch.items.shape, 10.0)
        return Prediction(s, Dwell(med, torch.log(med), torch.zeros_like(med)))


def test_evaluate_counts_every_position_and_uncensored_dwell():
    # sessions: [1,2,3] and [4,0,5]: 0 is an unseen item -> its position as target is a miss
    data = SessionSet(
        items=np.array([1, 2, 3, 4, 0, 5]),
        ts=np.arange(6.0),
        tau=np.array([12.0, 7.0, 30.0, 10.0, 2000.0, 30.0]),
        delta=np.array([0, 0, 1, 0, 1, 1], dtype=np.uint8),
        offsets=np.array([0, 3, 6]),
        session_ids=np.array([b"a", b"b"]),
    )
    assert isinstance(Oracle(), SessionModel)
    r = evaluate(Oracle(), data, "paper")
    assert r["n_predictions"] == 4 and r["n_oov_targets"] == 1
    assert r["recall@20"] == pytest.approx(3 / 4)  # the unseen target counts as a miss
    assert r["mrr@20"] == pytest.approx(3 / 4)
    assert r["n_dwell"] == 3  # uncensored clicks only
    assert r["dwell_mae_s"] == pytest.approx((2 + 3 + 0) / 3)
    assert r["by_length"]["2-6"]["n_predictions"] == 4 and r["by_length"]["10-30"]["n_predictions"] == 0
    assert {"recall@20", "mrr@20", "ndcg@20", "dwell_mae_s", "by_length", "protocol", "n_predictions"} <= set(r)
    with pytest.raises(ValueError):
        evaluate(Oracle(), data, "future")


class LatestDwellProbe(FittedModel):
    """Scores the next item 1 only when the latest dwell it is shown is 5 s (elapsed:5), else 0 for all."""

    name = "probe"
    ranks_clicks = True
    config = None

    def predict(self, batch: SessionBatch, protocol="paper"):
        from jump_core.contract import latest_dwell

        t = batch.next_targets()
        s = torch.zeros(len(t), 30)  # all tied: rank 30 > 20, a miss
        if latest_dwell(protocol, 30.0) == 5.0:
            s[torch.arange(len(t)), t] = 1.0
        s[:, 0] = -math.inf
        return Prediction(s, None)


def test_elapsed_scores_only_positions_whose_next_click_came_later():
    from jump_core.training.evaluate import elapsed_curve

    # next-click gaps (tau at positions with a next click): 12, 7 | 10, 2000 (censored) | 3
    data = SessionSet(
        items=np.array([1, 2, 3, 4, 6, 5, 7, 8]),
        ts=np.arange(8.0),
        tau=np.array([12.0, 7.0, 30.0, 10.0, 2000.0, 30.0, 3.0, 30.0]),
        delta=np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=np.uint8),
        offsets=np.array([0, 3, 6, 8]),
        session_ids=np.array([b"a", b"b", b"c"]),
    )
    assert evaluate(Oracle(), data, "elapsed:0")["n_predictions"] == 5
    assert evaluate(Oracle(), data, "elapsed:5")["n_predictions"] == 4  # the 3 s gap is gone
    assert evaluate(Oracle(), data, "elapsed:10")["n_predictions"] == 2  # 12 and the censored 2000
    assert evaluate(Oracle(), data, "live", min_next_gap=10.0)["n_predictions"] == 2
    assert evaluate(Oracle(), data, "elapsed:5")["by_length"]["2-6"]["n_predictions"] == 4
    rows = elapsed_curve(LatestDwellProbe(), data, (0.0, 5.0))
    assert [r["n_predictions"] for r in rows] == [5, 4]
    # the model is shown (5, censored) only under elapsed:5; live is scored on the same positions
    assert rows[1]["elapsed"]["recall@20"] == 1.0 and rows[1]["live"]["recall@20"] == 0.0
    assert rows[0]["elapsed"]["recall@20"] == 0.0
