"""GRU4Rec (ICLR 2016) and IGRU (BPR-max, CIKM 2018): session-parallel training, contract, learning."""

import numpy as np
import pytest
import torch

from jump_core.baselines.gru4rec import GRU4Rec, GRU4RecConfig, session_order, session_parallel
from jump_core.training.train import TrainConfig
from tests.helpers.baselines import assert_beats_pop, contract_checks, fit_briefly


def test_session_parallel_hand_example():
    # sessions (flat clicks): A 0-2, B 3-4, C 5-8, D 9 (one click: no target), E 10-11; 2 slots
    offsets = np.array([0, 3, 5, 9, 10, 12])
    steps = [tuple(a.tolist() for a in s) for s in session_parallel(offsets, np.arange(5), 2)]
    assert steps == [
        ([0, 3], [1, 4], [-1, -1]),  # A and B start from a zero state
        ([1, 5], [2, 6], [0, -1]),  # B ended: its slot takes C, state reset
        ([10, 6], [11, 7], [-1, 1]),  # A ended: its slot takes E (D skipped)
        ([7], [8], [1]),
    ]  # E ended, nothing left: the slot is dropped


def test_session_parallel_covers_every_click_once(synthetic_prepared):
    data = synthetic_prepared.train
    order = session_order(len(data), seed=3, epoch=2)
    assert not np.array_equal(order, session_order(len(data), seed=3, epoch=3))  # a new order per epoch
    targets, inputs, prev_inp = [], [], None
    for inp, tgt, src in session_parallel(data.offsets, order, 100):
        assert len(inp) <= 100 and np.array_equal(tgt, inp + 1)
        firsts = np.isin(inp, data.offsets[:-1])
        assert np.array_equal(src == -1, firsts)  # reset exactly at session starts
        if prev_inp is not None:
            assert np.array_equal(prev_inp[src[src >= 0]] + 1, inp[src >= 0])  # a kept slot continues its session
        targets.append(tgt)
        inputs.append(inp)
        prev_inp = inp
    targets = np.concatenate(targets)
    expected = np.setdiff1d(np.arange(data.n_clicks), data.offsets[:-1])  # every click but the first of each session
    assert len(targets) == len(expected) == data.n_clicks - len(data)
    assert np.array_equal(np.sort(targets), expected)  # each exactly once


def test_train_steps_states_are_reset_at_session_boundaries(synthetic_prepared):
    # With dropout off, the state a training step scores with must be the GRU run over its own
    # session from a zero state: a state leaking across the slot's previous session would differ.
    torch.manual_seed(0)
    data = synthetic_prepared.train.subset(np.arange(60))
    model = GRU4Rec(GRU4RecConfig(synthetic_prepared.n_items, dim=16, n_sample=8, dropout_hidden=0.0)).train()
    seen = []
    model.sampled_loss = lambda h, targets, negatives, pop: seen.append(h.detach()) or h.sum()
    cfg = TrainConfig(batch_size=7, seed=1)
    counted = sum(n for _, n, _ in model.train_steps(data, cfg, 1, torch.device("cpu")))
    assert counted == data.n_clicks - len(data)
    fresh = model.encode(data.batch(np.arange(len(data))))[data.batch(np.arange(len(data))).mask].detach()  # (N, d)
    steps = list(session_parallel(data.offsets, session_order(len(data), cfg.seed, 1), cfg.batch_size))
    assert len(steps) == len(seen)
    for (inp, _, _), h in zip(steps, seen):
        torch.testing.assert_close(h, fresh[torch.from_numpy(inp)], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_both_losses_train_and_beat_pop(synthetic_prepared, loss):
    data = synthetic_prepared
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(data.n_items, dim=32, loss=loss))
    summary = fit_briefly(model, data, lr=3e-3, epochs=3)
    losses = [h["train_loss_per_click"] for h in summary["history"]]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], losses
    r = assert_beats_pop(model, data, margin=0.15)
    assert r["dwell_mae_s"] is None


def test_contract_padding_invariance_causality_column0(synthetic_prepared):
    torch.manual_seed(0)
    contract_checks(GRU4Rec(GRU4RecConfig(synthetic_prepared.n_items, dim=24, loss="bpr-max")), synthetic_prepared.test)
