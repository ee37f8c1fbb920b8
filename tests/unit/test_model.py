"""The JUMP model, equation by equation (eq. 9-16) and the batching guarantees."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from jump_core.contract import SessionBatch
from jump_core.model import FastSlowLayer, Jump, JumpConfig, LiveState, RHMICell, attend, censored_lognormal_loglik

SESSIONS = {
    "items": [[1, 2, 3, 4], [5, 6], [7, 8, 9, 1, 2, 3, 4]],
    "tau": [[10.0, 130.0, 2000.0, 30.0], [0.0, 30.0], [5.0, 61.0, 600.0, 59.9, 1.5, 1999.0, 30.0]],
    "delta": [[0, 0, 1, 1], [0, 1], [0, 0, 0, 0, 0, 0, 1]],
}


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    # the equations as printed: no dropout, eq. 4's dwell term on last clicks (cases that test a default set it)
    cfg = {"n_items": 12, "dim": 8, "z": 60.0, "max_fast_steps": 8, "dropout": 0.0, "last_click_dwell": "censored"}
    cfg.update(kw)
    model = Jump(JumpConfig(**cfg))
    with torch.no_grad():  # non-trivial batch-norm statistics for eval mode
        model.emb_norm.running_mean.normal_()
        model.emb_norm.running_var.uniform_(0.5, 2.0)
        model.dwell_weight.weight.normal_()
        model.start_feature.normal_()
    return model


def batch_of(idx=(0, 1, 2)):
    return SessionBatch.from_sessions(*[[SESSIONS[f][i] for i in idx] for f in ("items", "tau", "delta")])


def scores_of(model, batch, protocol):
    return model.predict(batch, protocol).scores


def causal_attention(h):
    return attend(h, h, torch.ones(h.shape[1], h.shape[1], dtype=torch.bool).tril())


# -- eq. 6/10: censored log-normal ---------------------------------------------------------------


def test_censored_lognormal_matches_scipy():
    rng = np.random.default_rng(0)
    log_tau = rng.normal(3, 2, 200)
    mu = rng.normal(3, 1, 200)
    delta = rng.random(200) < 0.4
    for sigma in (0.5, 1.0, 10.0):
        got = censored_lognormal_loglik(torch.tensor(log_tau), torch.tensor(delta), torch.tensor(mu), sigma).numpy()
        want = np.where(delta, norm.logsf(log_tau, mu, sigma), norm.logpdf(log_tau, mu, sigma))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_censored_tail_is_stable_far_out():
    # 30 sigma beyond the mean the survival is ~1e-197: log_ndtr keeps it finite and exact.
    got = censored_lognormal_loglik(
        torch.tensor([33.0], dtype=torch.float64), torch.tensor([True]), torch.tensor([3.0], dtype=torch.float64), 1.0
    )
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(norm.logsf(33.0, 3.0, 1.0), rel=1e-9)


# -- eq. 15: RH cell with multiplicative integration ------------------------------------------------


def test_rhmi_cell_equations():
    torch.manual_seed(0)
    cell = RHMICell(4).double()
    with torch.no_grad():
        for p in (cell.alpha, cell.beta, cell.gamma, cell.cand_bias, cell.gate_bias):
            p.normal_()
    h, x = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    Wc, Wg = cell.input_proj.weight.chunk(2, 0)
    Uc, Ug = cell.state_proj.weight.chunk(2, 0)
    m = cell.alpha * (x @ Wc.T) * (h @ Uc.T) + cell.beta * (x @ Wc.T) + cell.gamma * (h @ Uc.T) + cell.cand_bias
    g = torch.sigmoid(x @ Wg.T + h @ Ug.T + cell.gate_bias)
    torch.testing.assert_close(cell(h, x), (1 - g) * h + g * torch.tanh(m))
    # without input every x term is dropped
    m0 = cell.gamma * (h @ Uc.T) + cell.cand_bias
    g0 = torch.sigmoid(h @ Ug.T + cell.gate_bias)
    torch.testing.assert_close(cell(h), (1 - g0) * h + g0 * torch.tanh(m0))


def test_gradcheck_rhmi_cell():
    torch.manual_seed(0)
    cell = RHMICell(3).double()
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, x: cell(h, x), (h, x))
    assert torch.autograd.gradcheck(lambda h: cell(h), (h,))


def test_gradcheck_fast_slow_layer():
    torch.manual_seed(0)
    layer = FastSlowLayer(3).double()
    x = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    n_fast = torch.tensor([[1, 3, 2], [2, 1, 1]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.autograd.gradcheck(lambda x: layer(x, n_fast, mask)[0], (x,))


# -- eq. 14: the fast-slow ordering and the ceil(tau/z) step count ---------------------------------


@pytest.mark.parametrize("fast_path", [False, True])
def test_fast_slow_step_follows_documented_ordering(fast_path):
    torch.manual_seed(1)
    layer = FastSlowLayer(5, fast_path).double()
    fast, slow, x = (torch.randn(1, 5, dtype=torch.float64) for _ in range(3))
    F_, S_ = layer.fast_cell, layer.slow_cell
    h0 = F_(fast, x)  # h_0^F = F(h_{j-1}, x_j)
    hs = S_(slow, h0)  # h_j^S = S(h_{j-1}^S, h_0^F)
    h = F_(h0, hs)  # h_1^F = F(h_0^F, h_j^S)
    for _ in range(2, 4):  # h_k^F = F(h_{k-1}^F), k = 2..n with n = 3
        h = F_(h)
    out, new_slow = layer.step(fast, slow, layer.project(x), torch.tensor([3]))
    torch.testing.assert_close(out, h)
    torch.testing.assert_close(new_slow, hs)


def test_fast_step_counts():
    # cell calls are counted on the reference path (the literal cells); the fast path computes the
    # same function (tests/unit/test_model_fast_path.py)
    model = make_model(z=60.0, max_fast_steps=8, fast_path=False)
    tau = torch.tensor([0.0, 0.5, 60.0, 60.1, 130.0, 479.0, 481.0, 2000.0])
    assert model.n_fast(tau).tolist() == [1, 1, 1, 2, 3, 8, 8, 8]
    calls = {"fast": 0, "slow": 0}
    model.fast_slow.fast_cell.register_forward_hook(lambda *a: calls.__setitem__("fast", calls["fast"] + 1))
    model.fast_slow.slow_cell.register_forward_hook(lambda *a: calls.__setitem__("slow", calls["slow"] + 1))
    model.eval()
    b = batch_of((0,))  # tau 10, 130, 2000, 30 -> n = 1, 3, 8, 1
    model.features(b)
    assert calls["slow"] == 4
    assert calls["fast"] == (1 + 1) + (3 + 1) + (8 + 1) + (1 + 1)  # n_j + 1 fast cells per click


# -- eq. 12-13: causal attention ---------------------------------------------------------------------


def test_attention_is_causal_and_normalised():
    torch.manual_seed(0)
    h = torch.randn(2, 6, 4)
    v = causal_attention(h)
    h2 = h.clone()
    h2[:, 4:] = torch.randn(2, 2, 4) * 10  # change the future of position 3
    torch.testing.assert_close(causal_attention(h2)[:, :4], v[:, :4])
    # position k is a convex combination of h_1..h_k with the eq. 13 weights
    k = 3
    w = torch.softmax(h[0, : k + 1] @ h[0, k] / math.sqrt(4), 0)
    torch.testing.assert_close(v[0, k], (w.unsqueeze(1) * h[0, : k + 1]).sum(0))


def test_attention_with_the_query_as_one_more_key():
    # the live rule: h'_j attends over h_1..h_{j-1} and itself, i.e. over the keys with h'_j appended
    torch.manual_seed(0)
    keys, q = torch.randn(2, 5, 4), torch.randn(2, 1, 4)
    mask = torch.tensor([[True, True, False, True, False]])[None].expand(2, 1, 5)
    got = attend(q, keys, mask, include_query=True)
    allowed = [keys[b][mask[b, 0]] for b in range(2)]
    for b in range(2):
        k = torch.cat([allowed[b], q[b]])
        w = torch.softmax(k @ q[b, 0] / math.sqrt(4), 0)
        torch.testing.assert_close(got[b, 0], (w.unsqueeze(1) * k).sum(0))


# -- eq. 9 / 16: tied softmax and embedding -------------------------------------------------------------


def test_click_head_is_tied_to_the_item_embedding():
    model = make_model()
    v = torch.randn(3, 8)
    logits = model.click_logits(v)
    torch.testing.assert_close(logits[:, 1:], v @ model.item_emb.weight[1:].T)
    assert torch.isinf(logits[:, 0]).all() and (logits[:, 0] < 0).all()
    names = [n for n, p in model.named_parameters() if tuple(p.shape) == (12, 8)]
    assert sorted(names) == ["dwell_weight.weight", "item_emb.weight"]  # no separate output matrix
    # a gradient of the click loss reaches V through the output side too
    model.zero_grad()
    torch.nn.functional.cross_entropy(model.click_logits(v), torch.tensor([3, 4, 5])).backward()
    assert model.item_emb.weight.grad[3].abs().sum() > 0


def test_time_embedding_rows_cover_censored_range():
    model = make_model(c1=2000.0, c2=30.0, time_buckets="second")  # eq. 16: one row per second
    assert model.time_emb.num_embeddings == 2001
    model.eval()
    x = model.embed(torch.tensor([[1, 1]]), torch.tensor([[2000.0, 7.9]]), torch.tensor([[True, True]]))
    expected = model.emb_norm(model.item_emb.weight[[1, 1]] + model.time_emb.weight[[2000, 7]])
    torch.testing.assert_close(x[0], expected)


def test_log_time_buckets_share_rows_on_a_log_scale():
    model = make_model(c1=2000.0, c2=30.0, time_buckets="log")
    assert model.time_emb.num_embeddings == 23  # 1 + floor(2 log2 2000) = 22 is the last row
    tau = torch.tensor([0.0, 0.99, 1.0, 1.41, 1.42, 2.0, 30.0, 2000.0, 5000.0])
    assert model.time_row(tau).tolist() == [0, 0, 1, 1, 2, 3, 10, 22, 22]
    with pytest.raises(ValueError, match="time_buckets"):
        JumpConfig(n_items=5, time_buckets="minute")


# -- batching: masks and padding --------------------------------------------------------------------------


def _pad_more(b: SessionBatch, extra: int) -> SessionBatch:
    def pad(t, v):
        return torch.nn.functional.pad(t, (0, extra), value=v)

    return SessionBatch(pad(b.items, 0), pad(b.tau, 777.0), pad(b.delta, True), b.lengths)


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_does_not_change_any_output(train_mode):
    model = make_model()
    model.train(train_mode)
    b = batch_of()
    v1, _, _ = model.features(b)
    loss1, _, out1 = model.calculate_loss(b)
    v2, _, _ = model.features(_pad_more(b, 5))
    loss2, _, out2 = model.calculate_loss(_pad_more(b, 5))
    m = b.mask
    torch.testing.assert_close(v2[:, : m.shape[1]][m], v1[m])
    torch.testing.assert_close(loss1, loss2)
    torch.testing.assert_close(out1["click_ll"], out2["click_ll"])


def test_batched_equals_one_by_one_in_eval():
    model = make_model().eval()
    b = batch_of()
    for protocol in ("paper", "live"):
        scores = scores_of(model, b, protocol)
        singles = torch.cat([scores_of(model, batch_of((i,)), protocol) for i in range(3)])
        torch.testing.assert_close(scores, singles, rtol=1e-5, atol=1e-5)
    dwell = model.predict(b).dwell
    for i in range(3):
        n = b.lengths[i]
        one = model.predict(batch_of((i,))).dwell
        torch.testing.assert_close(dwell.median[i, :n], one.median[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dwell.loglik[i, :n], one.loglik[0], rtol=1e-5, atol=1e-5)


# -- the live protocol ----------------------------------------------------------------------------------


def test_live_features_equal_prefix_with_unknown_last_dwell():
    """v'_j == features of the prefix 1..j whose last click is represented as (c2, censored)."""
    model = make_model().eval()
    b = batch_of((2,))
    live = scores_of(model, b, "live")  # (L-1, n_items)
    items, tau = SESSIONS["items"][2], SESSIONS["tau"][2]
    for j in range(1, len(items)):
        prefix = SessionBatch.from_sessions([items[:j]], [[*tau[: j - 1], model.config.c2]], [[0] * (j - 1) + [1]])
        v, _, _ = model.features(prefix)
        torch.testing.assert_close(live[j - 1], model.click_logits(v[0, -1]), rtol=1e-5, atol=1e-5)
    # and the paper protocol uses the true dwell of the last context click
    paper = scores_of(model, b, "paper")
    assert not torch.allclose(paper, live)


