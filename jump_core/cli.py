"""The `jump` command's offline sub-commands: synth, prepare, train, tune, evaluate, report, benchmark,
benchmark-summary, benchmark-render and bench train. pipeline/cli.py adds the stream's (workers,
broker, topics, replay, tail, models, demo-stream, bench stream) to this parser."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from . import __version__


def _add_synth(sub):
    p = sub.add_parser(
        "synth",
        help="write a realistic synthetic clickstream CSV",
        description="Seeded synthetic clicks: session_id,user_id,item_id,timestamp (Unix s).",
    )
    p.add_argument("--clicks", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--items", type=int, default=None, help="catalogue size (default: SynthConfig's)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_synth)


def cmd_synth(a) -> int:
    from .data.synth import SynthConfig, write_csv

    kw = {"clicks": a.clicks, "seed": a.seed}
    if a.items:
        kw["n_items"] = a.items
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    stats = write_csv(SynthConfig(**kw), a.out, progress=True)
    print(json.dumps(stats, indent=2))
    return 0


def _add_prepare(sub):
    from .data.readers import FORMATS
    from .sessions import C1_DEFAULT, C2_DEFAULT

    p = sub.add_parser(
        "prepare",
        help="sessionize, censor (eq. 4), filter and split raw clicks",
        description="Read raw clicks, build sessions and censored dwell tuples, filter (the paper's filter with "
        "--min-item-count 3), split, and write a prepared dataset; prints the paper's Table 1.",
    )
    p.add_argument("inputs", nargs="+", help="input file(s) (.gz read transparently)")
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="output directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--split",
        choices=("random", "temporal"),
        default="random",
        help="random 80/20 by session (the paper's) or temporal (last --test-days days)",
    )
    g.add_argument("--test", nargs="+", metavar="FILE", help="a given test file (same format); disables --split")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--test-days", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--min-item-count",
        type=int,
        default=1,
        help="drop clicks on items seen fewer than this many times (default 1: keep the long tail, as served; "
        "the paper's filter, §5.1: 3)",
    )
    p.add_argument("--min-session-len", type=int, default=2)
    p.add_argument("--c1", type=float, default=C1_DEFAULT, help="censoring threshold (s), eq. 4")
    p.add_argument("--c2", type=float, default=C2_DEFAULT, help="dwell of a session's last click (s), eq. 4")
    p.add_argument(
        "--gap",
        type=float,
        default=None,
        help="inactivity gap (s) splitting a key's clicks into sessions (default: the format's)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed rows instead of failing")
    add_csv_options(p)
    p.set_defaults(func=cmd_prepare)


def add_csv_options(p) -> None:
    """The `csv` reader's options (jump prepare, jump replay)."""
    c = p.add_argument_group("csv format options")
    c.add_argument("--delimiter", default=None)
    c.add_argument("--session-col")
    c.add_argument("--user-col")
    c.add_argument("--item-col")
    c.add_argument("--time-col")
    c.add_argument("--time-unit", choices=("s", "ms", "us", "iso"))
    c.add_argument("--no-header", action="store_true")


def reader_options_from_args(a) -> dict:
    """The reader options given by `add_csv_options` arguments (and --skip-bad where present)."""
    opts: dict = {}
    if a.fmt == "csv":
        for name in ("delimiter", "session_col", "user_col", "item_col", "time_col", "time_unit"):
            if getattr(a, name) is not None:
                opts[name] = getattr(a, name)
        if a.no_header:
            opts["header"] = False
            for name in ("session_col", "user_col", "item_col", "time_col"):
                if name in opts:
                    try:
                        opts[name] = int(opts[name])
                    except ValueError:
                        raise ValueError(
                            f"--{name.replace('_', '-')} must be a 0-based column index with --no-header"
                        ) from None
    if getattr(a, "skip_bad", False):
        opts["skip_bad"] = True
    return opts


