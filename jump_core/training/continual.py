"""Continuous training of JUMP from the stream's training log (no Kafka: pipeline/runtime/trainer.py drives it).

One run, on a snapshot of the training window (the most recent closed sessions):
1. Split by time: the most recent `holdout_fraction` of the sessions (by end time) are held out;
   the rest trains (with a random 10% of it for early stopping).
2. Vocabulary. finetune: the serving model's items, then new items seen at least `min_item_count`
   times in the training part, appended (old items keep their row, so the serving model's weights
   carry over unchanged; new rows start from the model's initialisation). retrain, or no serving
   model yet: the items of the training part seen at least `min_item_count` times.
   Cold start, documented: an item first seen after the last promotion is unknown (index 0) to the
   serving model -- its clicks are still predicted (the session context is used; the item itself
   contributes no embedding) and it is never recommended -- until a run promotes a model that
   contains it. Items seen fewer than `min_item_count` times wait for a later run.
3. Train with the one training loop (train.fit_model), model selection on validation Recall@20
   under the live protocol, capped by epochs and a time budget.
4. Compare candidate and serving model on the held-out sessions with the one evaluation function
   (evaluate, live protocol: what the stream emits; each model with its own vocabulary, so a target
   the serving model does not know counts as a miss for it). Promote when candidate Recall@20 >=
   serving Recall@20 - margin; with no serving model, promote.
The session records come from the sessionizer, which computed (tau, delta) with eq. 4 (sessions.censor)
exactly as offline preparation does, so they train without any recomputation.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from .. import registry
from ..artifacts.files import sha256_json
from ..data.dataset import SessionSet
from ..data.prepare import filter_sessions
from ..model import Jump
from ..sessions import C1_DEFAULT, C2_DEFAULT
from .evaluate import evaluate
from .train import TrainConfig, fit_model, resolve_device, seed_everything, split_validation


@dataclass(frozen=True, slots=True)
class LoggedSession:
    session_id: str
    items: tuple[str, ...]
    ts: tuple[float, ...]
    tau: tuple[float, ...]
    delta: tuple[int, ...]

    @property
    def end_ts(self) -> float:
        return self.ts[-1]


def session_from_record(rec: dict) -> LoggedSession:
    """A decoded training_log record -> LoggedSession; ValueError with the reason when malformed."""
    try:
        sid, items, ts, tau, delta = rec["session_id"], rec["items"], rec["ts"], rec["tau"], rec["delta"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"training_log record lacks {e}") from None
    if not isinstance(sid, str) or not sid:
        raise ValueError("session_id must be a non-empty string")
    if not all(isinstance(x, list) for x in (items, ts, tau, delta)):
        raise ValueError("items, ts, tau and delta must be lists")
    n = len(items)
    if n == 0 or not len(ts) == len(tau) == len(delta) == n:
        raise ValueError(
            f"items, ts, tau, delta must have the same non-zero length ({n}, {len(ts)}, {len(tau)}, {len(delta)})"
        )
    if not all(isinstance(i, str) for i in items):
        raise ValueError("items must be strings")
    try:
        ts_f, tau_f = tuple(float(t) for t in ts), tuple(float(t) for t in tau)
    except (TypeError, ValueError):
        raise ValueError("ts and tau must be numbers") from None
    if not all(math.isfinite(t) for t in ts_f + tau_f) or min(tau_f) < 0:
        raise ValueError("ts and tau must be finite, tau non-negative")
    if any(b < a for a, b in itertools.pairwise(ts_f)):
        raise ValueError("ts must be in time order")
    if not all(d in (0, 1) for d in delta):
        raise ValueError("delta must be 0 or 1")
    return LoggedSession(sid, tuple(items), ts_f, tau_f, tuple(int(d) for d in delta))


class TrainingWindow:
    """The most recent `max_sessions` closed sessions, deduplicated by session id.

    The training log is delivered at least once: a session id seen again (within the last
    2 x max_sessions ids) is a duplicate. Sessions of one click have no next click to learn
    from and are skipped (paper filter step: sessions of length >= 2)."""

    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, LoggedSession] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, s: LoggedSession) -> str:
        """'added', 'duplicate' or 'too_short'."""
        if s.session_id in self._seen:
            return "duplicate"
        self._seen[s.session_id] = None
        if len(self._seen) > 2 * self.max_sessions:
            self._seen.popitem(last=False)
        if len(s.items) < 2:
            return "too_short"
        self._sessions[s.session_id] = s
        if len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return "added"

    def snapshot(self) -> list[LoggedSession]:
        """The window's sessions, by end time (ties by session id)."""
        return sorted(self._sessions.values(), key=lambda s: (s.end_ts, s.session_id))


