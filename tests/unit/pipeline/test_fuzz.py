"""Fuzzing the stream's input path (issue 14, item 6): Hypothesis-generated malformed click records
through the codec and the sessionizer core. Every record is either a click or a dead letter with a
reason; nothing raises, and the counts add up."""

from __future__ import annotations

import json
import math

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import codec
from pipeline.config import Settings
from pipeline.core.sessionizer import Message, SessionizerCore

NOW = 2_000_000_000.0
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# values a producer could put anywhere: wrong types, NaN / huge / negative numbers, deep nesting, long strings
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from([NOW, NOW + 1e9, -1.0, 1e308, float("nan"), 2**70, "", "x" * 300]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
odd_keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
records = st.one_of(
    # near-valid clicks with one field broken at a time
    st.fixed_dictionaries(
        {
            "user": st.one_of(st.text(min_size=1, max_size=8), values),
            "item": st.one_of(st.text(min_size=1, max_size=8), values),
            "ts": st.one_of(st.floats(0, NOW), values),
        },
        optional={"schema": st.one_of(st.just(1), values), "event_id": values, "session": values},
    ),
    st.dictionaries(odd_keys, values, max_size=6),
    values,
)


def encoded(obj, fmt: str) -> bytes:
    if fmt == "json":
        try:
            return json.dumps(obj, default=repr).encode()
        except (ValueError, TypeError, RecursionError):
            return b"{not json"
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return b"\xc1"


def check_decode(raw: bytes) -> None:
    try:
        click = codec.decode_click(raw, ("session", "user"), now=NOW, max_future_s=300.0)
    except codec.BadInput as e:
        assert e.reason and e.detail is not None
        return
    assert isinstance(click.key, str) and 1 <= len(click.key) <= 256 and isinstance(click.item, str)
    assert math.isfinite(click.ts) and 0 <= click.ts <= NOW + 300.0


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_a_click_or_a_reason(raw):
    check_decode(raw)


@FUZZ
@given(records, st.sampled_from(["json", "msgpack"]))
def test_malformed_records_decode_to_a_click_or_a_reason(obj, fmt):
    check_decode(encoded(obj, fmt))


def test_deep_nesting_and_one_megabyte_values_are_dead_letters_not_crashes():
    deep_json = b"[" * 100_000 + b"]" * 100_000
    deep_msgpack = b"\x91" * 100_000 + b"\xc0"
    huge = codec.pack({"user": "u" * (1 << 20), "item": "i", "ts": NOW})
    huge_item = json.dumps({"user": "u", "item": "i" * (1 << 20), "ts": NOW}).encode()
    for raw in (deep_json, deep_msgpack, huge, huge_item):
        check_decode(raw)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.binary(max_size=20), st.just(b"u1"), st.just(codec.TICK_KEY)),
            st.one_of(
                st.binary(max_size=200),
                records.map(lambda o: encoded(o, "msgpack")),
                st.builds(
                    lambda k, t: codec.encode_click(k, "i", t), st.sampled_from(["u1", "u2"]), st.floats(NOW - 1e5, NOW)
                ),
            ),
        ),
        max_size=40,
    )
)
def test_sessionizer_core_dead_letters_what_it_cannot_use_and_counts_add_up(messages):
    s = Settings.from_env(env={}, session_gap_s=3600.0, grace_s=60.0, max_session_clicks=50, context_clicks=20)
    core = SessionizerCore(s, clock=lambda: NOW)
    batch = [Message(0, 0, off, key, value, NOW) for off, (key, value) in enumerate(messages)]
    out = core.process(batch)  # must not raise
    c = out.counts
    clicks = sum(1 for m in batch if not codec.is_tick(m.key))
    assert c.get("consumed", 0) == clicks
    assert c.get("consumed", 0) == sum(c.get(k, 0) for k in ("accepted", "dead_lettered", "duplicates", "rekeyed"))
    assert len(out.dead_letters) == c.get("dead_lettered", 0) == sum(out.dead_reasons.values())
    for _, _, value in out.dead_letters:
        d = codec.decode("dead_letter", value)
        assert d["reason"] in out.dead_reasons and d["detail"]