# -- eq. 17-18: the joint likelihood -------------------------------------------------------------------------


def _joint_loglik_by_hand(model, objective):
    """Eq. 17-18 summed click by click from prefixes: the click term of position k from v(S_{k-1})
    ('paper'), or from the live representation of click k-1, its dwell unknown ('live')."""
    total = 0.0
    for s in range(3):
        items, tau, delta = (SESSIONS[f][s] for f in ("items", "tau", "delta"))
        for k in range(len(items)):
            if k == 0:
                ctx = live = model.start_feature  # v(S_0)
            else:
                v, _, _ = model.features(SessionBatch.from_sessions([items[:k]], [tau[:k]], [delta[:k]]))
                ctx = v[0, -1]
                live_prefix = SessionBatch.from_sessions([items[:k]], [[*tau[: k - 1], model.config.c2]], [[0] * k])
                live = model.features(live_prefix)[0][0, -1]  # click k-1 embedded as (c2, censored)
            click = 0.0
            if objective in ("paper", "both"):
                click += torch.log_softmax(model.click_logits(ctx), -1)[items[k]].item()
            if objective in ("live", "both"):
                click += torch.log_softmax(model.click_logits(live), -1)[items[k]].item()
            mu = model.dwell_weight.weight[items[k]] @ ctx + model.dwell_bias.weight[items[k], 0]
            y = math.log(max(tau[k], model.config.min_dwell))
            sigma = float(torch.as_tensor(model.dwell_sigma(torch.tensor([items[k]]))).detach().reshape(-1)[0])
            dwell = norm.logsf(y, mu.item(), sigma) if delta[k] else norm.logpdf(y, mu.item(), sigma)
            total += click + dwell
    return total


