"""The workload of `jump bench stream --workload sessions` (pipeline/devtools/sessions_workload.py):
determinism, the gap band, and every closing rule on a hand-made stream with hand-computed counts."""

from __future__ import annotations

import pytest

from pipeline.devtools.sessions_workload import (
    RULES,
    UNSURE,
    Click,
    Workload,
    check_gaps,
    closed_sessions,
    compare_sessions,
    expected_closed,
    generate,
    kafka_partition,
    sessions,
)

SMALL = Workload(clicks=3000, keys=100)


def test_generate_is_deterministic_and_exact():
    a, b = generate(SMALL), generate(SMALL)
    assert a == b
    assert len(a) == SMALL.clicks
    assert len({c.key for c in a}) == SMALL.keys
    assert a == sorted(a, key=lambda c: (c.ts, c.key))
    assert len({c.event_id for c in a}) == len(a)
    assert generate(Workload(clicks=3000, keys=100, seed=1)) != a
    with pytest.raises(ValueError):
        generate(Workload(clicks=10, keys=20))


@pytest.mark.parametrize("w", [SMALL, Workload(clicks=20_000, keys=500, seed=3)])
def test_no_within_key_gap_in_the_unsure_band(w):
    clicks = generate(w)
    assert check_gaps(clicks) == 0
    last: dict[str, float] = {}
    for c in clicks:  # the same check, written out: every gap is below or above the band
        if c.key in last:
            gap = c.ts - last[c.key]
            assert gap < UNSURE[0] or gap > UNSURE[1]
        last[c.key] = c.ts
    # any gap inside the band therefore cuts the same sessions
    assert sessions(clicks, UNSURE[0]) == sessions(clicks, 3600.0) == sessions(clicks, UNSURE[1])


def test_check_gaps_counts_a_gap_in_the_band():
    assert check_gaps([Click("a", "i", 0.0, "a:0"), Click("a", "i", 3500.0, "a:1")]) == 1


# Hand-made stream, gap 3600 s, grace 60 s. Sessions:
#   a: [0, 100], [5000, 5100]      b: [200], [20000]      c: [10000]
# partitions: a, c -> 0; b -> 1 (partition 0's stream time ends at 10000, partition 1's at 20000).
HAND = sorted(
    [
        Click("a", "i1", 0.0, "a:0"),
        Click("a", "i2", 100.0, "a:1"),
        Click("a", "i3", 5000.0, "a:2"),
        Click("a", "i4", 5100.0, "a:3"),
        Click("b", "i1", 200.0, "b:0"),
        Click("b", "i2", 20000.0, "b:1"),
        Click("c", "i5", 10000.0, "c:0"),
    ],
    key=lambda c: (c.ts, c.key),
)
PART = {"a": 0, "b": 1, "c": 0}.__getitem__


def test_sessions_of_the_hand_made_stream():
    assert sessions(HAND) == {"a": [[0.0, 100.0], [5000.0, 5100.0]], "b": [[200.0], [20000.0]], "c": [[10000.0]]}


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("all", {("a", (0.0, 100.0)), ("a", (5000.0, 5100.0)), ("b", (200.0,)), ("b", (20000.0,)), ("c", (10000.0,))}),
        # all but each key's last session
        ("key", {("a", (0.0, 100.0)), ("b", (200.0,))}),
        # key rule + last sessions with last + 3660 < 20000 (the stream's end): a's (8760), c's (13660)
        ("watermark", {("a", (0.0, 100.0)), ("b", (200.0,)), ("a", (5000.0, 5100.0)), ("c", (10000.0,))}),
        # key rule + last sessions with last + 3660 < their partition's end: a's (8760 < 10000) only
        ("partition_stream_time", {("a", (0.0, 100.0)), ("b", (200.0,)), ("a", (5000.0, 5100.0))}),
        # the key's own latest time more than 2 * 3600 + 60 = 7260 s past the last click: b's first
        # (20000 - 200); not a's first (5100 - 100 = 5000), though a's next session started
        ("key_time", {("b", (200.0,))}),
    ],
)
def test_closing_rules_on_the_hand_made_stream(rule, expected):
    got = closed_sessions(HAND, rule, partition_of=PART, gap_s=3600.0, grace_s=60.0)
    assert {(k, tuple(ts)) for k, ts in got} == expected
    assert len(got) == len(expected) == expected_closed(HAND, rule, partition_of=PART, gap_s=3600.0, grace_s=60.0)


