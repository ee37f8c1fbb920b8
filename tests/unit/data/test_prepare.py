"""`jump prepare`: filter order, splits, vocabulary, unseen test items, and real samples."""

import json
from pathlib import Path

import numpy as np
import pytest

from jump_core.cli import main
from jump_core.data.dataset import load_prepared
from jump_core.data.prepare import PAPER_MIN_ITEM_COUNT, PrepareConfig, prepare, read_sessions

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data sample absent: {path}")
    return path


def write(tmp_path, rows, name="clicks.csv"):
    p = tmp_path / name
    p.write_text("session_id,user_id,item_id,timestamp\n" + "".join(f"{s},u,{i},{t}\n" for s, i, t in rows))
    return p


CSV_OPTS = {"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"}


def test_censoring_happens_on_the_raw_session_before_filtering(tmp_path):
    # item z is rare (1 click): dropped, but the dwell of the click before it stays its true 5 s
    rows = [
        (1, "a", 0),
        (1, "b", 10),
        (1, "z", 15),
        (1, "c", 100),
        (2, "a", 0),
        (2, "b", 3000),
        (2, "c", 3010),
        (3, "a", 0),
        (3, "b", 1),
        (3, "c", 2),
    ]
    raw = read_sessions("csv", [write(tmp_path, rows)], None, 2000, 30, options=CSV_OPTS)
    assert raw.sessions.tau.tolist() == [10, 5, 85, 30, 2000, 10, 30, 1, 1, 30]
    meta = prepare(
        PrepareConfig(
            "csv",
            [str(write(tmp_path, rows))],
            str(tmp_path / "out"),
            test_fraction=0.0,
            reader_options=CSV_OPTS,
            min_item_count=PAPER_MIN_ITEM_COUNT,
        ),
        log=lambda *_: None,
    )
    d = load_prepared(tmp_path / "out")
    s = d.train.session(0)
    assert [d.items[i - 1] for i in s["items"]] == ["a", "b", "c"]
    assert s["tau"] == [10.0, 5.0, 30.0] and s["delta"] == [0, 0, 1]
    assert meta["counts"]["filter"]["clicks_dropped_rare_items"] == 1


def test_filter_then_drop_short_sessions_and_counts(tmp_path):
    rows = [(1, "a", 0), (1, "rare", 5), (2, "a", 0), (2, "b", 5), (3, "a", 0), (3, "b", 9), (4, "b", 1), (4, "a", 2)]
    meta = prepare(
        PrepareConfig(
            "csv",
            [str(write(tmp_path, rows))],
            str(tmp_path / "o"),
            test_fraction=0.0,
            reader_options=CSV_OPTS,
            min_item_count=PAPER_MIN_ITEM_COUNT,
        ),
        log=lambda *_: None,
    )
    f = meta["counts"]["filter"]
    assert f == {
        "clicks_dropped_rare_items": 1,
        "sessions_dropped_too_short": 1,
        "clicks_dropped_with_short_sessions": 1,
    }
    assert meta["table1"]["train_sessions"] == 3 and meta["table1"]["clicks"] == 6


def test_default_keeps_the_long_tail_the_paper_filter_is_one_flag_away(tmp_path):
    rows = [(1, "a", 0), (1, "rare", 5), (1, "b", 9), (2, "a", 0), (2, "b", 5), (3, "a", 0), (3, "b", 9)]
    csv = str(write(tmp_path, rows))
    argv = [
        "prepare",
        "--format",
        "csv",
        "--session-col",
        "session_id",
        "--item-col",
        "item_id",
        "--time-col",
        "timestamp",
    ]
    assert main([*argv, csv, "--out", str(tmp_path / "served"), "--test-fraction", "0"]) == 0
    served = json.loads((tmp_path / "served" / "meta.json").read_text())
    assert served["counts"]["filter"]["clicks_dropped_rare_items"] == 0 and served["table1"]["clicks"] == 7
    assert "rare" in load_prepared(tmp_path / "served").items
    paper = tmp_path / "paper"
    assert main([*argv, csv, "--out", str(paper), "--test-fraction", "0", "--min-item-count", "3"]) == 0
    assert json.loads((paper / "meta.json").read_text())["counts"]["filter"]["clicks_dropped_rare_items"] == 1


def test_random_split_is_seeded_and_vocab_is_train_only(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(s, f"i{rng.integers(0, 30)}", t * 10.0) for s in range(200) for t in range(4)]
    src = write(tmp_path, rows)
    m1 = prepare(
        PrepareConfig("csv", [str(src)], str(tmp_path / "a"), seed=3, reader_options=CSV_OPTS), log=lambda *_: None
    )
    m2 = prepare(
        PrepareConfig("csv", [str(src)], str(tmp_path / "b"), seed=3, reader_options=CSV_OPTS), log=lambda *_: None
    )
    m3 = prepare(
        PrepareConfig("csv", [str(src)], str(tmp_path / "c"), seed=4, reader_options=CSV_OPTS), log=lambda *_: None
    )
    assert m1["fingerprint"] == m2["fingerprint"] != m3["fingerprint"]
    d = load_prepared(tmp_path / "a")
    assert len(d.test) == 40 and len(d.train) == 160
    train_ids = set(d.train.session_ids.tolist())
    assert not train_ids & set(d.test.session_ids.tolist())
    assert set(np.unique(d.train.items)) == set(range(1, len(d.items) + 1))  # every vocab item is in train
    counts = np.bincount(d.train.items)
    assert all(counts[i] >= counts[i + 1] for i in range(1, len(counts) - 1))  # most frequent first


