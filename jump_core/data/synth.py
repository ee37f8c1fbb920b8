"""Seeded synthetic clickstream generator (demo, tests, scale benchmarks).

The generator writes a RecSys15-like click log ``session_id,user_id,item_id,timestamp``
whose statistics match what JUMP (Zhou et al., IJCAI 2018) relies on: heavy-tailed item
popularity, short sessions with a rare very long tail, log-normal dwell times (§3.3, Fig. 2),
occasional distraction gaps beyond c1 = 2000 s (§3.2, eq. 4; §5.2), and -- the point of the
exercise -- a dwell time that carries information about the next click, so that a
dwell-aware model (JUMP) can beat a dwell-blind one (GRU4Rec-style).

Everything is a pure function of :class:`SynthConfig` (the seed included): the same config
gives a byte-identical file. Generation streams in chunks of about 2**18 clicks with numpy,
so memory stays bounded (tens of MB) whatever ``clicks`` is (30 M clicks = RecSys15 scale).

Data model
----------
Catalogue (depends only on ``seed, n_items, n_topics, zipf_a``; see :func:`catalog`):

* ``n_items`` items belong to ``n_topics`` latent topics, one topic per item; topic sizes are
  uneven (1 + multinomial with log-normal weights).
* Within a topic the items have an order (position 0, 1, ...), which is also their
  popularity rank: item popularity inside a topic is Zipf, ``p ~ (pos + 1) ** -zipf_a``.
  Topics are Zipf-popular too (same exponent, ranks randomly permuted), so global item
  popularity is heavy-tailed. Public item ids are a random permutation of ``0..n_items-1``
  (ids carry no popularity or topic information).
* Topics sit on a ring: topic ``t`` is related to ``t - 1`` and ``t + 1`` (mod n_topics).
* Every item has its own log-normal dwell: ``log(dwell / s) ~ N(mu_item, 0.6)`` with
  ``mu_item ~ N(log 50, 0.7)``, so the pooled log-dwell histogram is a symmetric bump (paper
  Fig. 2) and dwell depends on the item. Dwell is clipped to [1 s, session_gap_s).

Users and sessions:

* ``n_users`` users (default ``max(1, clicks // 40)``) with heavy-tailed activity: user
  click budgets are ``1 + multinomial`` with log-normal(0, 1) weights and sum to ``clicks``.
  Each user has 1-3 preferred topics (drawn by topic popularity).
* A user's sessions are drawn i.i.d. until the user's total reaches its budget minus
  ``int(0.85 * mean_session_len)`` (this offsets the overshoot of the last session; the
  last session is not cut, so a few of the last users in id order may never appear --
  ``stats['users']`` says how many did), then shuffled so that length does not depend on
  the position in the user's history. Session length: with probability 1 - q, geometric,
  >= 1; with small probability q, Pareto(x_m = 15, alpha = 1.6) capped at 1000 (sessions
  > 150 clicks exist but are rare, ~1e-4 of sessions). The mix is set so that the mean is
  ``mean_session_len`` (RecSys15: 3.97); only the very last session of the file is
  truncated, to write exactly ``clicks`` rows.
* A session starts in one of its user's preferred topics, with an item drawn by popularity.
  After each click the dwell ``d`` on the current item decides the next click:

  - long dwell (``d`` above the item's median ``exp(mu_item)``; the user is engaged): stay
    in the topic with probability 0.9; when staying, with probability 0.9 the next item is
    a *sibling* (topic order position +/- k, k >= 1 geometric with p = 0.25, reflected at
    the ends), otherwise a popularity draw within the topic;
  - short dwell (browsing): stay in the topic with probability 0.25 (popularity draw),
    otherwise switch topic;
  - a switch goes to a ring neighbour (probability 0.7, either side) or to a random topic
    drawn by popularity (0.3); the item is a popularity draw within the new topic.

  Hence P(next click in the same topic) is ~0.9 after a long dwell and ~0.27 after a short
  one; after a long dwell the next item is usually near the current one in the topic order,
  after a short one it is a popular item of a neighbouring topic. The two regimes put their
  mass on different items, so knowing the dwell sharpens the next-click distribution: on
  3 M clicks (seed 0) a first-order Markov table keyed by (item, dwell above/below the item's
  median) reaches recall@20 0.72 / MRR@20 0.26 versus 0.69 / 0.21 for the dwell-blind table.
* Timestamps: the gap after a click is its dwell, except with probability
  ``distraction_p`` a distraction gap uniform in (2000 s, min(3500 s, session_gap_s)) --
  beyond c1 (censored by eq. 4) but inside the session gap. Every within-session gap is
  < ``session_gap_s``. The i-th of a user's K sessions is scheduled at
  ``start_ts + (i + U_i) * span / K`` (U_i uniform), but never earlier than
  ``session_gap_s + 1 ms + Exp(mean 10 min)`` after the previous session's last click, so
  consecutive sessions of a user are always more than ``session_gap_s`` apart and the
  users' activity spreads uniformly over ``span_days``. (A user cannot fit more than about
  ``span / (session_gap_s + 10 min)`` sessions into the span; the sessions of such very
  heavy users -- e.g. ``n_users=1`` with millions of clicks -- run past its end.)
  Consequently, splitting each user's clicks at gaps > ``session_gap_s`` recovers exactly
  the generated sessions.

Row order and ids
-----------------
Rows are grouped by user (user ids ascending, ``0..n_users-1``), a user's sessions are in
time order, and the clicks of a session are consecutive and in time order (strictly
increasing timestamps). Session ids are ``0, 1, 2, ...`` in file order (globally unique).
The file is therefore **not** globally time-sorted: sessions of different users interleave
in time. Sort by timestamp (stable) to replay it as a time-ordered stream. Timestamps are
Unix seconds with millisecond precision, written as ``%.3f``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..sessions import C1_DEFAULT

__all__ = [
    "HEADER",
    "Catalog",
    "SynthConfig",
    "catalog",
    "generate",
    "item_dwell_median",
    "item_topic",
    "write_csv",
]

HEADER = "session_id,user_id,item_id,timestamp"

# --- model constants (documented in the module docstring) ---------------------------------
C1_S = C1_DEFAULT  # c1 of the paper (§5.2): distraction gaps are longer than this
DISTRACTION_MAX_S = 3500.0
DWELL_CENTER_S = 50.0  # mu_item ~ N(log 50, 0.7)
DWELL_MU_STD = 0.7
DWELL_SIGMA = 0.6  # log dwell ~ N(mu_item, 0.6)
DWELL_MIN_S = 1.0
P_STAY_LONG = 0.90  # P(stay in topic | dwell above the item's median)
P_STAY_SHORT = 0.25  # P(stay in topic | dwell below the item's median)
P_SIBLING = 0.90  # P(sibling item | engaged and staying)
P_SIBLING_STEP = 0.25  # sibling offset k ~ Geometric(0.25), k >= 1 (mean 4)
P_RING = 0.70  # P(ring neighbour | switching topic); else random topic
TOPIC_SIZE_SIGMA = 0.8
USER_ACTIVITY_SIGMA = 1.0
HEAVY_SHARE = 0.048  # share of the mean session length due to the heavy tail
HEAVY_XM = 15.0
HEAVY_ALPHA = 1.6
MAX_SESSION_LEN = 1000
MIN_EXTRA_GAP_S = 600.0
CLICKS_PER_USER = 40

# --- chunking (changing these changes the output for a seed) -------------------------------
_CHUNK_CLICKS = 1 << 18
_USER_CHUNK = 1 << 16
_LENGTH_POOL = 1 << 16

_NEG = -(1 << 40)  # "no scheduled time" (ms), far below any real start
_BIG = 1 << 42  # per-user offset for the segmented running max

# rng stream tags
_T_CATALOG, _T_TOTALS, _T_UWEIGHT, _T_UATTR, _T_UBUDGET, _T_LENGTHS, _T_SIM = range(1, 8)


@dataclass(frozen=True)
class SynthConfig:
    clicks: int = 100_000  # total rows to write (exactly this many)
    seed: int = 0
    n_items: int = 2_000  # catalogue size
    n_topics: int = 40
    n_users: int | None = None  # default: max(1, clicks // 40)
    zipf_a: float = 1.1  # item popularity exponent within a topic (and of topics)
    mean_session_len: float = 4.0  # geometric-ish, min 1, rare heavy tail (> 150 clicks)
    start_ts: float = 1_396_310_400.0  # 2014-04-01T00:00:00Z, Unix seconds
    span_days: float = 30.0
    distraction_p: float = 0.02  # per click: next gap uniform in (2000 s, 3500 s)
    session_gap_s: float = 3600.0  # consecutive sessions of a user are separated by MORE than this

    def __post_init__(self) -> None:
        if self.clicks < 0:
            raise ValueError("clicks must be >= 0")
        if self.n_items < 1 or self.n_topics < 1:
            raise ValueError("n_items and n_topics must be >= 1")
        if self.n_users is not None and self.n_users < 1:
            raise ValueError("n_users must be >= 1")
        if not self.zipf_a >= 0:
            raise ValueError("zipf_a must be >= 0")
        if not self.mean_session_len >= 1.0:
            raise ValueError("mean_session_len must be >= 1")
        if not (self.span_days > 0 and self.session_gap_s > 0):
            raise ValueError("span_days and session_gap_s must be > 0")
        if not 0.0 <= self.distraction_p <= 1.0:
            raise ValueError("distraction_p must be in [0, 1]")
        if not math.isfinite(self.start_ts) or self.start_ts < 0:
            raise ValueError("start_ts must be a finite, non-negative Unix time")

    @property
    def users(self) -> int:
        """Number of users the clicks are spread over (``n_users`` or its default)."""
        return self.n_users if self.n_users is not None else max(1, self.clicks // CLICKS_PER_USER)


def _rng(config: SynthConfig, *tags: int) -> np.random.Generator:
    seed = int(config.seed) & 0xFFFF_FFFF_FFFF_FFFF
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


# ==========================================================================================
# Catalogue
# ==========================================================================================
@dataclass(frozen=True)
class Catalog:
    """The latent item structure, indexed by public item id (all arrays length n_items)."""

    item_topic: np.ndarray  # int: topic of each item
    item_pos: np.ndarray  # int: position in its topic's order == popularity rank in topic
    item_log_mu: np.ndarray  # float: mean log dwell (log seconds); median dwell = exp(.)
    item_popularity: np.ndarray  # float: prior popularity p(topic) * p(item | topic)
    topic_popularity: np.ndarray  # float, length n_topics (effective): p(topic)


class _Cat:
    """Catalogue in internal order: internal index j; topic t occupies [start[t], start[t]+size[t])."""

    def __init__(self, config: SynthConfig):
        rng = _rng(config, _T_CATALOG)
        n = config.n_items
        T = min(config.n_topics, n)
        a = float(config.zipf_a)
        w = rng.lognormal(0.0, TOPIC_SIZE_SIGMA, T)
        size = 1 + rng.multinomial(n - T, w / w.sum())
        start = np.zeros(T, np.int64)
        start[1:] = np.cumsum(size)[:-1]
        topic_of = np.repeat(np.arange(T), size)
        pos = np.arange(n) - start[topic_of]
        # within-topic Zipf CDF, shifted by the topic index so one searchsorted serves all topics
        wz = (pos + 1.0) ** -a
        cs = np.cumsum(wz)
        seg_before = np.concatenate(([0.0], cs[start[1:] - 1]))
        seg_cs = cs - seg_before[topic_of]
        seg_tot = seg_cs[start + size - 1]
        cdf = seg_cs / seg_tot[topic_of]
        cdf[start + size - 1] = 1.0
        self.cdf_shift = topic_of + cdf
        p_item_in_topic = wz / (seg_tot[topic_of])
        # topic popularity: Zipf with random ranks over the ring
        trank = rng.permutation(T)
        pt = (trank + 1.0) ** -a
        pt /= pt.sum()
        self.topic_p = pt
        self.topic_cdf = np.cumsum(pt)
        self.topic_cdf[-1] = 1.0
        self.mu = math.log(DWELL_CENTER_S) + DWELL_MU_STD * rng.standard_normal(n)
        self.ids = rng.permutation(n)  # internal j -> public item id
        self.T, self.n = T, n
        self.start, self.size, self.topic_of, self.pos = start, size, topic_of, pos
        self.p_item = pt[topic_of] * p_item_in_topic

    def draw_item(self, topics: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Popularity draw of one item per row, inside topics[i], from uniforms u[i] in [0,1)."""
        j = np.searchsorted(self.cdf_shift, topics + u, side="right")
        return np.minimum(j, (self.start + self.size - 1)[topics])

    def draw_topic(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.topic_cdf, u, side="right"), self.T - 1)

    def public(self) -> Catalog:
        n = self.n
        out = {
            k: np.empty(n, dt)
            for k, dt in (
                ("item_topic", np.int64),
                ("item_pos", np.int64),
                ("item_log_mu", np.float64),
                ("item_popularity", np.float64),
            )
        }
        out["item_topic"][self.ids] = self.topic_of
        out["item_pos"][self.ids] = self.pos
        out["item_log_mu"][self.ids] = self.mu
        out["item_popularity"][self.ids] = self.p_item
        return Catalog(topic_popularity=self.topic_p.copy(), **out)