def test_grace_delays_the_stream_time_closes():
    # grace 1300 s: a's last session (5100 + 4900 = 10000) is no longer < partition 0's end (10000)
    assert expected_closed(HAND, "partition_stream_time", partition_of=PART, grace_s=1300.0) == 2
    # watermark: c's (10000 + 4900 = 14900 < 20000) and a's still close
    assert expected_closed(HAND, "watermark", grace_s=1300.0) == 4


def test_key_time_compares_whole_milliseconds():
    def two(t: float) -> list[Click]:
        return [Click("d", "i", 0.0, "d:0"), Click("d", "i", t, "d:1")]

    assert expected_closed(two(7260.0), "key_time", grace_s=60.0) == 0  # exactly 2 * gap + grace: still open
    assert expected_closed(two(7260.001), "key_time", grace_s=60.0) == 1  # one millisecond more: closed


def test_rule_errors():
    with pytest.raises(ValueError, match="unknown closing rule"):
        expected_closed(HAND, "session")
    with pytest.raises(ValueError, match="partition_of"):
        expected_closed(HAND, "partition_stream_time")
    assert set(RULES) == {"all", "key", "key_time", "partition_stream_time", "watermark"}


def test_rules_nest_on_the_generated_workload():
    clicks = generate(SMALL)
    n = {
        r: expected_closed(clicks, r, partition_of=lambda k: kafka_partition(k.encode(), 4), grace_s=60.0)
        for r in RULES
    }
    assert (
        n["key"]
        <= n["partition_stream_time"]
        <= n["watermark"]
        <= n["all"]
        == sum(len(s) for s in sessions(clicks).values())
    )
    assert n["key_time"] <= n["key"] + SMALL.keys


def test_compare_sessions():
    expected = [("a", [1.0, 2.0]), ("b", [3.0])]
    assert compare_sessions(expected, expected)["matched"] == 2
    d = compare_sessions([("a", [1.0, 2.0]), ("a", [1.0, 2.0]), ("b", [3.0, 4.0])], expected)
    assert (d["matched"], d["missing"], d["extra"]) == (1, 1, 2)
    assert d["examples_missing"] == [["b", [3.0]]]


def test_kafka_partition_is_the_default_partitioner():
    from aiokafka.partitioner import murmur2  # an independent implementation of Kafka's murmur2

    for key in (b"u00000", b"u00012", b"u04999"):
        assert kafka_partition(key, 4) == (murmur2(key) & 0x7FFFFFFF) % 4


def test_partition_stream_time_is_what_the_sessionizer_core_closes():
    """The rule the benchmark expects of the sessionizer, checked against its core (no Kafka): the
    generated clicks in batches of 250 per partition, then the training-log records compared."""
    from pipeline import codec
    from pipeline.config import Settings
    from pipeline.core.sessionizer import Message, SessionizerCore

    clicks = generate(SMALL)
    s = Settings.from_env(env={}, session_gap_s=3600.0, grace_s=60.0, idle_close_s=1e9, partitions=4)
    core = SessionizerCore(s)
    by_partition: dict[int, list[Message]] = {}
    for c in clicks:
        p = kafka_partition(c.key.encode(), 4)
        msgs = by_partition.setdefault(p, [])
        value = codec.encode_click(c.key, c.item, c.ts, c.event_id, key_field="user")
        msgs.append(Message(0, p, len(msgs), c.key.encode(), value, c.ts))
    got = []
    for msgs in by_partition.values():
        for i in range(0, len(msgs), 250):
            out = core.process(msgs[i : i + 250])
            assert not out.dead_letters
            got += [codec.decode("training_log", v) for _p, _k, v in out.training_log]
    expected = closed_sessions(
        clicks, "partition_stream_time", partition_of=lambda k: kafka_partition(k.encode(), 4), grace_s=60.0
    )
    d = compare_sessions([(r["session_key"], r["ts"]) for r in got], expected)
    assert (d["missing"], d["extra"]) == (0, 0) and d["matched"] == len(expected)
