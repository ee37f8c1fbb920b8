"""Tests of the synthetic clickstream generator (jump_core/data/synth.py)."""

from __future__ import annotations

import hashlib
import itertools
import tracemalloc

import numpy as np
import pytest

from jump_core.data.synth import HEADER, SynthConfig, catalog, generate, item_dwell_median, item_topic, write_csv

C1 = 2000.0


def _load(path):
    """(session_id, user_id, item_id, ts_ms) int64 columns of a written CSV."""
    with open(path, "rb") as fh:
        assert fh.readline().decode().rstrip("\n") == HEADER
        d = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    if d.size == 0:
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    return (
        d[:, 0].astype(np.int64),
        d[:, 1].astype(np.int64),
        d[:, 2].astype(np.int64),
        np.rint(d[:, 3] * 1000.0).astype(np.int64),
    )


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CFG = SynthConfig(clicks=200_000, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "s.csv"
    stats = write_csv(CFG, path)
    sid, uid, item, ts = _load(path)
    return {"path": path, "stats": stats, "sid": sid, "uid": uid, "item": item, "ts": ts}


# --- determinism, format, row count -------------------------------------------------------
def test_same_seed_identical_different_seed_differs(tmp_path):
    cfg = SynthConfig(clicks=30_000, seed=7)
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    write_csv(cfg, a)
    write_csv(cfg, b, progress=True)  # the progress bar must not change the output
    write_csv(SynthConfig(clicks=30_000, seed=8), c)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)


def test_header_row_count_and_format(data):
    lines = data["path"].read_text().splitlines()
    assert lines[0] == "session_id,user_id,item_id,timestamp"
    assert len(lines) - 1 == CFG.clicks == data["stats"]["clicks"]
    for line in lines[1:2000]:
        s, u, i, t = line.split(",")
        assert s.isdigit() and u.isdigit() and i.isdigit()
        whole, frac = t.split(".")
        assert whole.isdigit() and len(frac) == 3 and frac.isdigit()


def test_generate_matches_csv(data):
    rows = list(generate(CFG))
    assert len(rows) == CFG.clicks
    text = "".join(f"{s:d},{u:d},{i:d},{t:.3f}\n" for s, u, i, t in rows)
    assert data["path"].read_text() == HEADER + "\n" + text


@pytest.mark.parametrize(
    "cfg",
    [
        SynthConfig(clicks=1),
        SynthConfig(clicks=7, n_users=100),
        SynthConfig(clicks=12_345, seed=3),
        SynthConfig(clicks=5_000, n_items=3, n_topics=40),
        SynthConfig(clicks=5_000, mean_session_len=1.0),
    ],
)
def test_exact_row_count_edge_configs(cfg, tmp_path):
    path = tmp_path / "e.csv"
    stats = write_csv(cfg, path)
    sid, uid, item, _ts = _load(path)
    assert len(sid) == stats["clicks"] == cfg.clicks
    assert item.min() >= 0 and item.max() < cfg.n_items
    assert stats["sessions"] == len(np.unique(sid))
    assert stats["users"] == len(np.unique(uid)) <= cfg.users


def test_zero_clicks_writes_header_only(tmp_path):
    path = tmp_path / "z.csv"
    stats = write_csv(SynthConfig(clicks=0), path)
    assert path.read_text() == HEADER + "\n"
    assert stats["clicks"] == stats["sessions"] == 0
    assert list(generate(SynthConfig(clicks=0))) == []


def test_invalid_config_rejected():
    for bad in (
        {"clicks": -1},
        {"n_items": 0},
        {"mean_session_len": 0.5},
        {"distraction_p": 1.5},
        {"session_gap_s": 0.0},
        {"n_users": 0},
    ):
        with pytest.raises(ValueError):
            SynthConfig(**bad)


# --- statistics -----------------------------------------------------------------------
def test_stats_dict(data):
    st, sid, uid, item = data["stats"], data["sid"], data["uid"], data["item"]
    for key in ("clicks", "sessions", "users", "items_used", "mean_session_len", "censored_fraction", "seconds"):
        assert key in st
    assert st["sessions"] == len(np.unique(sid))
    assert st["users"] == len(np.unique(uid))
    assert st["items_used"] == len(np.unique(item))
    assert st["mean_session_len"] == pytest.approx(CFG.clicks / st["sessions"])
    # most of the configured users appear (a few of the last ones may not)
    assert 0.95 * CFG.users <= st["users"] <= CFG.users


