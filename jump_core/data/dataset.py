"""Prepared datasets: sessions laid end to end in flat arrays, stored as .npz, batched for models.

A prepared dataset directory (written by `jump prepare`, see prepare.py) holds:
  train.npz, test.npz  arrays items (N,) int64 (0 = unknown item), ts (N,) float64 Unix s,
                       tau (N,) float64 and delta (N,) uint8 (eq. 4), offsets (S+1,) int64,
                       session_ids (S,) bytes (utf-8)
  items.json           the vocabulary: raw item id of index 1, 2, ... (index 0 = padding/unknown)
  meta.json            parameters, every count, Table 1, and the dataset fingerprint
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..contract import SessionBatch

SPLIT_FIELDS = ("items", "ts", "tau", "delta", "offsets", "session_ids")


@dataclass
class SessionSet:
    items: np.ndarray  # (N,) int64
    ts: np.ndarray  # (N,) float64
    tau: np.ndarray  # (N,) float64
    delta: np.ndarray  # (N,) uint8
    offsets: np.ndarray  # (S+1,) int64
    session_ids: np.ndarray  # (S,) bytes

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_clicks(self) -> int:
        return int(self.offsets[-1])

    def session(self, s: int) -> dict:
        a, b = self.offsets[s], self.offsets[s + 1]
        return {
            "session_id": self.session_ids[s].decode(),
            "items": self.items[a:b].tolist(),
            "ts": self.ts[a:b].tolist(),
            "tau": self.tau[a:b].tolist(),
            "delta": self.delta[a:b].tolist(),
        }

    def subset(self, sessions: np.ndarray) -> SessionSet:
        """The given sessions (indices), in that order."""
        sessions = np.asarray(sessions, dtype=np.int64)
        lengths = self.lengths[sessions]
        clicks = _ranges(self.offsets[sessions], lengths)
        return SessionSet(
            self.items[clicks],
            self.ts[clicks],
            self.tau[clicks],
            self.delta[clicks],
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.session_ids[sessions],
        )

    def windows(self, max_len: int) -> SessionSet:
        """Cut sessions longer than max_len into consecutive windows (for training only).

        Each window keeps its clicks' true (tau, delta): a window's last click is censored only if
        it was censored in the session.
        """
        lengths = self.lengths
        if len(lengths) == 0 or lengths.max() <= max_len:
            return self
        n_win = -(-lengths // max_len)  # ceil
        sess = np.repeat(np.arange(len(lengths)), n_win)
        first_win = np.repeat(np.cumsum(n_win) - n_win, n_win)
        k = np.arange(len(sess)) - first_win  # window index in its session
        starts = self.offsets[sess] + k * max_len
        win_len = np.minimum(max_len, self.offsets[sess + 1] - starts)
        offsets = np.concatenate([[0], np.cumsum(win_len)]).astype(np.int64)
        clicks = _ranges(starts, win_len)
        return SessionSet(
            self.items[clicks], self.ts[clicks], self.tau[clicks], self.delta[clicks], offsets, self.session_ids[sess]
        )

    def batch(self, sessions: np.ndarray) -> SessionBatch:
        """Right-padded batch of the given sessions."""
        sessions = np.asarray(sessions, dtype=np.int64)
        lengths = self.lengths[sessions]
        L = int(lengths.max())
        idx = self.offsets[sessions][:, None] + np.arange(L)  # (B, L)
        valid = np.arange(L) < lengths[:, None]  # (B, L)
        idx = np.where(valid, idx, 0)
        return SessionBatch(
            torch.from_numpy(np.where(valid, self.items[idx], 0)),
            torch.from_numpy(np.where(valid, self.tau[idx], 0.0)).float(),
            torch.from_numpy(valid & (self.delta[idx] > 0)),
            torch.from_numpy(lengths.astype(np.int64)),
        )

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, bucket: int = 50
    ) -> Iterator[tuple[np.ndarray, SessionBatch]]:
        """(session indices, batch) pairs covering every session once.

        Sessions are grouped by length to limit padding: without shuffle all are sorted by
        length; with shuffle, random chunks of bucket * batch_size sessions are sorted by
        length and the resulting batches are visited in random order.
        """
        n = len(self)
        lengths = self.lengths
        if shuffle:
            rng = np.random.default_rng(seed)
            perm = rng.permutation(n)
            chunk = batch_size * bucket
            groups = []
            for a in range(0, n, chunk):
                part = perm[a : a + chunk]
                part = part[np.argsort(lengths[part], kind="stable")]
                groups += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
            order = rng.permutation(len(groups))
            groups = [groups[g] for g in order]
        else:
            srt = np.argsort(lengths, kind="stable")
            groups = [srt[a : a + batch_size] for a in range(0, n, batch_size)]
        for g in groups:
            yield g, self.batch(g)

    def save(self, path: Path) -> None:
        np.savez(path, **{f: getattr(self, f) for f in SPLIT_FIELDS})

    @staticmethod
    def load(path: Path) -> SessionSet:
        with np.load(path, allow_pickle=False) as z:
            missing = [f for f in SPLIT_FIELDS if f not in z.files]
            if missing:
                raise ValueError(f"{path}: not a prepared split (missing {', '.join(missing)})")
            return SessionSet(*(z[f] for f in SPLIT_FIELDS))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for every (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    base = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return base + np.arange(total)


@dataclass
class PreparedDataset:
    train: SessionSet
    test: SessionSet
    items: list[str]  # raw item id of index 1..n (index 0 = unknown)
    meta: dict

    @property
    def n_items(self) -> int:
        """Catalogue size including index 0."""
        return len(self.items) + 1

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]


def load_prepared(directory: str | Path) -> PreparedDataset:
    d = Path(directory)
    for name in ("train.npz", "test.npz", "items.json", "meta.json"):
        if not (d / name).exists():
            raise FileNotFoundError(f"{d}: not a prepared dataset ({name} missing; run `jump prepare`)")
    meta = json.loads((d / "meta.json").read_text())
    items = json.loads((d / "items.json").read_text())
    return PreparedDataset(SessionSet.load(d / "train.npz"), SessionSet.load(d / "test.npz"), items, meta)
