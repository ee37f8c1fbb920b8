"""`jump prepare`: raw clicks -> sessions -> censored dwell (eq. 4) -> paper filter -> split.

Order of operations (each documented choice is tested in tests/unit/data/test_prepare.py):
  1. Read (readers.py): (key, item, ts seconds) rows; malformed rows are an error naming file and
     line, or with skip_bad skipped and counted.
  2. Sessionize (sessions.py): per key, clicks sorted by time (stable: equal times keep file
     order) and split by the inactivity gap (None where the data gives session ids).
  3. Censor (sessions.py, eq. 4) on the raw session, before any filtering, as the stream does on
     session close: the dwell on a click is the time to the next click the user actually made.
  4. Filter, one pass: drop clicks on items seen fewer than `min_item_count` times (counted over
     all input, or over the training file when a test file is given), then drop sessions left with
     fewer than `min_session_len` clicks. The paper's §5.1 filter is min_item_count = 3
     (`--min-item-count 3`, PAPER_MIN_ITEM_COUNT); the default, 1, keeps the long tail, as a served
     model must: the stream answers every click, so evaluation scores every position, and a filter
     applied to all input would also remove test positions (46 % of next-click targets on a
     held-out DIGINETICA week fall outside the filtered vocabulary, only 20.5 % are truly unseen).
     The trainer builds its vocabulary the same way (continual.py, JUMP_TRAINER_MIN_ITEM_COUNT).
  5. Split by session: random (seeded, test_fraction), temporal (test = sessions starting in the
     last test_days days) or given (--test FILE, read and sessionized the same way).
  6. Vocabulary from the training split only (index by descending training frequency, ties by
     id). Test clicks on items unseen in training become index 0 and are counted.
"""

from __future__ import annotations

import json
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.files import sha256_files, sha256_json
from ..sessions import C1_DEFAULT, C2_DEFAULT, censor, session_id, session_starts
from . import readers
from .dataset import SessionSet

DAY = 86400.0
PAPER_MIN_ITEM_COUNT = 3  # §5.1: "items appearing less than 3 times are filtered out"


