"""Shared steps of the baseline tests: a short training run, and the comparison with POP."""

from contextlib import contextmanager

import numpy as np
import torch

from jump_core.baselines.pop import Popularity, PopularityConfig
from jump_core.training.evaluate import evaluate
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
        return fit_model(
            model,
            tr,
            val,
            TrainConfig(lr=lr, epochs=epochs, patience=epochs),
            progress=False,
            log=lambda *_: None,
            select="val_recall",
            protocol="live",
        )


def assert_beats_pop(model, data, margin: float) -> dict:
    """The model's live Recall@20 beats POP's by `margin` and its MRR@20 beats POP's; returns its result."""
    r = evaluate(model, data.test, "live")
    r_pop = evaluate(Popularity(PopularityConfig(data.n_items)).fit(data.train), data.test, "live")
    assert r["n_predictions"] == r_pop["n_predictions"] > 5000
    assert r["recall@20"] > r_pop["recall@20"] + margin, (r["recall@20"], r_pop["recall@20"])
    assert r["mrr@20"] > r_pop["mrr@20"]
    return r


def contract_checks(model, test_set) -> None:
    """A click-only model's contract on real batches: row order and shape, column 0, protocol-free rows,
    batched == one by one, causality (later clicks never change earlier rows), a finite loss."""
    model.eval()
    sessions = np.array([0, 5, 9, 17, 23, 40, 41, 77])
    batch = test_set.batch(sessions)
    scores, dwell = model.predict(batch, "live")
    assert dwell is None
    assert scores.shape == (int(batch.next_positions().sum()), model.config.n_items)
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert torch.equal(scores, model.predict(batch, "paper")[0])  # dwell-blind: protocol ignored
    rows = torch.split(scores, (batch.lengths - 1).tolist())  # rows are in next_positions order
    for s, r in zip(sessions, rows):
        one, _ = model.predict(test_set.batch([s]), "live")
        torch.testing.assert_close(one, r, atol=1e-5, rtol=1e-4)  # batched == one by one
    # causality: changing clicks j+1.. of a session leaves rows 1..j unchanged
    s = int(sessions[np.argmax(test_set.lengths[sessions])])
    b = test_set.batch([s])
    L = int(b.lengths[0])
    j = L // 2
    changed = b.items.clone()
    changed[0, j:] = torch.randint(1, model.config.n_items, (L - j,))
    a_rows, _ = model.predict(b, "live")
    c_rows, _ = model.predict(type(b)(changed, b.tau, b.delta, b.lengths), "live")
    torch.testing.assert_close(a_rows[:j], c_rows[:j])
    assert not torch.allclose(a_rows[j:], c_rows[j:])
    loss, loss_sum, _ = model.calculate_loss(batch)
    assert torch.isfinite(loss) and loss_sum > 0
