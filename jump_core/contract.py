"""The one model contract: the batch every model reads, what every model returns, and how it is trained.

JUMP (model.py) and every baseline (baselines/) implement `SessionModel`; the evaluation
(training/evaluate.py), the training loop (training/train.py), the benchmark, the trainer and the
checkpoints call nothing else. After RecBole's `calculate_loss / predict / full_sort_predict`:

    predict(batch, protocol) -> Prediction               every model, one pass per batch
        scores (P, n_items) | None   next click after every position j that has one, rows in
                                     `batch.next_positions()` order, ranked over the full catalogue
                                     (RecBole's full_sort_predict); column 0 (unknown item) is -inf.
                                     None for a dwell-only model.
        dwell  Dwell | None          for every click k: median (B, L) s, mu (B, L) = log of the point
                                     estimate, loglik (B, L) = the model's censored log-likelihood of
                                     the observed (tau_k, delta_k) (eq. 10 for log-normal models);
                                     predicted from item i_k and clicks 1..k-1, whose dwells are known
                                     when click k arrives, so dwell never depends on the protocol.
                                     None for a click-only model.
        protocol 'paper': the dwell of every context click is known; 'live': the dwell of the latest
                 click j is unknown (the stream's view at click time), represented as a session's last
                 click is, (c2, censored); 'elapsed:E': E seconds after click j with the user still on
                 it, its dwell censored at E, (E, censored) (`latest_dwell`). Only dwell-aware models
                 see a difference; the evaluation scores 'elapsed:E' on positions whose next click
                 came more than E s later.
    calculate_loss(batch) -> Loss                        gradient-trained models (`trainable`)
    train_steps(data, cfg, epoch, device) -> TrainSteps  one epoch of steps; NeuralModel's default is
                                                         shuffled padded batches of calculate_loss
    configure_optimizer(cfg) -> Optimizer                NeuralModel's default: Adam at cfg.lr
    fit(train) -> self                                   closed-form models (POP, kNN, item tables)

Capabilities are class attributes, declared rather than probed: `ranks_clicks` (scores is not
None), `predicts_dwell` (dwell is not None), `dwell_aware` (the dwell of the latest click changes the
scores, so 'paper' and 'live' differ), `trainable` (trained by training.train.fit_model, else `fit`).
Every model is built from its config dataclass, `Model(Config(n_items=..., ...))` (registry.build).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .data.dataset import SessionSet

PROTOCOLS = ("paper", "live", "elapsed")  # "elapsed" is written "elapsed:E" (E seconds, see `latest_dwell`)
MIN_DWELL_S = 0.5  # s: dwells are floored here before log tau in every dwell likelihood (tau = 0 has no log)


@dataclass
class SessionBatch:
    """Right-padded mini-batch of sessions: the one input type of every model."""

    items: torch.Tensor  # (B, L) long, 0 = padding / unknown item
    tau: torch.Tensor  # (B, L) float, censored dwell (eq. 4), 0 at padding
    delta: torch.Tensor  # (B, L) bool, censored flag
    lengths: torch.Tensor  # (B,) long

    @property
    def mask(self) -> torch.Tensor:
        L = self.items.shape[1]
        return torch.arange(L, device=self.items.device) < self.lengths.unsqueeze(1)  # (B, L)

    def next_positions(self) -> torch.Tensor:
        """(B, L) bool: positions j that have a next click j+1 in the same session."""
        L = self.items.shape[1]
        return torch.arange(L, device=self.items.device) < (self.lengths - 1).unsqueeze(1)

    def next_targets(self) -> torch.Tensor:
        """Item of click j+1 for every next position, in `next_positions()` order.  (P,)"""
        shifted = torch.nn.functional.pad(self.items[:, 1:], (0, 1))  # (B, L)
        return shifted[self.next_positions()]

    def log_tau(self, min_dwell: float = MIN_DWELL_S) -> torch.Tensor:
        """log max(tau, min_dwell): the variable of every dwell likelihood.  (B, L)"""
        return torch.log(self.tau.clamp_min(min_dwell))

    def to(self, device) -> SessionBatch:
        return SessionBatch(self.items.to(device), self.tau.to(device), self.delta.to(device), self.lengths.to(device))

    @staticmethod
    def from_sessions(
        items: Sequence[Sequence[int]],
        tau: Sequence[Sequence[float]],
        delta: Sequence[Sequence[int]],
        dtype=torch.float32,
    ) -> SessionBatch:
        lengths = [len(s) for s in items]
        B, L = len(items), max(lengths)
        it = np.zeros((B, L), dtype=np.int64)
        ta = np.zeros((B, L), dtype=np.float64)
        de = np.zeros((B, L), dtype=bool)
        for b, n in enumerate(lengths):
            it[b, :n], ta[b, :n], de[b, :n] = items[b], tau[b], delta[b]
        return SessionBatch(
            torch.from_numpy(it),
            torch.from_numpy(ta).to(dtype),
            torch.from_numpy(de),
            torch.tensor(lengths, dtype=torch.long),
        )


class Dwell(NamedTuple):
    """Dwell predictions of every click of a batch (see the module doc)."""

    median: torch.Tensor  # (B, L) s: the point estimate
    mu: torch.Tensor  # (B, L) log of the point estimate
    loglik: torch.Tensor  # (B, L) censored log-likelihood of the observed (tau, delta); padding: any value


class Prediction(NamedTuple):
    scores: torch.Tensor | None  # (P, n_items)
    dwell: Dwell | None


class Loss(NamedTuple):
    loss: torch.Tensor  # scalar, what is backpropagated
    loss_sum: float  # the summed per-click loss of the batch (per-click figures of the history)
    parts: dict  # model-specific detached terms (diagnostics, tests)


class TrainStep(NamedTuple):
    loss: torch.Tensor  # scalar, backpropagated by the training loop
    clicks: int  # clicks (or targets) this step trained on
    loss_sum: float


def parse_protocol(protocol: str) -> tuple[str, float | None]:
    """'paper' | 'live' | 'elapsed:E' -> (kind, E or None); a ValueError names what is wrong."""
    kind, _, value = str(protocol).partition(":")
    if kind not in PROTOCOLS or (kind == "elapsed") != bool(value):
        raise ValueError(f"protocol must be 'paper', 'live' or 'elapsed:E' (E >= 0 seconds), not {protocol!r}")
    if kind != "elapsed":
        return kind, None
    try:
        elapsed = float(value)
    except ValueError:
        elapsed = math.nan
    if not elapsed >= 0 or math.isinf(elapsed):
        raise ValueError(f"protocol {protocol!r}: E must be a finite number of seconds >= 0")
    return kind, elapsed


def check_protocol(protocol: str) -> None:
    parse_protocol(protocol)


def elapsed_protocol(seconds: float) -> str:
    """The protocol string of a refresh `seconds` after the latest click: 'elapsed:E'."""
    return f"elapsed:{float(seconds):g}"


def latest_dwell(protocol: str, c2: float) -> float | None:
    """How a dwell-aware model represents the latest click's dwell, always censored (delta = 1):
    None under 'paper' (known), c2 under 'live' (how a session's last click looks in training, eq. 4),
    E under 'elapsed:E' (the user has been on it for E s: the paper's censoring semantics)."""
    kind, elapsed = parse_protocol(protocol)
    return None if kind == "paper" else c2 if kind == "live" else elapsed


@runtime_checkable
class SessionModel(Protocol):
    """What JUMP and every baseline implement (see the module doc for shapes and semantics)."""

    name: ClassVar[str]  # registry family name ("jump", "gru4rec", ...)
    ranks_clicks: ClassVar[bool]
    predicts_dwell: ClassVar[bool]
    dwell_aware: ClassVar[bool]
    trainable: ClassVar[bool]
    config: Any  # the config dataclass the model was built from

    @property
    def device(self) -> torch.device: ...

    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction: ...

    def eval(self) -> Any: ...


class NeuralModel(nn.Module):
    """Base of the gradient-trained models: `calculate_loss` per batch, `train_steps` per epoch."""

    trainable: ClassVar[bool] = True
    dwell_aware: ClassVar[bool] = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def calculate_loss(self, batch: SessionBatch) -> Loss:
        raise NotImplementedError

    def configure_optimizer(self, cfg) -> torch.optim.Optimizer:
        """The optimiser of `training.train.fit_model`: Adam at cfg.lr (§5: every model). A model
        overrides it to train with its published optimiser (GRU4Rec: Adagrad with momentum).
        fused: one kernel per parameter for the whole update (torch's fused Adam, the same update to float
        tolerance): the foreach implementation's dozen passes over the embedding tables cost about as much
        per batch as a short session's whole recurrence on a CPU."""
        return torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)

    def after_fit(self, train: SessionSet, val: SessionSet, batch_size: int = 100) -> dict:
        """Called by fit_model once the best epoch is loaded, with the training and validation sessions (never
        the test split): a model may fit post-hoc settings there (JUMP: its dwell blend and calibration).
        Returns what it fitted."""
        return {}

    def train_steps(self, data: SessionSet, cfg, epoch: int, device) -> Iterator[TrainStep]:
        """One epoch: shuffled, length-bucketed padded batches of `cfg.batch_size` sessions (seeded by
        cfg.seed and the epoch). A model overrides it to train differently (GRU4Rec's session-parallel
        mini-batches)."""
        for _, batch in data.batches(cfg.batch_size, shuffle=True, seed=cfg.seed * 1000 + epoch):
            batch = batch.to(device)
            out = self.calculate_loss(batch)
            yield TrainStep(out.loss, int(batch.lengths.sum()), out.loss_sum)


class FittedModel:
    """Base of the closed-form models: `fit(train)` once; they live on the CPU and have no train mode."""

    trainable: ClassVar[bool] = False
    dwell_aware: ClassVar[bool] = False
    device = torch.device("cpu")

    def fit(self, train: SessionSet) -> FittedModel:
        raise NotImplementedError

    def eval(self) -> FittedModel:
        return self