def cmd_prepare(a) -> int:
    from .data.prepare import PrepareConfig, prepare

    opts = reader_options_from_args(a)
    opts.pop("skip_bad", None)  # a PrepareConfig field, not a reader option
    cfg = PrepareConfig(
        fmt=a.fmt,
        inputs=a.inputs,
        out=a.out,
        split="given" if a.test else a.split,
        test_inputs=a.test,
        test_fraction=a.test_fraction,
        test_days=a.test_days,
        seed=a.seed,
        min_item_count=a.min_item_count,
        min_session_len=a.min_session_len,
        c1=a.c1,
        c2=a.c2,
        gap=a.gap,
        use_default_gap=a.gap is None,
        skip_bad=a.skip_bad,
        reader_options=opts,
    )
    prepare(cfg)
    return 0


def _add_train(sub):
    from dataclasses import MISSING, fields

    from .model import DWELL_POINTS, LAST_CLICK_DWELL, OBJECTIVES, SIGMA_MODES, JumpConfig
    from .training.train import LR_SCHEDULES, TrainConfig

    p = sub.add_parser(
        "train",
        help="train JUMP on a prepared dataset",
        description="Maximise the joint log-likelihood (eq. 17-18) with Adam, the next-click term taken from "
        "the live representation the stream serves; early stopping on validation live Recall@20; writes "
        "the best checkpoint. Defaults: TrainConfig and JumpConfig (shown below); --paper for the paper's.",
    )
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--out", required=True, help="checkpoint path")
    p.add_argument(
        "--paper",
        action="store_true",
        help="the paper's settings (sigma 10 fixed, paper objective, median dwell, Adam 1e-3, 10 epochs, "
        "selection by likelihood); explicit flags still override them",
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        default=None,
        help="a configuration file (`jump tune`'s, e.g. configs/jump/rsc15.yaml): its train and model "
        "sections replace the defaults (and --paper's); explicit flags still override them",
    )
    # every default is the dataclasses' own (one place); an option given on the command line overrides it
    tc = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    mc = {f.name: f.default for f in fields(JumpConfig) if f.default is not MISSING}
    train_opts = (
        ("epochs", int, "epoch cap"),
        ("batch_size", int, None),
        ("lr", float, "Adam learning rate"),
        ("lr_schedule", LR_SCHEDULES, "plateau: halve the rate after an epoch without validation improvement"),
        ("weight_decay", float, "Adam weight decay"),
        ("patience", int, "epochs without validation improvement before stopping"),
        ("select", ("val_recall", "val_loss"), "the best epoch by validation Recall@20 or loss"),
        ("protocol", ("live", "paper"), "protocol of the validation Recall@20"),
        ("val_fraction", float, None),
        ("seed", int, None),
        ("device", str, "auto (CUDA if available), cpu, cuda, cuda:N"),
        ("max_len", int, "training window length for long sessions"),
        ("time_budget_s", float, "stop training after this many seconds"),
    )
    model_opts = (
        ("dim", int, "d: item, time and hidden size"),
        ("z", float, "fast-step scale (s): ceil(tau/z) fast cells per click"),
        ("max_fast_steps", int, None),
        ("objective", OBJECTIVES, "next-click term: from the live representation (as served), the paper's, both"),
        ("sigma_mode", SIGMA_MODES, "log-dwell sigma of eq. 10: fixed (the paper) or learned"),
        ("sigma", float, "sigma's value (fixed) or starting value (learned)"),
        ("dwell_point", DWELL_POINTS, "dwell point estimate"),
        ("dwell_calibration", bool, "scale the dwell point for absolute error on the validation split"),
        (
            "dwell_item_blend",
            bool,
            "blend the dwell point with the item's training median (weight fitted on validation)",
        ),
        ("last_click_dwell", LAST_CLICK_DWELL, "dwell term of a session's last click: eq. 4's (c2, censored) or none"),
        ("dropout", float, "dropout on embeddings and features (training only)"),
        ("time_buckets", ("second", "log"), "rows of the time embedding"),
    )
    for group, opts, defaults in (("train", train_opts, tc), ("model", model_opts, mc)):
        g = p.add_argument_group(group)
        for name, kind, text in opts:
            flag = "--time-budget" if name == "time_budget_s" else "--" + name.replace("_", "-")
            if isinstance(kind, tuple):
                kw = {"choices": kind}
            elif kind is bool:
                kw = {"type": _flag_value, "metavar": "true|false"}
            else:
                kw = {"type": kind, "metavar": name.upper()}
            text = f"{text or name.replace('_', ' ')} (default {defaults[name]})"
            g.add_argument(flag, dest=f"{group}.{name}", default=None, help=text, **kw)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's, one per core; on a loaded machine 1 can be much faster)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def _flag_value(text: str) -> bool:
    """A boolean option's value: true/false (also 1/0, yes/no, on/off)."""
    value = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return value[text.lower()]


