"""Shared steps of the baseline tests: a short training run, and the comparison with POP."""
from contextlib import contextmanager

import torch

from jump_core.training.evaluate import evaluate
from jump_core.baselines.pop import Popularity, PopularityConfig
from jump_core.training.train import TrainConfig, fit_model, split_validation


@contextmanager
def one_torch_thread():
    """Small models run many small ops per step: extra intra-op threads only wait on a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fit_briefly(model, data, lr: float, epochs: int) -> dict:
    """`epochs` epochs of the harness's training loop (no early stop), selected on validation Recall@20 (live)."""
    tr, val = split_validation(data.train, 0.1, 0)
    with one_torch_thread():
        return fit_model(model, tr, val, TrainConfig(lr=lr, epochs=epochs, patience=epochs), progress=False,
                         log=lambda *_: None, select="val_recall", protocol="live")


def assert_beats_pop(model, data, margin: float) -> dict:
    """The model's live Recall@20 beats POP's by `margin` and its MRR@20 beats POP's; returns its result."""
    r = evaluate(model, data.test, "live")
    r_pop = evaluate(Popularity(PopularityConfig(data.n_items)).fit(data.train), data.test, "live")
    assert r["n_predictions"] == r_pop["n_predictions"] > 5000
    assert r["recall@20"] > r_pop["recall@20"] + margin, (r["recall@20"], r_pop["recall@20"])
    assert r["mrr@20"] > r_pop["mrr@20"]
    return r