def test_loss_is_the_joint_likelihood_of_eq_17_18():
    model = make_model(objective="paper", sigma_mode="fixed", sigma=10.0).eval()
    loss = model.calculate_loss(batch_of()).loss
    assert loss.item() == pytest.approx(-_joint_loglik_by_hand(model, "paper") / 3, rel=1e-5)


@pytest.mark.parametrize("objective", ["live", "both"])
@pytest.mark.parametrize("sigma_mode", ["global", "per_item"])
def test_train_as_served_loss_uses_the_live_representation(objective, sigma_mode):
    """Each next-click term is the one computed on the live representation the stream serves."""
    model = make_model(objective=objective, sigma_mode=sigma_mode, sigma=2.0).eval()
    with torch.no_grad():
        if sigma_mode == "per_item":
            model.dwell_log_sigma_item.weight.normal_(0, 0.3)
    loss = model.calculate_loss(batch_of()).loss
    assert loss.item() == pytest.approx(-_joint_loglik_by_hand(model, objective) / 3, rel=1e-5)
    # the same terms as the live protocol's scores, position by position
    b = batch_of()
    parts = model.calculate_loss(b).parts["click_ll"]  # (n_valid,) in row-major order of the mask
    if objective == "live":
        live = model.predict(b, "live").scores  # (P, n_items): position k predicts click k+1
        want = torch.log_softmax(live, -1).gather(1, b.next_targets()[:, None])[:, 0]
        firsts = b.mask.clone()
        firsts[:, 1:] = False  # positions k = 1 come from v(S_0)
        got = parts[~firsts[b.mask]]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dwell_median_is_exp_mu_and_loglik_is_eq_10():
    model = make_model(dwell_point="median", sigma_mode="fixed", sigma=10.0).eval()
    b = batch_of()
    med, mu, loglik = model.predict(b).dwell
    torch.testing.assert_close(med, torch.exp(mu))
    m = b.mask
    want = censored_lognormal_loglik(
        torch.log(b.tau[m].clamp_min(model.config.min_dwell)), b.delta[m], mu[m], model.config.sigma
    )
    torch.testing.assert_close(loglik[m], want)