def train_config_from_args(a, c1: float, c2: float):
    """TrainConfig from `jump train`'s options: the defaults, or --paper's, then --config's file, then
    the options given."""
    from .model import PAPER_SETTINGS
    from .training.train import PAPER_TRAIN, TrainConfig
    from .training.tune import load_config_file

    given = {k: v for k, v in vars(a).items() if "." in k and v is not None}
    file_train, file_model = load_config_file(a.config) if getattr(a, "config", None) else ({}, {})
    train = {**(PAPER_TRAIN if a.paper else {}), **file_train}
    model = {**(PAPER_SETTINGS if a.paper else {}), **file_model, "c1": c1, "c2": c2}
    for key, value in given.items():
        group, name = key.split(".", 1)
        (train if group == "train" else model)[name] = value
    return TrainConfig(**train, model=model)


def cmd_train(a) -> int:
    from .data.dataset import load_prepared
    from .training.train import train

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    data = load_prepared(a.data)
    params = data.meta["config"]
    try:
        cfg = train_config_from_args(a, params["c1"], params["c2"])
        from . import registry

        registry.build("jump", 2, cfg.model)  # refuses a bad model setting before any work
    except (TypeError, ValueError) as e:
        print(f"jump train: {e}", file=sys.stderr)
        return 2
    if getattr(a, "config", None):
        print(f"configuration from {a.config} (explicit flags win): {cfg}")
    train(data, a.out, cfg, progress=not a.no_progress)
    return 0


def _add_tune(sub):
    from .training.tune import SEARCH_SPACE

    space = "; ".join(f"{k}: {v[1]}" for k, v in SEARCH_SPACE.items())
    p = sub.add_parser(
        "tune",
        help="search jump train's hyper-parameters (Optuna TPE) and write them as a config file",
        description="Hyper-parameter search for `jump train` on the prepared dataset's training split only "
        "(the test split is never read): the newest --val-fraction of its sessions by start time is the "
        "validation part; each trial is a `jump train` run (early stopping, plateau schedule) capped at "
        "--time-budget seconds; the objective is validation Recall@20 under the live protocol. Writes the "
        f"best configuration as YAML for `jump train --config`. Search space: {space}.",
    )
    p.add_argument("--data", required=True, help="prepared dataset directory (only train.npz is read)")
    p.add_argument("--trials", type=int, required=True, help="number of trials (trial 0: the current defaults)")
    p.add_argument("--time-budget", type=float, required=True, metavar="S", help="training seconds per trial")
    p.add_argument("--study-budget", type=float, default=None, metavar="S", help="stop starting trials after S s")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler's and every trial's training seed")
    pr = p.add_mutually_exclusive_group()
    pr.add_argument(
        "--prune-warmup",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="the median pruner leaves every trial's first EPOCHS epochs alone (default 0; a small validation "
        "part's first epochs are noise: use 2-3 there)",
    )
    pr.add_argument("--no-prune", action="store_true", help="train every trial to its end")
    p.add_argument("--val-fraction", type=float, default=0.2, help="newest sessions held out (default 0.2)")
    p.add_argument(
        "--search",
        default=None,
        help=f"comma-separated parameters to search (default: all of {','.join(SEARCH_SPACE)})",
    )
    p.add_argument(
        "--set",
        dest="fixed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hold a TrainConfig or JumpConfig field at VALUE (not searched), e.g. --set dim=64; repeatable",
    )
    p.add_argument("--out", default=None, help="config YAML (default: configs/jump/<dataset>.yaml)")
    p.add_argument("--name", default=None, help="dataset name (default: the data directory's, or its parent's)")
    p.add_argument("--study-json", default=None, help="also write every trial (params, per-epoch values) as JSON")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_tune)


