"""`jump tune`: a hyper-parameter search for `jump train` (Optuna, TPE), written as a config file.

Data: only the prepared dataset's training split is read (test.npz is never opened). Its newest
`val_fraction` of sessions by start time is the validation part, as the stream is validated (on
what comes after the data it was trained on); the older sessions are trained on.

Each trial is one `jump train` run through the one training loop (`fit_model`): TrainConfig's and
JumpConfig's defaults except for the searched parameters (and any fixed with `--set`), early stopping
and the plateau schedule on validation live Recall@20, the epoch cap, and a per-trial wall-time cap
(`--time-budget`). Its objective is the validation Recall@20 of the best epoch under the live protocol
(`evaluate(model, val, "live")`: the stream's view, full-catalogue ranking, pessimistic ties); MRR@20
and the dwell MAE are recorded next to it.

Search space (SEARCH_SPACE, the defaults' values in brackets):
  lr            Adam learning rate, log-uniform 1e-3 .. 3e-2                    [3e-3]
  dropout       dropout on embeddings and features, uniform 0 .. 0.5            [0]
  weight_decay  0, or log-uniform 1e-6 .. 1e-3 (a switch `weight_decay_on`)     [0]
  dim           d, 32 .. 128 in steps of 4                                      [100]
  z             fast-step scale (s), log-uniform 30 .. 240                      [60]
  time_buckets  rows of the time embedding: second | log                       [second]
  sigma_mode    learned log-dwell sigma: global | per_item                      [global]

Trial 0 is the current defaults (so the table shows what the search gains over them); the next
ones are TPE's (seeded, its first `n_startup` draws random). A MedianPruner stops a trial whose
validation Recall@20 after an epoch (after `--prune-warmup` epochs) is below the median of the
earlier trials at that epoch.
The best trial's configuration is written as YAML (`jump train --config FILE` reads it): the
TrainConfig and JumpConfig fields, the trial table, the validation figures, the data fingerprint
and the command.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np
import yaml

from .. import registry
from ..data.dataset import PreparedDataset, SessionSet
from ..model import JumpConfig
from .evaluate import evaluate
from .train import TrainConfig, fit_model, resolve_device, seed_everything

# name -> (config it belongs to, what is searched); `suggest` is the code of this table
SEARCH_SPACE = {
    "lr": ("train", "log-uniform 1e-3 .. 3e-2"),
    "dropout": ("model", "uniform 0 .. 0.5"),
    "weight_decay": ("train", "0, or log-uniform 1e-6 .. 1e-3"),
    "dim": ("model", "32 .. 128, step 4"),
    "z": ("model", "log-uniform 30 .. 240 s"),
    "time_buckets": ("model", "second | log"),
    "sigma_mode": ("model", "global | per_item"),
}
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name != "model")
# the prepared dataset sets c1, c2 (eq. 4) and the catalogue size: not a configuration's to change
MODEL_FIELDS = tuple(f.name for f in fields(JumpConfig) if f.name not in ("n_items", "c1", "c2"))
K = 20


def suggest(trial, name: str):
    """Trial `trial`'s value of search parameter `name` (SEARCH_SPACE)."""
    if name == "lr":
        return trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    if name == "dropout":
        return trial.suggest_float("dropout", 0.0, 0.5)
    if name == "weight_decay":
        on = trial.suggest_categorical("weight_decay_on", [False, True])
        return trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True) if on else 0.0
    if name == "dim":
        return trial.suggest_int("dim", 32, 128, step=4)
    if name == "z":
        return trial.suggest_float("z", 30.0, 240.0, log=True)
    if name == "time_buckets":
        return trial.suggest_categorical("time_buckets", ["second", "log"])
    if name == "sigma_mode":
        return trial.suggest_categorical("sigma_mode", ["global", "per_item"])
    raise ValueError(f"unknown search parameter {name!r} (known: {', '.join(SEARCH_SPACE)})")


