"""Compare this project's GRU4Rec with the official PyTorch GRU4Rec on the same prepared data.

The official code (hidasib/GRU4Rec_PyTorch_Official) is NOT part of this repository and nothing of
it is copied here: `--official DIR` names a checkout of it outside the tree, which this script
imports (`gru4rec_pytorch.GRU4Rec`, `evaluation.batch_eval`). It needs pandas, which the project
does not pin: run it with an interpreter that has the project's packages and pandas (see
docs/results/gru4rec_fidelity.md for the exact setup).

    python scripts/gru4rec_official_compare.py export DATA OUT
        OUT/train.tsv, OUT/test.tsv in the official format (SessionId, ItemId, Time) from a `jump
        prepare` directory; ItemId = our vocabulary index, so both codes see the same items; a test
        click on an item unseen in training is written as ItemId 0, which the official evaluation
        drops (its iterator filters items missing from the training item map).
    python scripts/gru4rec_official_compare.py official DATA --official DIR --params FILE --json OUT
        [--epochs N] [--seed S] [--set k=v,...]
        trains the official GRU4Rec on DATA's training split (the official `fit`, its param file,
        on the CPU) and scores it twice on DATA's test split:
          official_eval: the official `batch_eval` (conservative ties = our pessimistic rank), whose
                         positions are the test clicks on known items (unseen clicks removed);
          project_eval:  this project's `evaluate()` (every next-click position, full catalogue,
                         pessimistic ties, unseen targets are misses), through an adapter that runs
                         the official network (unseen input clicks: zero input, as in ours);
          project_eval_known: `evaluate()` on the test split with unseen clicks removed, which must
                         equal official_eval (the check that both evaluations agree).
    python scripts/gru4rec_official_compare.py ours DATA --model gru4rec_ce --json OUT [--epochs N]
        [--seed S] [--set k=v,...] [--config FILE]
        trains our GRU4Rec with the benchmark entry's trial-0 parameters (configs/benchmark/default.yaml,
        overridden by --set; train.* keys go to TrainConfig) on the whole training split (no
        validation hold-out, a fixed number of epochs, no time budget: what the official `fit` does)
        and scores it with `evaluate()` on the full test split and on the known-items test split.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jump_core import registry  # noqa: E402
from jump_core.contract import Prediction  # noqa: E402
from jump_core.data.dataset import SessionSet, load_prepared  # noqa: E402
from jump_core.experiments.benchmark import load_config, model_config, split_params  # noqa: E402
from jump_core.training.evaluate import evaluate  # noqa: E402
from jump_core.training.train import TrainConfig, fit_model, seed_everything  # noqa: E402

K = 20


def known_only(s: SessionSet) -> SessionSet:
    """The test split as the official evaluation sees it: clicks on unseen items (index 0) removed,
    then sessions left with fewer than 2 clicks removed."""
    keep = s.items != 0
    sess = np.repeat(np.arange(len(s)), s.lengths)[keep]
    lengths = np.bincount(sess, minlength=len(s))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = SessionSet(s.items[keep], s.ts[keep], s.tau[keep], s.delta[keep], offsets, s.session_ids)
    return out.subset(np.flatnonzero(lengths >= 2))


def frame(s: SessionSet):
    """(SessionId, ItemId, Time) DataFrame of a split, sessions numbered in split order; ItemId as
    str, as the official run.py reads it (with int ids the official code's positional indexing of
    a Series breaks: pandas 2.x treats the keys as labels)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "SessionId": np.repeat(np.arange(len(s), dtype=np.int64), s.lengths),
            "ItemId": s.items.astype(np.int64).astype(str),
            "Time": s.ts.astype(np.float64),
        }
    )