def test_observed_median_is_the_median_below_c1():
    """The default point estimate: the median of LogNormal(mu, sigma) truncated at c1 (scipy's)."""
    model = make_model().eval()
    b = batch_of()
    point, mu, _ = model.predict(b).dwell
    sigma = float(model.dwell_sigma(b.items).detach())
    for p, m in zip(point[b.mask].tolist(), mu[b.mask].tolist(), strict=True):
        below = norm.cdf((math.log(model.config.c1) - m) / sigma)
        assert p == pytest.approx(math.exp(m + sigma * norm.ppf(below / 2)), rel=1e-4)
        assert p <= min(math.exp(m), model.config.c1) * (1 + 1e-5)


def test_learned_sigma_recovers_the_true_sigma_of_censored_lognormal_dwells():
    """Synthetic dwells: log tau ~ N(mu_item, 0.8^2), right-censored (tau, delta = 1) at a random threshold
    between c2 and c1 drawn independently of the dwell (the condition under which maximum censored
    likelihood is consistent; eq. 4's censoring is a threshold of that kind); the learned global sigma
    recovers 0.8 within 5 %.

    Maximum censored likelihood through the model's own dwell path (eq. 11's mu, eq. 10 with the
    learned sigma) over its dwell parameters; the rest of the network is frozen, which makes this a
    test of the sigma estimate, fast enough for `make test` (the full loss's gradient reaching sigma
    is tested below)."""
    rng = np.random.default_rng(0)
    n_items, true_sigma, c1, c2 = 20, 0.8, 300.0, 30.0
    item_mu = rng.uniform(1.5, 4.5, n_items + 1)
    items, taus, deltas = [], [], []
    for _ in range(1000):
        length = int(rng.integers(2, 12))
        it = rng.integers(1, n_items + 1, length)
        tau = np.exp(rng.normal(item_mu[it], true_sigma))
        threshold = rng.uniform(c2, c1, length)
        delta = tau >= threshold
        tau = np.minimum(tau, threshold)
        items.append(it.tolist()), taus.append(tau.tolist()), deltas.append(delta.astype(int).tolist())
    b = SessionBatch.from_sessions(items, taus, deltas)
    torch.manual_seed(0)
    model = Jump(JumpConfig(n_items=n_items + 1, dim=8, c1=c1, c2=c2, sigma=2.0, sigma_mode="global")).eval()
    with torch.no_grad():
        ctx = model.context(model.features(b)[0])  # (B, L, d) v(S_{k-1})
    opt = torch.optim.Adam([model.dwell_bias.weight, model.dwell_log_sigma], lr=0.05)  # W stays 0: mu_i = b[i]
    for _ in range(400):
        opt.zero_grad()
        loglik = model.dwell(b, model.dwell_mu(ctx, b.items)).loglik[b.mask]  # (n_valid,)
        (-loglik.mean()).backward()
        opt.step()
    assert float(model.dwell_sigma(b.items).detach()) == pytest.approx(true_sigma, rel=0.05)