def defaults() -> dict:
    """The searched parameters' current defaults (TrainConfig, JumpConfig): trial 0."""
    out = {}
    for cls, group in ((TrainConfig, "train"), (JumpConfig, "model")):
        for f in fields(cls):
            if SEARCH_SPACE.get(f.name, ("",))[0] == group and f.default is not MISSING:
                out[f.name] = f.default
    out["weight_decay_on"] = out["weight_decay"] > 0
    if not out["weight_decay_on"]:
        del out["weight_decay"]
    return out


def split_overrides(values: dict) -> tuple[dict, dict]:
    """{name: value} -> (TrainConfig fields, JumpConfig fields); an unknown name is a ValueError."""
    train, model = {}, {}
    for name, value in values.items():
        if name in TRAIN_FIELDS:
            train[name] = value
        elif name in MODEL_FIELDS:
            model[name] = value
        else:
            raise ValueError(f"unknown parameter {name!r} (TrainConfig or JumpConfig fields, not c1/c2/n_items)")
    return train, model


def load_training_split(directory: str | Path) -> PreparedDataset:
    """A prepared dataset with only its training split loaded: `test` is None (test.npz is never read)."""
    d = Path(directory)
    if not (d / "meta.json").exists() or not (d / "items.json").exists():
        raise FileNotFoundError(f"{d}: not a prepared dataset (meta.json or items.json missing; run `jump prepare`)")
    if not (d / "train.npz").exists():
        raise FileNotFoundError(f"{d}: no training split (train.npz missing)")
    meta = json.loads((d / "meta.json").read_text())
    items = json.loads((d / "items.json").read_text())
    return PreparedDataset(SessionSet.load(d / "train.npz"), None, items, meta)


def time_split(sessions: SessionSet, fraction: float) -> tuple[SessionSet, SessionSet]:
    """(older sessions, the newest `fraction` of sessions by start time), each in its original order."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), not {fraction!r}")
    n = len(sessions)
    n_val = round(n * fraction)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"a training split of {n} sessions is too small for a {fraction:g} validation part")
    starts = sessions.ts[sessions.offsets[:-1]]
    order = np.argsort(starts, kind="stable")
    return sessions.subset(np.sort(order[: n - n_val])), sessions.subset(np.sort(order[n - n_val :]))


def _sig(x, digits: int = 4):
    """A float rounded to `digits` significant digits (for tables); other values as they are."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return round(x, digits - 1 - math.floor(math.log10(abs(x))))
    return x


