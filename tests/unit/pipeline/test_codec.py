"""pipeline.codec: click decoding (every branch and dead-letter reason), record encode/decode, and the
property that no input bytes make decode_click raise anything but BadInput."""

from __future__ import annotations

import json
import math
import re

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import codec
from pipeline.codec import REASONS, BadInput, Click, decode_click

T = 1700000000.5
PROPERTY = settings(
    derandomize=True, database=None, deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)


def mp(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def js(obj) -> bytes:
    return json.dumps(obj).encode()


def reason_of(raw, **kw) -> str:
    with pytest.raises(BadInput) as e:
        decode_click(raw, **kw)
    assert e.value.reason in REASONS
    assert str(e.value).startswith(e.value.reason + ": ") and e.value.detail
    return e.value.reason


# -- format detection ------------------------------------------------------------------------------
@pytest.mark.parametrize("enc", [mp, js], ids=["msgpack", "json"])
def test_decodes_both_formats(enc):
    obj = {"schema": 1, "user": "u1", "item": "i9", "ts": T, "event_id": "e1"}
    assert decode_click(enc(obj)) == Click("u1", "i9", T, "e1")


def test_format_is_detected_per_message():
    raws = [
        codec.encode_click("u1", "a", T),
        codec.encode_click("u1", "b", T + 1, fmt="json"),
        codec.encode_click("u1", "c", T + 2),
    ]
    assert [decode_click(r).item for r in raws] == ["a", "b", "c"]
    assert raws[0][:1] != b"{" and raws[1][:1] == b"{"


@pytest.mark.parametrize("pad", [b" ", b"\n", b"\r\n\t  "])
def test_json_with_leading_whitespace(pad):
    assert decode_click(pad + js({"user": "u1", "item": "i", "ts": T})) == Click("u1", "i", T, None)


def test_encode_click_round_trip():
    for fmt in ("msgpack", "json"):
        raw = codec.encode_click("s7", "i3", T, event_id="e", key_field="session", fmt=fmt)
        assert decode_click(raw) == Click("s7", "i3", T, "e")
        assert decode_click(raw, key_fields=("session",)) == Click("s7", "i3", T, "e")


# -- undecodable / not_a_map -------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"", None], ids=["empty", "none"])
def test_empty_value_is_undecodable(raw):
    assert reason_of(raw) == "undecodable"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x85\xa4user",  # truncated msgpack map
        mp({"user": "u"}) + b"\x00",  # trailing bytes after a msgpack value
        b"{not json",  # looks like JSON, is not
        b'{"user": "u", "item": "i", "ts": 1',  # truncated JSON
        b'{"user": "\xff\xfe", "item": "i"}',  # JSON that is not UTF-8
        b"\xff" * 32,
        b"{" * 3,
    ],
    ids=["c1", "truncated-msgpack", "extra-data", "bad-json", "truncated-json", "not-utf8", "ff", "braces"],
)
def test_garbage_is_undecodable(raw):
    assert reason_of(raw) == "undecodable"


@pytest.mark.parametrize(
    "obj",
    [[1, 2], ["user", "u"], "a string", 42, None, 1.5, b"bytes"],
    ids=["list", "list2", "str", "int", "nil", "float", "bin"],
)
def test_a_msgpack_non_map_is_not_a_map(obj):
    assert reason_of(mp(obj)) == "not_a_map"


# -- missing_field -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "obj",
    [
        {"item": "i", "ts": T},  # no key field
        {"user": None, "session": None, "item": "i", "ts": T},  # null counts as absent
        {"uid": "u", "item": "i", "ts": T},  # a field that is not a key field
        {"user": "u", "ts": T},
        {"user": "u", "item": None, "ts": T},
        {"user": "u", "item": "i"},
        {"user": "u", "item": "i", "ts": None},
        {},
    ],
    ids=["no-key", "null-keys", "other-key", "no-item", "null-item", "no-ts", "null-ts", "empty-map"],
)
def test_missing_field(obj):
    for enc in (mp, js):
        assert reason_of(enc(obj)) == "missing_field"


# -- wrong_type ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "patch",
    [
        {"ts": True},
        {"ts": False},
        {"ts": "1700000000"},
        {"ts": [T]},
        {"ts": {"s": T}},
        {"item": {"id": 1}},
        {"item": ["i"]},
        {"item": 1.5},
        {"item": True},
        {"item": ""},
        {"item": "x" * 257},
        {"user": True},
        {"user": 2.0},
        {"user": ["u"]},
        {"user": ""},
        {"event_id": True},
        {"event_id": 1.5},
        {"event_id": {"id": 1}},
        {"event_id": ["e"]},
    ],
    ids=lambda p: f"{next(iter(p))}={next(iter(p.values()))!r:.12}",
)
def test_wrong_type(patch):
    obj = {"user": "u", "item": "i", "ts": T, **patch}
    for enc in (mp, js):
        assert reason_of(enc(obj)) == "wrong_type"


