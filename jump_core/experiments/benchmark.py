"""`jump benchmark`: every model trained and evaluated the same way, tables 2-3 and figs. 5-7 of the paper.

One prepared dataset, one 90/10 split of its training sessions (fit / validation), one evaluation
function (evaluate.py: full catalogue, pessimistic ties), one tuning budget for every model (the
config file's `budget`: trials x epochs x wall time), and the test split touched once per model
after selection. Outputs: a JSON file (per model: recall@20, mrr@20, ndcg@20, dwell_mae_s, wall
times, the chosen parameters, every trial and the training history), a Markdown report shaped
like the paper's Tables 2 and 3, and PNG figures.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .. import registry
from ..contract import SessionModel
from ..data.dataset import PreparedDataset, SessionSet, load_prepared
from ..registry import ALIASES, ALL_MODELS, expand_models
from ..training.evaluate import evaluate
from ..training.train import TrainConfig, fit_model, resolve_device, seed_everything, split_validation
from .report import fmt_number

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "benchmark" / "default.yaml"


K = 20


def load_config(path: str | Path | None = None) -> dict:
    path = Path(path) if path else DEFAULT_CONFIG
    cfg = yaml.safe_load(path.read_text())
    for key in ("budget", "models"):
        if key not in cfg:
            raise ValueError(f"{path}: benchmark config without a '{key}' section")
    cfg["_path"] = str(path)
    return cfg


def model_config(cfg: dict, name: str) -> dict:
    if name not in cfg["models"]:
        raise ValueError(f"{cfg['_path']}: no entry for model {name!r}")
    entry = cfg["models"][name] or {}
    return {
        "params": dict(entry.get("params") or {}),
        "train": dict(entry.get("train") or {}),
        "search": dict(entry.get("search") or {}),
    }


# search keys that go to TrainConfig
TRAIN_KEYS = ("lr", "batch_size", "weight_decay", "clip", "max_len", "lr_schedule")


def _key(k: str) -> str:
    return f"train.{k}" if k in TRAIN_KEYS else k


def trial_params(entry: dict, trials: int, seed: int) -> list[dict]:
    """Trial 0 = the defaults; then distinct seeded random draws from the search grid (fewer if the grid is small).

    A trial is one flat dict: model parameters as they are, training parameters as `train.<name>`.
    """
    base = {**entry["params"], **{f"train.{k}": v for k, v in entry["train"].items()}}
    grid = entry["search"]
    out = [base]
    keys = sorted(grid)
    seen = {tuple(json.dumps(base.get(_key(k))) for k in keys)}
    size = int(np.prod([len(grid[k]) for k in keys])) if keys else 0
    rng = random.Random(seed)
    attempts = 0
    while len(out) < trials and keys and attempts < 10_000:
        attempts += 1
        draw = {k: rng.choice(grid[k]) for k in keys}
        sig = tuple(json.dumps(draw[k]) for k in keys)
        if sig in seen:
            if len(seen) > size:  # every grid point (and the defaults) tried
                break
            continue
        seen.add(sig)
        out.append({**base, **{_key(k): v for k, v in draw.items()}})
    return out


def split_params(p: dict) -> tuple[dict, dict]:
    model = {k: v for k, v in p.items() if not k.startswith("train.")}
    train = {k[len("train.") :]: v for k, v in p.items() if k.startswith("train.")}
    return model, train


def _selection_score(model: SessionModel, result: dict) -> float:
    """Higher is better: validation Recall@20 (live) for click models, -MAE for dwell-only models."""
    if model.ranks_clicks:
        return result[f"recall@{K}"] or 0.0
    return -(result["dwell_mae_s"] if result["dwell_mae_s"] is not None else float("inf"))


def fit_one(
    name: str,
    params: dict,
    data: PreparedDataset,
    tr: SessionSet,
    val: SessionSet,
    budget: dict,
    seed: int,
    device,
    progress: bool,
    log,
) -> tuple[SessionModel, dict]:
    """Build and fit one configuration; returns (model, record with history and wall time)."""
    model_params, train_params = split_params(params)
    seed_everything(seed)
    model = registry.build(name, data.n_items, model_params, data.meta.get("config", {}))
    t0 = time.time()
    record: dict = {"params": params}
    if model.trainable:
        model.to(device)
        cfg = TrainConfig(
            epochs=int(budget["epochs"]),
            patience=int(budget.get("patience", 2)),
            seed=seed,
            time_budget_s=budget.get("time_budget_s"),
            # the budget's, not `jump train`'s defaults: the same for every model unless its entry says
            **{"lr": 1e-3, "lr_schedule": budget.get("lr_schedule", "none"), **train_params},
        )
        summary = fit_model(
            model,
            tr,
            val,
            cfg,
            progress=progress,
            log=log,
            name=name,
            select="val_recall" if model.ranks_clicks else "val_loss",
            protocol="live",
        )
        record.update(history=summary["history"], best_epoch=summary["best_epoch"])
    else:
        if train_params:
            raise ValueError(f"model {name!r} is not trained by gradient descent: train.* parameters are meaningless")
        model.fit(tr)
    record["train_seconds"] = round(time.time() - t0, 2)
    return model, record


def run_model(
    name: str,
    data: PreparedDataset,
    tr: SessionSet,
    val: SessionSet,
    test: SessionSet,
    cfg: dict,
    seed: int,
    device,
    progress: bool,
    log,
    params_override: dict | None = None,
    budget_override: dict | None = None,
    protocols: tuple[str, ...] | None = None,
) -> dict:
    """Tune (the budget's trials), select on validation, evaluate the selected model on `test`."""
    spec = registry.spec(name)
    budget = {**cfg["budget"], **(budget_override or {})}
    entry = model_config(cfg, name)
    trials = trial_params(entry, int(budget["trials"]), seed) if params_override is None else [params_override]
    best, records = None, []
    t_start = time.time()
    for t, params in enumerate(trials):
        log(f"[{name}] trial {t + 1}/{len(trials)}: {params}")
        model, rec = fit_one(name, params, data, tr, val, budget, seed + t, device, progress, log)
        v = evaluate(model, val, "live", K) if len(val) else None
        rec["val"] = _small(v)
        rec["val_score"] = _selection_score(model, v) if v else 0.0
        records.append(rec)
        log(
            f"[{name}] trial {t + 1}: validation Recall@20 {fmt_number(v and v[f'recall@{K}'])}, "
            f"dwell MAE {fmt_number(v and v['dwell_mae_s'])} s, trained in {rec['train_seconds']:.1f} s"
        )
        if best is None or rec["val_score"] > best[1]["val_score"]:
            best = (model, rec)
    tune_seconds = round(time.time() - t_start, 2)
    model, rec = best
    protocols = protocols or (("paper", "live") if model.dwell_aware else ("live",))
    results = {}
    for protocol in protocols:
        t0 = time.time()
        r = evaluate(model, test, protocol, K)
        r["eval_wall_seconds"] = round(time.time() - t0, 2)
        results[protocol] = r
    if not model.dwell_aware:
        results.setdefault("paper", results["live"])  # dwell-blind: identical under both protocols
    live = results["live"]
    out = {
        "label": spec.label,
        "clicks": model.ranks_clicks,
        "dwell": model.predicts_dwell,
        "dwell_aware": model.dwell_aware,
        f"recall@{K}": live[f"recall@{K}"],
        f"mrr@{K}": live[f"mrr@{K}"],
        f"ndcg@{K}": live[f"ndcg@{K}"],
        "dwell_mae_s": live["dwell_mae_s"] if model.predicts_dwell else None,
        "train_seconds": rec["train_seconds"],
        "tune_seconds": tune_seconds,
        "eval_seconds": round(sum(r["eval_wall_seconds"] for p, r in results.items() if p in protocols), 2),
        "params": rec["params"],
        "best_epoch": rec.get("best_epoch"),
        "history": rec.get("history"),
        "protocols": results,
        "trials": records,
    }
    log(
        f"[{name}] test (live): Recall@20 {fmt_number(out[f'recall@{K}'])}  MRR@20 {fmt_number(out[f'mrr@{K}'])}  "
        f"dwell MAE {fmt_number(out['dwell_mae_s'])} s  "
        f"(train {out['train_seconds']:.1f} s, eval {out['eval_seconds']:.1f} s)"
    )
    return out


def _small(r: dict | None) -> dict | None:
    if r is None:
        return None
    return {k: r[k] for k in (f"recall@{K}", f"mrr@{K}", "dwell_mae_s", "n_predictions")}


def hardware() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def benchmark(
    data_dir: str,
    models: list[str],
    out_json: str,
    config: str | None = None,
    report_dir: str | None = None,
    seed: int = 0,
    device: str = "auto",
    trials: int | None = None,
    ablations: bool = False,
    sweeps: tuple[str, ...] = (),
    max_test_sessions: int | None = None,
    time_budget_s: float | None = None,
    epochs: int | None = None,
    patience: int | None = None,
    progress: bool = True,
    command: str | None = None,
    threads: int | None = None,
    log=print,
) -> dict:
    """Run the benchmark; writes `out_json`, a Markdown report and figures. Returns the JSON dict."""
    from . import report as rep

    models = expand_models(models)
    unknown = [m for m in models if m not in registry.MODELS]
    if unknown:
        raise ValueError(
            f"unknown model(s) {', '.join(unknown)} (known: {', '.join(ALL_MODELS)}; "
            f"shorthands: all, {', '.join(ALIASES)})"
        )
    if ("dim" in sweeps or "sigma" in sweeps or ablations) and "jump" not in models:
        raise ValueError("--sweeps and --ablations need 'jump' in --models")
    cfg = load_config(config)
    if threads:
        torch.set_num_threads(threads)
    for key, value in (
        ("trials", trials),
        ("time_budget_s", time_budget_s),
        ("epochs", epochs),
        ("patience", patience),
    ):
        if value is not None:
            cfg["budget"][key] = value
    t_start = time.time()
    data = load_prepared(data_dir)
    dev = resolve_device(device)
    tr, val = split_validation(data.train, float(cfg["budget"].get("val_fraction", 0.1)), seed)
    test = data.test
    if max_test_sessions is not None and len(test) > max_test_sessions:
        pick = np.sort(np.random.default_rng(seed).choice(len(test), max_test_sessions, replace=False))
        test = test.subset(pick)
    log(
        f"benchmark on {data_dir}: {data.n_items - 1:,} items; fit {len(tr):,} / validation {len(val):,} / "
        f"test {len(test):,} sessions ({test.n_clicks:,} clicks); device {dev}; models {', '.join(models)}; "
        f"budget {cfg['budget']}"
    )
    result = {
        "data": str(data_dir),
        "dataset": data.meta.get("table1", {}),
        "fingerprint": data.fingerprint,
        "config_file": cfg["_path"],
        "budget": cfg["budget"],
        "seed": seed,
        "k": K,
        "hardware": hardware(),
        "device": str(dev),
        "command": command,
        "test_sessions": len(test),
        "test_sessions_total": len(data.test),
        "models": {},
    }
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # every run of this benchmark fits and scores on the same splits, config, seed and device
    run = functools.partial(
        run_model, data=data, tr=tr, val=val, test=test, cfg=cfg, seed=seed, device=dev, progress=progress, log=log
    )
    for name in models:
        result["models"][name] = run(name)
        partial.write_text(json.dumps(result, indent=2, default=str))  # a long run keeps what it measured
    jump_params = result["models"].get("jump", {}).get("params")
    if ablations:
        result["ablations"] = {}
        for abl, override in (cfg.get("ablations") or {}).items():
            log(f"[ablation] {abl}: {override}")
            r = run(
                "jump",
                params_override={**jump_params, **override},
                protocols=("paper", "live"),
            )
            r["label"] = f"JUMP, {abl} (" + ", ".join(f"{k}={v}" for k, v in override.items()) + ")"
            r["override"] = override
            result["ablations"][abl] = r
    sw = cfg.get("sweeps") or {}
    sweep_budget = {"time_budget_s": sw.get("time_budget_s", cfg["budget"]["time_budget_s"])}
    if "sigma" in sweeps:
        result["sweep_sigma"] = []
        for inv in sw.get("inv_sigma2", []):
            sigma = float(inv) ** -0.5
            log(f"[sweep] 1/sigma^2 = {inv:g} (sigma = {sigma:.4g})")
            r = run(
                "jump",
                params_override={
                    **jump_params,
                    "sigma": sigma,
                    "sigma_mode": "fixed",
                },  # Fig. 5: the paper's fixed sigma
                budget_override=sweep_budget,
                protocols=("paper", "live"),
            )
            result["sweep_sigma"].append({"inv_sigma2": float(inv), "sigma": sigma, **_sweep_point(r)})
    if "dim" in sweeps:
        result["sweep_dim"] = {}
        for name in sw.get("dim_models", ["jump"]):
            base = (
                result["models"][name]["params"]
                if name in result["models"]
                else {
                    **model_config(cfg, name)["params"],
                    **{f"train.{k}": v for k, v in model_config(cfg, name)["train"].items()},
                }
            )
            points = []
            for d in sw.get("dims", []):
                log(f"[sweep] {name} dim = {d}")
                r = run(
                    name,
                    params_override={**base, "dim": int(d)},
                    budget_override=sweep_budget,
                )
                points.append({"dim": int(d), **_sweep_point(r)})
            result["sweep_dim"][name] = points
    result["seconds"] = round(time.time() - t_start, 1)
    rdir = Path(report_dir) if report_dir else out.parent
    rdir.mkdir(parents=True, exist_ok=True)
    result["figures"] = rep.benchmark_figures(result, rdir, out.stem)
    md = rdir / f"{out.stem}.md"
    md.write_text(rep.benchmark_markdown(result))
    result["markdown"] = str(md)
    out.write_text(json.dumps(result, indent=2, default=str))
    partial.unlink(missing_ok=True)
    log(f"benchmark done in {result['seconds']:.0f} s: wrote {out}, {md} and {len(result['figures'])} figures")
    return result


def _sweep_point(r: dict) -> dict:
    return {
        f"recall@{K}": r[f"recall@{K}"],
        f"mrr@{K}": r[f"mrr@{K}"],
        "dwell_mae_s": r["dwell_mae_s"],
        "paper_recall@20": r["protocols"]["paper"][f"recall@{K}"],
        "train_seconds": r["train_seconds"],
        "best_epoch": r["best_epoch"],
    }