def tune(
    data: str | Path | PreparedDataset,
    trials: int,
    time_budget_s: float | None,
    seed: int = 0,
    val_fraction: float = 0.2,
    search: tuple[str, ...] | None = None,
    fixed: dict | None = None,
    study_budget_s: float | None = None,
    prune_warmup: int = 0,
    device: str = "auto",
    out: str | Path | None = None,
    study_json: str | Path | None = None,
    name: str | None = None,
    command: str | None = None,
    progress: bool = False,
    log=print,
) -> dict:
    """Run the search; returns the written document (see the module doc). `fixed`: parameters held at
    the given values (and not searched); `search`: the SEARCH_SPACE names to search (default: all);
    `prune_warmup`: epochs of every trial the pruner leaves alone (a small validation part's first
    epochs are noise), None: no pruning."""
    import optuna

    if trials < 1:
        raise ValueError(f"--trials must be at least 1, not {trials}")
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"--time-budget must be > 0 s, not {time_budget_s}")
    fixed = dict(fixed or {})
    fixed_train, fixed_model = split_overrides(fixed)
    search = tuple(SEARCH_SPACE if search is None else search)
    unknown = [s for s in search if s not in SEARCH_SPACE]
    if unknown:
        raise ValueError(f"unknown search parameter(s) {', '.join(unknown)} (known: {', '.join(SEARCH_SPACE)})")
    search = tuple(s for s in search if s not in fixed)  # a fixed parameter is not searched
    data_dir = None
    if not isinstance(data, PreparedDataset):
        data_dir = Path(data)
        data = load_training_split(data_dir)
    if len(data.train) == 0:
        raise ValueError("the prepared dataset's training split is empty")
    name = name or _dataset_name(data_dir)
    fit, val = time_split(data.train, val_fraction)
    censoring = {k: data.meta["config"][k] for k in ("c1", "c2") if k in data.meta.get("config", {})}
    # refuse a bad fixed setting before any work
    TrainConfig(**fixed_train)
    registry.build("jump", 2, {**censoring, **fixed_model})
    dev = resolve_device(device)
    log(
        f"jump tune {name}: {trials} trial(s) of at most {time_budget_s} s on {dev}; training split "
        f"{len(data.train):,} sessions -> fit {len(fit):,} sessions / {fit.n_clicks:,} clicks, validation "
        f"(newest {val_fraction:g} by session start) {len(val):,} sessions / {val.n_clicks:,} clicks; "
        f"searching {', '.join(search) or 'nothing'}" + (f"; fixed {fixed}" if fixed else "")
    )

    def objective(trial) -> float:
        params = {p: suggest(trial, p) for p in search}
        train_p, model_p = split_overrides(params)
        cfg = TrainConfig(
            **{**fixed_train, **train_p, "seed": seed, "time_budget_s": time_budget_s, "device": device},
            model={**censoring, **fixed_model, **model_p},
        )
        seed_everything(seed)
        model = registry.build("jump", data.n_items, cfg.model).to(dev)
        t0 = time.time()

        def on_epoch(rec: dict) -> None:
            trial.set_user_attr("epochs", rec["epoch"])
            trial.set_user_attr("seconds", round(time.time() - t0, 1))
            if rec["val_recall@20"] is not None:
                trial.report(rec["val_recall@20"], rec["epoch"])
                if trial.should_prune():
                    log(f"trial {trial.number}: pruned after epoch {rec['epoch']}")
                    raise optuna.TrialPruned()

        log(f"trial {trial.number}: {params}")
        try:
            summary = fit_model(
                model, fit, val, cfg, progress, log, f"trial {trial.number}", "val_recall", "live", on_epoch=on_epoch
            )
        except ValueError as e:  # diverged (NaN scores): this trial fails, the study goes on
            log(f"trial {trial.number}: failed: {e}")
            raise
        r = evaluate(model, val, "live", K)
        trial.set_user_attr("seconds", round(time.time() - t0, 1))
        trial.set_user_attr("best_epoch", summary["best_epoch"])
        trial.set_user_attr("budget_reached", not summary["history"][-1]["complete"])
        for m in (f"recall@{K}", f"mrr@{K}", "dwell_mae_s"):
            trial.set_user_attr(m, r[m])
        log(
            f"trial {trial.number}: validation live Recall@20 {r[f'recall@{K}']:.4f}  MRR@20 {r[f'mrr@{K}']:.4f}  "
            f"dwell MAE {r['dwell_mae_s']:.1f} s  (best epoch {summary['best_epoch']}, {time.time() - t0:.0f} s)"
        )
        return r[f"recall@{K}"]

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # multivariate TPE (optuna's default for one objective); weight_decay, present only when switched on,
    # is sampled on its own (optuna's note on that is silenced with its other warnings: failures are logged here)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)))
    if prune_warmup is not None and prune_warmup < 0:
        raise ValueError(f"--prune-warmup must be >= 0 epochs, not {prune_warmup}")
    pruner = (
        optuna.pruners.NopPruner()
        if prune_warmup is None
        # steps are epochs (1, 2, ...); optuna's earliest pruning step is n_warmup_steps
        else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_warmup + 1)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    wd_on = "weight_decay" in search
    study.enqueue_trial({k: v for k, v in defaults().items() if k in search or (wd_on and k == "weight_decay_on")})
    t_start = time.time()

    # a diverging trial (NaN scores: ValueError) fails alone; the study goes on
    def save_progress(study, _trial) -> None:  # every finished trial is on disk, should the run be cut short
        if study_json:
            Path(study_json).parent.mkdir(parents=True, exist_ok=True)
            partial = {"dataset": name, "command": command, "partial": True}
            Path(study_json).write_text(json.dumps({**partial, "trials": [_trial_json(t) for t in study.trials]}))

    study.optimize(objective, n_trials=trials, timeout=study_budget_s, catch=(ValueError,), callbacks=[save_progress])
    seconds = round(time.time() - t_start, 1)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError("no trial completed (every one failed or was pruned); see the log above")
    best = max(complete, key=lambda t: t.value)
    best_train, best_model = split_overrides(
        {k: v for k, v in _trial_values(best).items() if k in SEARCH_SPACE and k in search}
    )
    train_cfg = asdict(TrainConfig(**{**fixed_train, **best_train, "seed": seed}))
    train_cfg.pop("model")
    model_cfg = {
        k: v
        for k, v in JumpConfig(n_items=2, **{**censoring, **fixed_model, **best_model}).to_dict().items()
        if k in MODEL_FIELDS
    }
    table = trial_table(study, search)
    doc = {
        "dataset": name,
        "command": command,
        "data": {
            "path": str(data_dir) if data_dir else None,
            "fingerprint": data.fingerprint,
            "train_sessions": len(data.train),
            "train_clicks": data.train.n_clicks,
        },
        "train": train_cfg,
        "model": model_cfg,
        "validation": {
            "split": f"the newest {val_fraction:g} of the training split's sessions by start time",
            "protocol": "live",
            "fit_sessions": len(fit),
            "fit_clicks": fit.n_clicks,
            "sessions": len(val),
            "clicks": val.n_clicks,
            "best_trial": best.number,
            f"recall@{K}": _sig(best.user_attrs[f"recall@{K}"]),
            f"mrr@{K}": _sig(best.user_attrs[f"mrr@{K}"]),
            "dwell_mae_s": _sig(best.user_attrs["dwell_mae_s"]),
            "best_epoch": best.user_attrs.get("best_epoch"),
            "defaults_trial_recall@20": _sig(table[0][f"recall@{K}"]) if table else None,
        },
        "study": {
            "sampler": f"TPE (seed {seed}, {sampler._n_startup_trials} random start-up trials)",
            "pruner": "none"
            if prune_warmup is None
            else f"MedianPruner on per-epoch validation Recall@20 (from epoch {prune_warmup + 1}, after 2 "
            "start-up trials)",
            "trial_time_budget_s": time_budget_s,
            "study_budget_s": study_budget_s,
            "seconds": seconds,
            "trials": len(study.trials),
            "complete": len(complete),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
            "search_space": {k: SEARCH_SPACE[k][1] for k in search},
            "fixed": fixed,
            "importance": importances(study) if len(complete) >= 4 else None,
            "table": table,
        },
    }
    log("\n" + markdown_trials(table, search))
    log(
        f"\nbest: trial {best.number}, validation live Recall@20 {best.value:.4f} "
        f"(defaults, trial 0: {doc['validation']['defaults_trial_recall@20']})"
    )
    if out:
        write_config(doc, out)
        log(f"wrote {out}")
    if study_json:
        Path(study_json).parent.mkdir(parents=True, exist_ok=True)
        Path(study_json).write_text(json.dumps({**doc, "trials": [_trial_json(t) for t in study.trials]}, indent=2))
        log(f"wrote {study_json}")
    return doc


