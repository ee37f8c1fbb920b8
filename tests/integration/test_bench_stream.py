"""Smoke test of `jump bench stream` (pipeline.devtools.stream_bench.bench_stream) on the test broker.

Small N, one dim."""

from __future__ import annotations

import json


def test_bench_stream_smoke(kafka_bootstrap, tmp_path):
    from pipeline.devtools.stream_bench import bench_stream

    out = tmp_path / "bench.json"
    n = 3000
    res = bench_stream(
        clicks=n, dims=(8,), partitions=1, work_dir=str(tmp_path / "work"), json_out=str(out), bootstrap=kafka_bootstrap
    )
    written = json.loads(out.read_text())
    assert written["clicks"] == n == res["clicks"]
    for key in ("partitions", "dims", "bootstrap", "definitions", "variants", "target", "source_produce"):
        assert key in written, key
    variants = written["variants"]
    assert {"a_aiokafka", "b_faust", "b2_faust_batch", "c_pipeline_d8"} <= set(variants)
    for name, v in variants.items():
        assert v["events_per_s"] > 0, name
        assert v["out_span_events_per_s"] > 0, name
        assert "x_a" in v and "x_b" in v, name
    c = variants["c_pipeline_d8"]
    assert c["predictions"] == n and c["complete"]
    assert 0 <= c["latency_p50_s"] <= c["latency_p99_s"]
    assert c["inference_batch_size"]["count"] >= 1 and sum(c["inference_batch_size"]["buckets"].values()) >= 1
    assert c["sessionizer_batch_seconds_mean"] is not None and c["sessionizer_batch_seconds_mean"] > 0
    assert "c_pipeline_d8" in written["target"]
