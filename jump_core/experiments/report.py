"""Evaluation reports: a Markdown table and the paper's Fig. 2 and Fig. 7 as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import SessionSet
from ..training.evaluate import BUCKETS


def fmt_number(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) >= 1e6 else f"{x:.{digits}f}"  # e.g. a dwell MAE of 1.4e+25 s
    return f"{x:,}"


def markdown_table(results: dict[str, dict], k: int = 20) -> str:
    """results: row label -> evaluate() output. One row per model/protocol."""
    lines = [
        f"| model / protocol | Recall@{k} | MRR@{k} | NDCG@{k} | dwell MAE (s) | dwell log-lik | predictions "
        "| OOV targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {fmt_number(r[f'recall@{k}'])} | {fmt_number(r[f'mrr@{k}'])} | "
            f"{fmt_number(r[f'ndcg@{k}'])} | {fmt_number(r['dwell_mae_s'], 2)} | "
            f"{fmt_number(r.get('dwell_loglik'), 3)} | {r['n_predictions']:,} | "
            f"{r.get('n_oov_targets', 0):,} |"
        )
    lines += [
        "",
        f"Recall@{k} by session length (Fig. 7):",
        "",
        "| model / protocol | " + " | ".join(b[0] for b in BUCKETS) + " |",
        "|---|" + "---:|" * len(BUCKETS),
    ]
    for label, r in results.items():
        cells = []
        for name, _, _ in BUCKETS:
            e = r["by_length"][name]
            cells.append(f"{fmt_number(e[f'recall@{k}'])} ({e['n_predictions']:,})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (PNG, 110 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return Path(path)


def plot_dwell_histograms(data: SessionSet, path: str | Path, title: str = "") -> Path:
    """Fig. 2: histograms of dwell time and log dwell time (uncensored clicks)."""
    plt = _pyplot()
    tau = data.tau[data.delta == 0]
    tau = tau[tau > 0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].hist(tau, bins=100, color="#4477aa")
    axes[0].set_xlabel("dwell time (s)")
    axes[0].set_ylabel("clicks")
    axes[1].hist(np.log(tau), bins=100, color="#ee6677")
    axes[1].set_xlabel("log dwell time (log s)")
    fig.suptitle(f"Dwell time histograms (uncensored clicks, n={len(tau):,}) {title}".strip())
    return _save(fig, path)


def plot_recall_by_length(results: dict[str, dict], path: str | Path, k: int = 20) -> Path:
    """Fig. 7: Recall@k by session-length bucket, one bar group per bucket."""
    plt = _pyplot()
    names = [b[0] for b in BUCKETS]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(results), 1)
    for i, (label, r) in enumerate(results.items()):
        vals = [r["by_length"][n][f"recall@{k}"] for n in names]
        ax.bar(np.arange(len(names)) + i * width, [v if v is not None else 0 for v in vals], width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([f"{n}\n({results[next(iter(results))]['by_length'][n]['n_sessions']:,} sess.)" for n in names])
    ax.set_ylabel(f"Recall@{k}")
    ax.set_xlabel("session length")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"Recall@{k} by session length (Fig. 7)")
    return _save(fig, path)


def elapsed_markdown(rows: list[dict], k: int = 20) -> str:
    """The `elapsed_curve` table: refresh E s after the click against the prediction at the click."""
    lines = [
        f"| E (s) | positions (next click > E s later) | Recall@{k} at the click (live) | Recall@{k} refreshed at E "
        f"| MRR@{k} live | MRR@{k} at E |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        live, at = r["live"], r["elapsed"]
        lines.append(
            f"| {r['elapsed_s']:g} | {r['n_predictions']:,} | {fmt_number(live[f'recall@{k}'])} "
            f"| {fmt_number(at[f'recall@{k}'])} | {fmt_number(live[f'mrr@{k}'])} | {fmt_number(at[f'mrr@{k}'])} |"
        )
    return "\n".join(lines)


def plot_elapsed_curve(curves: dict[str, list[dict]], path: str | Path, k: int = 20) -> Path:
    """Recall@k of a refresh E s after the click (solid) and of the prediction at the click on the same
    positions (dashed), one colour per model or dataset."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, rows) in enumerate(curves.items()):
        xs = [r["elapsed_s"] for r in rows]
        colour = f"C{i}"
        ax.plot(xs, [r["elapsed"][f"recall@{k}"] for r in rows], "o-", color=colour, label=f"{label}: refreshed at E")
        ax.plot(xs, [r["live"][f"recall@{k}"] for r in rows], "s--", color=colour, label=f"{label}: at the click")
    ax.set_xlabel("E: seconds the user has been on the latest click")
    ax.set_ylabel(f"Recall@{k} (positions with next click > E s later)")
    ax.set_title("Refreshing a prediction while the user dwells")
    ax.legend(fontsize=8)
    return _save(fig, path)