def export(args) -> None:
    data = load_prepared(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", data.train), ("test", data.test)):
        n = len(split.items)
        sid = np.repeat(np.arange(len(split)), split.lengths)
        with open(out / f"{name}.tsv", "w") as f:
            f.write("SessionId\tItemId\tTime\n")
            for i in range(n):
                f.write(f"{sid[i]}\t{split.items[i]}\t{float(split.ts[i])!r}\n")
        print(f"wrote {out / name}.tsv: {n:,} clicks, {len(split):,} sessions")


def parse_set(text: str | None) -> dict:
    out = {}
    for kv in (text or "").split(","):
        if kv:
            k, v = kv.split("=", 1)
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v  # a bare string
    return out


class OfficialAdapter:
    """The official trained network behind this project's model contract (predict only)."""

    name = "gru4rec_official"
    ranks_clicks, predicts_dwell, dwell_aware, trainable = True, False, False, False
    config = None
    device = torch.device("cpu")

    def __init__(self, gru, n_items: int):
        if not gru.model.constrained_embedding:
            raise ValueError("the adapter supports the constrained (shared) embedding only")
        self.gru = gru
        imap = gru.data_iterator.itemidmap  # our index -> official index
        self.to_off = torch.full((n_items,), -1, dtype=torch.long)
        self.cols = torch.as_tensor(imap.index.values.astype(np.int64))  # (n_official,) our column of each
        self.to_off[self.cols] = torch.as_tensor(imap.values.astype(np.int64))
        self.n_items = n_items

    def eval(self):
        self.gru.model.eval()
        return self

    @torch.no_grad()
    def predict(self, batch, protocol: str = "paper") -> Prediction:
        m = self.gru.model
        B, L = batch.items.shape
        H = [torch.zeros(B, size) for size in m.layers]
        outs = []
        for t in range(L):
            off = self.to_off[batch.items[:, t]]  # (B,) -1: unseen / padding
            x = m.Wy(off.clamp_min(0)) * (off >= 0).unsqueeze(1)  # (B, d) zero input for unseen
            outs.append(m.hidden_step(x, H, training=False))
        h = torch.stack(outs, 1)[batch.next_positions()]  # (P, d)
        s_off = m.score_items(h, m.Wy.weight, m.By.weight)  # (P, n_official)
        scores = torch.full((len(h), self.n_items), float("-inf"))
        scores[:, self.cols] = s_off
        return Prediction(scores, None)


def small(r: dict) -> dict:
    return {k: r[k] for k in (f"recall@{K}", f"mrr@{K}", "n_predictions", "n_oov_targets")}


def official(args) -> None:
    sys.path.insert(0, str(Path(args.official).resolve()))
    import evaluation
    from gru4rec_pytorch import GRU4Rec  # the official code, from outside the tree

    spec = importlib.util.spec_from_file_location("params", args.params)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    params = dict(mod.gru4rec_params)
    if args.epochs is not None:
        params["n_epochs"] = args.epochs
    params.update(parse_set(args.set))
    data = load_prepared(args.data)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gru = GRU4Rec(device=torch.device("cpu"))
    gru.set_params(**params)
    t0 = time.time()
    gru.fit(frame(data.train))
    train_s = time.time() - t0
    test_df = frame(data.test)
    rec, mrr = evaluation.batch_eval(gru, test_df, cutoff=[K], mode="conservative")
    adapter = OfficialAdapter(gru, data.n_items)
    known = known_only(data.test)
    out = {
        "code": "official",
        "params": params,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "official_eval": {f"recall@{K}": float(rec[K]), f"mrr@{K}": float(mrr[K])},
        "project_eval": small(evaluate(adapter, data.test, "live", K)),
        "project_eval_known": small(evaluate(adapter, known, "live", K)),
    }
    print(json.dumps(out, indent=2, default=str))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=str))


def ours(args) -> None:
    cfg = load_config(args.config)
    entry = model_config(cfg, args.model)
    params = {**entry["params"], **{f"train.{k}": v for k, v in entry["train"].items()}, **parse_set(args.set)}
    model_params, train_params = split_params(params)
    data = load_prepared(args.data)
    seed_everything(args.seed)
    model = registry.build(args.model, data.n_items, model_params)
    tc = TrainConfig(
        **{
            "lr": 1e-3,
            "lr_schedule": "none",
            **train_params,
            "epochs": args.epochs,
            "patience": args.epochs,
            "time_budget_s": None,
            "seed": args.seed,
        }
    )
    empty = data.train.subset(np.zeros(0, dtype=np.int64))
    t0 = time.time()
    summary = fit_model(model, data.train, empty, tc, progress=False, name=args.model, select="val_loss")
    train_s = time.time() - t0
    out = {
        "code": "ours",
        "model": args.model,
        "params": params,
        "seed": args.seed,
        "epochs": args.epochs,
        "best_epoch": summary["best_epoch"],
        "train_seconds": round(train_s, 1),
        "project_eval": small(evaluate(model, data.test, "live", K)),
        "project_eval_known": small(evaluate(model, known_only(data.test), "live", K)),
    }
    print(json.dumps(out, indent=2, default=str))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("data")
    e.add_argument("out")
    o = sub.add_parser("official")
    o.add_argument("data")
    o.add_argument("--official", required=True, help="folder of a GRU4Rec_PyTorch_Official checkout")
    o.add_argument("--params", required=True, help="an official param file (paramfiles/*.py)")
    u = sub.add_parser("ours")
    u.add_argument("data")
    u.add_argument("--model", default="gru4rec_ce")
    u.add_argument("--config", default=None)
    for q in (o, u):
        q.add_argument("--json", required=True)
        q.add_argument("--epochs", type=int, default=None if q is o else 10)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--set", default=None, help="k=v,... overrides (JSON values)")
    args = p.parse_args()
    {"export": export, "official": official, "ours": ours}[args.cmd](args)


if __name__ == "__main__":
    main()