def _dataset_name(data_dir: Path | None) -> str:
    if data_dir is None:
        return "dataset"
    p = data_dir.resolve()
    return p.parent.name if p.name == "data" else p.name


def _trial_values(t) -> dict:
    """A trial's searched values as `jump train` takes them (weight_decay 0 when switched off)."""
    v = dict(t.params)
    if "weight_decay_on" in v:
        v["weight_decay"] = v.pop("weight_decay", 0.0) if v.pop("weight_decay_on") else 0.0
    return v


def trial_table(study, search) -> list[dict]:
    rows = []
    for t in study.trials:
        v = _trial_values(t)
        a = t.user_attrs
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                **{k: _sig(v.get(k)) for k in search},
                "epochs": a.get("epochs"),
                "best_epoch": a.get("best_epoch"),
                "seconds": a.get("seconds"),
                f"recall@{K}": _sig(a.get(f"recall@{K}")),
                f"mrr@{K}": _sig(a.get(f"mrr@{K}")),
                "dwell_mae_s": _sig(a.get("dwell_mae_s"), 3),
                # a pruned trial's last reported validation Recall@20
                "last_val_recall@20": _sig(t.intermediate_values[max(t.intermediate_values)])
                if t.intermediate_values
                else None,
            }
        )
    return rows