def cmd_tune(a) -> int:
    import yaml

    from .training.tune import _dataset_name, tune

    fixed = {}
    for item in a.fixed:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"jump tune: --set wants NAME=VALUE, not {item!r}", file=sys.stderr)
            return 2
        value = yaml.safe_load(value)
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
            value = float(value)  # YAML 1.1 reads 1e-05 (no dot) as a string
        fixed[key.strip().replace("-", "_")] = value
    search = tuple(s.strip() for s in a.search.split(",") if s.strip()) if a.search is not None else None
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    name = a.name or _dataset_name(Path(a.data))
    out = a.out or f"configs/jump/{name}.yaml"
    try:
        tune(
            a.data,
            a.trials,
            a.time_budget,
            seed=a.seed,
            val_fraction=a.val_fraction,
            search=search,
            fixed=fixed,
            study_budget_s=a.study_budget,
            prune_warmup=None if a.no_prune else a.prune_warmup,
            device=a.device,
            out=out,
            study_json=a.study_json,
            name=name,
            command="jump " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("jump") else None,
            progress=not a.no_progress,
        )
    except (TypeError, ValueError, FileNotFoundError) as e:
        print(f"jump tune: {e}", file=sys.stderr)
        return 2
    return 0


def _add_evaluate(sub):
    p = sub.add_parser(
        "evaluate",
        help="Recall/MRR/NDCG@20 over the full catalogue, dwell MAE, by length",
        description="Evaluate a checkpoint on a prepared dataset's test split.",
    )
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="checkpoint path")
    p.add_argument(
        "--protocol",
        choices=("paper", "live", "elapsed"),
        default="paper",
        help="paper: every context dwell known; live: the latest click's dwell unknown (the stream's view); "
        "elapsed: a refresh E s after the latest click, its dwell censored at E, scored on positions whose "
        "next click came more than E s later, next to live on the same positions (see --elapsed)",
    )
    p.add_argument(
        "--elapsed",
        default="0,5,15,30,60,120",
        help="comma-separated E (s) of --protocol elapsed (default 0,5,15,30,60,120)",
    )
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--report-dir", default=None, help="Markdown and PNG output directory (default: next to --json)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--baselines", default="pop", help="comma-separated baselines to report alongside ('' for none)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a) -> int:
    from tqdm import tqdm

    from . import registry
    from .artifacts.checkpoint import load_checkpoint
    from .data.dataset import load_prepared
    from .experiments.report import markdown_table, plot_dwell_histograms, plot_recall_by_length
    from .training.evaluate import evaluate
    from .training.train import resolve_device

    if a.protocol == "elapsed":
        try:
            seconds = [float(e) for e in a.elapsed.split(",") if e.strip()]
        except ValueError:
            seconds = []
        if not seconds or any(not (0 <= e < float("inf")) for e in seconds):
            print(f"jump evaluate: --elapsed must be comma-separated seconds >= 0, not {a.elapsed!r}", file=sys.stderr)
            return 2
    data = load_prepared(a.data)
    device = resolve_device(a.device)
    model, meta = load_checkpoint(a.model, map_location=device, expect_items=data.items)
    if a.protocol == "elapsed":
        return _evaluate_elapsed(a, data, model, meta, seconds)
    print(
        f"evaluating {a.model} (trained on {meta['dataset_fingerprint'][:12]}) on {a.data} test split: "
        f"{len(data.test):,} sessions, {data.test.n_clicks:,} clicks, protocol {a.protocol}, device {device}"
    )
    with tqdm(total=data.test.n_clicks, desc=f"JUMP {a.protocol}", unit="click") as bar:
        result = evaluate(model, data.test, a.protocol, a.k, a.batch_size, progress=bar.update)
    result.update(
        {
            "model": "jump",
            "model_config": meta["config"],
            "checkpoint": str(a.model),
            "dataset_fingerprint": data.fingerprint,
            "model_dataset_fingerprint": meta["dataset_fingerprint"],
            "code_version": __version__,
        }
    )
    rows = {f"JUMP ({a.protocol})": result}
    result["baselines"] = {}
    for name in [b for b in a.baselines.split(",") if b]:
        if name != "pop":
            raise SystemExit(f"unknown baseline {name!r} (available here: pop)")
        r = evaluate(registry.build("pop", data.n_items).fit(data.train), data.test, a.protocol, a.k, a.batch_size)
        result["baselines"][name] = r
        rows["POP + global median dwell"] = r
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    report_dir = Path(a.report_dir) if a.report_dir else out.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = out.stem
    table = markdown_table(rows, a.k)
    figs = {
        "dwell_histograms": str(
            plot_dwell_histograms(data.test, report_dir / f"{stem}_fig2_dwell.png", "(test split)")
        ),
        "recall_by_length": str(plot_recall_by_length(rows, report_dir / f"{stem}_fig7_recall_by_length.png", a.k)),
    }
    result["figures"] = figs
    md = report_dir / f"{stem}.md"
    md.write_text(
        f"# JUMP evaluation ({a.protocol} protocol)\n\nData: `{a.data}` (fingerprint "
        f"`{data.fingerprint[:12]}`), model: `{a.model}`. Full-catalogue ranking over "
        f"{data.n_items - 1:,} items, pessimistic ties.\n\n{table}\n"
    )
    result["markdown"] = str(md)
    out.write_text(json.dumps(result, indent=2))
    print(table)
    print(f"\nwrote {out}, {md}, {figs['dwell_histograms']}, {figs['recall_by_length']}")
    return 0


