"""`jump bench train`: training throughput, peak memory and full-evaluation wall time.

Prints figures (no assertions): JUMP at d=100 on a synthetic set (1 M clicks by default) or a
prepared one (`data_dir`), training clicks/s over a fixed number of batches after a warm-up, the
process peak RSS (CPU) or the peak CUDA memory allocated, and the wall time of one full test-split
evaluation per protocol. Devices run side by side in one process so ratios are comparable.

Per device, training variants run side by side too, batch by batch on the same batches (so a load
from other processes falls on all of them alike): `fast` (what `jump train` runs: JumpConfig's
defaults, fused Adam), `reference` (JumpConfig.fast_path=False and foreach Adam: the implementation
before the fast path), `fast_paper` (objective "paper": no live step) and `issue_day` (what `jump train`
ran when issue 12 asked for a 2x speed-up: its defaults then, which are the paper's settings
(model.PAPER_SETTINGS: z = 60, one time row per second, no live step), on the reference path with
foreach Adam). The ratio fast / reference is the speed-up of the implementation on the same model; fast /
issue_day is how much faster `jump train` with its defaults runs than it did then.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import torch

from .. import registry
from ..data.dataset import load_prepared
from ..data.prepare import PrepareConfig, prepare
from ..data.synth import SynthConfig, write_csv
from ..model import PAPER_SETTINGS
from ..training.evaluate import evaluate
from ..training.train import TrainConfig, resolve_device

# name -> (JumpConfig overrides, fused Adam); "fast" is what `jump train` runs
VARIANTS = {
    "fast": ({}, True),
    "reference": ({"fast_path": False}, False),
    "fast_paper": ({"objective": "paper"}, True),
    "reference_paper": ({"fast_path": False, "objective": "paper"}, False),  # on request (--variants)
    "issue_day": ({**PAPER_SETTINGS, "fast_path": False}, False),
}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_train(
    clicks: int = 1_000_000,
    dim: int = 100,
    batches: int = 50,
    devices: str = "auto",
    work_dir: str = "runs/bench",
    json_out: str | None = None,
    warmup: int = 5,
    data_dir: str | None = None,
    variants: str = "fast,reference,fast_paper,issue_day",
    threads: int | None = None,
    evaluate_protocols: bool = True,
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    work = Path(work_dir)
    csv = work / f"synth_{clicks}.csv"
    if data_dir and not (Path(data_dir) / "meta.json").exists():
        raise FileNotFoundError(f"{data_dir}: not a prepared dataset (jump prepare)")
    data_dir = Path(data_dir) if data_dir else work / f"prepared_{clicks}"
    if not (data_dir / "meta.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        print(f"generating {clicks:,} synthetic clicks -> {csv}")
        write_csv(SynthConfig(clicks=clicks, seed=0), csv, progress=True)
        prepare(
            PrepareConfig(
                "csv",
                [str(csv)],
                str(data_dir),
                reader_options={"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"},
            )
        )
    data = load_prepared(data_dir)
    names = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if devices == "auto" else devices.split(",")
    results = {
        "clicks": clicks,
        "dim": dim,
        "n_items": data.n_items - 1,
        "train_sessions": len(data.train),
        "test_clicks": data.test.n_clicks,
        "torch": torch.__version__,
        "devices": {},
    }
    results["threads"] = torch.get_num_threads()
    train_windows = data.train.windows(200)
    chosen = variants.split(",")
    for name in names:
        device = resolve_device(name)
        runs = {}
        for v in chosen:
            overrides, fused = VARIANTS[v]
            torch.manual_seed(0)  # the same initial weights for every variant
            model = registry.build("jump", data.n_items, {"dim": dim, **overrides}).to(device)
            opt = (
                model.configure_optimizer(TrainConfig(lr=1e-3))
                if fused
                else torch.optim.Adam(model.parameters(), lr=1e-3)
            )
            runs[v] = (model, opt)  # the reference: the code before the fast path, unfused Adam
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        it = train_windows.batches(100, shuffle=True, seed=0)
        n_clicks, seconds = 0, dict.fromkeys(chosen, 0.0)
        for step in range(warmup + batches):
            _, batch = next(it)
            batch = batch.to(device)
            for v, (model, opt) in runs.items():  # interleaved: the same batch, the same machine load
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loss = model.calculate_loss(batch).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if step >= warmup:
                    seconds[v] += time.perf_counter() - t0
            if step >= warmup:
                n_clicks += int(batch.lengths.sum())
        entry = {"timed_batches": batches, "timed_clicks": n_clicks}
        entry["train_clicks_per_s"] = {v: round(n_clicks / seconds[v], 1) for v in chosen}
        for base in ("reference", "issue_day"):
            if "fast" in seconds and base in seconds:
                entry[f"fast_over_{base}"] = round(seconds[base] / seconds["fast"], 2)
        entry["peak_memory_mib"] = (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else round(_peak_rss_mib(), 1)
        )
        entry["peak_memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"
        rates = ", ".join(f"{v} {r:,.0f}" for v, r in entry["train_clicks_per_s"].items())
        print(
            f"[{name}] train clicks/s over {batches} batches "
            f"({n_clicks:,} clicks, {results['threads']} threads): {rates}"
        )
        if "fast_over_reference" in entry:
            print(f"[{name}] fast / reference training throughput: {entry['fast_over_reference']:.2f}x (same model)")
        if "fast_over_issue_day" in entry:
            print(
                f"[{name}] fast / issue_day: {entry['fast_over_issue_day']:.2f}x (jump train's defaults, now and then)"
            )
        print(f"[{name}] peak memory {entry['peak_memory_mib']:,.0f} MiB ({entry['peak_memory_kind']})")
        model = runs[chosen[0]][0]
        for protocol in ("paper", "live") if evaluate_protocols else ():
            t1 = time.perf_counter()
            r = evaluate(model, data.test, protocol, batch_size=100 if device.type == "cpu" else 500)
            entry[f"eval_{protocol}_s"] = round(time.perf_counter() - t1, 2)
            entry[f"eval_{protocol}_predictions"] = r["n_predictions"]
            print(
                f"[{name}] full evaluation ({chosen[0]}, {protocol}) {entry[f'eval_{protocol}_s']:.1f} s "
                f"for {r['n_predictions']:,} predictions over {data.n_items - 1:,} items"
            )
        results["devices"][name] = entry
    if "cpu" in results["devices"] and "cuda" in results["devices"]:
        v = chosen[0]
        ratio = results["devices"]["cuda"]["train_clicks_per_s"][v] / results["devices"]["cpu"]["train_clicks_per_s"][v]
        results["cuda_over_cpu_train"] = round(ratio, 2)
        print(f"CUDA / CPU training throughput ({v}): {ratio:.2f}x")
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))
    return results