@dataclass
class ContinualConfig:
    mode: str = "finetune"  # finetune | retrain
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 100
    time_budget_s: float = 900.0
    holdout_fraction: float = 0.1
    margin: float = 0.005
    min_item_count: int = 1  # the long tail, as `jump prepare` (scripts/min_item_count_study.py chose 1)
    dim: int = 100  # of a model trained from scratch
    c1: float = C1_DEFAULT  # eq. 4 thresholds of the stream (a fine-tuned model must share them)
    c2: float = C2_DEFAULT
    seed: int = 0
    device: str = "auto"
    max_len: int = 200
    model: dict = field(default_factory=dict)  # further JumpConfig fields of a model trained from scratch


def split_window(
    sessions: list[LoggedSession], holdout_fraction: float
) -> tuple[list[LoggedSession], list[LoggedSession]]:
    """(train, holdout): the most recent sessions (by end time) are held out; at least one each."""
    ordered = sorted(sessions, key=lambda s: (s.end_ts, s.session_id))
    n_hold = min(len(ordered) - 1, max(1, round(len(ordered) * holdout_fraction)))
    return ordered[:-n_hold], ordered[-n_hold:]


def build_vocabulary(train: list[LoggedSession], base: list[str] | None, min_count: int) -> tuple[list[str], list[str]]:
    """(vocabulary, new items): `base` (kept in order) + items of `train` seen >= min_count times that
    `base` lacks, most frequent first (ties by name, so the order is reproducible)."""
    counts = Counter(i for s in train for i in s.items)
    known = set(base or ())
    new = sorted((i for i, n in counts.items() if n >= min_count and i not in known), key=lambda i: (-counts[i], i))
    return list(base or ()) + new, new


def to_session_set(sessions: list[LoggedSession], items: list[str]) -> SessionSet:
    """Sessions in a model's vocabulary (unknown items -> 0)."""
    index = {name: k + 1 for k, name in enumerate(items)}
    lengths = np.array([len(s.items) for s in sessions], dtype=np.int64)
    return SessionSet(
        np.array([index.get(i, 0) for s in sessions for i in s.items], dtype=np.int64),
        np.array([t for s in sessions for t in s.ts], dtype=np.float64),
        np.array([t for s in sessions for t in s.tau], dtype=np.float64),
        np.array([d for s in sessions for d in s.delta], dtype=np.uint8),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.array([s.session_id.encode() for s in sessions], dtype=bytes),
    )


def grow_vocabulary(model: Jump, n_items: int) -> Jump:
    """A copy of `model` with `n_items` rows (>= its own) in every item-indexed table; existing rows are
    copied, new rows keep the fresh model's initialisation (the dwell-median table: the global median).
    Scores of the old items are unchanged."""
    old = model.config
    if n_items < old.n_items:
        raise ValueError(f"cannot shrink the vocabulary ({old.n_items} -> {n_items} rows)")
    grown = Jump(replace(old, n_items=n_items)).to(model.device)
    state = grown.state_dict()
    for name, value in model.state_dict().items():
        if value.shape == state[name].shape:
            state[name] = value.clone()
        else:  # item-indexed: (n_items, ...) rows
            state[name][: old.n_items] = value
            if name == "dwell_item_log_median":  # a new item's median dwell is unknown: row 0's global one
                state[name][old.n_items :] = value[0]
    grown.load_state_dict(state)
    return grown