def _evaluate_elapsed(a, data, model, meta, seconds) -> int:
    """`jump evaluate --protocol elapsed`: the elapsed curve, its table (Markdown) and figure (PNG)."""
    from .experiments.report import elapsed_markdown, plot_elapsed_curve
    from .training.evaluate import elapsed_curve

    print(f"evaluating {a.model} on {a.data} test split: refreshes at E = {', '.join(f'{e:g}' for e in seconds)} s")
    rows = elapsed_curve(model, data.test, seconds, a.k, a.batch_size)
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    report_dir = Path(a.report_dir) if a.report_dir else out.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    table = elapsed_markdown(rows, a.k)
    fig = plot_elapsed_curve({model.name: rows}, report_dir / f"{out.stem}_elapsed.png", a.k)
    md = report_dir / f"{out.stem}.md"
    md.write_text(
        f"# Refreshed predictions while the user dwells (`--protocol elapsed`)\n\nData: `{a.data}`, model: "
        f"`{a.model}`. Full-catalogue ranking over {data.n_items - 1:,} items, pessimistic ties.\n\n{table}\n"
    )
    result = {
        "protocol": "elapsed",
        "k": a.k,
        "model": model.name,
        "model_config": meta["config"],
        "checkpoint": str(a.model),
        "dataset_fingerprint": data.fingerprint,
        "code_version": __version__,
        "curve": rows,
        "figure": str(fig),
        "markdown": str(md),
    }
    out.write_text(json.dumps(result, indent=2))
    print(table)
    print(f"\nwrote {out}, {md}, {fig}")
    return 0


def _add_bench(sub, extra=()):
    p = sub.add_parser("bench", help="benchmarks that print figures")
    bsub = p.add_subparsers(dest="bench", required=True)
    for add in extra:
        add(bsub)
    t = bsub.add_parser("train", help="training clicks/s, peak memory and full-evaluation wall time")
    t.add_argument("--clicks", type=int, default=1_000_000, help="synthetic clicks to generate")
    t.add_argument("--dim", type=int, default=100)
    t.add_argument("--batches", type=int, default=50, help="training batches to time per device")
    t.add_argument("--devices", default="auto", help="comma-separated: cpu,cuda (auto: cpu and cuda if present)")
    t.add_argument("--work-dir", default="runs/bench")
    t.add_argument("--json", default=None)
    t.add_argument("--data", default=None, help="a prepared dataset directory instead of the synthetic set")
    t.add_argument(
        "--variants",
        default="fast,reference,fast_paper,issue_day",
        help="comma-separated, timed side by side: fast (jump train's), reference (JumpConfig.fast_path=False, "
        "foreach Adam), fast_paper (objective paper), issue_day (jump train's defaults when issue 12 was filed: "
        "the paper's settings on the reference path), reference_paper; the first one is also evaluated",
    )
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    t.add_argument("--no-eval", action="store_true", help="skip the full-evaluation timings")
    t.set_defaults(func=cmd_bench_train)