# -- jump benchmark: Tables 2-3 and Figs. 5-7 ----------------------------------------------------------


def _protocol_rows(result: dict) -> list[tuple[str, str, dict, dict]]:
    """(label, protocol, model entry, evaluate() output) for every click model; dwell-aware models get two rows."""
    rows = []
    for m in result["models"].values():
        if not m["clicks"]:
            continue
        for protocol in ("paper", "live") if m["dwell_aware"] else ("live",):
            rows.append((m["label"], protocol if m["dwell_aware"] else "both", m, m["protocols"][protocol]))
    return rows


def _params(p: dict) -> str:
    return ", ".join(f"{k.replace('train.', '')}={v}" for k, v in p.items()) or "–"


def benchmark_markdown(result: dict) -> str:
    k = result.get("k", 20)
    t1 = result.get("dataset", {})
    b = result["budget"]
    hw = result["hardware"]
    lines = [
        f"# Benchmark on `{result['data']}`",
        "",
        f"- Command: `{result.get('command') or '(library call)'}`",
        f"- Hardware: {hw['cores']} CPU cores ({hw['cpu']}), torch {hw['torch']} with {hw['torch_threads']} threads, "
        f"GPU: {hw['gpu'] or 'none'}; device `{result['device']}`. Wall time {result['seconds']:,.0f} s.",
        f"- Data: {t1.get('items', 0):,} items, {t1.get('train_sessions', 0):,} train / "
        f"{result['test_sessions_total']:,} test sessions"
        + (
            f" (evaluated on a seeded sample of {result['test_sessions']:,})"
            if result["test_sessions"] != result["test_sessions_total"]
            else ""
        )
        + ".",
        f"- Tuning budget, the same for every model (`{result['config_file']}`): {b['trials']} configurations "
        f"(the defaults + seeded draws from the model's grid), each ≤ {b['epochs']} epochs and "
        f"≤ {b['time_budget_s']} s of training, early stopping on validation Recall@{k} "
        f"(patience {b.get('patience', 2)}); all fit on the same "
        f"{1 - b.get('val_fraction', 0.1):.0%} of the training sessions and selected on the other "
        f"{b.get('val_fraction', 0.1):.0%} (live protocol); the test split is scored once per model.",
        "- Metrics: full-catalogue ranking, pessimistic ties, every position of every test session; "
        "targets unseen in training count as misses. `live`: the dwell on the latest click is unknown (the stream's "
        "view); `paper`: it is known (it leaks the next click's time); dwell-blind models are the same under both.",
        "",
        "## Next click (Table 3 shape)",
        "",
        f"| model | protocol | Recall@{k} | MRR@{k} | NDCG@{k} | train s | all trials s | eval s "
        "| selected parameters |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, protocol, m, r in _protocol_rows(result):
        lines.append(
            f"| {label} | {protocol} | {fmt_number(r[f'recall@{k}'])} | {fmt_number(r[f'mrr@{k}'])} | "
            f"{fmt_number(r[f'ndcg@{k}'])} | {m['train_seconds']:.1f} | {m.get('tune_seconds', 0):.1f} | "
            f"{r.get('eval_wall_seconds', 0):.1f} | {_params(m['params'])} |"
        )
    lines += [
        "",
        "## Dwell time (Table 2 shape)",
        "",
        "MAE (s) of the point prediction on uncensored clicks; dwell log-lik: mean censored log-likelihood per click "
        "(the model's own density).",
        "",
        "| model | dwell MAE (s) | dwell log-lik | clicks | train s |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in result["models"].values():
        if m["dwell"]:
            r = m["protocols"]["live"]
            lines.append(
                f"| {m['label']} | {fmt_number(r['dwell_mae_s'], 2)} | {fmt_number(r.get('dwell_loglik'), 3)} | "
                f"{r['n_dwell']:,} | {m['train_seconds']:.1f} |"
            )
    lines += [
        "",
        f"## Recall@{k} by session length (Fig. 7 shape, live protocol)",
        "",
        "| model | " + " | ".join(n for n, _, _ in BUCKETS) + " |",
        "|---|" + "---:|" * len(BUCKETS),
    ]
    for m in result["models"].values():
        if m["clicks"]:
            bl = m["protocols"]["live"]["by_length"]
            lines.append(
                f"| {m['label']} | "
                + " | ".join(f"{fmt_number(bl[n][f'recall@{k}'])} ({bl[n]['n_predictions']:,})" for n, _, _ in BUCKETS)
                + " |"
            )
    if result.get("ablations"):
        lines += [
            "",
            "## Ablations of JUMP",
            "",
            "Each variant: the selected JUMP parameters with one change (a part removed or replaced), "
            "trained once with the same per-trial budget and seed.",
            "",
            f"| variant | Recall@{k} live | MRR@{k} live | Recall@{k} paper | dwell MAE (s) | train s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        full = result["models"]["jump"]
        for label, m in [("JUMP (selected configuration)", full)] + [
            (a["label"], a) for a in result["ablations"].values()
        ]:
            lines.append(
                f"| {label} | {fmt_number(m[f'recall@{k}'])} | {fmt_number(m[f'mrr@{k}'])} | "
                f"{fmt_number(m['protocols']['paper'][f'recall@{k}'])} | {fmt_number(m['dwell_mae_s'], 2)} | "
                f"{m['train_seconds']:.1f} |"
            )
    if result.get("sweep_sigma"):
        lines += [
            "",
            "## Fig. 5: 1/σ² sweep (JUMP)",
            "",
            f"| 1/σ² | σ | Recall@{k} live | Recall@{k} paper | dwell MAE (s) | best epoch |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for p in result["sweep_sigma"]:
            lines.append(
                f"| {p['inv_sigma2']:g} | {p['sigma']:.3g} | {fmt_number(p[f'recall@{k}'])} | "
                f"{fmt_number(p['paper_recall@20'])} | {fmt_number(p['dwell_mae_s'], 2)} | {p['best_epoch']} |"
            )
    if result.get("sweep_dim"):
        lines += [
            "",
            "## Fig. 6: dimension sweep",
            "",
            f"Recall@{k} (live) by d:",
            "",
            "| model | " + " | ".join(str(p["dim"]) for p in next(iter(result["sweep_dim"].values()))) + " |",
            "|---|" + "---:|" * len(next(iter(result["sweep_dim"].values()))),
        ]
        for name, pts in result["sweep_dim"].items():
            lines.append(f"| {name} | " + " | ".join(fmt_number(p[f"recall@{k}"]) for p in pts) + " |")
    if result.get("figures"):
        lines += ["", "## Figures", ""] + [f"- {n}: `{Path(p).name}`" for n, p in result["figures"].items()]
    return "\n".join(lines) + "\n"


def benchmark_figures(result: dict, directory: Path, stem: str) -> dict:
    plt = _pyplot()
    k = result.get("k", 20)
    figs = {}
    rows = {m["label"]: m["protocols"]["live"] for m in result["models"].values() if m["clicks"]}
    if rows:
        figs["fig7_recall_by_length"] = str(
            plot_recall_by_length(rows, directory / f"{stem}_fig7_recall_by_length.png", k)
        )
    curves = {m["label"]: m["history"] for m in result["models"].values() if m.get("history")}
    if curves:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for label, hist in curves.items():
            ep = [h["epoch"] for h in hist]
            axes[0].plot(ep, [h["val_recall@20"] for h in hist], marker="o", label=label)
            axes[1].plot(ep, [h["train_loss_per_click"] for h in hist], marker="o", label=label)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel(f"validation Recall@{k} (live)")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("training loss per click (model's own loss)")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=7)
        fig.suptitle("Training curves (selected configuration)")
        figs["training_curves"] = str(_save(fig, directory / f"{stem}_training_curves.png"))
    if result.get("sweep_sigma"):
        pts = result["sweep_sigma"]
        x = [p["inv_sigma2"] for p in pts]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        axes[0].plot(x, [p[f"recall@{k}"] for p in pts], marker="o", label="live")
        axes[0].plot(x, [p["paper_recall@20"] for p in pts], marker="s", label="paper")
        axes[0].set_ylabel(f"Recall@{k}")
        axes[0].legend()
        axes[1].plot(x, [p["dwell_mae_s"] for p in pts], marker="o", color="#ee6677")
        axes[1].set_ylabel("dwell MAE (s), log scale")
        axes[1].set_yscale("log")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlabel("1/σ²")
        fig.suptitle("Fig. 5: click vs dwell trade-off (JUMP)")
        figs["fig5_sigma"] = str(_save(fig, directory / f"{stem}_fig5_sigma.png"))
    if result.get("sweep_dim"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, pts in result["sweep_dim"].items():
            ax.plot([p["dim"] for p in pts], [p[f"recall@{k}"] for p in pts], marker="o", label=name)
        ax.set_xlabel("dimension d")
        ax.set_ylabel(f"Recall@{k} (live)")
        ax.legend()
        ax.set_title("Fig. 6: dimension")
        figs["fig6_dim"] = str(_save(fig, directory / f"{stem}_fig6_dim.png"))
    return figs


def _mean_sd(values: list, digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def benchmark_summary(results: list[dict], names: list[str]) -> str:
    """Tables 2 and 3 across datasets (one column group per dataset), from several benchmark JSON files.

    Runs given the same name (e.g. several seeds of one dataset) are one column group: mean ± sample
    standard deviation over the runs.
    """
    k = 20
    groups: dict[str, list[dict]] = {}
    for name, r in zip(names, results):
        groups.setdefault(name, []).append(r)
    runs = {n: len({r.get("seed") for r in g}) for n, g in groups.items()}
    head = "| model | protocol | " + " | ".join(f"{n} R@{k} | {n} MRR@{k} | {n} NDCG@{k}" for n in groups) + " |"
    lines = [
        "Next click (Table 3 shape)"
        + (
            "; mean ± sd over " + ", ".join(f"{n}: {c} seeds" for n, c in runs.items())
            if max(runs.values()) > 1
            else ""
        )
        + ":",
        "",
        head,
        "|---|---|" + "---:|" * (3 * len(groups)),
    ]
    labels = []
    for r in results:
        for label, protocol, _, _ in _protocol_rows(r):
            if (label, protocol) not in labels:
                labels.append((label, protocol))
    for label, protocol in labels:
        cells = []
        for runs_of in groups.values():
            hits = [e for r in runs_of for lab, p, _, e in _protocol_rows(r) if (lab, p) == (label, protocol)]
            cells += [_mean_sd([h[f"{m}@{k}"] for h in hits], 4) for m in ("recall", "mrr", "ndcg")]
        lines.append(f"| {label} | {protocol} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Dwell time (Table 2 shape), MAE in seconds:",
        "",
        "| model | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    dwell_labels = []
    for r in results:
        for m in r["models"].values():
            if m["dwell"] and m["label"] not in dwell_labels:
                dwell_labels.append(m["label"])
    for label in dwell_labels:
        cells = [
            _mean_sd([m["dwell_mae_s"] for r in runs_of for m in r["models"].values() if m["label"] == label], 1)
            for runs_of in groups.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