def test_msgpack_only_types_are_wrong_types():
    assert reason_of(mp({"user": "u", "item": b"bin", "ts": T})) == "wrong_type"
    assert reason_of(mp({"user": "u", "item": "i", "ts": msgpack.Timestamp(1, 0)})) == "wrong_type"
    assert reason_of(mp({"user": "u", "item": msgpack.ExtType(5, b"x"), "ts": T})) == "wrong_type"


def test_id_length_limits():
    assert decode_click(mp({"user": "u" * 256, "item": "i" * 256, "ts": T})).key == "u" * 256
    assert reason_of(mp({"user": "u" * 257, "item": "i", "ts": T})) == "wrong_type"


# -- bad_timestamp / future_timestamp -------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, -1.0, -1e-9, -5])
def test_bad_timestamp(ts):
    obj = {"user": "u", "item": "i", "ts": ts}
    assert reason_of(mp(obj)) == "bad_timestamp"
    # Python's json writes NaN/Infinity literals and reads them back: JSON can carry them too
    assert reason_of(js(obj)) == "bad_timestamp"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0.5"])
def test_bad_timestamp_json_literals(literal):
    assert reason_of(b'{"user": "u", "item": "i", "ts": ' + literal + b"}") == "bad_timestamp"


def test_zero_and_integer_timestamps_are_fine():
    assert decode_click(mp({"user": "u", "item": "i", "ts": 0})).ts == 0.0
    click = decode_click(js({"user": "u", "item": "i", "ts": 1700000000}))
    assert click.ts == 1700000000.0 and type(click.ts) is float


def test_future_timestamp():
    now = 1_000_000.0
    raw = lambda ts: mp({"user": "u", "item": "i", "ts": ts})  # noqa: E731
    assert decode_click(raw(now + 300), now=now).ts == now + 300  # the bound is inclusive
    assert reason_of(raw(now + 300.5), now=now) == "future_timestamp"
    assert reason_of(raw(now + 11), now=now, max_future_s=10) == "future_timestamp"
    assert decode_click(raw(now + 9), now=now, max_future_s=10).ts == now + 9
    assert decode_click(raw(now + 1e9)).ts == now + 1e9  # no `now`: no check
    assert decode_click(raw(now - 1e5), now=now).ts == now - 1e5  # the past is fine here


def test_checks_run_in_order():
    """missing fields before wrong types, wrong types before timestamps, timestamps before the future."""
    assert reason_of(mp({"user": True, "ts": T})) == "missing_field"
    assert reason_of(mp({"user": True, "item": "i", "ts": -1})) == "wrong_type"
    assert reason_of(mp({"user": "u", "item": "i", "ts": math.inf}), now=0.0) == "bad_timestamp"
    assert reason_of(mp({"schema": 2, "item": "i"})) == "unsupported_schema"


# -- schema --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", [2, 0, "1", None, [1]])
def test_unsupported_schema(schema):
    for enc in (mp, js):
        assert reason_of(enc({"schema": schema, "user": "u", "item": "i", "ts": T})) == "unsupported_schema"


def test_schema_is_optional_and_1_is_accepted():
    assert decode_click(mp({"user": "u", "item": "i", "ts": T})) == decode_click(
        mp({"schema": 1, "user": "u", "item": "i", "ts": T})
    )


def test_boolean_schema_is_unsupported():
    assert reason_of(mp({"schema": True, "user": "u", "item": "i", "ts": T})) == "unsupported_schema"


# -- key fields ------------------------------------------------------------------------------------------------------
def test_auto_prefers_session_over_user():
    both = mp({"user": "u", "session": "s", "item": "i", "ts": T})
    assert decode_click(both).key == "s"
    assert decode_click(both, key_fields=("session", "user")).key == "s"
    assert decode_click(mp({"user": "u", "session": None, "item": "i", "ts": T})).key == "u"
    assert decode_click(mp({"user": "u", "item": "i", "ts": T})).key == "u"


def test_pinned_key_field():
    both = mp({"user": "u", "session": "s", "item": "i", "ts": T})
    assert decode_click(both, key_fields=("user",)).key == "u"
    assert decode_click(both, key_fields=("session",)).key == "s"
    assert reason_of(mp({"user": "u", "item": "i", "ts": T}), key_fields=("session",)) == "missing_field"
    assert decode_click(mp({"uid": 5, "item": "i", "ts": T}), key_fields=("uid",)).key == "5"