def cmd_bench_train(a) -> int:
    from .experiments.throughput import bench_train

    bench_train(
        clicks=a.clicks,
        dim=a.dim,
        batches=a.batches,
        devices=a.devices,
        work_dir=a.work_dir,
        json_out=a.json,
        data_dir=a.data,
        variants=a.variants,
        threads=a.threads,
        evaluate_protocols=not a.no_eval,
    )
    return 0


def _add_report(sub):
    p = sub.add_parser("report", help="merge evaluation JSON files into one Markdown table and Fig. 7")
    p.add_argument("inputs", nargs="+", help="JSON files written by `jump evaluate`")
    p.add_argument("--out", required=True, help="Markdown output path (the figure is written next to it)")
    p.set_defaults(func=cmd_report)


def cmd_report(a) -> int:
    from .experiments.report import markdown_table, plot_recall_by_length
    from .model import PAPER_SETTINGS

    rows, k, models = {}, 20, {}
    for path in a.inputs:
        try:
            r = json.loads(Path(path).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a `jump evaluate --json` file ({type(e).__name__}: {e})") from None
        if not isinstance(r, dict) or "model_config" not in r or "protocol" not in r:
            raise ValueError(f"{path}: not a `jump evaluate --json` file (no model_config / protocol)")
        k = r.get("k", 20)
        name = Path(r.get("checkpoint", path)).stem  # the checkpoint names the model: jump_paper.ckpt -> jump_paper
        cfg = {**PAPER_SETTINGS, **r["model_config"]}  # a config from before these fields is the paper's
        sigma = f"{cfg['sigma']:g} fixed" if cfg["sigma_mode"] == "fixed" else f"learned ({cfg['sigma_mode']})"
        models[name] = f"objective {cfg['objective']}, sigma {sigma}, dwell point {cfg['dwell_point']}"
        rows[f"JUMP {name} ({r['protocol']})"] = r
        for base, b in r.get("baselines", {}).items():
            rows.setdefault(f"{base.upper()} ({b['protocol']})", b)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, k)
    fig = plot_recall_by_length(rows, out.with_name(out.stem + "_fig7_recall_by_length.png"), k)
    legend = "\n".join(f"- `{name}`: {desc}" for name, desc in models.items())
    out.write_text(f"# JUMP evaluation summary\n\nFrom: {', '.join(a.inputs)}\n\n{legend}\n\n{table}\n")
    print(table)
    print(f"\nwrote {out} and {fig}")
    return 0


def _add_benchmark(sub):
    from .registry import ALL_MODELS

    p = sub.add_parser(
        "benchmark",
        help="train and evaluate JUMP and the baselines the same way (Tables 2-3, Figs. 5-7)",
        description="Every model on the same prepared split, with the same tuning budget (config file), "
        "the same full-catalogue evaluation; writes JSON, a Markdown report and figures.",
    )
    p.add_argument("--data", required=True, help="prepared dataset directory (jump prepare)")
    p.add_argument(
        "--models",
        default="all",
        help=f"comma-separated from {','.join(ALL_MODELS)}; shorthands: all, gru4rec (both losses), knn (sknn, vsknn)",
    )
    p.add_argument("--json", required=True, help="output JSON path (the report and figures go next to it)")
    p.add_argument("--config", default=None, help="benchmark config YAML (default: configs/benchmark/default.yaml)")
    p.add_argument("--report-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--trials", type=int, default=None, help="override the config's trials per model")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epoch cap per trial")
    p.add_argument("--patience", type=int, default=None, help="override the config's early-stopping patience")
    p.add_argument("--time-budget", type=float, default=None, help="override the config's training seconds per trial")
    p.add_argument("--ablations", action="store_true", help="also train the config's JUMP ablations")
    p.add_argument("--sweeps", default="", help="comma-separated: sigma (Fig. 5), dim (Fig. 6)")
    p.add_argument("--max-test-sessions", type=int, default=None, help="evaluate on a seeded sample of test sessions")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_benchmark)
    s = sub.add_parser("benchmark-summary", help="merge benchmark JSON files into Tables 2-3 across datasets")
    s.add_argument("inputs", nargs="+", help="JSON files written by `jump benchmark`")
    names = s.add_mutually_exclusive_group(required=True)
    names.add_argument(
        "--names",
        help="comma-separated dataset names, one per input; inputs with the same name (seeds) are averaged: mean ± sd",
    )
    names.add_argument("--names-from-dirs", action="store_true", help="name each input by its directory")
    s.add_argument("--out", required=True, help="Markdown output path")
    s.set_defaults(func=cmd_benchmark_summary)
    r = sub.add_parser("benchmark-render", help="write a benchmark JSON's Markdown report and figures again")
    r.add_argument("json", help="JSON file written by `jump benchmark`")
    r.add_argument("--report-dir", default=None, help="default: next to the JSON")
    r.set_defaults(func=cmd_benchmark_render)


