"""Smoke tests of `jump bench stream` (pipeline.devtools.stream_bench.bench_stream) on the test broker:
the default run and a paced one (--rate). Small N, one dim."""

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


def test_bench_stream_rate(kafka_bootstrap, tmp_path):
    """--rate R: (c)'s replay paced at R clicks/s; latency end to end and per hop at that load."""
    from pipeline.devtools.stream_bench import bench_stream

    n, rate = 2000, 500.0
    res = bench_stream(
        clicks=n,
        dims=(8,),
        partitions=1,
        work_dir=str(tmp_path / "work"),
        bootstrap=kafka_bootstrap,
        faust_batch=False,
        runtimes=("aiokafka",),
        rate=rate,
    )
    v = res["variants"]
    assert "c_pipeline_d8_aiokafka" not in v  # a fixed rate runs (c) paced only
    c = v["c_pipeline_d8_aiokafka_paced"]
    assert c["predictions"] == n and c["complete"]
    replay = c["replay"]
    assert replay["rate_target"] == rate == c["rate_target"]
    assert 0.8 * rate <= replay["achieved_rate"] <= 1.2 * rate, replay
    assert replay["seconds"] >= 0.8 * (n - 1) / rate  # paced, not as fast as possible
    lat = c["latency"]
    assert lat["requests_matched"] == n
    for hop in ("end_to_end", "sessionizer_hop", "inference_hop"):
        d = lat[hop]
        assert d["count"] == n, hop
        assert 0 <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"], (hop, d)
    assert c["latency_p50_s"] <= c["latency_p90_s"] <= c["latency_p99_s"] <= c["latency_max_s"]
    t = res["latency_target"]["c_pipeline_d8_aiokafka_paced"]
    assert t["limit_s"] == round(c["worker_settings"]["max_wait_s"] + 0.1, 4) and isinstance(t["met"], bool)
    assert res["target"] == {}  # the throughput target is for unpaced variants only