def test_integer_ids_become_strings():
    click = decode_click(mp({"user": 42, "item": 7, "ts": T, "event_id": 99}))
    assert click == Click("42", "7", T, "99")
    assert decode_click(js({"session": -3, "item": 0, "ts": T})) == Click("-3", "0", T, None)
    assert decode_click(mp({"user": 2**63, "item": -(2**63), "ts": T})).item == str(-(2**63))


def test_event_id_is_optional_and_null_is_absent():
    assert decode_click(mp({"user": "u", "item": "i", "ts": T})).event_id is None
    assert decode_click(mp({"user": "u", "item": "i", "ts": T, "event_id": None})).event_id is None


def test_unknown_fields_are_ignored():
    obj = {"user": "u", "item": "i", "ts": T, "price": 9.99, "tags": ["x"], 5: "int key"}
    assert decode_click(mp(obj)) == Click("u", "i", T, None)


# -- BadInput ----------------------------------------------------------------------------------------------------------
def test_bad_input():
    e = BadInput("late", "3 s behind")
    assert isinstance(e, ValueError) and e.reason == "late" and e.detail == "3 s behind"
    assert str(e) == "late: 3 s behind"
    with pytest.raises(AssertionError):
        BadInput("no_such_reason", "x")


def test_reasons_are_unique_identifiers():
    assert len(set(REASONS)) == len(REASONS)
    assert all(r.isidentifier() and r == r.lower() for r in REASONS)


# -- encode / decode of the records the stream writes ------------------------------------------------------------------
def _record(kind: str) -> dict:
    return {name: f"v-{name}" for name in codec.RECORDS[kind] if name != "schema"}


@pytest.mark.parametrize("kind", [k for k in codec.RECORDS if k != "click"])
def test_encode_adds_schema_and_round_trips(kind):
    rec = _record(kind)
    raw = codec.encode(kind, rec)
    obj = codec.unpack(raw)
    assert obj == {"schema": codec.SCHEMA, **rec}
    assert next(iter(obj)) == "schema"
    assert codec.decode(kind, raw) == obj
    assert codec.encode(kind, {"schema": 1, **rec}) == raw  # an explicit schema 1 is the same


@pytest.mark.parametrize("kind", [k for k in codec.RECORDS if k != "click"])
def test_encode_rejects_missing_and_extra_fields(kind):
    rec = _record(kind)
    missing = next(iter(rec))
    with pytest.raises(ValueError, match=re.escape(f"missing ['{missing}']")):
        codec.encode(kind, {k: v for k, v in rec.items() if k != missing})
    with pytest.raises(ValueError, match="surprise"):
        codec.encode(kind, {**rec, "surprise": 1})


def test_encode_unknown_kind():
    with pytest.raises(KeyError):
        codec.encode("no-such-record", {})


def test_bytes_travel_as_msgpack_bin():
    rec = {**_record("dead_letter"), "key": b"\x00k", "value": b"\xc1raw"}
    raw = codec.encode("dead_letter", rec)
    obj = codec.decode("dead_letter", raw)
    assert obj["key"] == b"\x00k" and obj["value"] == b"\xc1raw"
    assert b"\xc4\x02\x00k" in raw  # bin 8 header, not a str


@pytest.mark.parametrize(
    "raw",
    [
        mp({"schema": 2, "tick": True, "wall_ts": T}),
        mp({"tick": True, "wall_ts": T}),
        mp({"schema": "1"}),
        mp([1, "tick"]),
        mp(None),
    ],
    ids=["schema2", "no-schema", "str-schema", "list", "nil"],
)
def test_decode_rejects_foreign_records(raw):
    with pytest.raises(ValueError):
        codec.decode("tick", raw)


def test_is_tick():
    assert codec.is_tick(codec.TICK_KEY) and codec.TICK_KEY == b"__jump_tick__"
    assert not codec.is_tick(None) and not codec.is_tick(b"") and not codec.is_tick(b"u1")


# -- properties: nothing but a Click or BadInput -----------------------------------------------------------------------
def _outcome(raw: bytes, **kw):
    """decode_click's result; any exception other than BadInput fails the test."""
    try:
        click = decode_click(raw, **kw)
    except BadInput as e:
        assert e.reason in REASONS
        return e
    assert isinstance(click, Click)
    assert isinstance(click.key, str) and 1 <= len(click.key) <= 256
    assert isinstance(click.item, str) and 1 <= len(click.item) <= 256
    assert type(click.ts) is float and math.isfinite(click.ts) and click.ts >= 0
    assert click.event_id is None or isinstance(click.event_id, str)
    if kw.get("now") is not None:
        assert click.ts <= kw["now"] + kw.get("max_future_s", 300.0)
    return click