@dataclass
class PrepareConfig:
    fmt: str
    inputs: list[str]
    out: str
    split: str = "random"  # random | temporal | given
    test_inputs: list[str] | None = None  # the given test file(s) when split == "given"
    test_fraction: float = 0.2  # §5.1: 80/20 by session
    test_days: float = 1.0  # temporal split
    seed: int = 0
    min_item_count: int = 1  # keep the long tail (module doc); the paper's filter: PAPER_MIN_ITEM_COUNT
    min_session_len: int = 2  # §5.1
    c1: float = C1_DEFAULT
    c2: float = C2_DEFAULT
    gap: float | None = None  # None: the format's default (readers.default_gap)
    use_default_gap: bool = True
    skip_bad: bool = False
    reader_options: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse settings that would give an unusable dataset (the CLI's one line, exit 2)."""
        checks = (
            (0.0 <= self.test_fraction < 1.0, "--test-fraction", "must be in [0, 1)", self.test_fraction),
            (self.test_days > 0, "--test-days", "must be > 0", self.test_days),
            (self.gap is None or self.gap > 0, "--gap", "must be > 0 seconds", self.gap),
            (self.c1 > 0 and self.c2 > 0, "--c1/--c2", "must be > 0 seconds", (self.c1, self.c2)),
            (self.min_item_count >= 1, "--min-item-count", "must be >= 1", self.min_item_count),
            (self.min_session_len >= 1, "--min-session-len", "must be >= 1", self.min_session_len),
        )
        for ok, name, rule, value in checks:
            if not ok:
                raise ValueError(f"{name} {rule}, not {value!r}")


@dataclass
class RawSessions:
    """Sessionized, censored clicks before filtering; `sessions.items` are codes into `item_names`."""

    sessions: SessionSet
    item_names: list[str]
    max_gap: float  # largest within-session gap (raw Delta), s
    stats: readers.ReadStats


def read_sessions(
    fmt: str,
    paths: list[str],
    gap: float | None,
    c1: float,
    c2: float,
    skip_bad: bool = False,
    options: dict | None = None,
) -> RawSessions:
    """Read, sessionize and censor raw clicks (steps 1-3)."""
    stats = readers.ReadStats()
    key_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    keys, items, times = array("q"), array("q"), array("d")
    for key, item, ts in readers.read_clicks(fmt, paths, skip_bad=skip_bad, stats=stats, **(options or {})):
        keys.append(key_codes.setdefault(key, len(key_codes)))
        items.append(item_codes.setdefault(item, len(item_codes)))
        times.append(ts)
    k, i, t = (np.frombuffer(a, dtype=dt) for a, dt in ((keys, np.int64), (items, np.int64), (times, np.float64)))
    order = np.lexsort((t, k))  # by key, then time; stable
    k, i, t = k[order], i[order], t[order]
    starts = np.flatnonzero(session_starts(k, t, gap))
    offsets = np.append(starts, len(t)).astype(np.int64)
    tau, delta = censor(t, offsets, c1, c2)
    key_names = list(key_codes)
    sids = np.array([session_id(key_names[k[s]], t[s]).encode() for s in starts], dtype=bytes)
    same = np.ones(len(t), dtype=bool)
    same[starts] = False
    gaps = np.diff(t, prepend=t[:1])[same]
    return RawSessions(
        SessionSet(i, t, tau, delta, offsets, sids), list(item_codes), float(gaps.max()) if len(gaps) else 0.0, stats
    )


def _session_index(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def filter_sessions(raw: SessionSet, keep_click: np.ndarray, min_session_len: int) -> tuple[SessionSet, dict]:
    """Drop the clicks not in keep_click, then the sessions left too short (step 4)."""
    sess = _session_index(raw.offsets)
    new_len = np.bincount(sess[keep_click], minlength=len(raw))
    keep_sess = new_len >= min_session_len
    keep = keep_click & keep_sess[sess]
    lengths = new_len[keep_sess]
    out = SessionSet(
        raw.items[keep],
        raw.ts[keep],
        raw.tau[keep],
        raw.delta[keep],
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        raw.session_ids[keep_sess],
    )
    counts = {
        "clicks_dropped_rare_items": int((~keep_click).sum()),
        "sessions_dropped_too_short": int((~keep_sess).sum()),
        "clicks_dropped_with_short_sessions": int((keep_click & ~keep_sess[sess]).sum()),
    }
    return out, counts


def _rare_filter(raw: RawSessions, min_count: int) -> np.ndarray:
    codes = raw.sessions.items
    return np.bincount(codes, minlength=len(raw.item_names))[codes] >= min_count


def _split(sessions: SessionSet, cfg: PrepareConfig) -> tuple[np.ndarray, np.ndarray]:
    n = len(sessions)
    if cfg.split == "random":
        perm = np.random.default_rng(cfg.seed).permutation(n)
        n_test = round(n * cfg.test_fraction)
        test = np.sort(perm[:n_test])
    elif cfg.split == "temporal":
        start = sessions.ts[sessions.offsets[:-1]]
        test = np.flatnonzero(start >= sessions.ts.max() - cfg.test_days * DAY)
    else:
        raise ValueError(f"unknown split {cfg.split!r} (random | temporal | given)")
    train = np.setdiff1d(np.arange(n), test)
    return train, test


def _recode(s: SessionSet, names: list[str], vocab: dict[str, int]) -> tuple[SessionSet, int]:
    """Map item codes (into `names`) to vocabulary indices; unseen items -> 0. Returns count of 0s."""
    lut = np.array([vocab.get(name, 0) for name in names], dtype=np.int64)
    items = lut[s.items] if len(s.items) else s.items
    return SessionSet(items, s.ts, s.tau, s.delta, s.offsets, s.session_ids), int((items == 0).sum())


def table1(train: SessionSet, test: SessionSet, n_items: int, max_gap: float) -> dict:
    """The paper's Table 1 for a prepared dataset."""
    n_sessions = len(train) + len(test)
    clicks = train.n_clicks + test.n_clicks
    observed = np.concatenate([train.tau[train.delta == 0], test.tau[test.delta == 0]])
    return {
        "items": n_items,
        "clicks": clicks,
        "train_sessions": len(train),
        "test_sessions": len(test),
        "avg_length": clicks / n_sessions if n_sessions else 0.0,
        "max_dwell_s": max_gap,
        "max_uncensored_dwell_s": float(observed.max()) if len(observed) else 0.0,
    }


def format_table1(t: dict) -> str:
    rows = [
        ("#items", f"{t['items']:,}"),
        ("#clicks", f"{t['clicks']:,}"),
        ("#train sessions", f"{t['train_sessions']:,}"),
        ("#test sessions", f"{t['test_sessions']:,}"),
        ("avg. length", f"{t['avg_length']:.3f}"),
        ("max dwell time (raw gap, s)", f"{t['max_dwell_s']:,.0f}"),
        ("max uncensored dwell (s)", f"{t['max_uncensored_dwell_s']:,.1f}"),
    ]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"| {a:<{w}} | {b:>14} |" for a, b in [("dataset", "value"), ("-" * w, "-" * 14), *rows])


def prepare(cfg: PrepareConfig, log=print) -> dict:
    """Run steps 1-6 and write the prepared dataset to cfg.out. Returns meta (also meta.json)."""
    t0 = time.time()
    gap = readers.default_gap(cfg.fmt, paths=cfg.inputs, **cfg.reader_options) if cfg.use_default_gap else cfg.gap
    log(
        f"reading {cfg.fmt}: {', '.join(map(str, cfg.inputs))} (session gap: {gap if gap is not None else 'given ids'})"
    )
    raw = read_sessions(cfg.fmt, cfg.inputs, gap, cfg.c1, cfg.c2, cfg.skip_bad, cfg.reader_options)
    log(f"  {raw.stats.summary()}; {len(raw.sessions):,} sessions, {len(raw.item_names):,} items")
    counts: dict = {
        "read": asdict(raw.stats),
        "raw_clicks": raw.sessions.n_clicks,
        "raw_sessions": len(raw.sessions),
        "raw_items": len(raw.item_names),
    }
    if len(raw.sessions) == 0:
        raise ValueError(
            f"no sessions in {', '.join(map(str, cfg.inputs))} ({raw.stats.summary()}): check --format, "
            "the column options and --delimiter"
        )
    sessions, filt = filter_sessions(raw.sessions, _rare_filter(raw, cfg.min_item_count), cfg.min_session_len)
    counts["filter"] = filt
    if len(sessions) == 0:
        raise ValueError(
            f"no session of {cfg.min_session_len}+ clicks is left after the filter ({len(raw.sessions):,} read): "
            "check --gap and --min-item-count"
        )
    names, max_gap = raw.item_names, raw.max_gap
    if cfg.split == "given":
        if not cfg.test_inputs:
            raise ValueError("split 'given' needs test input files (--test FILE)")
        train = sessions
        log(f"reading test {', '.join(map(str, cfg.test_inputs))}")
        raw_t = read_sessions(cfg.fmt, cfg.test_inputs, gap, cfg.c1, cfg.c2, cfg.skip_bad, cfg.reader_options)
        log(f"  {raw_t.stats.summary()}; {len(raw_t.sessions):,} sessions")
        test, filt_t = filter_sessions(
            raw_t.sessions, np.ones(raw_t.sessions.n_clicks, dtype=bool), cfg.min_session_len
        )
        counts["test_read"] = asdict(raw_t.stats)
        counts["test_filter"] = filt_t
        test_names, max_gap = raw_t.item_names, max(max_gap, raw_t.max_gap)
    else:
        tr, te = _split(sessions, cfg)
        train, test = sessions.subset(tr), sessions.subset(te)
        test_names = names
    # vocabulary from the training split only, most frequent first
    freq = np.bincount(train.items, minlength=len(names))
    used = np.flatnonzero(freq)
    used = used[np.lexsort((np.array([names[u] for u in used]), -freq[used]))] if len(used) else used
    vocab_items = [names[u] for u in used]
    vocab = {name: idx + 1 for idx, name in enumerate(vocab_items)}
    train, _ = _recode(train, names, vocab)
    test, n_oov = _recode(test, test_names, vocab)
    counts["test_clicks_unseen_items"] = n_oov
    counts["train_clicks"], counts["test_clicks"] = train.n_clicks, test.n_clicks

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train.save(out / "train.npz")
    test.save(out / "test.npz")
    (out / "items.json").write_text(json.dumps(vocab_items))
    t1 = table1(train, test, len(vocab_items), max_gap)
    meta = {
        "format": cfg.fmt,
        "inputs": [str(p) for p in cfg.inputs],
        "test_inputs": [str(p) for p in cfg.test_inputs or []],
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("inputs", "test_inputs", "out")},
        "gap_s": gap,
        "counts": counts,
        "table1": t1,
        "vocab_sha256": sha256_json(vocab_items),
        "fingerprint": sha256_files(out / "train.npz", out / "test.npz", out / "items.json"),
        "seconds": round(time.time() - t0, 3),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    log(
        f"  filter: {filt['clicks_dropped_rare_items']:,} clicks on items seen < {cfg.min_item_count} times dropped, "
        f"{filt['sessions_dropped_too_short']:,} sessions shorter than {cfg.min_session_len} dropped "
        f"({filt['clicks_dropped_with_short_sessions']:,} clicks)"
    )
    log(
        f"  split {cfg.split}: {len(train):,} train / {len(test):,} test sessions; "
        f"{n_oov:,} test clicks on items unseen in training (index 0, counted as misses when targets)"
    )
    log(format_table1(t1))
    log(f"wrote {out} in {meta['seconds']:.1f}s (fingerprint {meta['fingerprint'][:12]})")
    return meta