def test_temporal_split_and_unseen_test_items_are_counted(tmp_path):
    day = 86400.0
    rows = [(s, f"i{s % 3}", s * day + k) for s in range(5) for k in range(3)]
    rows += [(9, "new", 4 * day + 100), (9, "new", 4 * day + 101), (9, "new", 4 * day + 102), (9, "i0", 4 * day + 103)]
    meta = prepare(
        PrepareConfig(
            "csv",
            [str(write(tmp_path, rows))],
            str(tmp_path / "t"),
            split="temporal",
            test_days=1.0,
            reader_options=CSV_OPTS,
        ),
        log=lambda *_: None,
    )
    d = load_prepared(tmp_path / "t")
    starts = d.test.ts[d.test.offsets[:-1]]
    assert (starts >= 3 * day).all() and len(d.test) == 2
    # test = sessions 4 (i1, seen in training) and 9 (three clicks on "new", never in training)
    assert meta["counts"]["test_clicks_unseen_items"] == 3
    assert "new" not in d.items and int((d.test.items == 0).sum()) == 3


def test_malformed_row_error_names_file_and_line(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("session_id,user_id,item_id,timestamp\n1,u,a,0\n1,u,b,notatime\n")
    rc = main(
        [
            "prepare",
            "--format",
            "csv",
            "--session-col",
            "session_id",
            "--item-col",
            "item_id",
            "--time-col",
            "timestamp",
            str(p),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "bad.csv:3" in capsys.readouterr().err
    rc = main(
        [
            "prepare",
            "--format",
            "csv",
            "--session-col",
            "session_id",
            "--item-col",
            "item_id",
            "--time-col",
            "timestamp",
            str(p),
            "--out",
            str(tmp_path / "o"),
            "--skip-bad",
            "--min-item-count",
            "1",
            "--min-session-len",
            "1",
            "--test-fraction",
            "0",
        ]
    )
    assert rc == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["counts"]["read"]["skipped"] == 1 and meta["counts"]["read"]["rows"] == 2


def test_session_rec_given_split_matches_provenance(tmp_path):
    root = need(DATA / "yoochoose-rsc15" / "session-rec-100k")
    meta = prepare(
        PrepareConfig(
            "rsc15-prepared",
            [str(root / "yoochoose-clicks-100k_train_full.txt.gz")],
            str(tmp_path / "rsc"),
            split="given",
            test_inputs=[str(root / "yoochoose-clicks-100k_test.txt")],
            min_item_count=PAPER_MIN_ITEM_COUNT,
        ),
        log=lambda *_: None,
    )
    t = meta["table1"]
    # PROVENANCE.md: after the paper filter train_full has 70,156 clicks, 17,770 sessions, 2,872 items
    assert (t["items"], t["train_sessions"], t["test_sessions"]) == (2872, 17770, 3416)
    assert meta["counts"]["train_clicks"] == 70156
    assert meta["counts"]["test_clicks_unseen_items"] > 0
    assert t["max_dwell_s"] == pytest.approx(5365.471, abs=1e-3)


def test_reddit_sample_one_hour_sessions(tmp_path):
    path = need(DATA / "reddit" / "kaggle-head-sample" / "reddit_sample.csv")
    raw = read_sessions("reddit", [path], 3600.0, 2000, 30)
    assert len(raw.sessions) == 1861  # PROVENANCE.md: 1,861 one-hour sessions
    cfg = PrepareConfig(
        "reddit", [str(path)], str(tmp_path / "r"), test_fraction=0.0, min_item_count=PAPER_MIN_ITEM_COUNT
    )
    meta = prepare(cfg, log=lambda *_: None)
    # PROVENANCE.md after the paper filter: 3,734 clicks in 797 sessions over 230 items
    assert (meta["table1"]["clicks"], meta["table1"]["train_sessions"], meta["table1"]["items"]) == (3734, 797, 230)
    d = load_prepared(tmp_path / "r")
    assert d.train.tau.max() <= 2000 and meta["table1"]["max_dwell_s"] <= 3600


@pytest.mark.parametrize(
    "fmt,rel,sessions",
    [
        ("diginetica", "diginetica-cikm16/sr-gnn-sample/sample_train-item-views.csv", 1068),
        ("retailrocket", "retailrocket/sr-gtm-sample/sample_retailrocket.csv", 1072),
        ("rsc15", "yoochoose-rsc15/sr-gtm-sample/sample_yoochoose.dat", 255),
    ],
)
def test_real_samples_prepare_like_provenance(tmp_path, fmt, rel, sessions):
    path = need(DATA / rel)
    cfg = PrepareConfig(fmt, [str(path)], str(tmp_path / fmt), test_fraction=0.0, min_item_count=PAPER_MIN_ITEM_COUNT)
    meta = prepare(cfg, log=lambda *_: None)
    assert meta["table1"]["train_sessions"] == sessions  # PROVENANCE.md "after paper filter: sessions"