def markdown_trials(table: list[dict], search) -> str:
    cols = ["trial", "state", *search, "epochs", "best_epoch", "seconds", f"recall@{K}", f"mrr@{K}", "dwell_mae_s"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = []
    for r in table:
        cells = []
        for c in cols:
            x = r.get(c)
            if c == f"recall@{K}" and x is None and r.get("last_val_recall@20") is not None:
                x = f"({r['last_val_recall@20']})"  # pruned: its last per-epoch value
            cells.append("–" if x is None else str(x))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def importances(study) -> dict | None:
    """PED-ANOVA importance (optuna's, no scikit-learn needed) of each parameter present in every complete
    trial, for the validation Recall@20. Rough with tens of trials; None where it cannot be computed."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted(set.intersection(*(set(t.params) for t in complete))) if complete else []
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), params=params
        )
    except Exception:  # optional figure: never lose a finished study to it
        return None
    return {k: round(float(v), 3) for k, v in imp.items()}


def _trial_json(t) -> dict:
    return {
        "number": t.number,
        "state": t.state.name,
        "params": t.params,
        "value": t.value,
        "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
        "user_attrs": t.user_attrs,
        "start": t.datetime_start.isoformat() if t.datetime_start else None,
        "complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
    }


def write_config(doc: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (
        f"# jump train's configuration for {doc['dataset']}, chosen by `jump tune` (jump_core/training/tune.py).\n"
        "# `jump train --data DIR --out CKPT --config THIS_FILE` reads the `train` and `model` sections\n"
        "# (explicit flags still win); the rest records how they were chosen.\n"
    )
    study = dict(doc.get("study") or {})
    table = study.pop("table", [])
    body = yaml.safe_dump({k: v for k, v in doc.items() if k != "study"}, sort_keys=False, width=10_000)
    if "study" in doc:
        body += yaml.safe_dump({"study": study}, sort_keys=False, width=120)
        rows = [yaml.safe_dump(r, sort_keys=False, default_flow_style=True, width=10_000).strip() for r in table]
        body += "  table:\n" + "".join(f"  - {r}\n" for r in rows) if rows else "  table: []\n"
    path.write_text(head + body)


def load_config_file(path: str | Path) -> tuple[dict, dict]:
    """(TrainConfig fields, JumpConfig fields) of a configuration file written by `jump tune` (or by hand:
    a YAML mapping with `train` and/or `model` mappings). Anything else is a ValueError naming the file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not ({"train", "model"} & set(doc)):
        raise ValueError(f"{path}: not a jump configuration (a mapping with 'train' and/or 'model' sections)")
    out = []
    for section, allowed in (("train", TRAIN_FIELDS), ("model", MODEL_FIELDS)):
        values = doc.get(section) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: '{section}' must be a mapping")
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"{path}: unknown {section} parameter(s) {', '.join(unknown)}")
        out.append(dict(values))
    return out[0], out[1]
