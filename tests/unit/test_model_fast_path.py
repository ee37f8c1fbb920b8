"""JumpConfig.fast_path: the fast implementation computes the reference's function (to float tolerance).

The reference (fast_path=False) is eq. 14-15 as printed; the fast path folds the RH-MI gates into the
weights, steps only the rows that take each fast step, and skips the live step of last clicks in the
loss. Same weights, same random batches (tau = 0, tau beyond max_fast_steps * z, padding): the same
loss, gradients, predictions (both protocols), live_predict and live_step.
"""

import pytest
import torch

from jump_core.contract import SessionBatch
from jump_core.model import FastSlowLayer, Jump, JumpConfig, LiveState, fast_step_plan

TOL = {"rtol": 1e-5, "atol": 1e-5}


def pair(**kw):
    """(reference, fast) models with the same weights and non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    cfg = {"n_items": 20, "dim": 8, "z": 20.0, "max_fast_steps": 5, "dropout": 0.0, **kw}  # dropout: its own case
    ref = Jump(JumpConfig(**cfg, fast_path=False))
    with torch.no_grad():
        ref.emb_norm.running_mean.normal_()
        ref.emb_norm.running_var.uniform_(0.5, 2.0)
        ref.dwell_weight.weight.normal_()
        ref.start_feature.normal_()
        for cell in (ref.fast_slow.fast_cell, ref.fast_slow.slow_cell) if cfg.get("recurrent") is None else ():
            for p in (cell.alpha, cell.beta, cell.gamma, cell.cand_bias, cell.gate_bias):
                p.normal_()  # not the initial ones and zeros: every folded term matters
    fast = Jump(JumpConfig(**cfg))
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def random_batch(seed, B=7, max_len=9, n_items=20):
    """Right-padded sessions of random lengths; dwells 0, short, long (> max_fast_steps * z) and c2."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (B,), generator=g).tolist()
    lengths[0] = max_len
    items, taus, deltas = [], [], []
    for n in lengths:
        items.append(torch.randint(1, n_items, (n,), generator=g).tolist())
        kind = torch.randint(0, 4, (n,), generator=g)
        tau = torch.where(kind == 0, 0.0, torch.rand(n, generator=g) * 130.0)
        tau = torch.where(kind == 3, 2000.0, tau)  # censored at c1, far beyond the fast-step cap
        taus.append(tau.tolist())
        deltas.append(((kind == 3) | (torch.arange(n) == n - 1)).long().tolist())
    return SessionBatch.from_sessions(items, taus, deltas)


def assert_same_grads(ref, fast):
    named = dict(fast.named_parameters())
    for name, p in ref.named_parameters():
        q = named[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, **TOL, msg=name)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"objective": "paper"},
        {"objective": "both", "sigma_mode": "per_item"},
        {"z": 60.0, "max_fast_steps": 8},
        {"z": 5.0, "max_fast_steps": 3, "c2": 12.0},  # the live step takes 3 fast steps
        {"dropout": 0.3, "live_censor_p": 0.3},
        {"attention": False},
        {"recurrent": "rh"},
        {"recurrent": "gru"},
    ],
)
def test_loss_and_gradients_equal_the_reference(kw):
    ref, fast = pair(**kw)
    for seed in range(3):
        batch = random_batch(seed)
        out = []
        for model in (ref, fast):
            model.train().zero_grad()
            torch.manual_seed(seed)  # the same dropout and live_censor_p draws
            loss = model.calculate_loss(batch)
            loss.loss.backward()
            out.append(loss)
        torch.testing.assert_close(out[1].loss, out[0].loss, **TOL)
        for part in ("click_ll", "dwell_ll"):
            torch.testing.assert_close(out[1].parts[part], out[0].parts[part], **TOL)
        assert_same_grads(ref, fast)


@pytest.mark.parametrize("kw", [{}, {"z": 5.0, "max_fast_steps": 3, "c2": 12.0}])
def test_predictions_equal_the_reference(kw):
    ref, fast = pair(**kw)
    ref.eval(), fast.eval()
    for seed in range(3):
        batch = random_batch(seed)
        for protocol in ("paper", "live"):
            want, got = ref.predict(batch, protocol), fast.predict(batch, protocol)
            torch.testing.assert_close(got.scores, want.scores, **TOL)
            for field in ("median", "mu", "loglik"):
                torch.testing.assert_close(getattr(got.dwell, field), getattr(want.dwell, field), **TOL)
        rows = torch.arange(batch.items.shape[0]).repeat_interleave(batch.lengths)
        clicks = torch.cat([torch.arange(int(n)) for n in batch.lengths])
        want, h_ref, slow_ref = ref.live_predict(batch, rows, clicks)
        got, h, slow = fast.live_predict(batch, rows, clicks)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
        torch.testing.assert_close(h, h_ref, **TOL)  # padded positions too: the carried states
        torch.testing.assert_close(slow, slow_ref, **TOL)


def test_live_step_equals_the_reference():
    ref, fast = pair()
    ref.eval(), fast.eval()
    batch = random_batch(5, B=6, max_len=6)
    B, d = batch.items.shape[0], ref.config.dim
    states = [LiveState(torch.zeros(B, d), torch.zeros(B, d), torch.zeros(B, 0, d), torch.zeros(B, dtype=torch.long))]
    states.append(states[0])
    for n in range(int(batch.lengths.min())):
        has_prev = torch.full((B,), n > 0)
        has_prev[0] = n > 1  # one session a click behind
        prev = max(n - 1, 0)
        args = (batch.items[:, prev], batch.tau[:, prev], has_prev, batch.items[:, n])
        (want, states[0]), (got, states[1]) = ref.live_step(states[0], *args), fast.live_step(states[1], *args)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)
        for a, b in zip(states[1], states[0]):
            torch.testing.assert_close(a, b, **TOL)


def test_layer_step_with_varied_fast_step_counts():
    torch.manual_seed(1)
    ref, fast = FastSlowLayer(6, fast_path=False), FastSlowLayer(6)
    fast.load_state_dict(ref.state_dict())
    N = 11
    state = [torch.randn(N, 6, requires_grad=True) for _ in range(2)]
    x = torch.randn(N, 6, requires_grad=True)
    n_fast = torch.tensor([1, 5, 2, 1, 8, 3, 1, 1, 5, 2, 7])
    outs = [m.step(*state, m.project(x), n_fast) for m in (ref, fast)]
    for a, b in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, b, **TOL)
    grads = [torch.autograd.grad(sum(o.pow(2).sum() for o in out), [*state, x]) for out in outs]
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, **TOL)


def test_fast_step_plan_counts_rows_per_step():
    order, counts = fast_step_plan(torch.tensor([[1, 3, 0, 2], [0, 0, 0, 0], [1, 1, 1, 1]]))
    assert counts == [[3, 2, 1], [], [4]]
    assert order[0, :3].tolist() == [1, 3, 0]


def test_a_batch_of_single_clicks():
    """No position needs a live step in the loss (no next click): an empty set of rows."""
    ref, fast = pair()
    batch = SessionBatch.from_sessions([[3], [4]], [[10.0], [30.0]], [[1], [1]])
    losses = [m.train().calculate_loss(batch).loss for m in (ref, fast)]
    torch.testing.assert_close(losses[1], losses[0], **TOL)
