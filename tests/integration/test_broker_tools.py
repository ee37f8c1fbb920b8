"""Embedded broker, topic management, `jump replay` and `jump tail` against a real broker."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from pipeline import codec
from pipeline.cli import add_topics
from pipeline.config import Settings
from pipeline.devtools.broker import EmbeddedBroker, add_broker, free_port, tansu_binary
from pipeline.devtools.replay import add_replay, replay
from pipeline.devtools.tail import add_tail, tail
from pipeline.runtime.kafka import ensure_topics, topic_specs, wait_for_broker
from tests.conftest import consume_all, produce
from tests.helpers.kafka import HighWatermarks

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[2]
CSV_OPTS = {"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _need_tansu():
    try:
        tansu_binary()
    except RuntimeError as e:
        pytest.skip(str(e))


def write_csv(path: Path, rows) -> Path:
    path.write_text("session_id,item_id,timestamp\n" + "".join(f"{s},{i},{t}\n" for s, i, t in rows))
    return path


def unsorted_rows(n: int = 300, seed: int = 0):
    """Clicks in file order that is not time order, with timestamp ties (stability matters)."""
    rng = np.random.default_rng(seed)
    ts = 1_600_000_000 + rng.integers(0, 120, n).astype(float)  # many ties
    return [(f"s{rng.integers(0, 25)}", f"i{rng.integers(0, 40)}", float(t)) for t in ts]


def check_replayed(records, expected, prefix: str, key_fields=("session", "user")):
    """Exact content: event id i -> expected[i]; keys; per-partition time order; unique ids."""
    assert len(records) == len(expected)
    ids, by_partition, key_partition = set(), defaultdict(list), {}
    for r in records:
        c = codec.decode_click(r.value, key_fields)
        assert r.key == c.key.encode()
        pfx, i = c.event_id.rsplit(":", 1)
        assert pfx == prefix
        i = int(i)
        assert (c.key, c.item, c.ts) == expected[i]
        ids.add(c.event_id)
        by_partition[r.partition].append((c.ts, i))
        assert key_partition.setdefault(c.key, r.partition) == r.partition  # a key stays on one partition
    assert len(ids) == len(expected)
    for seq in by_partition.values():
        assert seq == sorted(seq)  # time order, ties in file order (i increases)


# --------------------------------------------------------------------------- broker


def test_embedded_broker_starts_answers_and_stops(tmp_path):
    _need_tansu()
    log = tmp_path / "b.log"
    broker = EmbeddedBroker(log_path=str(log))
    with broker as b:
        assert b.running() and b.pid and b.bootstrap == f"127.0.0.1:{b.port}"
        wait_for_broker(Settings.from_env(env={}, bootstrap_servers=b.bootstrap), timeout_s=10)
        with pytest.raises(RuntimeError, match="already in use"):
            EmbeddedBroker(port=b.port).start(timeout=5)
        pid = b.pid
    assert _gone(pid) and not broker.running()
    broker.stop()  # idempotent
    assert "tansu" in log.read_text()


def test_wait_for_broker_times_out_clearly():
    settings = Settings.from_env(env={}, bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(RuntimeError, match=r"no Kafka broker answered at .* within 1 s: set KAFKA_BOOTSTRAP_SERVERS"):
        wait_for_broker(settings, timeout_s=1)


def test_main_broker_runs_until_sigterm():
    _need_tansu()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from pipeline.devtools.broker import main_broker; raise SystemExit(main_broker({port}, '127.0.0.1'))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}" in line, line
        child = int(re.search(r"pid (\d+)", line).group(1))
        wait_for_broker(Settings.from_env(env={}, bootstrap_servers=f"127.0.0.1:{port}"), timeout_s=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert _gone(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- topics


def test_high_watermark_watcher_sees_growth_and_a_decrease(tmp_path):
    """The crash test's watcher: it records each partition's growth and reports a high watermark
    that goes down (here: the in-memory broker restarted on the same port, its 30 records gone)."""
    import time

    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    def create(bootstrap):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.create_topics([NewTopic("watched", 2, 1)])
        except TopicAlreadyExistsError:
            # the watcher's consumer created it first: Tansu creates a missing topic named in a
            # Metadata request that allows auto-creation (kafka-python's, for an assigned partition)
            pass
        finally:
            admin.close()

    def wait_for(done):
        for _ in range(100):
            if done():
                return
            time.sleep(0.1)

    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=str(tmp_path / "tansu.log")).start()
    try:
        create(broker.bootstrap)
        with HighWatermarks(broker.bootstrap, ["watched"], interval_s=0.1) as watch:
            produce(broker.bootstrap, "watched", [(b"k", b"v")] * 30, partition=0)
            wait_for(lambda: any(w.startswith("watched[0] ") and w.endswith(" -> 30") for _, w in watch.history))
            broker.stop(grace_s=0.5)  # in memory: its records go with it
            watch.mark("broker restarted")
            broker = EmbeddedBroker(port=port, log_path=str(tmp_path / "tansu2.log")).start()
            create(broker.bootstrap)
            wait_for(lambda: watch.decreases)
        assert watch.decreases == ["watched[0] 30 -> 0"], watch.report()
        assert "watched[1] None -> 0" in watch.report() and "-- broker restarted" in watch.report()
    finally:
        broker.stop(grace_s=0.5)


def test_topic_specs_cover_every_topic(stream_settings):
    s = stream_settings
    specs = topic_specs(s)
    names = {getattr(s, f.name) for f in fields(Settings) if f.name.startswith("topic_")}
    assert set(specs) == names
    assert specs[s.topic_clicks] == specs[s.topic_rekeyed] == specs[s.topic_requests] == s.partitions
    assert (
        specs[s.topic_predictions] == specs[s.topic_training_log] == specs[s.topic_dead_letters] == s.output_partitions
    )


def test_ensure_topics_is_idempotent_and_checks_partitions(stream_settings):
    s = stream_settings
    first = ensure_topics(s)
    assert first == dict.fromkeys(topic_specs(s), "created")
    assert ensure_topics(s) == dict.fromkeys(topic_specs(s), "exists")
    with pytest.raises(ValueError, match=rf"topic {re.escape(s.topic_clicks)} has 2 partitions, expected 3"):
        ensure_topics(s, {s.topic_clicks: 3})
    with pytest.raises(ValueError, match="co-partitioning"):
        ensure_topics(Settings.from_env(env={}, **{**_kw(s), "output_partitions": 4}))


def _kw(s: Settings) -> dict:
    return {f.name: getattr(s, f.name) for f in fields(Settings)}


# --------------------------------------------------------------------------- replay


def test_replay_csv_sorted_keyed_and_exact(stream_settings, tmp_path):
    rows = unsorted_rows()
    path = write_csv(tmp_path / "clicks.csv", rows)
    stats = replay(stream_settings, "csv", [path], progress=False, reader_options=CSV_OPTS)
    expected = [rows[j] for j in np.argsort([r[2] for r in rows], kind="stable")]
    assert stats["clicks"] == len(rows) and stats["key_field"] == "session"
    assert stats["first_ts"] == expected[0][2] and stats["last_ts"] == expected[-1][2]
    records = consume_all(stream_settings, stream_settings.topic_clicks, stop_at_end=True)
    check_replayed(records, expected, prefix="clicks.csv", key_fields=("session",))
    assert {r.partition for r in records} == {0, 1}
    assert all(codec.unpack(r.value)["session"] for r in records)  # msgpack by default


def test_replay_json_every_and_user_key(stream_settings, tmp_path):
    rows = unsorted_rows(60, seed=1)
    path = tmp_path / "u.csv"
    path.write_text("user,item,t_ms\n" + "".join(f"{k},{i},{int(t * 1000)}\n" for k, i, t in rows))
    stats = replay(
        stream_settings,
        "csv",
        str(path),
        json_every=2,
        event_id_prefix="run7",
        progress=False,
        reader_options={"user_col": "user", "item_col": "item", "time_col": "t_ms", "time_unit": "ms"},
    )
    assert stats["key_field"] == "user" and stats["event_id_prefix"] == "run7"
    records = consume_all(stream_settings, stream_settings.topic_clicks, stop_at_end=True)
    expected = [rows[j] for j in np.argsort([r[2] for r in rows], kind="stable")]
    check_replayed(records, expected, prefix="run7", key_fields=("user",))
    for r in records:
        i = int(codec.decode_click(r.value, ("user",)).event_id.split(":")[1])
        assert r.value.startswith(b"{") == (i % 2 == 0)
        if i % 2 == 0:
            assert json.loads(r.value)["user"] == r.key.decode()


def test_replay_limit_and_pacing(stream_settings, tmp_path):
    rows = [(f"s{j % 3}", f"i{j}", 1000.0 + 0.4 * j) for j in range(10)][::-1]  # 3.6 s of event time, reversed
    path = write_csv(tmp_path / "p.csv", rows)
    stats = replay(stream_settings, "csv", [path], speed=4.0, limit=6, progress=False, reader_options=CSV_OPTS)
    assert stats["clicks"] == 6 and stats["first_ts"] == 1000.0 and stats["last_ts"] == 1002.0
    assert 0.45 <= stats["seconds"] < 3.0  # 2 s of event time at 4x = 0.5 s
    records = consume_all(stream_settings, stream_settings.topic_clicks, stop_at_end=True)
    check_replayed(records, sorted(rows, key=lambda r: r[2])[:6], prefix="p.csv")


def test_replay_rejects_bad_arguments(stream_settings, tmp_path):
    path = write_csv(tmp_path / "x.csv", [("s", "i", 1.0)])
    with pytest.raises(FileNotFoundError, match="no such file"):
        replay(stream_settings, "csv", [tmp_path / "missing.csv"], reader_options=CSV_OPTS)
    with pytest.raises(ValueError, match="speed"):
        replay(stream_settings, "csv", [path], speed=0, reader_options=CSV_OPTS)
    with pytest.raises(ValueError, match="exactly one of session_col"):
        replay(stream_settings, "csv", [path], reader_options={"item_col": "item_id", "time_col": "timestamp"})
    no_create = Settings.from_env(env={}, **{**_kw(stream_settings), "create_topics": False})
    with pytest.raises(RuntimeError, match="does not exist"):
        replay(no_create, "csv", [path], progress=False, reader_options=CSV_OPTS)


SAMPLES = [
    ("reddit", "reddit/kaggle-head-sample/reddit_sample.csv", "user"),
    ("rsc15-prepared", "yoochoose-rsc15/session-rec-100k/yoochoose-clicks-100k_test.txt", "session"),
]


@pytest.mark.parametrize("fmt,rel,kind", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_replay_real_sample(stream_settings, fmt, rel, kind):
    from jump_core.data.readers import read_clicks

    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data sample absent: {path}")
    clicks = list(read_clicks(fmt, path))
    expected = [clicks[j] for j in np.argsort([c[2] for c in clicks], kind="stable")[:2000]]
    stats = replay(stream_settings, fmt, [path], limit=2000, progress=False)
    assert stats["clicks"] == 2000 and stats["key_field"] == kind
    records = consume_all(stream_settings, stream_settings.topic_clicks, stop_at_end=True)
    check_replayed(records, expected, prefix=path.name, key_fields=(kind,))


# --------------------------------------------------------------------------- tail


def prediction(key: str, position: int) -> dict:
    return {
        "session_key": key,
        "session_id": f"{key}#1",
        "position": position,
        "item": f"i{position}",
        "item_known": True,
        "dwell_s": 12.5,
        "top_items": ["i1", "i2", "i3"],
        "top_scores": [0.5, 0.25, 0.125],
        "model_version": "test",
        "event_ts": 1000.0 + position,
        "ingest_ts": 2000.0,
        "emit_ts": 2000.5,
    }


def test_tail_prints_predictions_as_json_lines(stream_settings):
    s = stream_settings
    ensure_topics(s)
    preds = [prediction(f"k{j % 4}", j) for j in range(8)]
    produce(s, s.topic_predictions, [(p["session_key"].encode(), codec.encode("prediction", p)) for p in preds])
    produce(s, s.topic_predictions, [(b"bad", b"\xc1 not msgpack")], partition=1)
    buf = io.StringIO()
    assert tail(s, from_beginning=True, timeout_s=1.0, out=buf) == 9
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    good = [x for x in lines if "error" not in x]
    bad = [x for x in lines if "error" in x]
    assert len(bad) == 1 and bad[0]["key"] == "bad" and bad[0]["error"].startswith("undecodable value")
    assert {(x["key"], json.dumps(x["value"], sort_keys=True)) for x in good} == {
        (p["session_key"], json.dumps({"schema": codec.SCHEMA, **p}, sort_keys=True)) for p in preds
    }
    for x in good:
        assert x["topic"] == s.topic_predictions and list(x["value"]) == list(codec.RECORDS["prediction"])
    per_part = defaultdict(list)
    for x in good:
        per_part[x["partition"]].append((x["offset"], x["value"]["position"]))
    for seq in per_part.values():
        assert seq == sorted(seq)
    buf = io.StringIO()
    assert tail(s, from_beginning=True, max_records=3, out=buf) == 3 and len(buf.getvalue().splitlines()) == 3


def test_tail_from_end_prints_only_new_records(stream_settings):
    s = stream_settings
    ensure_topics(s)
    for batch in range(2):  # two batches: Tansu's end offset is the last batch's base
        produce(
            s,
            s.topic_predictions,
            [(f"k{j}".encode(), codec.encode("prediction", prediction(f"k{j}", batch * 10 + j))) for j in range(5)],
        )
    ready, buf, result = threading.Event(), io.StringIO(), {}
    t = threading.Thread(target=lambda: result.setdefault("n", tail(s, timeout_s=3.0, out=buf, on_ready=ready.set)))
    t.start()
    assert ready.wait(20)
    produce(s, s.topic_predictions, [(b"new", codec.encode("prediction", prediction("new", 99)))])
    t.join(30)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert result["n"] == 1 and [x["value"]["position"] for x in lines] == [99]


def test_tail_other_topics_print_the_map(stream_settings, tmp_path):
    s = stream_settings
    replay(
        s,
        "csv",
        [write_csv(tmp_path / "c.csv", [("s1", "a", 5.0), ("s1", "b", 6.0)])],
        json_every=2,
        progress=False,
        reader_options=CSV_OPTS,
    )
    buf = io.StringIO()
    assert tail(s, topic=s.topic_clicks, from_beginning=True, max_records=2, out=buf) == 2
    values = sorted((json.loads(line)["value"] for line in buf.getvalue().splitlines()), key=lambda v: v["ts"])
    assert values == [
        {"schema": 1, "session": "s1", "item": "a", "ts": 5.0, "event_id": "c.csv:0"},
        {"schema": 1, "session": "s1", "item": "b", "ts": 6.0, "event_id": "c.csv:1"},
    ]


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jump")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (add_replay, add_tail, add_broker, add_topics):
        add(sub)
    return p


def test_cli_topics_replay_tail(stream_settings, tmp_path, monkeypatch, capsys):
    s = stream_settings
    for f in fields(Settings):
        if f.name.startswith("topic_") or f.name in ("bootstrap_servers", "partitions", "output_partitions"):
            monkeypatch.setenv(f.metadata["env"], str(getattr(s, f.name)))
    p = _parser()
    a = p.parse_args(["topics"])
    assert a.func(a) == 0
    assert json.loads(capsys.readouterr().out) == dict.fromkeys(topic_specs(s), "created")
    path = tmp_path / "nh.tsv"
    path.write_text("".join(f"x\tu{j % 3}\ti{j}\t{100 + (7 * j) % 13}\n" for j in range(20)))  # no header, tab
    a = p.parse_args(
        [
            "replay",
            str(path),
            "--format",
            "csv",
            "--delimiter",
            "tab",
            "--no-header",
            "--user-col",
            "1",
            "--item-col",
            "2",
            "--time-col",
            "3",
            "--limit",
            "10",
            "--json-every",
            "3",
            "--no-progress",
        ]
    )
    assert a.func(a) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["clicks"] == 10 and stats["key_field"] == "user" and stats["topic"] == s.topic_clicks
    records = consume_all(s, s.topic_clicks, stop_at_end=True)
    assert len(records) == 10 and sum(r.value.startswith(b"{") for r in records) == 4  # i = 0, 3, 6, 9
    a = p.parse_args(["tail", "--topic", s.topic_clicks, "--from-beginning", "--max", "2", "--timeout", "5"])
    assert a.func(a) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(json.loads(line)["value"]["user"].startswith("u") for line in out)
    with pytest.raises(SystemExit):
        p.parse_args(["replay", str(path), "--format", "csv", "--speed", "2", "--max"])  # exclusive
    a = p.parse_args(["broker"])
    assert (a.port, a.host) == (9092, "127.0.0.1")