def test_calculate_loss_trains_the_learned_sigma():
    model = make_model(sigma_mode="per_item")
    model.calculate_loss(batch_of()).loss.backward()
    assert model.dwell_log_sigma.grad is not None and model.dwell_log_sigma.grad.abs() > 0
    assert model.dwell_log_sigma_item.weight.grad[1:10].abs().sum() > 0


def test_predict_is_one_pass_of_both_heads():
    model = make_model().eval()
    b = batch_of()
    paper_dwell = model.predict(b, "paper").dwell
    for protocol in ("paper", "live"):
        scores, (med, mu, loglik) = model.predict(b, protocol)
        assert scores.shape == (int(b.next_positions().sum()), 12)
        torch.testing.assert_close(med, paper_dwell.median)  # dwell does not depend on protocol
        torch.testing.assert_close(mu, paper_dwell.mu)
        torch.testing.assert_close(loglik, paper_dwell.loglik)
    with pytest.raises(ValueError, match="protocol"):
        model.predict(b, "future")


# -- ablations (jump benchmark --ablations): every variant keeps the model contract -----------------

ABLATIONS = [
    {"recurrent": "rh"},
    {"recurrent": "gru"},
    {"attention": False},
    {"time_embedding": False},
    {"dwell_loss": False},
    {"dwell_head": "shared"},
    {"time_buckets": "log"},
]


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_ablated_models_keep_the_contract(ablation):
    model = make_model(**ablation).eval()
    b = batch_of()
    for protocol in ("paper", "live"):
        scores = scores_of(model, b, protocol)
        singles = torch.cat([scores_of(model, batch_of((i,)), protocol) for i in range(3)])
        torch.testing.assert_close(scores, singles, rtol=1e-5, atol=1e-5)
        assert torch.isinf(scores[:, 0]).all()
    # the stream's cached path (live_step, one click at a time) == the offline live rows
    items, tau = b.items, b.tau
    B, d = items.shape[0], model.config.dim
    state = LiveState(torch.zeros(B, d), torch.zeros(B, d), torch.zeros(B, 0, d), torch.zeros(B, dtype=torch.long))
    for n in range(int(b.lengths.min())):
        has_prev = torch.full((B,), n > 0)
        prev = max(n - 1, 0)
        out, state = model.live_step(state, items[:, prev], tau[:, prev], has_prev, items[:, n])
        want, _, _ = model.live_predict(b, torch.arange(B), torch.full((B,), n))
        torch.testing.assert_close(out.scores, want.scores, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(out.median, want.median, rtol=1e-4, atol=1e-4)
        # ... and both are the offline live rows of click n (`predict`, every next position in order)
        if n < int(b.lengths.min()) - 1:
            rows = (b.lengths - 1).cumsum(0) - (b.lengths - 1) + n  # row of click n of each session
            torch.testing.assert_close(out.scores, scores_of(model, b, "live")[rows], rtol=1e-4, atol=1e-4)
    # it trains
    model.train()
    loss = model.calculate_loss(b).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_ablation_switches_do_what_they_say():
    b = batch_of()
    torch.manual_seed(0)
    assert isinstance(make_model(recurrent="gru").fast_slow.cell, torch.nn.GRUCell)
    # no time embedding: the embedding ignores tau
    m = make_model(time_embedding=False).eval()
    x1 = m.embed(b.items, b.tau, b.mask)
    x2 = m.embed(b.items, b.tau * 3 + 7, b.mask)
    torch.testing.assert_close(x1, x2)
    # no dwell loss: the loss is the click term only, and no gradient reaches the dwell head
    m = make_model(dwell_loss=False)
    loss, _, out = m.calculate_loss(b)
    torch.testing.assert_close(loss, -out["click_ll"].sum() / 3)
    loss.backward()
    assert m.dwell_weight.weight.grad is None or m.dwell_weight.weight.grad.abs().sum() == 0
    # shared dwell head: one W, b for every item
    m = make_model(dwell_head="shared")
    assert m.dwell_weight.weight.shape == (1, m.config.dim)
    # no attention: v_k == h_k
    m = make_model(attention=False).eval()
    v, h, _ = m.features(b)
    torch.testing.assert_close(v, h)
    with pytest.raises(ValueError, match="recurrent"):
        JumpConfig(n_items=5, recurrent="lstm")


def test_live_censor_p_hides_input_dwells_only_in_training():
    b = batch_of()
    hidden = SessionBatch(
        b.items, torch.where(b.mask, torch.full_like(b.tau, 30.0), b.tau), b.delta | b.mask, b.lengths
    )
    m0, m1 = make_model(objective="paper"), make_model(objective="paper", live_censor_p=1.0)
    m0.train(), m1.train()
    torch.manual_seed(1)
    _, _, out1 = m1.calculate_loss(b)  # every input dwell fed as (c2, censored) ...
    v, _, _ = m0.features(hidden)
    ctx = m0.context(v)
    want = -torch.nn.functional.cross_entropy(m0.click_logits(ctx[b.mask]), b.items[b.mask], reduction="none")
    torch.testing.assert_close(out1["click_ll"], want.detach())
    # ... and evaluation is untouched
    m1.eval(), m0.eval()
    torch.testing.assert_close(scores_of(m1, b, "paper"), scores_of(m0, b, "paper"))


# -- the elapsed protocol: a refresh E s after the latest click ----------------------------------------


def test_elapsed_protocol_censors_the_latest_dwell_at_e():
    model = make_model().eval()
    batch = batch_of()
    # E = c2 is exactly the live rule: (c2, censored)
    torch.testing.assert_close(scores_of(model, batch, "elapsed:30"), scores_of(model, batch, "live"))
    # any other E is the live rule with the latest click embedded as (E, censored)
    for e in (0.0, 5.0, 120.0):
        _, h, slow = model.features(batch)
        want = model.click_logits(model.live_features(batch, h, slow, e)[batch.next_positions()])
        got = scores_of(model, batch, f"elapsed:{e:g}")
        torch.testing.assert_close(got, want)
    # E changes the scores: 120 s takes two fast steps, 30 s one, and T has other rows
    assert not torch.allclose(scores_of(model, batch, "elapsed:120"), scores_of(model, batch, "live"))
    for bad in ("elapsed", "elapsed:-1", "elapsed:x", "elapsed:inf", "live:5"):
        with pytest.raises(ValueError, match="protocol"):
            model.predict(batch, bad)


def dwell_sessions(seed, n_sessions=300, item_effect=0.0):
    """Random sessions over items 1..11 with log-normal dwells (log-mean 2 + item_effect * (item - 6)/5)."""
    from jump_core.data.dataset import SessionSet

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 8, n_sessions)
    n = int(lengths.sum())
    items = rng.integers(1, 12, n)
    return SessionSet(
        items=items,
        ts=np.arange(n, dtype=float),
        tau=np.exp(rng.normal(2.0 + item_effect * (items - 6) / 5, 0.7, n)),
        delta=(rng.random(n) < 0.2).astype(np.uint8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        session_ids=np.array([f"s{i}".encode() for i in range(len(lengths))]),
    )


def test_dwell_calibration_fits_the_mae_optimal_scale_on_validation():
    val = dwell_sessions(1)
    model = make_model(dwell_item_blend=False).eval()
    b = batch_of()
    before = model.predict(b, "paper").dwell.median
    fitted = model.after_fit(val, val)
    s = fitted["dwell_scale"]
    assert s == model.config.dwell_scale and s != 1.0
    assert fitted["val_dwell_mae_s"] <= fitted["val_dwell_mae_before_s"]
    # s minimises the validation MAE: nudging it either way is no better
    p, tau = [], []
    model.config.dwell_scale = 1.0
    for _, batch in val.batches(100):
        obs = batch.mask & ~batch.delta
        p.append(model.predict(batch, "paper").dwell.median[obs].double())
        tau.append(batch.tau[obs].double())
    p, tau = torch.cat(p), torch.cat(tau)
    model.config.dwell_scale = s
    mae = lambda k: float((tau - k * p).abs().mean())  # noqa: E731
    assert mae(s) == pytest.approx(fitted["val_dwell_mae_s"]) and mae(s) <= min(mae(s * 1.05), mae(s / 1.05))
    # every prediction path applies it; the paper's setting does not calibrate
    torch.testing.assert_close(model.predict(b, "live").dwell.median, before * s)
    paper = make_model(dwell_calibration=False, dwell_item_blend=False)
    assert paper.after_fit(val, val) == {} and paper.config.dwell_scale == 1.0
    assert not hasattr(paper, "dwell_item_log_median")


def test_dwell_item_blend_learns_the_item_medians_weight_on_validation():
    from jump_core.baselines.item_dwell import ItemMedianDwell, ItemMedianDwellConfig

    # the dwell depends on the item only: an untrained session context adds nothing, the item's median does
    train, val = dwell_sessions(2, 600, item_effect=2.0), dwell_sessions(3, 300, item_effect=2.0)
    model = make_model().eval()
    fitted = model.after_fit(train, val)
    c = model.config
    assert fitted["dwell_blend"] == c.dwell_blend <= 0.3 and fitted["dwell_scale"] == c.dwell_scale
    assert fitted["dwell_blend_item"] == c.dwell_blend_item >= 0.5  # the item effect is real: the item median
    table = ItemMedianDwell(ItemMedianDwellConfig(12)).fit(train)
    torch.testing.assert_close(model.dwell_item_log_median, table.mu)
    # on validation: at least as good as the item median itself (w = 0, s = 1 is on the grid) and the model alone
    obs = val.delta == 0
    tau = torch.from_numpy(val.tau[obs])
    median_mae = float((tau - table.mu.double()[torch.from_numpy(val.items[obs])].exp()).abs().mean())
    assert fitted["val_dwell_mae_s"] <= median_mae
    assert fitted["val_dwell_mae_s"] < 0.9 * fitted["val_dwell_mae_before_s"]
    # every path applies it: predict and the stream's live_step give the blended point
    b = batch_of()
    mu = model.predict(b, "live").dwell.mu  # (B, L)
    point = model.dwell_point_estimate(mu, b.items)
    c.dwell_blend, scale, c.dwell_scale = 1.0, c.dwell_scale, 1.0
    alone = model.dwell_point_estimate(mu, b.items)
    c.dwell_blend, c.dwell_scale = fitted["dwell_blend"], scale
    w, w_i, table = c.dwell_blend, c.dwell_blend_item, model.dwell_item_log_median
    want = scale * torch.exp(w * torch.log(alone) + w_i * table[b.items] + (1 - w - w_i) * table[0])
    torch.testing.assert_close(point, want)
    torch.testing.assert_close(model.predict(b, "live").dwell.median, want)


def test_last_click_dwell_skip_drops_only_the_last_clicks_dwell_terms():
    b = batch_of()
    full = make_model().calculate_loss(b).parts["dwell_ll"]  # (n_valid,)
    skip = make_model(last_click_dwell="skip").calculate_loss(b).parts["dwell_ll"]
    last = (torch.arange(b.items.shape[1]) == (b.lengths - 1).unsqueeze(1))[b.mask]  # (n_valid,)
    assert (skip[last] == 0).all() and (full[last] != 0).all()
    torch.testing.assert_close(skip[~last], full[~last])
    with pytest.raises(ValueError, match="last_click_dwell"):
        JumpConfig(n_items=5, last_click_dwell="drop")