def catalog(config: SynthConfig) -> Catalog:
    """The latent catalogue of ``config`` (depends on seed, n_items, n_topics, zipf_a only)."""
    return _Cat(config).public()


def item_topic(config: SynthConfig) -> np.ndarray:
    """Latent topic of every item id (array of length n_items)."""
    return catalog(config).item_topic


def item_dwell_median(config: SynthConfig) -> np.ndarray:
    """Median dwell in seconds, exp(mu_item), of every item id; 'long' dwell means above it."""
    return np.exp(catalog(config).item_log_mu)


# ==========================================================================================
# Users
# ==========================================================================================
class _Users:
    """Per-user attributes, generated lazily in chunks of _USER_CHUNK users (bounded memory)."""

    def __init__(self, config: SynthConfig, cat: _Cat):
        self.cfg, self.cat = config, cat
        self.n = n = config.users
        self.n_chunks = -(-n // _USER_CHUNK)
        base = 1 if config.clicks >= n else 0
        self.base = base
        extra = config.clicks - base * n
        sums = np.array([self._weights(i).sum() for i in range(self.n_chunks)])
        # sequential binomial split of `extra` over chunks == one multinomial over all users
        rng = _rng(config, _T_TOTALS)
        totals = np.zeros(self.n_chunks, np.int64)
        rem, wrem = extra, float(sums.sum())
        for i in range(self.n_chunks):
            if i == self.n_chunks - 1:
                totals[i] = rem
            else:
                p = min(1.0, sums[i] / wrem) if wrem > 0 else 0.0
                totals[i] = rng.binomial(rem, p)
            rem -= totals[i]
            wrem -= sums[i]
        self.totals = totals
        self.cache: dict[int, dict[str, np.ndarray]] = {}

    def _weights(self, i: int) -> np.ndarray:
        m = min(_USER_CHUNK, self.n - i * _USER_CHUNK)
        return _rng(self.cfg, _T_UWEIGHT, i).lognormal(0.0, USER_ACTIVITY_SIGMA, m)

    def chunk(self, i: int) -> dict[str, np.ndarray]:
        got = self.cache.get(i)
        if got is not None:
            return got
        cfg, cat = self.cfg, self.cat
        w = self._weights(i)
        m = len(w)
        budget = self.base + _rng(cfg, _T_UBUDGET, i).multinomial(int(self.totals[i]), w / w.sum())
        rng = _rng(cfg, _T_UATTR, i)
        pref = cat.draw_topic(rng.random((m, 3)))
        npref = rng.integers(1, 4, m)
        n_hat = np.maximum(1.0, budget / cfg.mean_session_len)  # ~ expected number of sessions
        got = {"budget": budget.astype(np.int64), "pref": pref, "npref": npref, "n_hat": n_hat}
        self.cache[i] = got
        return got

    def budget(self, u: int) -> int:
        return int(self.chunk(u // _USER_CHUNK)["budget"][u % _USER_CHUNK])

    def slice(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Attributes of users lo..hi-1 (contiguous); drops cached chunks below lo."""
        c_lo, c_hi = lo // _USER_CHUNK, (hi - 1) // _USER_CHUNK
        for k in [k for k in self.cache if k < c_lo]:
            del self.cache[k]
        parts = []
        for c in range(c_lo, c_hi + 1):
            a = max(lo, c * _USER_CHUNK) - c * _USER_CHUNK
            b = min(hi, (c + 1) * _USER_CHUNK) - c * _USER_CHUNK
            parts.append({k: v[a:b] for k, v in self.chunk(c).items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ==========================================================================================
# Session lengths and the session plan (which user, how long)
# ==========================================================================================
def _length_params(mean: float) -> tuple[float, float]:
    """(q, p_geom): heavy-tail probability and geometric parameter giving mean `mean`."""
    length = np.arange(1, MAX_SESSION_LEN + 1, dtype=np.float64)
    e_heavy = float(np.minimum(1.0, (HEAVY_XM / length) ** HEAVY_ALPHA).sum())  # E[min(floor X, cap)]
    q = HEAVY_SHARE * mean / e_heavy
    m_geom = mean * (1.0 - HEAVY_SHARE) / (1.0 - q)
    if m_geom < 1.0:
        q, m_geom = 0.0, mean
    return q, 1.0 / m_geom


class _Planner:
    """Turns user budgets into a stream of (user, session length), in file order."""

    def __init__(self, config: SynthConfig, users: _Users):
        self.cfg, self.users = config, users
        self.rng = _rng(config, _T_LENGTHS)
        self.q, self.pg = _length_params(config.mean_session_len)
        self.remaining = config.clicks  # rows still to plan
        # a user draws sessions while its total is < budget - shave (at least one session);
        # the shave offsets the expected overshoot of the last session, so nearly all users appear
        self.shave = int(0.85 * config.mean_session_len)
        self.u, self.rem = -1, 0
        self.pool = np.zeros(0, np.int64)
        self.cin = np.zeros(0, np.int64)
        self.p = 0

    def continues_user(self, u: int) -> bool:
        """True when user u (the last one planned) has sessions left for the next chunk."""
        return self.u == u and self.rem > 0 and self.remaining > 0

    def _refill(self) -> None:
        rng, n = self.rng, _LENGTH_POOL
        lens = rng.geometric(self.pg, n)
        heavy = rng.random(n) < self.q
        xh = np.floor(HEAVY_XM * (1.0 - rng.random(n)) ** (-1.0 / HEAVY_ALPHA))
        lens = np.where(heavy, xh, lens)
        self.pool = np.clip(lens, 1, MAX_SESSION_LEN).astype(np.int64)
        self.cin = np.cumsum(self.pool)
        self.p = 0

    def next_chunk(self, max_clicks: int) -> tuple[np.ndarray, np.ndarray] | None:
        lens, owners, got = [], [], 0
        while got < max_clicks and self.remaining > 0:
            if self.rem <= 0:
                if self.u + 1 >= self.users.n:  # rare: the last user takes the remainder
                    self.rem = self.remaining
                    continue
                b = self.users.budget(self.u + 1)
                if b == 0:
                    self.u += 1
                    continue
                if got > 0 and got + b > max_clicks:
                    break  # users are split across chunks only if huge
                self.u += 1
                self.rem = max(1, b - self.shave)
            if self.p >= len(self.pool):
                self._refill()
            p, cin = self.p, self.cin
            base = int(cin[p - 1]) if p else 0
            room = min(max_clicks - got, self.remaining)
            j = int(np.searchsorted(cin, base + min(self.rem, room), side="left"))
            j = min(j, len(cin) - 1)
            seg = self.pool[p : j + 1].copy()
            s = int(cin[j]) - base
            if s > self.remaining:  # the very last session of the file is truncated
                seg[-1] -= s - self.remaining
                s = self.remaining
            self.p = j + 1
            self.rem -= s
            self.remaining -= s
            got += s
            lens.append(seg)
            owners.append(np.full(len(seg), self.u, np.int64))
        if not lens:
            return None
        return np.concatenate(lens), np.concatenate(owners)


# ==========================================================================================
# Click simulation (vectorised over the sessions of a chunk, one step per click position)
# ==========================================================================================
def _reflect(x: np.ndarray, size: np.ndarray) -> np.ndarray:
    m = size - 1
    period = 2 * np.maximum(m, 1)
    y = np.mod(x, period)
    y = np.where(y > m, period - y, y)
    return np.where(m == 0, 0, y)


def _simulate(
    cat: _Cat,
    cfg: SynthConfig,
    rng: np.random.Generator,
    L: np.ndarray,
    pref: np.ndarray,
    npref: np.ndarray,
    dwell_max_ms: int,
    dis_lo_ms: int,
    dis_hi_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Items (internal index) and the gap after each click (ms; 0 after a session's last click)."""
    n_s = len(L)
    total = int(L.sum())
    off = np.zeros(n_s, np.int64)
    off[1:] = np.cumsum(L)[:-1]
    order = np.argsort(-L, kind="stable")  # longest first: active sessions are a prefix
    offs = off[order]
    max_len = int(L.max())
    active = n_s - np.cumsum(np.bincount(L, minlength=max_len + 1))  # active[k] = #{L > k}
    items = np.empty(total, np.int64)
    gaps = np.zeros(total, np.int64)
    p_dis = cfg.distraction_p if dis_hi_ms > dis_lo_ms else 0.0
    log_step = math.log(1.0 - P_SIBLING_STEP)

    ps, nps = pref[order], npref[order]
    u0 = rng.random((n_s, 2))
    topic = ps[np.arange(n_s), (u0[:, 0] * nps).astype(np.int64)]
    j = cat.draw_item(topic, u0[:, 1])
    start, size, mu = cat.start, cat.size, cat.mu
    for k in range(max_len):
        A = int(active[k])
        A1 = int(active[k + 1])
        idx = offs[:A] + k
        items[idx] = j
        if A1 == 0:
            break
        # dwell on the current click, for the sessions that have a next click
        z = rng.standard_normal(A1)
        r = rng.random((A1, 6))
        dwell = np.exp(mu[j[:A1]] + DWELL_SIGMA * z)
        g = np.clip(np.rint(dwell * 1000.0), DWELL_MIN_S * 1000.0, dwell_max_ms).astype(np.int64)
        if p_dis > 0:
            dis = r[:, 5] < p_dis
            if dis.any():
                g[dis] = dis_lo_ms + (r[dis, 5] / p_dis * (dis_hi_ms - dis_lo_ms)).astype(np.int64)
        gaps[idx[:A1]] = g
        # transition
        t = topic[:A1]
        jc = j[:A1]
        engaged = z > 0.0  # dwell above the item's median exp(mu)
        stay = r[:, 0] < np.where(engaged, P_STAY_LONG, P_STAY_SHORT)
        sib = stay & engaged & (r[:, 1] < P_SIBLING)
        ring = ~stay & (r[:, 1] < P_RING)
        rnd = ~stay & ~ring
        direction = np.where(r[:, 2] < 0.5, -1, 1)
        nt = t.copy()
        nt[ring] = np.mod(t[ring] + direction[ring], cat.T)
        if rnd.any():
            nt[rnd] = cat.draw_topic(r[rnd, 4])
        jn = cat.draw_item(nt, r[:, 3])
        if sib.any():
            ts, sz = t[sib], size[t[sib]]
            v = np.mod(2.0 * r[sib, 2], 1.0)
            step = 1 + np.floor(np.log1p(-v) / log_step).astype(np.int64)
            pos = _reflect(jc[sib] - start[ts] + direction[sib] * step, sz)
            jn[sib] = start[ts] + pos
        topic, j = nt, jn
    return items, gaps


# ==========================================================================================
# Chunks
# ==========================================================================================
class _Chunk(NamedTuple):
    session_id: np.ndarray  # int64, per row
    user_id: np.ndarray  # int64, per row
    item_id: np.ndarray  # int64, per row
    ts_ms: np.ndarray  # int64 Unix milliseconds, per row
    lengths: np.ndarray  # int64, per session of the chunk (sessions never straddle chunks)
    gaps_ms: np.ndarray  # int64, per row: gap to the next click of the session, -1 if last


def _chunks(config: SynthConfig) -> Iterator[_Chunk]:
    if config.clicks == 0:
        return
    cat = _Cat(config)
    users = _Users(config, cat)
    planner = _Planner(config, users)
    start_ms = round(config.start_ts * 1000.0)
    gap_x = config.session_gap_s * 1000.0
    within_max = math.ceil(gap_x) - 1  # every within-session gap < session_gap_s
    between_min = math.floor(gap_x) + 1  # every between-session gap > session_gap_s
    dwell_max = max(1, within_max)
    dis_lo = int(C1_S * 1000) + 1
    dis_hi = min(int(DISTRACTION_MAX_S * 1000), within_max)
    next_sid = 0
    span_ms = int(config.span_days * 86_400_000.0)
    carry_user, carry_end, carry_next = -1, 0, 0
    chunk_no = 0
    while True:
        plan = planner.next_chunk(_CHUNK_CLICKS)
        if plan is None:
            return
        L, su = plan
        rng = _rng(config, _T_SIM, chunk_no)
        chunk_no += 1
        # the session that fills a user's budget is size-biased (longer): shuffle each user's
        # sessions so session length does not depend on the position in the user's history
        L = L[np.lexsort((rng.random(len(L)), su))]
        lo, hi = int(su[0]), int(su[-1]) + 1
        ua = users.slice(lo, hi)
        sl = su - lo
        items, gaps = _simulate(cat, config, rng, L, ua["pref"][sl], ua["npref"][sl], dwell_max, dis_lo, dis_hi)
        n_s = len(L)
        off = np.zeros(n_s, np.int64)
        off[1:] = np.cumsum(L)[:-1]
        last = off + L - 1
        # within-session offsets from the session start
        excl = np.cumsum(gaps) - gaps
        rel = excl - np.repeat(excl[off], L)
        dur = rel[last]
        # session starts (ms from start_ms). The i-th session of a user is scheduled at
        # (i + U) * slot_user (slot = span / number of sessions) but never before the previous
        # session's end + session_gap + 1 ms + Exp(10 min); scheduled times past the span are
        # dropped (those sessions just follow the previous one). Max-plus recursion
        #   s_i = max(a_i, s_{i-1} + dur_{i-1} + g_i)  ==  c_i + running_max(a_r - c_r)
        # with c the per-user cumulative sum of dur + g: one segmented running max.
        g = between_min + np.rint(rng.exponential(MIN_EXTRA_GAP_S * 1000.0, n_s)).astype(np.int64)
        new_user = np.ones(n_s, bool)
        new_user[1:] = su[1:] != su[:-1]
        gstart = np.maximum.accumulate(np.where(new_user, np.arange(n_s), 0))
        k_in_user = np.arange(n_s) - gstart
        # a user whose sessions all lie in this chunk gets slot = span / its session count;
        # a user split across chunks (only users with a huge budget) uses its expected count
        n_in_chunk = np.diff(np.append(np.flatnonzero(new_user), n_s))[np.cumsum(new_user) - 1]
        n_sched = n_in_chunk.astype(np.float64)
        carried = bool(su[0] == carry_user)
        if carried:
            k_in_user[gstart == 0] += carry_next
        split = (gstart == 0) if carried else np.zeros(n_s, bool)
        if planner.continues_user(int(su[-1])):
            split |= gstart == gstart[-1]
        n_sched[split] = ua["n_hat"][sl][split]
        a = np.floor((k_in_user + rng.random(n_s)) * (span_ms / n_sched))
        a = np.where(a < span_ms, a, _NEG).astype(np.int64)
        val = np.zeros(n_s, np.int64)
        val[1:] = dur[:-1] + g[1:]
        val[new_user] = 0
        cs = np.cumsum(val)
        c = cs - cs[gstart]
        if carried:
            a[0] = max(int(a[0]), carry_end + int(g[0]))
        grp = np.cumsum(new_user) * _BIG
        sstart = c + np.maximum.accumulate(a - c + grp) - grp
        carry_user, carry_end = int(su[-1]), int(sstart[-1] + dur[-1])
        carry_next = int(k_in_user[-1]) + 1
        sstart += start_ms
        ts = np.repeat(sstart, L) + rel
        gaps[last] = -1
        sid = np.repeat(np.arange(next_sid, next_sid + n_s, dtype=np.int64), L)
        next_sid += n_s
        yield _Chunk(sid, np.repeat(su, L), cat.ids[items], ts, L, gaps)


def generate(config: SynthConfig) -> Iterator[tuple[int, int, int, float]]:
    """Yield (session_id, user_id, item_id, timestamp) rows in a deterministic order for the seed.

    Row order: grouped by user, then the user's sessions in time order, then clicks in time
    order (see the module docstring). Timestamps are floats with millisecond precision.
    """
    for ch in _chunks(config):
        yield from zip(ch.session_id.tolist(), ch.user_id.tolist(), ch.item_id.tolist(), (ch.ts_ms / 1000.0).tolist())


# ==========================================================================================
# CSV writing
# ==========================================================================================
def _encode_rows(sid: np.ndarray, uid: np.ndarray, item: np.ndarray, ts_ms: np.ndarray) -> bytes:
    """Vectorised '%d,%d,%d,%.3f\\n' formatting of non-negative ints and ms timestamps."""
    n = len(sid)
    if n == 0:
        return b""
    sec = ts_ms // 1000
    frac = ts_ms - sec * 1000
    cols = (sid, uid, item, sec)
    widths = [len(str(int(col.max()))) for col in cols]
    W = sum(widths) + 3 + 1 + 3 + 1
    buf = np.empty((n, W), np.uint8)
    keep = np.ones((n, W), bool)
    c0 = 0
    for col, w, sep in zip(cols, widths, b",,,."):
        v = col.astype(np.int64)
        for i in range(w):
            at = c0 + w - 1 - i
            if i:
                keep[:, at] = v > 0
            q = v // 10
            buf[:, at] = v - q * 10 + 48
            v = q
        c0 += w
        buf[:, c0] = sep
        c0 += 1
    buf[:, c0] = frac // 100 + 48
    buf[:, c0 + 1] = frac // 10 % 10 + 48
    buf[:, c0 + 2] = frac % 10 + 48
    buf[:, c0 + 3] = 10
    return buf[keep].tobytes()


def write_csv(config: SynthConfig, out_path: str | Path, progress: bool = False) -> dict:
    """Write the clickstream of ``config`` as CSV and return statistics.

    Header ``session_id,user_id,item_id,timestamp``; timestamp is Unix seconds, '%.3f'.
    Returns a dict: clicks, sessions, users, items_used, mean_session_len, max_session_len,
    censored_fraction (fraction of within-session gaps >= c1 = 2000 s, i.e. of the clicks that
    have a next click in their session), first_ts, last_ts, seconds (wall time).
    progress=True shows a tqdm bar on stderr.
    """
    t0 = time.perf_counter()
    out_path = Path(out_path)
    n_clicks = n_sessions = n_users = max_len = 0
    n_inner = n_censored = 0
    prev_user = -1
    first_ts, last_ts = math.inf, -math.inf
    seen = np.zeros(config.n_items, bool)
    c1_ms = int(C1_S * 1000)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.clicks, unit="rows", unit_scale=True, file=sys.stderr, desc=f"synth {out_path.name}")
    try:
        with open(out_path, "wb", buffering=1 << 22) as fh:
            fh.write((HEADER + "\n").encode())
            for ch in _chunks(config):
                fh.write(_encode_rows(ch.session_id, ch.user_id, ch.item_id, ch.ts_ms))
                n = len(ch.session_id)
                n_clicks += n
                n_sessions += len(ch.lengths)
                max_len = max(max_len, int(ch.lengths.max()))
                u = ch.user_id
                n_users += int(np.count_nonzero(u[1:] != u[:-1])) + int(u[0] != prev_user)
                prev_user = int(u[-1])
                inner = ch.gaps_ms >= 0
                n_inner += int(inner.sum())
                n_censored += int((ch.gaps_ms >= c1_ms).sum())
                seen[ch.item_id] = True
                first_ts = min(first_ts, int(ch.ts_ms.min()) / 1000.0)
                last_ts = max(last_ts, int(ch.ts_ms.max()) / 1000.0)
                if bar is not None:
                    bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    return {
        "clicks": n_clicks,
        "sessions": n_sessions,
        "users": n_users,
        "items_used": int(seen.sum()),
        "mean_session_len": n_clicks / n_sessions if n_sessions else 0.0,
        "max_session_len": max_len,
        "censored_fraction": n_censored / n_inner if n_inner else 0.0,
        "first_ts": first_ts if n_clicks else None,
        "last_ts": last_ts if n_clicks else None,
        "seconds": time.perf_counter() - t0,
    }
