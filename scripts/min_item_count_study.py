"""Which minimum item count should the served model's vocabulary use? (issue 12, validation only)

For each real sample: `jump prepare --min-item-count 1` of its training data, the newest 20 % of the
training sessions by start time held out as validation (never a test split). For each m, the items
seen >= m times in the training part form the vocabulary; the training part drops clicks on the
others and sessions left shorter than 2 (as `jump prepare` and the trainer do), the validation part
keeps every click and maps the others to index 0, so every m is scored on the same positions and a
dropped item counts as a miss when it is the target. JUMP is trained with `jump train`'s defaults.

    python scripts/min_item_count_study.py runs/bench/rsc15/data runs/bench/diginetica/data --counts 1,2,3
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from jump_core import registry
from jump_core.data.dataset import SessionSet, load_prepared
from jump_core.training.evaluate import evaluate
from jump_core.training.train import TrainConfig, fit_model, seed_everything, split_validation


def newest(train: SessionSet, fraction: float) -> tuple[SessionSet, SessionSet]:
    start = train.ts[train.offsets[:-1]]  # (S,)
    order = np.argsort(start, kind="stable")
    n_val = round(len(order) * fraction)
    return train.subset(np.sort(order[:-n_val])), train.subset(np.sort(order[-n_val:]))


def remap(data: SessionSet, keep: np.ndarray, drop_clicks: bool) -> tuple[SessionSet, np.ndarray]:
    """Items not kept -> dropped clicks (training) or index 0 (validation); returns the set, new ids."""
    new_id = np.zeros(len(keep), dtype=np.int64)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1)
    items = new_id[data.items]
    if not drop_clicks:
        return SessionSet(items, data.ts, data.tau, data.delta, data.offsets, data.session_ids), new_id
    ok = items > 0
    sess = np.repeat(np.arange(len(data)), data.lengths)
    lengths = np.bincount(sess[ok], minlength=len(data))
    long_enough = lengths >= 2
    mask = ok & long_enough[sess]
    offsets = np.concatenate([[0], np.cumsum(lengths[long_enough])]).astype(np.int64)
    return (
        SessionSet(
            items[mask], data.ts[mask], data.tau[mask], data.delta[mask], offsets, data.session_ids[long_enough]
        ),
        new_id,
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("data", nargs="+")
    p.add_argument("--counts", default="1,2,3")
    p.add_argument("--time-budget", type=float, default=600.0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for path in a.data:
        data = load_prepared(path)
        fit_all, val = newest(data.train, 0.2)
        counts = np.bincount(fit_all.items, minlength=data.n_items)
        for m in [int(x) for x in a.counts.split(",")]:
            keep = counts >= m
            keep[0] = False
            tr, _ = remap(fit_all, keep, drop_clicks=True)
            va, _ = remap(val, keep, drop_clicks=False)
            seed_everything(0)
            cfg = TrainConfig(time_budget_s=a.time_budget, select="val_recall", protocol="live")
            tr_fit, tr_stop = split_validation(tr, cfg.val_fraction, cfg.seed)  # early stopping inside training
            model = registry.build("jump", int(keep.sum()) + 1, {})
            fit_model(
                model, tr_fit, tr_stop, cfg, progress=False, log=lambda *_: None, select="val_recall", protocol="live"
            )
            r = evaluate(model, va, "live")
            row = {
                "data": path,
                "min_item_count": m,
                "vocabulary": int(keep.sum()),
                "train_clicks": tr.n_clicks,
                "val_positions": r["n_predictions"],
                "recall@20": round(r["recall@20"], 4),
                "mrr@20": round(r["mrr@20"], 4),
                "dwell_mae_s": round(r["dwell_mae_s"], 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