FIELDS = [*list(codec.RECORDS["click"]), "other"]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.sampled_from([0, 1, 2, T, "1", "", "u", "i"])
)
_values = (
    _scalars
    | st.binary(max_size=8)
    | st.lists(_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=3), _scalars, max_size=2)
)
_click_maps = st.dictionaries(st.sampled_from(FIELDS), _values, max_size=len(FIELDS))
# valid clicks, and valid clicks with one field replaced by an assorted value, so that every branch
# (and a Click) is reached, not only the first checks
_valid_clicks = st.fixed_dictionaries(
    {
        "user": st.text(min_size=1, max_size=5) | st.integers(-5, 5),
        "item": st.text(min_size=1, max_size=5) | st.integers(0, 10**6),
        "ts": st.floats(0, 2e9) | st.integers(0, 2**40),
    },
    optional={
        "session": st.text(min_size=1, max_size=5) | st.integers(0, 9) | st.none(),
        "schema": st.just(1),
        "event_id": st.text(max_size=5) | st.integers(0, 9) | st.none(),
    },
)
_near_clicks = _valid_clicks | st.builds(lambda d, k, v: {**d, k: v}, _valid_clicks, st.sampled_from(FIELDS), _values)


@PROPERTY
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_click_or_bad_input(raw):
    _outcome(raw)
    _outcome(raw, now=T)


@PROPERTY
@given(st.binary(max_size=64))
def test_arbitrary_bytes_after_a_brace_give_a_click_or_bad_input(raw):
    _outcome(b"{" + raw)
    _outcome(b" \n{" + raw)


@PROPERTY
@given(
    _click_maps | _near_clicks,
    st.sampled_from([("session", "user"), ("user",), ("session",)]),
    st.one_of(st.none(), st.floats(0, 2e9)),
)
def test_arbitrary_msgpack_maps_give_a_click_or_bad_input(obj, key_fields, now):
    raw = mp(obj)
    _outcome(raw, key_fields=key_fields, now=now)
    # the truncations and the corruptions of a valid encoding, too
    _outcome(raw[: len(raw) // 2], key_fields=key_fields)
    _outcome(raw + b"\x00", key_fields=key_fields)


@PROPERTY
@given(_click_maps | _near_clicks)
def test_arbitrary_json_objects_give_a_click_or_bad_input(obj):
    obj = {k: v for k, v in obj.items() if not isinstance(v, bytes)}  # JSON has no bytes
    try:
        raw = json.dumps(obj).encode()
    except (TypeError, ValueError):
        return
    result = _outcome(raw, now=2e9)
    if isinstance(result, Click):  # the same object as msgpack decodes to the same click
        assert decode_click(mp(obj)) == result


@PROPERTY
@given(_near_clicks)
def test_json_and_msgpack_agree(obj):
    obj = {k: v for k, v in obj.items() if not isinstance(v, bytes)}
    try:
        a = decode_click(mp(obj))
    except BadInput as e:
        a = e.reason
    try:
        b = decode_click(json.dumps(obj).encode())
    except BadInput as e:
        b = e.reason
    assert a == b


# -- known holes (see the report): inputs that escape as other exceptions ----------------------------------------------
def test_huge_json_integer_timestamp_is_bad_timestamp():
    assert reason_of(b'{"user": "u", "item": "i", "ts": 1' + b"0" * 400 + b"}") == "bad_timestamp"


def test_deeply_nested_json_is_undecodable():
    assert reason_of(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") == "undecodable"


def test_deeply_nested_msgpack_is_undecodable():
    assert reason_of(b"\x91" * 100_000 + b"\x80") == "undecodable"


def test_dead_letter_of_a_huge_message_is_cut_to_fit_a_producer_request():
    key, value = b"k" * 5000, b"v" * (2 << 20)  # a 2 MB value would not fit a 1 MB producer request
    d = codec.decode("dead_letter", codec.dead_letter("wrong_type", "too long", "clicks", 0, 7, key, value, 1.0)[1])
    assert d["value"] == value[: codec.DEAD_VALUE_MAX] and d["value_size"] == len(value)
    assert d["key"] == key[: codec.DEAD_KEY_MAX] and d["key_size"] == len(key)
    small = codec.decode("dead_letter", codec.dead_letter("wrong_type", "x", "clicks", 0, 8, b"k", b"v", 1.0)[1])
    assert (small["key"], small["value"], small["key_size"], small["value_size"]) == (b"k", b"v", 1, 1)
    assert len(codec.dead_letter("wrong_type", "x" * 10_000, "clicks", 0, 9, key, value, 1.0)[1]) < 100_000
