"""`jump train` and the one training loop of every neural model: Adam (§5), clipping, early stopping.

`jump train` maximises JUMP's joint log-likelihood (eq. 17-18; by default with the next-click
term taken from the live representation, see JumpConfig.objective).

Validation: a seeded `val_fraction` of the training sessions is held out; after every epoch the
validation Recall@20 under `protocol` (by default `live`, what the stream serves) and, with
`select="val_loss"`, the validation loss are computed. The best epoch by `select` is kept;
`lr_schedule="plateau"` halves the learning rate after an epoch without improvement, and training
stops after `patience` such epochs (or at `time_budget_s`). Deterministic under a seed on CPU
(same data, same order, same initialisation); gradients are clipped at norm `clip`.
The paper's setting (§5: Adam, lr 1e-3, no schedule, selection by likelihood) is `jump train --paper`.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .. import registry
from ..artifacts.checkpoint import save_checkpoint
from ..contract import NeuralModel
from ..data.dataset import PreparedDataset, SessionSet, load_prepared
from .evaluate import evaluate


@dataclass
class TrainConfig:
    """`jump train`'s settings; the defaults are what `jump train`, the trainer and `make demo` use."""

    epochs: int = 30  # a cap: early stopping ends a run (the paper's 10 left JUMP still improving)
    batch_size: int = 100  # §5: every method uses batch size 100
    lr: float = 3e-3  # §5 gives Adam, not its rate; 1e-3 is the paper preset's
    clip: float | None = 5.0  # gradient norm cap; None or 0: no clipping (the official GRU4Rec clips nothing)
    patience: int = 3  # epochs without validation improvement before stopping
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    max_len: int = 200  # training windows: longer sessions are cut (evaluation is not)
    time_budget_s: float | None = 600.0  # `jump train` ends within 10 min on 2 CPU cores for ~50k clicks
    weight_decay: float = 0.0
    # "plateau": halve the learning rate after each epoch without validation improvement; "none": constant (§5)
    lr_schedule: str = "plateau"
    select: str = "val_recall"  # best epoch by "val_recall" (higher, under `protocol`) or "val_loss" (lower)
    protocol: str = "live"  # the protocol of the validation Recall@20: the stream's
    model: dict = field(default_factory=dict)  # JumpConfig overrides (dim, c1, c2, z, sigma, ...)

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}")


LR_SCHEDULES = ("none", "plateau")
# `jump train --paper`: §5's training (Adam at 1e-3, no schedule, the best epoch by likelihood), with
# JumpConfig's PAPER_SETTINGS for the model.
PAPER_TRAIN = {
    "lr": 1e-3,
    "lr_schedule": "none",
    "select": "val_loss",
    "protocol": "paper",
    "epochs": 10,
    "patience": 2,
    "time_budget_s": None,
}


