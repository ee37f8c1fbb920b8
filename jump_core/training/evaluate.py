"""One evaluation path for every model: full-catalogue ranking, pessimistic ties, dwell MAE.

Every model is called through the contract (jump_core/contract.py), one pass per batch:
`model.predict(batch, protocol) -> Prediction(scores (P, n_items) | None, dwell: Dwell | None)`.
Nothing here depends on which model it is: a dwell-only model has no click metrics, a click-only
model no dwell metrics.

Metrics:
  * Next click: every position k = 1..l-1 of every test session predicts click k+1, ranked
    against ALL items (never sampled negatives). Rank is pessimistic: 1 + the number of other
    items scoring >= the target, so a target tied with others is ranked below all of them
    (an optimistic rule inflates count-based baselines with many exact ties). A target unseen in
    training (index 0) can't be recommended: it counts as a miss and is reported.
    Recall@K = hit rate; MRR@K = mean 1/rank (0 beyond K); NDCG@K = mean 1/log2(rank+1).
  * Protocol 'elapsed:E' (a refresh E s after click k, its dwell censored at E): only positions whose
    next click came more than E s later are scored (tau_k > E); `min_next_gap` applies the same
    filter to any protocol, so 'live' can be scored on exactly those positions (`elapsed_curve`).
  * Dwell: MAE in seconds of the median prediction on uncensored clicks (delta = 0), every
    position including the first; mean censored log-likelihood (eq. 10) over all clicks.
  * The same by session length bucket (Fig. 7: 2-6, 10-30, >150, and the lengths between).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..contract import SessionModel, elapsed_protocol, parse_protocol
from ..data.dataset import SessionSet

BUCKETS = (("2-6", 2, 6), ("7-9", 7, 9), ("10-30", 10, 30), ("31-150", 31, 150), (">150", 151, math.inf))
MISS_RANK = 2**31 - 1  # rank given to a target that can't be recommended (unseen in training)


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of each target among all candidates, ties counted against it.  (P, n), (P,) -> (P,).

    Targets equal to 0 (unknown item) get MISS_RANK: a miss at every cutoff.
    """
    if torch.isnan(scores).any():
        raise ValueError("model produced NaN scores")
    target_scores = scores.gather(1, targets.unsqueeze(1))  # (P, 1)
    ranks = (scores >= target_scores).sum(1)  # (P,) includes the target
    return torch.where(targets == 0, torch.full_like(ranks, MISS_RANK), ranks)


def ranking_metrics(ranks: np.ndarray, k: int = 20) -> dict:
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        return {f"recall@{k}": None, f"mrr@{k}": None, f"ndcg@{k}": None, "n_predictions": 0}
    hit = ranks <= k
    return {
        f"recall@{k}": float(hit.mean()),
        f"mrr@{k}": float(np.where(hit, 1.0 / ranks, 0.0).mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()),
        "n_predictions": len(ranks),
    }


def bucket_of(lengths: np.ndarray) -> np.ndarray:
    out = np.full(len(lengths), "", dtype=object)
    for name, lo, hi in BUCKETS:
        out[(lengths >= lo) & (lengths <= hi)] = name
    return out


@torch.no_grad()
def evaluate(
    model: SessionModel,
    data: SessionSet,
    protocol: str = "paper",
    k: int = 20,
    batch_size: int = 100,
    progress=None,
    min_next_gap: float | None = None,
) -> dict:
    """Score `model` on every test session of `data`, on the model's device; returns the metrics dict
    (see the module doc). min_next_gap: score only positions whose next click came more than this many
    seconds later (default: E under 'elapsed:E', else every position)."""
    _, elapsed = parse_protocol(protocol)
    if min_next_gap is None:
        min_next_gap = elapsed
    model.eval()
    device = model.device
    t0 = time.time()
    ranks, rank_len, oov = [], [], 0
    abs_err, err_len, loglik = [], [], []
    for _, batch in data.batches(batch_size):
        batch = batch.to(device)
        targets = batch.next_targets()  # (P,)
        scores, dwell = model.predict(batch, protocol)
        if scores is not None and len(targets):
            r = pessimistic_ranks(scores, targets)
            if min_next_gap is not None:
                keep = batch.tau[batch.next_positions()] > min_next_gap  # (P,) the user was still on click k
                r, targets = r[keep], targets[keep]
            ranks.append(r.cpu().numpy())
            lengths = batch.lengths.unsqueeze(1).expand_as(batch.items)[batch.next_positions()]  # (P,)
            rank_len.append((lengths if min_next_gap is None else lengths[keep]).cpu().numpy())
            oov += int((targets == 0).sum())
        if dwell is not None:
            obs = batch.mask & ~batch.delta  # uncensored clicks
            abs_err.append((dwell.median[obs] - batch.tau[obs]).abs().cpu().numpy())
            err_len.append(batch.lengths.unsqueeze(1).expand_as(batch.items)[obs].cpu().numpy())
            loglik.append(dwell.loglik[batch.mask].cpu().numpy())
        if progress is not None:
            progress(batch.lengths.sum().item())
    ranks = np.concatenate(ranks) if ranks else np.zeros(0)
    rank_len = np.concatenate(rank_len) if rank_len else np.zeros(0)
    abs_err = np.concatenate(abs_err) if abs_err else None
    err_len = np.concatenate(err_len) if err_len else None
    result = {
        "protocol": protocol,
        "k": k,
        "min_next_gap_s": min_next_gap,
        **ranking_metrics(ranks, k),
        "n_oov_targets": oov,
        "dwell_mae_s": float(abs_err.mean()) if abs_err is not None and len(abs_err) else None,
        "n_dwell": len(abs_err) if abs_err is not None else 0,
        "dwell_loglik": float(np.concatenate(loglik).mean()) if loglik else None,
        "n_sessions": len(data),
        "n_clicks": data.n_clicks,
    }
    by_length = {}
    rb, eb = bucket_of(rank_len), (bucket_of(err_len) if err_len is not None else None)
    for name, lo, hi in BUCKETS:
        entry = ranking_metrics(ranks[rb == name], k)
        entry["n_sessions"] = int(((data.lengths >= lo) & (data.lengths <= hi)).sum())
        if eb is not None:
            sel = abs_err[eb == name]
            entry["dwell_mae_s"] = float(sel.mean()) if len(sel) else None
        by_length[name] = entry
    result["by_length"] = by_length
    result["eval_seconds"] = round(time.time() - t0, 3)
    return result


ELAPSED_DEFAULT = (0.0, 5.0, 15.0, 30.0, 60.0, 120.0)  # s: the refresh times of `jump evaluate --protocol elapsed`


def elapsed_curve(
    model: SessionModel, data: SessionSet, seconds=ELAPSED_DEFAULT, k: int = 20, batch_size: int = 100
) -> list[dict]:
    """Recall/MRR@k of a refresh E s after each click ('elapsed:E') next to 'live' (the prediction emitted
    at the click) on the same positions: those whose next click came more than E s later."""
    rows = []
    for e in seconds:
        refresh = evaluate(model, data, elapsed_protocol(e), k, batch_size)
        at_click = evaluate(model, data, "live", k, batch_size, min_next_gap=float(e))
        rows.append(
            {
                "elapsed_s": float(e),
                "n_predictions": refresh["n_predictions"],
                "elapsed": {m: refresh[m] for m in (f"recall@{k}", f"mrr@{k}", "n_oov_targets")},
                "live": {m: at_click[m] for m in (f"recall@{k}", f"mrr@{k}", "n_oov_targets")},
            }
        )
    return rows
