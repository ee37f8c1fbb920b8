"""NARM (CIKM 2017): contract (padding invariance, causality, column 0), chunked attention, learning."""

import numpy as np
import torch

from jump_core.baselines.narm import NARM, NARMConfig
from tests.helpers.baselines import assert_beats_pop, contract_checks, fit_briefly


def test_contract_padding_invariance_causality_column0(synthetic_prepared):
    torch.manual_seed(0)
    contract_checks(NARM(NARMConfig(synthetic_prepared.n_items, dim=24, hidden=20)), synthetic_prepared.test)


def test_attention_is_a_causal_softmax_over_the_prefix():
    # hand check of c_l at one position: alpha_tj = softmax_j<=t v^T sigmoid(A1 h_t + A2 h_j)
    torch.manual_seed(0)
    model = NARM(NARMConfig(10, dim=6, hidden=5))
    h = torch.randn(2, 4, 5)
    c_l = model.local_context(h)  # (2, 4, 5)
    t = 2
    e = torch.stack(
        [model.attn_vec(torch.sigmoid(model.query_proj(h[1, t]) + model.key_proj(h[1, j])))[0] for j in range(t + 1)]
    )
    torch.testing.assert_close(c_l[1, t], (e.softmax(0)[:, None] * h[1, : t + 1]).sum(0))
    torch.testing.assert_close(c_l[:, 0], h[:, 0])  # first click attends to itself only


def test_chunked_attention_matches_one_pass_values_and_gradients(synthetic_prepared):
    torch.manual_seed(0)
    model = NARM(NARMConfig(synthetic_prepared.n_items, dim=16, hidden=12)).eval()  # eval: no dropout noise
    batch = synthetic_prepared.train.batch(np.arange(30))
    grads = []
    for chunk in (2**30, 30 * 12 * 3):  # one pass / a few queries per chunk
        model.config.attn_chunk = chunk
        model.zero_grad()
        loss = model.calculate_loss(batch).loss
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for g0, g1 in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(g0, g1, atol=1e-6, rtol=1e-4)


def test_narm_learns_and_beats_pop(synthetic_prepared):
    data = synthetic_prepared
    torch.manual_seed(0)
    model = NARM(NARMConfig(data.n_items, dim=32, hidden=32))
    summary = fit_briefly(model, data, lr=1e-2, epochs=3)
    losses = [h["train_loss_per_click"] for h in summary["history"]]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], losses
    r = assert_beats_pop(model, data, margin=0.1)
    assert r["dwell_mae_s"] is None