def resolve_device(name: str = "auto") -> torch.device:
    """auto (CUDA when available, else CPU), cpu, cuda or cuda:N; anything else is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name or ""):
        raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_validation(train: SessionSet, fraction: float, seed: int) -> tuple[SessionSet, SessionSet]:
    n = len(train)
    perm = np.random.default_rng(seed + 7919).permutation(n)
    n_val = round(n * fraction) if n > 1 else 0
    return train.subset(np.sort(perm[n_val:])), train.subset(np.sort(perm[:n_val]))


@torch.no_grad()
def validation_loss(model: NeuralModel, data: SessionSet, batch_size: int, device) -> float:
    """Mean training loss per click on held-out sessions (JUMP: negative eq. 17-18)."""
    model.eval()
    total, clicks = 0.0, 0
    for _, batch in data.batches(batch_size):
        total += model.calculate_loss(batch.to(device)).loss_sum
        clicks += int(batch.lengths.sum())
    return total / max(clicks, 1)


def fit_model(
    model: NeuralModel,
    tr: SessionSet,
    val: SessionSet,
    cfg: TrainConfig,
    progress: bool = True,
    log=print,
    name: str = "JUMP",
    select: str = "val_loss",
    protocol: str = "paper",
    on_epoch=None,
) -> dict:
    """The one training loop of every neural model (JUMP and the baselines): Adam (or the optimiser of the
    model's `configure_optimizer`), clipping (off if cfg.clip is 0 or None), early stopping.

    After every epoch: validation loss (if the model defines one and `select` is 'val_loss') and
    validation Recall@20 under `protocol`. The best epoch by `select` ('val_loss' lower is better,
    'val_recall' higher is better) is kept and loaded into `model`; training stops after `patience`
    epochs without improvement or at `time_budget_s`. Returns the summary with the per-epoch history.

    `on_epoch(record)`, if given, is called after every epoch with that epoch's history record (the
    validation Recall@20 included); an exception it raises ends training there (`jump tune`'s pruner
    raises optuna.TrialPruned from it).
    """
    if select not in ("val_loss", "val_recall"):
        raise ValueError(f"select must be 'val_loss' or 'val_recall', not {select!r}")
    device = next(model.parameters()).device
    tr_windows = tr.windows(cfg.max_len)
    opt = model.configure_optimizer(cfg)  # fused Adam unless the model has its own (NeuralModel.configure_optimizer)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0, threshold=0.0)
        if cfg.lr_schedule == "plateau"
        else None
    )
    best = {"score": math.inf, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    history, t_start, stale = [], time.time(), 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(
            total=tr_windows.n_clicks,
            desc=f"{name} epoch {epoch}",
            unit="click",
            disable=not progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        out_of_time = False
        for loss, n, n_loss_sum in model.train_steps(tr_windows, cfg, epoch, device):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            seen += n
            loss_sum += n_loss_sum
            bar.update(n)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", clicks_s=f"{seen / (time.time() - t0):,.0f}", refresh=False)
            if cfg.time_budget_s is not None and time.time() - t_start > cfg.time_budget_s:
                out_of_time = True
                break
        bar.close()
        train_s = time.time() - t0
        train_loss = loss_sum / max(seen, 1)
        val_loss = validation_loss(model, val, cfg.batch_size, device) if len(val) and select == "val_loss" else None
        val_recall = evaluate(model, val, protocol)["recall@20"] if len(val) else None
        rec = {
            "epoch": epoch,
            "train_loss_per_click": train_loss,
            "val_loss_per_click": val_loss,
            "val_recall@20": val_recall,
            "clicks": seen,
            "train_seconds": round(train_s, 2),
            "clicks_per_s": round(seen / max(train_s, 1e-9), 1),
            "lr": opt.param_groups[0]["lr"],
            "complete": not out_of_time,
        }
        history.append(rec)
        log(
            f"{name} epoch {epoch}: train loss/click {train_loss:.4f}  "
            + (f"val loss/click {val_loss:.4f}  " if val_loss is not None else "")
            + f"val Recall@20 ({protocol}) {val_recall if val_recall is None else round(val_recall, 4)}  "
            f"{rec['clicks_per_s']:,.0f} clicks/s{'  (time budget reached)' if out_of_time else ''}"
        )
        if on_epoch is not None:
            on_epoch(rec)
        if select == "val_loss":
            score = val_loss if val_loss is not None else train_loss
        else:
            score = -val_recall if val_recall is not None else train_loss
        if plateau is not None:
            plateau.step(score)
        if score < best["score"]:
            best = {"score": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
            stale = 0
        else:
            stale += 1
        if out_of_time or stale >= cfg.patience:
            if stale >= cfg.patience:
                log(f"{name}: early stopping, no validation improvement for {cfg.patience} epochs")
            break
    model.load_state_dict(best["state"])
    fitted = model.after_fit(tr, val, cfg.batch_size)  # post-hoc settings on the validation split (JUMP: dwell)
    if fitted:
        log(f"{name}: fitted on the validation split: " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.items()))
    return {
        "after_fit": fitted,
        "best_epoch": best["epoch"],
        f"best_{select}": abs(best["score"]),
        "select": select,
        "history": history,
        "train_config": dict(asdict(cfg).items()),
        "device": str(device),
        "seconds": round(time.time() - t_start, 2),
    }


def train(data: PreparedDataset | str, out: str, cfg: TrainConfig, progress: bool = True, log=print) -> dict:
    """Train JUMP on a prepared dataset and write the best checkpoint to `out`. Returns a summary."""
    data = load_prepared(data) if isinstance(data, str) else data
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = registry.build("jump", data.n_items, cfg.model).to(device)
    mc = model.config
    tr, val = split_validation(data.train, cfg.val_fraction, cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"training JUMP ({n_params:,} parameters, d={mc.dim}, z={mc.z}, objective {mc.objective}, "
        f"sigma {mc.sigma:g} {mc.sigma_mode}) "
        f"on {device}: {len(tr):,} sessions / {tr.n_clicks:,} clicks, validation {len(val):,} sessions"
    )
    summary = fit_model(model, tr, val, cfg, progress, log, select=cfg.select, protocol=cfg.protocol)
    if "best_val_loss" in summary:
        summary["best_val_loss_per_click"] = summary.pop("best_val_loss")
    save_checkpoint(out, model, data.items, data.fingerprint, summary)
    log(f"saved best model (epoch {summary['best_epoch']}) to {out}")
    return summary
