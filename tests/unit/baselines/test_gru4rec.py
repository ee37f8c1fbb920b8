"""GRU4Rec (ICLR 2016) and IGRU (BPR-max, CIKM 2018): session-parallel training, contract, learning."""

import numpy as np
import pytest
import torch

from jump_core.baselines.gru4rec import (
    AdagradMomentum,
    GRU4Rec,
    GRU4RecConfig,
    session_order,
    session_parallel,
    time_order,
)
from jump_core.experiments.benchmark import load_config, model_config
from jump_core.training.train import TrainConfig, fit_model
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


def test_adagrad_momentum_dense_matches_the_formula():
    # acc += g^2; v = mu v - lr g / sqrt(acc + eps); p += v, checked by hand over two steps
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdagradMomentum([p], lr=0.5, momentum=0.25, eps=1e-6)
    g1, g2 = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 3.0])
    p.grad = g1.clone()
    opt.step()
    acc = g1**2
    v = -0.5 * g1 / (acc + 1e-6).sqrt()
    expect = torch.tensor([1.0, -2.0]) + v
    torch.testing.assert_close(p.data, expect)
    p.grad = g2.clone()
    opt.step()
    acc = acc + g2**2
    v = 0.25 * v - 0.5 * g2 / (acc + 1e-6).sqrt()
    torch.testing.assert_close(p.data, expect + v)


def test_adagrad_momentum_row_sparse_leaves_untouched_rows_alone():
    # An item table row that a step does not touch keeps its value, accumulator and momentum (the
    # official sparse update); a dense momentum update would keep moving row 0 in step 2.
    table = torch.nn.Parameter(torch.zeros(3, 2))
    opt = AdagradMomentum([{"params": [table], "row_sparse": True}], lr=0.1, momentum=0.5)
    table.grad = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    opt.step()
    after1 = table.detach().clone()
    assert torch.equal(after1[1], torch.zeros(2))  # row 1 untouched
    state = opt.state[table]
    acc1, mom1 = state["acc"].clone(), state["mom"].clone()
    table.grad = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # only row 1
    opt.step()
    assert torch.equal(table.detach()[[0, 2]], after1[[0, 2]])  # rows 0 and 2 did not move
    assert torch.equal(state["acc"][[0, 2]], acc1[[0, 2]]) and torch.equal(state["mom"][[0, 2]], mom1[[0, 2]])
    assert table.detach()[1, 0] < 0 and table.detach()[1, 1] == 0  # row 1: an Adagrad step on its gradient only
    torch.testing.assert_close(table.detach()[1, 0], torch.tensor(-0.1 / (1.0 + 1e-6) ** 0.5))


def test_time_order_is_by_first_click_time():
    # sessions (first click time): A 30, B 10, C (empty), D 20, E 10 -> B, E (tie: stable), D, A, C
    offsets = np.array([0, 2, 3, 3, 5, 7])
    ts = np.array([30.0, 31.0, 10.0, 20.0, 25.0, 10.0, 11.0])
    assert time_order(offsets, ts).tolist() == [1, 4, 3, 0, 2]


def test_session_order_time_feeds_sessions_oldest_first(synthetic_prepared):
    # the first mini-batch step holds the 5 oldest sessions (by first click), the same every epoch
    data = synthetic_prepared.train.subset(np.random.default_rng(0).permutation(80))
    model = GRU4Rec(GRU4RecConfig(synthetic_prepared.n_items, dim=8, n_sample=4, session_order="time")).train()
    items = torch.from_numpy(data.items)
    fed = []
    model.sampled_loss = lambda h, targets, negatives, pop: fed.append(targets) or h.sum()
    for epoch in (1, 2):
        next(iter(model.train_steps(data, TrainConfig(batch_size=5, seed=1), epoch, torch.device("cpu"))))
    starts = data.offsets[:-1][data.lengths >= 2]
    oldest = starts[np.argsort(data.ts[starts], kind="stable")[:5]]
    assert torch.equal(fed[0], items[torch.from_numpy(oldest + 1)]) and torch.equal(fed[0], fed[1])
    random_order = GRU4Rec(GRU4RecConfig(synthetic_prepared.n_items, dim=8, n_sample=4)).train()
    random_order.sampled_loss = model.sampled_loss
    next(iter(random_order.train_steps(data, TrainConfig(batch_size=5, seed=1), 1, torch.device("cpu"))))
    assert not torch.equal(fed[2], fed[0])


def test_configure_optimizer_adam_by_default_adagrad_on_request():
    assert isinstance(GRU4Rec(GRU4RecConfig(50, dim=8)).configure_optimizer(TrainConfig(lr=0.01)), torch.optim.Adam)
    model = GRU4Rec(GRU4RecConfig(50, dim=8, optimizer="adagrad", momentum=0.2))
    opt = model.configure_optimizer(TrainConfig(lr=0.2))
    assert isinstance(opt, AdagradMomentum)
    sparse, dense = opt.param_groups
    assert sparse["row_sparse"] and not dense["row_sparse"]
    assert {id(p) for p in sparse["params"]} == {id(model.item_out.weight), id(model.item_bias.weight)}
    assert len(sparse["params"]) + len(dense["params"]) == len(list(model.parameters()))
    assert sparse["lr"] == dense["lr"] == 0.2 and sparse["momentum"] == 0.2
    with pytest.raises(ValueError, match="weight decay"):
        model.configure_optimizer(TrainConfig(lr=0.2, weight_decay=1e-4))
    for bad in ({"optimizer": "sgd"}, {"session_order": "shuffled"}, {"momentum": -0.1}):
        with pytest.raises(ValueError):
            GRU4RecConfig(50, **bad)


def test_official_settings_train_without_clipping(synthetic_prepared):
    # clip 0 means no clipping (clip_grad_norm_ at 0 would zero every gradient and nothing would move);
    # Adagrad at the official lr 0.2 lowers the training loss over two epochs.
    tr = synthetic_prepared.train.subset(np.arange(300))
    torch.manual_seed(0)
    config = GRU4RecConfig(synthetic_prepared.n_items, dim=8, n_sample=16, optimizer="adagrad", momentum=0.2)
    model = GRU4Rec(config)
    before = model.gru.weight_hh_l0.detach().clone()
    summary = fit_model(
        model,
        tr,
        tr.subset(np.zeros(0, dtype=np.int64)),
        TrainConfig(lr=0.2, batch_size=16, clip=0, epochs=2, patience=2, time_budget_s=None),
        progress=False,
        log=lambda *_: None,
    )
    assert not torch.equal(before, model.gru.weight_hh_l0.detach())
    losses = [h["train_loss_per_click"] for h in summary["history"]]
    assert losses[1] < losses[0], losses


def test_benchmark_gru4rec_ce_defaults_are_the_official_rsc15_parameters():
    entry = model_config(load_config(), "gru4rec_ce")
    # paramfiles/rsc15_xe_shared_100_best.py of hidasib/GRU4Rec_PyTorch_Official
    assert entry["params"] == {
        "dim": 100,
        "n_sample": 2048,
        "sample_alpha": 0.5,
        "logq": 1.0,
        "dropout_embed": 0.0,
        "dropout_hidden": 0.4,
        "optimizer": "adagrad",
        "momentum": 0.2,
        "session_order": "time",
    }
    assert entry["train"] == {"lr": 0.2, "batch_size": 32, "clip": 0}
    GRU4RecConfig(10, **entry["params"])  # every key is a config field
