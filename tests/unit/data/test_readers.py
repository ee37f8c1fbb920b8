"""Tests for jump_core.data.readers: real samples under shared/data, and unit tests on small files."""

from __future__ import annotations

import calendar
import csv
import gzip
import math
import pickle
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jump_core.data.readers import (
    FORMATS,
    MalformedRowError,
    ReadStats,
    default_gap,
    key_kind,
    parse_timestamp,
    read_clicks,
)
from jump_core.sessions import REDDIT_GAP

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"

RSC15_RAW = "yoochoose-rsc15/sr-gtm-sample/sample_yoochoose.dat"
RSC15_TRAIN = "yoochoose-rsc15/session-rec-100k/yoochoose-clicks-100k_train_full.txt.gz"
RSC15_TEST = "yoochoose-rsc15/session-rec-100k/yoochoose-clicks-100k_test.txt"
DIGINETICA = "diginetica-cikm16/sr-gnn-sample/sample_train-item-views.csv"
REDDIT = "reddit/kaggle-head-sample/reddit_sample.csv"
RETAILROCKET = "retailrocket/sr-gtm-sample/sample_retailrocket.csv"
LASTFM = "lastfm-1k/myluco-sample/userid-timestamp-artid-artname-traid-traname.tsv"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0) -> float:
    """Unix seconds of a UTC wall time, computed without datetime (independent of the reader)."""
    return calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0)) + s


