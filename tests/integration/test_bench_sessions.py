"""Smoke test of `jump bench stream --workload sessions` (pipeline.devtools.sessions_bench) on the test broker.

Small N. The sessionizer must close exactly the sessions its rule gives offline; the Quix Streams and
Bytewax peers run when the `bench` extra is importable by the peer interpreter (.venv-bench, see
sessions_bench.peer_python) and must then match their own rules, else they are skipped with a reason.
"""

from __future__ import annotations

import json

from pipeline.devtools.sessions_workload import Workload, expected_closed, generate, kafka_partition

N, KEYS = 3000, 100


def test_bench_sessions_smoke(kafka_bootstrap, tmp_path):
    from pipeline.devtools.sessions_bench import CONTENDERS, bench_sessions

    out, png = tmp_path / "sessions.json", tmp_path / "sessions.png"
    res = bench_sessions(
        clicks=N,
        keys=KEYS,
        partitions=4,
        work_dir=str(tmp_path / "work"),
        json_out=str(out),
        png_out=str(png),
        bootstrap=kafka_bootstrap,
    )
    written = json.loads(out.read_text())
    assert written["clicks"] == N == res["clicks"] and written["keys"] == KEYS and written["partitions"] == 4
    for key in ("sessions", "definitions", "contenders", "ratios", "source_produce", "peer_python"):
        assert key in written, key
    assert written["source_records_after"] == N  # no contender wrote into the shared source topic
    assert png.stat().st_size > 0
    c = written["contenders"]
    assert list(c) == list(CONTENDERS)
    for name, v in c.items():
        assert "error" not in v, (name, v.get("error"))

    s = c["sessionizer"]
    clicks = generate(Workload(clicks=N, keys=KEYS))
    want = expected_closed(
        clicks, "partition_stream_time", partition_of=lambda k: kafka_partition(k.encode(), 4), grace_s=60.0
    )
    assert s["closing_rule"] == "partition_stream_time"
    assert s["closed_sessions"] == s["expected_closed"] == s["training_log_records"] == want
    assert s["sessions_ok"] and s["sessions"]["missing"] == s["sessions"]["extra"] == 0
    assert s["requests"] == N and s["dead_letters"] == 0
    assert s["settings"]["grace_s"] == 60.0 and s["settings"]["session_gap_s"] == 3600.0

    for name in ("faust_batch", "aiokafka"):
        assert c[name]["output_records"] == N, name
    for name in ("quix", "bytewax"):
        v = c[name]
        if "skipped" in v:
            assert isinstance(v["skipped"], str) and v["skipped"], name
            continue
        assert v["sessions_ok"] and v["closed_sessions"] == v["expected_closed"], name
        assert v["closing_rule"] == {"quix": "key_time", "bytewax": "all"}[name]
        assert v["version"] == v["pinned"], name

    run = [name for name, v in c.items() if "skipped" not in v]
    for name in run:
        v = c[name]
        assert v["events_per_s"] > 0 and v["seconds"] > 0, name
        assert v["cpu_us_per_click"] is not None and v["cpu_us_per_click"] > 0, name
    assert set(written["ratios"]) == set(run)
    assert written["ratios"]["sessionizer"]["sessionizer"] == 1.0


def test_bench_sessions_skips_an_absent_peer(kafka_bootstrap, tmp_path, capsys):
    """A peer interpreter without the framework is a skip with its reason, never an error."""
    from pipeline.devtools.sessions_bench import bench_sessions

    res = bench_sessions(
        clicks=200,
        keys=20,
        contenders=("quix", "bytewax"),
        work_dir=str(tmp_path / "work"),
        png_out=str(tmp_path / "none.png"),
        bootstrap=kafka_bootstrap,
        peer_python_path=str(tmp_path / "no-such-python"),
    )
    for name in ("quix", "bytewax"):
        assert "no-such-python" in res["contenders"][name]["skipped"]
    assert res["ratios"] == {}
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "none.png").exists()  # nothing ran: no chart