def cmd_benchmark_render(a) -> int:
    from .experiments.report import benchmark_figures, benchmark_markdown

    path = Path(a.json)
    result = json.loads(path.read_text())
    rdir = Path(a.report_dir) if a.report_dir else path.parent
    rdir.mkdir(parents=True, exist_ok=True)
    result["figures"] = benchmark_figures(result, rdir, path.stem)
    md = rdir / f"{path.stem}.md"
    md.write_text(benchmark_markdown(result))
    result["markdown"] = str(md)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {md} and {len(result['figures'])} figures")
    return 0


def cmd_benchmark(a) -> int:
    from .experiments.benchmark import benchmark

    models = [m for m in a.models.split(",") if m]
    sweeps = tuple(s for s in a.sweeps.split(",") if s)
    bad = [s for s in sweeps if s not in ("sigma", "dim")]
    if bad:
        raise ValueError(f"unknown sweep(s) {', '.join(bad)} (known: sigma, dim)")
    benchmark(
        a.data,
        models,
        a.json,
        config=a.config,
        report_dir=a.report_dir,
        seed=a.seed,
        device=a.device,
        trials=a.trials,
        ablations=a.ablations,
        sweeps=sweeps,
        max_test_sessions=a.max_test_sessions,
        time_budget_s=a.time_budget,
        epochs=a.epochs,
        patience=a.patience,
        progress=not a.no_progress,
        threads=a.threads,
        command="jump " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("jump") else None,
    )
    return 0


def cmd_benchmark_summary(a) -> int:
    from .experiments.report import benchmark_summary

    names = [Path(p).parent.name for p in a.inputs] if a.names_from_dirs else a.names.split(",")
    if len(names) != len(a.inputs):
        raise ValueError(f"--names has {len(names)} names for {len(a.inputs)} inputs")
    md = benchmark_summary([json.loads(Path(p).read_text()) for p in a.inputs], names)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(md)
    print(md)
    return 0


def build_parser(extra=(), extra_bench=()) -> argparse.ArgumentParser:
    """The `jump` parser; `extra` / `extra_bench` add sub-commands (the stream's, from pipeline.cli)."""
    p = argparse.ArgumentParser(
        prog="jump",
        description="JUMP: joint next-click and dwell-time prediction (Zhou et al., IJCAI 2018) for session streams.",
    )
    p.add_argument("--version", action="version", version=f"jump {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_prepare, _add_train, _add_tune, _add_evaluate, _add_report, _add_benchmark):
        add(sub)
    _add_bench(sub, extra_bench)
    for add in extra:
        add(sub)
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    t0 = time.time()
    try:
        rc = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:  # clear one-line errors, no traceback
        print(f"jump {args.command}: error: {e}", file=sys.stderr)
        return 2
    if rc == 0 and args.command not in ("bench", "sessionizer", "inference", "broker", "tail", "demo-stream"):
        sys.stdout.flush()
        print(f"[jump {args.command} done in {time.time() - t0:.1f}s]", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