def sample(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data sample not present: {path}")
    return path


def raw_rows(path: Path, delimiter: str, header: bool, quoting: int = csv.QUOTE_MINIMAL) -> list[list[str]]:
    """Independent reading of a sample: plain csv, no reader code."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter, quoting=quoting) if r]
    return rows[1:] if header else rows


def distinct(clicks, k: int) -> int:
    return len({c[k] for c in clicks})


def assert_well_typed(clicks) -> None:
    for key, item, ts in clicks:
        assert isinstance(key, str) and key and isinstance(item, str) and item
        assert isinstance(ts, float) and math.isfinite(ts) and ts >= 0


# --------------------------------------------------------------------------- real samples


def test_rsc15_raw_sample():
    path = sample(RSC15_RAW)
    raw = raw_rows(path, ",", header=False)
    stats = ReadStats()
    clicks = list(read_clicks("rsc15", str(path), stats=stats))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == 1913
    assert distinct(clicks, 0) == len({r[0] for r in raw}) == 461
    assert distinct(clicks, 1) == len({r[2] for r in raw}) == 907
    assert (stats.rows, stats.skipped, stats.filtered) == (1913, 0, 0)
    # first row: 832,2014-04-06T20:21:58.444Z,214717095,0
    assert clicks[0][:2] == ("832", "214717095")
    assert clicks[0][2] == pytest.approx(utc(2014, 4, 6, 20, 21, 58.444), abs=1e-6)
    ts = [c[2] for c in clicks]
    assert utc(2014, 4, 1) <= min(ts) and max(ts) < utc(2014, 4, 8)
    assert min(ts) == pytest.approx(utc(2014, 4, 1, 3, 24, 38.436), abs=1e-6)
    assert default_gap("rsc15") is None and key_kind("rsc15") == "session"


@pytest.mark.parametrize(
    "rel, rows, sessions, items",
    [
        (RSC15_TRAIN, 70278, 17794, 2933),
        (RSC15_TEST, 13568, 3416, 1771),
    ],
)
def test_rsc15_prepared_samples(rel, rows, sessions, items):
    path = sample(rel)
    raw = raw_rows(path, "\t", header=True)
    clicks = list(read_clicks("rsc15-prepared", path))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == rows
    assert distinct(clicks, 0) == len({r[0] for r in raw}) == sessions
    assert distinct(clicks, 1) == len({r[1] for r in raw}) == items
    assert [c[2] for c in clicks[:50]] == [float(r[2]) for r in raw[:50]]  # kept as is, file order
    ts = [c[2] + 7200 for c in clicks]  # Time is UTC - 7200 s (PROVENANCE)
    assert utc(2014, 4, 1) <= min(ts) and max(ts) < utc(2014, 4, 9)


def test_rsc15_prepared_is_raw_utc_minus_7200():
    """Unit cross-check of both rsc15 readers: PROVENANCE counts 1,575 exact matches."""
    raw = list(read_clicks("rsc15", sample(RSC15_RAW)))
    times = defaultdict(list)
    for key, item, ts in read_clicks("rsc15-prepared", [sample(RSC15_TRAIN), sample(RSC15_TEST)]):
        times[key, item].append(ts)
    matched = sum(any(abs(ts - 7200 - t) < 1e-3 for t in times.get((k, i), ())) for k, i, ts in raw)
    assert matched == 1575


def test_diginetica_sample():
    path = sample(DIGINETICA)
    raw = raw_rows(path, ";", header=True)
    clicks = list(read_clicks("diginetica", path))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == 12391
    assert distinct(clicks, 0) == len({r[0] for r in raw}) == 2986
    assert distinct(clicks, 1) == len({r[2] for r in raw}) == 7139
    # independent expectation: earliest eventdate of the session (00:00 UTC) + timeframe / 1000
    first_day: dict[str, float] = {}
    for sid, _, _, _, date in raw:
        y, m, d = map(int, date.split("-"))
        first_day[sid] = min(first_day.get(sid, math.inf), utc(y, m, d))
    for (sid, _, item, frame, _), click in zip(raw, clicks):  # file order kept
        assert click[:2] == (sid, item)
        assert click[2] == pytest.approx(first_day[sid] + int(frame) / 1000, abs=1e-6)
    per_session = defaultdict(list)
    for sid, _, ts in clicks:
        per_session[sid].append(ts)
    gaps = [b - a for ts in per_session.values() for a, b in zip(sorted(ts), sorted(ts)[1:])]
    assert len(gaps) == 9405
    assert max(gaps) == pytest.approx(1178.448, abs=1e-6)
    ts = [c[2] for c in clicks]
    assert utc(2016, 1, 3) <= min(ts) and max(ts) < utc(2016, 6, 3)


def test_reddit_sample():
    path = sample(REDDIT)
    raw = raw_rows(path, ",", header=True)
    clicks = list(read_clicks("reddit", path))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == 5000
    assert distinct(clicks, 0) == len({r[0] for r in raw}) == 17
    assert distinct(clicks, 1) == len({r[1] for r in raw}) == 467
    assert clicks[0] == ("kabanossi", "photoshopbattles", 1482747899.0)
    assert [c[2] for c in clicks] == [float(r[2]) for r in raw]  # not sorted: descending as stored
    ts = [c[2] for c in clicks]
    assert utc(2014, 1, 1) <= min(ts) and max(ts) < utc(2017, 1, 1)
    assert default_gap("reddit") == REDDIT_GAP == 3600.0 and key_kind("reddit") == "user"


def test_retailrocket_sample():
    path = sample(RETAILROCKET)
    raw = raw_rows(path, "\t", header=True)
    clicks = list(read_clicks("retailrocket", path))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == 10080
    assert distinct(clicks, 0) == len({r[3] for r in raw}) == 2950
    assert distinct(clicks, 1) == len({r[2] for r in raw}) == 5566
    assert clicks[0] == ("0", "285930", 1442004589.0)
    ts = [c[2] for c in clicks]
    assert utc(2015, 5, 3) <= min(ts) and max(ts) < utc(2015, 9, 19)
    assert key_kind("retailrocket", path) == "session"
    assert default_gap("retailrocket", path) is None


def test_lastfm_sample():
    path = sample(LASTFM)
    raw = raw_rows(path, "\t", header=False, quoting=csv.QUOTE_NONE)
    clicks = list(read_clicks("lastfm", path))
    assert_well_typed(clicks)
    assert len(clicks) == len(raw) == 5000
    assert distinct(clicks, 0) == 2
    items = {r[4] if r[4] else f"{r[3]}\x1f{r[5]}" for r in raw}
    assert distinct(clicks, 1) == len(items)
    quoted = next(k for k, r in enumerate(raw) if '"Hammond"' in r[3])  # quote char, QUOTE_NONE
    assert clicks[quoted][1] == raw[quoted][4] == "9383afaa-4f15-4871-8a33-553ba8dd5560"
    assert clicks[0][2] == utc(2009, 5, 4, 23, 8, 57)
    ts = [c[2] for c in clicks]
    assert min(ts) == utc(2008, 12, 8, 6, 4, 0) and max(ts) == utc(2009, 5, 4, 23, 8, 57)
    assert default_gap("lastfm") == 3600.0


# --------------------------------------------------------------------------- unit tests


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


T0 = utc(2020, 1, 2, 3, 4, 5.25)


@pytest.mark.parametrize(
    "unit, stamp",
    [
        ("s", f"{T0}"),
        ("ms", f"{int(T0 * 1000)}"),
        ("us", f"{int(T0 * 1_000_000)}"),
        ("iso", "2020-01-02T03:04:05.250Z"),
        ("iso", "2020-01-02T03:04:05.250+00:00"),
        ("iso", "2020-01-02T05:04:05.250+02:00"),
        ("iso", "2020-01-02 03:04:05.25"),
    ],
)
def test_time_units(tmp_path, unit, stamp):
    path = write(tmp_path, "c.csv", f"sid,item,t\ns1,i1,{stamp}\n")
    clicks = list(read_clicks("csv", path, session_col="sid", item_col="item", time_col="t", time_unit=unit))
    assert clicks == [("s1", "i1", pytest.approx(T0, abs=1e-6))]


def test_parse_timestamp_bare_date_is_midnight_utc():
    assert parse_timestamp("2016-05-09", "iso") == utc(2016, 5, 9)
    assert parse_timestamp("1500", "ms") == 1.5


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "abc", "", "1e400"])
def test_bad_numeric_timestamps_rejected(tmp_path, bad):
    path = write(tmp_path, "c.csv", f"sid,item,t\ns1,i1,10\ns1,i2,{bad}\n")
    with pytest.raises(MalformedRowError, match=r"c\.csv:3: timestamp") as err:
        list(read_clicks("csv", path, session_col="sid", item_col="item", time_col="t"))
    assert err.value.line == 3 and err.value.category == "bad timestamp"
    stats = ReadStats()
    assert list(
        read_clicks("csv", path, skip_bad=True, stats=stats, session_col="sid", item_col="item", time_col="t")
    ) == [("s1", "i1", 10.0)]
    assert stats.skipped_reasons == {"bad timestamp": 1}


def test_bad_iso_timestamp(tmp_path):
    path = write(tmp_path, "y.dat", "1,2014-04-06T20:21:58.444Z,5,0\n2,yesterday,6,0\n")
    with pytest.raises(MalformedRowError, match=r"y\.dat:2: timestamp 'yesterday' is not ISO-8601"):
        list(read_clicks("rsc15", path))


def test_gzip_is_transparent(tmp_path):
    text = "SessionId\tItemId\tTime\n1\t10\t100.5\n1\t11\t160.25\n2\t10\t170\n"
    plain = list(read_clicks("rsc15-prepared", write(tmp_path, "p.txt", text)))
    gz = list(read_clicks("rsc15-prepared", write(tmp_path, "p.txt.gz", text)))
    assert plain == gz == [("1", "10", 100.5), ("1", "11", 160.25), ("2", "10", 170.0)]


MIXED = (
    "session_id,user_id,item_id,timestamp\n"  # 1 header
    "s1,u1,i1,100\n"  # 2 good
    "\n"  # 3 blank: ignored, not counted
    "s1,u1,i2,abc\n"  # 4 bad timestamp
    "s1,u1,,120\n"  # 5 empty item
    "s2,u2,i3\n"  # 6 wrong field count
    "   \n"  # 7 blank
    ",u2,i3,130\n"  # 8 empty session
    "s2,u2,i4,140.5\n"  # 9 good
    "s2,u2,i5,nan\n"  # 10 non-finite
)


def read_mixed(path, **kw):
    return read_clicks("csv", path, session_col="session_id", item_col="item_id", time_col="timestamp", **kw)


def test_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path, "mixed.csv", MIXED)
    with pytest.raises(MalformedRowError) as err:
        list(read_mixed(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}:4: ") and "mixed.csv" in msg and "'abc' is not a number" in msg
    assert isinstance(err.value, ValueError)
    copy = pickle.loads(pickle.dumps(err.value))
    assert str(copy) == msg and copy.line == 4


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("s1,u1,,120", "empty 'item_id'"),
        ("s2,u2,i3", "expected 4 fields, got 3"),
        (",u2,i3,130", "empty 'session_id'"),
        ("s2,u2,i5,nan", "timestamp 'nan' is not finite"),
        ("s2,u2,i5,-3", "timestamp '-3' is negative"),
        ("s2,u2,i5,1,9", "expected 4 fields, got 5"),
    ],
)
def test_each_malformed_kind_reports_its_line(tmp_path, bad, expected):
    # header, good row, blank line, bad row: the bad row is physical line 4
    path = write(tmp_path, "one.csv", f"session_id,user_id,item_id,timestamp\ns1,u1,i1,1\n\n{bad}\n")
    with pytest.raises(MalformedRowError, match=rf"one\.csv:4: {expected}"):
        list(read_mixed(path))


def test_skip_bad_keeps_good_rows_and_counts(tmp_path):
    path = write(tmp_path, "mixed.csv", MIXED)
    stats = ReadStats()
    assert list(read_mixed(path, skip_bad=True, stats=stats)) == [("s1", "i1", 100.0), ("s2", "i4", 140.5)]
    assert (stats.rows, stats.skipped, stats.filtered, stats.clicks) == (7, 5, 0, 2)
    assert stats.skipped_reasons == {"bad timestamp": 2, "missing field": 2, "wrong field count": 1}
    summary = stats.summary()
    assert "\n" not in summary
    for part in (
        "rows=7",
        "clicks=2",
        "skipped=5",
        "filtered=0",
        "bad timestamp: 2",
        "missing field: 2",
        "wrong field count: 1",
    ):
        assert part in summary


def test_stats_accumulate_over_files(tmp_path):
    a = write(tmp_path, "a.csv", "sid,item,t\ns,i,1\ns,i,x\n")
    b = write(tmp_path, "b.csv.gz", "sid,item,t\nz,j,2\n")
    stats = ReadStats()
    opts = {"session_col": "sid", "item_col": "item", "time_col": "t"}
    assert list(read_clicks("csv", [a, b], skip_bad=True, stats=stats, **opts)) == [("s", "i", 1.0), ("z", "j", 2.0)]
    assert (stats.rows, stats.skipped) == (3, 1)
    with pytest.raises(MalformedRowError, match=r"a\.csv:3:"):
        list(read_clicks("csv", [b, a], **opts))


def test_reading_is_lazy(tmp_path):
    path = write(tmp_path, "lazy.csv", "sid,item,t\ns,i,1\ns,i,oops\n")
    it = read_clicks("csv", path, session_col="sid", item_col="item", time_col="t")
    assert next(it) == ("s", "i", 1.0)  # the bad line 3 is not reached yet
    with pytest.raises(MalformedRowError, match=":3:"):
        next(it)


def test_csv_project_synthetic_format(tmp_path):
    path = write(
        tmp_path,
        "syn.csv",
        "session_id,user_id,item_id,timestamp\n7,3,42,1600000000.5\n7,3,43,1600000030.0\n8,3,42,1600009000\n",
    )
    clicks = list(read_clicks("csv", path, session_col="session_id", item_col="item_id", time_col="timestamp"))
    assert clicks == [("7", "42", 1600000000.5), ("7", "43", 1600000030.0), ("8", "42", 1600009000.0)]
    assert default_gap("csv", session_col="session_id", item_col="item_id", time_col="timestamp") is None
    assert next(iter(read_clicks("csv", path, user_col="user_id", item_col="item_id", time_col="timestamp"))) == (
        "3",
        "42",
        1600000000.5,
    )
    assert default_gap("csv", user_col="user_id", item_col="item_id", time_col="timestamp") == 3600.0
    assert default_gap("csv", user_col="u", item_col="i", time_col="t", gap=600) == 600.0


def test_csv_without_header_uses_indices(tmp_path):
    path = write(tmp_path, "nh.tsv", "1500\tA\tu1\textra\n2500\tB\tu1\textra\n")
    opts = {"delimiter": "\t", "user_col": 2, "item_col": 1, "time_col": 0, "time_unit": "ms", "header": False}
    assert list(read_clicks("csv", path, **opts)) == [("u1", "A", 1.5), ("u1", "B", 2.5)]
    as_strings = dict(opts, user_col="2", item_col="1", time_col="0", delimiter="tab")
    assert list(read_clicks("csv", path, **as_strings)) == [("u1", "A", 1.5), ("u1", "B", 2.5)]
    with pytest.raises(ValueError, match="0-based column index"):
        read_clicks("csv", path, **dict(opts, user_col="user"))
    short = write(tmp_path, "short.tsv", "1500\tA\n")
    with pytest.raises(MalformedRowError, match=r"short\.tsv:1: expected at least 3 fields"):
        list(read_clicks("csv", short, **opts))


@pytest.mark.parametrize("cols", [{}, {"session_col": "s", "user_col": "u"}])
def test_csv_needs_exactly_one_key_column(tmp_path, cols):
    path = write(tmp_path, "c.csv", "s,u,i,t\n1,2,3,4\n")
    with pytest.raises(ValueError, match="exactly one of session_col"):
        read_clicks("csv", path, item_col="i", time_col="t", **cols)  # raised at call time
    with pytest.raises(ValueError, match="exactly one of session_col"):
        default_gap("csv", item_col="i", time_col="t", **cols)


def test_csv_option_errors(tmp_path):
    path = write(tmp_path, "c.csv", "s,i,t\n1,2,3\n")
    with pytest.raises(ValueError, match="time_unit"):
        read_clicks("csv", path, session_col="s", item_col="i", time_col="t", time_unit="h")
    with pytest.raises(ValueError, match="item_col"):
        read_clicks("csv", path, session_col="s", time_col="t")
    with pytest.raises(ValueError, match="unknown option"):
        read_clicks("csv", path, session_col="s", item_col="i", time_col="t", sep=";")
    with pytest.raises(ValueError, match="unknown option"):
        read_clicks("reddit", path, time_unit="ms")
    with pytest.raises(ValueError, match="has no column 'time'"):
        list(read_clicks("csv", path, session_col="s", item_col="i", time_col="time"))


def test_unknown_format_lists_formats(tmp_path):
    with pytest.raises(ValueError) as err:
        read_clicks("yoochoose", tmp_path / "x.dat")
    for name in FORMATS:
        assert name in str(err.value)
    with pytest.raises(ValueError):
        default_gap("nope")


def test_default_gap_per_format():
    assert {f: default_gap(f) for f in FORMATS if f != "csv"} == {
        "rsc15": None,
        "rsc15-prepared": None,
        "diginetica": None,
        "reddit": 3600.0,
        "retailrocket": None,
        "lastfm": 3600.0,
    }
    assert default_gap("rsc15", gap=1800) == 1800.0  # an explicit gap wins for any format
    with pytest.raises(ValueError):
        default_gap("reddit", gap=-1)


RR_EVENTS = (
    "timestamp,visitorid,event,itemid,transactionid\n"
    "1433221332117,257597,view,355908,\n"
    "1433224214164,992329,view,248676,\n"
    "1433221999827,111016,addtocart,318965,\n"
    "1433222276276,483717,transaction,253185,4000\n"
    "1433221955914,257597,view,,\n"
    "1433221955915,257597,view,1,2,3\n"
)


def test_retailrocket_raw_events_layout(tmp_path):
    path = write(tmp_path, "events.csv", RR_EVENTS)
    stats = ReadStats()
    clicks = list(read_clicks("retailrocket", path, skip_bad=True, stats=stats))
    assert clicks == [
        ("257597", "355908", pytest.approx(1433221332.117, abs=1e-6)),
        ("992329", "248676", pytest.approx(1433224214.164, abs=1e-6)),
    ]
    assert (stats.rows, stats.filtered, stats.skipped) == (6, 2, 2)
    assert stats.skipped_reasons == {"not a view": 2, "missing field": 1, "wrong field count": 1}
    assert key_kind("retailrocket", path) == "user"
    assert default_gap("retailrocket", path) == 3600.0
    assert default_gap("retailrocket", [path], gap=1800) == 1800.0
    # non-view rows are not errors even without skip_bad; the malformed view rows are
    with pytest.raises(MalformedRowError, match=r"events\.csv:6: empty 'itemid'"):
        list(read_clicks("retailrocket", path))


def test_retailrocket_sample_layout_and_bad_header(tmp_path):
    path = write(tmp_path, "rr.csv", "timestamp\tuser_id\titem_id\tsession_id\n1442004589\t0\t285930\t0\n")
    assert list(read_clicks("retailrocket", path)) == [("0", "285930", 1442004589.0)]
    other = write(tmp_path, "other.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="unrecognised retailrocket header"):
        list(read_clicks("retailrocket", other))
    with pytest.raises(ValueError, match="mix"):
        key_kind("retailrocket", [path, write(tmp_path, "ev.csv", RR_EVENTS)])


def test_diginetica_camel_case_header_and_midnight(tmp_path):
    # session 5 crosses midnight: its rows carry two dates, timeframe counts from the first day
    text = (
        "sessionId;userId;itemId;timeframe;eventdate\n"
        "5;NA;9;86400500;2016-05-10\n"
        "5;NA;8;86399000;2016-05-09\n"
        "6;12;8;1000;2016-05-10"
    )  # no trailing newline, as in the real file
    path = write(tmp_path, "views.csv", text)
    day = utc(2016, 5, 9)
    assert list(read_clicks("diginetica", path)) == [
        ("5", "9", day + 86400.5),
        ("5", "8", day + 86399.0),
        ("6", "8", day + 86400 + 1.0),
    ]


def test_diginetica_bad_rows(tmp_path):
    path = write(
        tmp_path,
        "v.csv",
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;9;100;2016-05-10\n1;NA;9;-5;2016-05-10\n1;NA;9;100;someday\n",
    )
    with pytest.raises(MalformedRowError, match=r"v\.csv:3: timestamp '-5' is negative"):
        list(read_clicks("diginetica", path))
    stats = ReadStats()
    assert list(read_clicks("diginetica", path, skip_bad=True, stats=stats)) == [("1", "9", utc(2016, 5, 10) + 0.1)]
    assert stats.skipped_reasons == {"bad timestamp": 2}


def test_lastfm_item_fallback_and_quotes(tmp_path):
    text = (
        'u1\t2009-05-04T23:08:57Z\tart\tSome "Quoted" Artist\ttrk-1\tSong\n'
        "u1\t2009-05-04T23:04:00Z\t\tArtist\t\tTrack\n"
        "u1\t2009-05-04T23:00:00Z\t\tArtist\t\t\n"
    )
    path = write(tmp_path, "lfm.tsv", text)
    stats = ReadStats()
    assert list(read_clicks("lastfm", path, skip_bad=True, stats=stats)) == [
        ("u1", "trk-1", utc(2009, 5, 4, 23, 8, 57)),
        ("u1", "Artist\x1fTrack", utc(2009, 5, 4, 23, 4)),
    ]
    assert stats.skipped_reasons == {"missing field": 1}


def test_bom_and_crlf(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffusername,subreddit,utc\r\nbob,python,10.0\r\n\r\nbob,rust,5.0\r\n".encode())
    assert list(read_clicks("reddit", path)) == [("bob", "python", 10.0), ("bob", "rust", 5.0)]


def test_missing_header_column_and_missing_file(tmp_path):
    path = write(tmp_path, "r.csv", "user,subreddit,utc\nbob,python,10\n")
    with pytest.raises(ValueError, match=r"r\.csv:1: header .* no column 'username'"):
        list(read_clicks("reddit", path))
    with pytest.raises(FileNotFoundError):
        list(read_clicks("reddit", tmp_path / "absent.csv"))
    with pytest.raises(ValueError, match="no input files"):
        read_clicks("reddit", [])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 50), st.integers(0, 2_000_000_000_000)), min_size=1, max_size=30
    ),
    st.sampled_from(["s", "ms", "us"]),
)
def test_units_roundtrip(tmp_path_factory, rows, unit):
    """Integer milliseconds written in any numeric unit read back as the same seconds."""
    path = tmp_path_factory.mktemp("rt") / f"rt_{unit}.csv.gz"
    scale = {"s": 1e-3, "ms": 1, "us": 1000}[unit]
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write("sid,item,t\n" + "".join(f"{s},{i},{ms * scale!r}\n" for s, i, ms in rows))
    clicks = list(read_clicks("csv", path, session_col="sid", item_col="item", time_col="t", time_unit=unit))
    assert [(k, i) for k, i, _ in clicks] == [(str(s), str(i)) for s, i, _ in rows]
    for (_, _, ts), (_, _, ms) in zip(clicks, rows):
        assert ts == pytest.approx(ms / 1000, rel=1e-12, abs=1e-9)