def test_item_popularity_heavy_tailed(data):
    counts = np.sort(np.bincount(data["item"], minlength=CFG.n_items))[::-1]
    top = max(1, CFG.n_items // 100)
    assert counts[:top].sum() / counts.sum() > 0.10


def test_session_lengths(data):
    lengths = np.bincount(data["sid"])
    assert abs(lengths.mean() - CFG.mean_session_len) <= 0.25 * CFG.mean_session_len
    assert lengths.min() >= 1
    assert (lengths == 1).mean() > 0.1  # geometric-ish body
    assert lengths.max() > 150  # rare heavy tail
    assert (lengths > 150).mean() < 1e-3


def test_ids_and_row_order(data):
    sid, uid, ts = data["sid"], data["uid"], data["ts"]
    d_sid = np.diff(sid)
    assert sid[0] == 0 and ((d_sid == 0) | (d_sid == 1)).all()  # sessions contiguous, 0,1,2...
    assert (np.diff(uid) >= 0).all()  # grouped by user
    same = d_sid == 0
    assert (np.diff(ts)[same] > 0).all()  # time order within a session
    # a session belongs to one user
    assert (uid[1:][same] == uid[:-1][same]).all()
    # activity is spread over the span
    days = (ts / 1000.0 - CFG.start_ts) / 86400.0
    assert days.min() >= 0
    hist = np.histogram(days, bins=10, range=(0, CFG.span_days))[0]
    assert hist.min() > 0.5 * hist.mean()
    assert (days > CFG.span_days + 2).mean() < 0.01


def test_gaps_within_and_between_sessions(data):
    sid, uid, ts = data["sid"], data["uid"], data["ts"]
    gap_ms = CFG.session_gap_s * 1000.0
    dt = np.diff(ts)
    same = sid[1:] == sid[:-1]
    within = dt[same]
    assert (within < gap_ms).all()
    censored = (within >= C1 * 1000).mean()
    assert 0 < censored < 0.05
    assert data["stats"]["censored_fraction"] == pytest.approx(censored)
    assert censored == pytest.approx(CFG.distraction_p, abs=0.01)
    # consecutive sessions of one user: next start more than session_gap_s after last click
    between_same_user = dt[~same & (uid[1:] == uid[:-1])]
    assert len(between_same_user) > 1000
    assert (between_same_user > gap_ms).all()
    # hence re-sessionizing per user with the 1 h rule recovers the sessions exactly
    new = np.r_[True, (uid[1:] != uid[:-1]) | (dt > gap_ms)]
    assert (np.cumsum(new) - 1 == sid).all()


def test_log_dwell_roughly_symmetric(data):
    sid, ts = data["sid"], data["ts"]
    dt = np.diff(ts)[sid[1:] == sid[:-1]] / 1000.0
    x = np.log(dt[dt < C1])
    skew = ((x - x.mean()) ** 3).mean() / x.std() ** 3
    assert abs(skew) < 0.5
    assert 30 < np.exp(np.median(x)) < 80  # centred near 50 s


def test_dwell_depends_on_item(data):
    sid, item, ts = data["sid"], data["item"], data["ts"]
    same = sid[1:] == sid[:-1]
    dt = np.diff(ts)[same] / 1000.0
    cur = item[:-1][same]
    ok = dt < C1
    med = item_dwell_median(CFG)
    corr = np.corrcoef(np.log(dt[ok]), np.log(med[cur[ok]]))[0, 1]
    assert corr > 0.4


def test_dwell_signals_next_click(data):
    sid, item, ts = data["sid"], data["item"], data["ts"]
    same = sid[1:] == sid[:-1]
    dt = np.diff(ts)[same] / 1000.0
    cur, nxt = item[:-1][same], item[1:][same]
    topic = item_topic(CFG)
    stay = topic[cur] == topic[nxt]
    ok = dt < C1  # ignore distraction gaps
    long_ = dt > item_dwell_median(CFG)[cur]
    p_long, p_short = stay[ok & long_].mean(), stay[ok & ~long_].mean()
    assert p_long - p_short >= 0.2
    # model-free variant: threshold at each item's empirical median dwell
    emp = np.full(CFG.n_items, np.nan)
    order = np.argsort(cur[ok], kind="stable")
    c_sorted, d_sorted = cur[ok][order], dt[ok][order]
    bounds = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1], True])
    for a, b in itertools.pairwise(bounds):
        emp[c_sorted[a]] = np.median(d_sorted[a:b])
    long_emp = dt > emp[cur]
    assert stay[ok & long_emp].mean() - stay[ok & ~long_emp].mean() >= 0.2
    # after a long dwell the next item is usually a sibling (near in the topic order)
    pos = catalog(CFG).item_pos
    near = stay & (np.abs(pos[nxt] - pos[cur]) <= 8)
    assert near[ok & long_].mean() - near[ok & ~long_].mean() >= 0.3


def test_catalog_consistent():
    cat = catalog(CFG)
    assert len(cat.item_topic) == CFG.n_items
    assert cat.item_topic.min() == 0 and cat.item_topic.max() == CFG.n_topics - 1
    sizes = np.bincount(cat.item_topic)
    assert sizes.min() >= 1 and sizes.max() > 2 * sizes.min()  # topics of different sizes
    assert cat.item_popularity.sum() == pytest.approx(1.0)
    assert cat.topic_popularity.sum() == pytest.approx(1.0)
    mu_std = np.std(cat.item_log_mu)
    assert 0.5 < mu_std < 0.9
    np.testing.assert_array_equal(item_topic(CFG), cat.item_topic)


# --- scale ------------------------------------------------------------------------------
def test_big_user_split_across_chunks(tmp_path):
    # one user with more clicks than a chunk: its sessions continue across chunks
    cfg = SynthConfig(clicks=300_000, n_users=1, seed=2)
    path = tmp_path / "u.csv"
    stats = write_csv(cfg, path)
    sid, _uid, _item, ts = _load(path)
    assert len(sid) == cfg.clicks and stats["users"] == 1
    dt = np.diff(ts)
    assert (dt > 0).all()
    same = sid[1:] == sid[:-1]
    assert (dt[same] < 3_600_000).all() and (dt[~same] > 3_600_000).all()


def test_bounded_memory(tmp_path):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        stats = write_csv(SynthConfig(clicks=1_000_000, seed=5), tmp_path / "m.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats["clicks"] == 1_000_000
    assert (peak - base) < 200 * 2**20
