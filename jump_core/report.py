"""Evaluation reports: a Markdown table and the paper's Fig. 2 and Fig. 7 as PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import SessionSet
from .evaluate import BUCKETS


def _fmt(x, digits=4):
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else f"{x:,}")


def markdown_table(results: dict[str, dict], k: int = 20) -> str:
    """results: row label -> evaluate() output. One row per model/protocol."""
    lines = [f"| model / protocol | Recall@{k} | MRR@{k} | NDCG@{k} | dwell MAE (s) | dwell log-lik | predictions | OOV targets |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(f"| {label} | {_fmt(r[f'recall@{k}'])} | {_fmt(r[f'mrr@{k}'])} | {_fmt(r[f'ndcg@{k}'])} | "
                     f"{_fmt(r['dwell_mae_s'], 2)} | {_fmt(r.get('dwell_loglik'), 3)} | {r['n_predictions']:,} | "
                     f"{r.get('n_oov_targets', 0):,} |")
    lines += ["", f"Recall@{k} by session length (Fig. 7):", "",
              "| model / protocol | " + " | ".join(b[0] for b in BUCKETS) + " |",
              "|---|" + "---:|" * len(BUCKETS)]
    for label, r in results.items():
        cells = []
        for name, _, _ in BUCKETS:
            e = r["by_length"][name]
            cells.append(f"{_fmt(e[f'recall@{k}'])} ({e['n_predictions']:,})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