def holdout_metrics(model: Jump, items: list[str], holdout: list[LoggedSession]) -> dict:
    """Live-protocol metrics of `model` (with its vocabulary) on the held-out sessions, on the model's device."""
    r = evaluate(model, to_session_set(holdout, items), "live")
    return {
        "recall@20": r["recall@20"],
        "mrr@20": r["mrr@20"],
        "dwell_mae_s": r["dwell_mae_s"],
        "n_predictions": r["n_predictions"],
    }


@dataclass
class RunResult:
    promote: bool
    reason: str
    mode: str  # finetune | retrain | initial
    model: Jump
    items: list[str]
    new_items: list[str]
    candidate: dict  # holdout metrics
    serving: dict | None
    summary: dict  # fit_model's summary
    sessions_train: int
    sessions_holdout: int
    clicks_train: int
    fingerprint: str


def train_candidate(
    sessions: list[LoggedSession], serving: tuple[Jump, list[str]] | None, cfg: ContinualConfig, log=print
) -> RunResult:
    """One continuous-training run on a window snapshot (see the module doc). Raises ValueError when the
    window is too small to train on."""
    if len(sessions) < 2:
        raise ValueError(f"need at least 2 sessions to train and hold out, have {len(sessions)}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    train, holdout = split_window(sessions, cfg.holdout_fraction)
    mode = cfg.mode if serving is not None else "initial"
    if mode == "finetune" and (serving[0].config.c1, serving[0].config.c2) != (cfg.c1, cfg.c2):
        log(
            f"serving model censors with c1={serving[0].config.c1}, c2={serving[0].config.c2}, the stream with "
            f"c1={cfg.c1}, c2={cfg.c2}: retraining from scratch instead of fine-tuning"
        )
        mode = "retrain"
    base = serving[1] if mode == "finetune" else None
    items, new_items = build_vocabulary(train, base, cfg.min_item_count)
    if not items:
        raise ValueError("no item reaches the minimum count in the training part of the window")
    if mode == "finetune":
        model = grow_vocabulary(serving[0], len(items) + 1).to(device)  # a copy: serving is untouched
    else:
        fields = dict(serving[0].config.to_dict()) if serving is not None else {"dim": cfg.dim, **cfg.model}
        fields.update(c1=cfg.c1, c2=cfg.c2)
        fields.pop("n_items", None)
        model = registry.build("jump", len(items) + 1, fields).to(device)
    # Clicks of items outside the vocabulary leave the training data, then sessions left with one click
    # (prepare's filter, as offline); the held-out sessions keep them: unknown to the model, as in the stream.
    data = to_session_set(train, items)
    data, _ = filter_sessions(data, data.items > 0, 2)
    if len(data) < 2:
        raise ValueError(f"{len(data)} training sessions left after dropping items seen < {cfg.min_item_count} times")
    tr, val = split_validation(data, 0.1, cfg.seed)
    tcfg = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        patience=max(1, cfg.epochs),
        seed=cfg.seed,
        device=str(device),
        max_len=cfg.max_len,
        time_budget_s=cfg.time_budget_s,
    )
    log(
        f"{mode}: {len(data):,} training sessions ({data.n_clicks:,} clicks), {len(holdout):,} held out, "
        f"{len(items):,} items ({len(new_items):,} new)"
    )
    summary = fit_model(
        model, tr, val, tcfg, progress=False, log=log, name=f"JUMP {mode}", select="val_recall", protocol="live"
    )
    candidate = holdout_metrics(model, items, holdout)
    current = holdout_metrics(serving[0], serving[1], holdout) if serving is not None else None
    if current is None:
        promote, reason = True, "no serving model yet"
    else:
        promote = candidate["recall@20"] >= current["recall@20"] - cfg.margin
        cmp = ">=" if promote else "<"
        reason = (
            f"held-out Recall@20 (live) {candidate['recall@20']:.4f} {cmp} serving "
            f"{current['recall@20']:.4f} - margin {cfg.margin:g}"
        )
    model.eval()
    fingerprint = sha256_json([s.session_id for s in train])
    return RunResult(
        promote,
        reason,
        mode,
        model,
        items,
        new_items,
        candidate,
        current,
        summary,
        len(data),
        len(holdout),
        data.n_clicks,
        fingerprint,
    )