def test_sessionizer_workers_option():
    """--sessionizer-workers: `sessionizer` becomes one contender per worker count, in its place."""
    import pytest

    from pipeline.devtools.sessions_bench import expand_contenders, parse_workers, workers_of

    assert parse_workers("1, 2,2") == (1, 2) and parse_workers((2,)) == (2,)
    for bad in ("0", "x", ""):
        with pytest.raises(ValueError):
            parse_workers(bad)
    assert expand_contenders(("faust_batch", "sessionizer"), (1, 2)) == ("faust_batch", "sessionizer", "sessionizer_x2")
    assert expand_contenders(("sessionizer", "sessionizer_x2"), (2,)) == ("sessionizer_x2",)
    assert [workers_of(n) for n in ("sessionizer", "sessionizer_x2", "sessionizer_x", "quix")] == [1, 2, None, None]


def test_bench_sessions_two_workers(kafka_bootstrap, tmp_path):
    """Two `jump sessionizer` workers in one consumer group split the 4 partitions (both hold some, no
    rebalance while measured) and close exactly the sessions one worker closes: the rule is per
    partition. Through the CLI, so --sessionizer-workers is wired to the `sessionizer` contender."""
    from pipeline.cli import main

    out = tmp_path / "x2.json"
    argv = ["bench", "stream", "--workload", "sessions", "--clicks", str(N), "--keys", str(KEYS), "--partitions", "4"]
    argv += ["--contenders", "sessionizer", "--sessionizer-workers", "2", "--bootstrap", kafka_bootstrap]
    argv += ["--work-dir", str(tmp_path / "work"), "--json", str(out), "--png", str(tmp_path / "x2.png")]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    assert list(res["contenders"]) == ["sessionizer_x2"] and res["sessionizer_workers"] == [2]
    s = res["contenders"]["sessionizer_x2"]
    assert "error" not in s, s.get("error")

    clicks = generate(Workload(clicks=N, keys=KEYS))
    want = expected_closed(
        clicks, "partition_stream_time", partition_of=lambda k: kafka_partition(k.encode(), 4), grace_s=60.0
    )
    assert s["workers"] == 2 and s["closing_rule"] == "partition_stream_time"
    assert s["closed_sessions"] == s["expected_closed"] == s["training_log_records"] == want
    assert s["sessions_ok"] and s["sessions"]["missing"] == s["sessions"]["extra"] == 0
    assert s["requests"] == N and s["dead_letters"] == 0

    workers = s["per_worker"]
    assert len(workers) == 2
    assert all(w["clicks_accepted"] > 0 for w in workers), workers  # both got partitions
    assert sum(w["clicks_accepted"] for w in workers) == N
    assert sorted(p for w in workers for p in w["partitions"]) == [0, 1, 2, 3], workers  # split, disjoint
    by_partition = [0] * 4
    for c in clicks:
        by_partition[kafka_partition(c.key.encode(), 4)] += 1
    for w in workers:
        assert w["clicks_accepted"] == sum(by_partition[p] for p in w["partitions"]), w
        assert w["cpu_us_per_click"] > 0 and w["cpu_us_per_own_click"] > 0
    assert len({w["metrics_port"] for w in workers}) == 2 and len({w["data_dir"] for w in workers}) == 2
    assert abs(sum(w["cpu_s"] for w in workers) - s["cpu_s"]) <= 0.05 * s["cpu_s"] + 0.05
    for key in ("contender", "harness", "machine"):  # the broker's too when the benchmark started it
        assert s["cores_busy"][key] is not None, key
    assert s["rebalances_during_run"] == 0
    group = s["group_before_fill"]
    if "error" not in group:  # the broker's own view (DescribeGroups), where it can tell
        assert group["state"] == "Stable" and group["members"] == 2, group
        if group["member_partitions"] is not None:
            assert group["member_partitions"] == sorted(s["assigned_before_fill"]), group
    assert res["scaleout"]["runs"]["sessionizer_x2"]["workers"] == 2
    assert res["source_records_after"] == N
