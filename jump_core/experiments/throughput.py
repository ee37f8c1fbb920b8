"""`jump bench train`: training throughput, peak memory and full-evaluation wall time.

Prints figures (no assertions): JUMP at d=100 on a synthetic set (1 M clicks by default),
training clicks/s over a fixed number of batches after a warm-up, the process peak RSS (CPU) or
the peak CUDA memory allocated, and the wall time of one full test-split evaluation per
protocol. Devices run side by side in one process so ratios are comparable.
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
from ..training.evaluate import evaluate
from ..training.train import resolve_device


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
) -> dict:
    work = Path(work_dir)
    csv, data_dir = work / f"synth_{clicks}.csv", work / f"prepared_{clicks}"
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
    train_windows = data.train.windows(200)
    for name in names:
        device = resolve_device(name)
        torch.manual_seed(0)
        model = registry.build("jump", data.n_items, {"dim": dim}).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        it = train_windows.batches(100, shuffle=True, seed=0)
        n_clicks, t0 = 0, None
        for step in range(warmup + batches):
            _, batch = next(it)
            batch = batch.to(device)
            if step == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            loss = model.calculate_loss(batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= warmup:
                n_clicks += int(batch.lengths.sum())
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        entry = {"train_clicks_per_s": round(n_clicks / train_s, 1), "timed_batches": batches, "timed_clicks": n_clicks}
        entry["peak_memory_mib"] = (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda"
            else round(_peak_rss_mib(), 1)
        )
        entry["peak_memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"
        for protocol in ("paper", "live"):
            t1 = time.perf_counter()
            r = evaluate(model, data.test, protocol, batch_size=100 if device.type == "cpu" else 500)
            entry[f"eval_{protocol}_s"] = round(time.perf_counter() - t1, 2)
            entry[f"eval_{protocol}_predictions"] = r["n_predictions"]
        results["devices"][name] = entry
        print(
            f"[{name}] train {entry['train_clicks_per_s']:,.0f} clicks/s over {batches} batches; "
            f"peak memory {entry['peak_memory_mib']:,.0f} MiB ({entry['peak_memory_kind']}); "
            f"full evaluation {entry['eval_paper_s']:.1f} s (paper), {entry['eval_live_s']:.1f} s (live) "
            f"for {entry['eval_paper_predictions']:,} predictions over {data.n_items - 1:,} items"
        )
    if "cpu" in results["devices"] and "cuda" in results["devices"]:
        ratio = results["devices"]["cuda"]["train_clicks_per_s"] / results["devices"]["cpu"]["train_clicks_per_s"]
        results["cuda_over_cpu_train"] = round(ratio, 2)
        print(f"CUDA / CPU training throughput: {ratio:.2f}x")
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))
    return results
