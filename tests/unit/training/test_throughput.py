"""`jump bench train` on a tiny synthetic set: the variants run side by side and the ratio is reported."""

from jump_core.experiments.throughput import bench_train


def test_bench_train_times_fast_and_reference_side_by_side(tmp_path):
    r = bench_train(
        clicks=3000, dim=8, batches=2, warmup=1, devices="cpu", work_dir=str(tmp_path), evaluate_protocols=False
    )
    cpu = r["devices"]["cpu"]
    assert set(cpu["train_clicks_per_s"]) == {"fast", "reference", "fast_paper", "issue_day"}
    assert all(v > 0 for v in cpu["train_clicks_per_s"].values())
    assert cpu["fast_over_reference"] > 0 and cpu["fast_over_issue_day"] > 0 and cpu["timed_clicks"] > 0
