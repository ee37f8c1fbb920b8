"""Checkpoints: weights + config + item vocabulary + dataset fingerprint + code version.

Saved atomically (write to a temporary file, then rename). Loaded with
torch.load(weights_only=True): only tensors and plain containers are unpickled, never code.
Anything unexpected -- unreadable file, other format, newer format version, checksum mismatch,
config/weights/vocabulary inconsistency -- raises CheckpointError with the reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import torch

from .. import __version__
from ..model import PAPER_SETTINGS, Jump, JumpConfig
from .files import atomic_write, sha256_json

FORMAT = "jump-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be served; `reason` is a short label (metrics, logs)."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


def state_sha256(state: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(
    path: str | Path, model: Jump, items: list[str], dataset_fingerprint: str, train_info: dict | None = None
) -> dict:
    """Write the checkpoint atomically; returns its metadata (everything but the weights)."""
    if len(items) + 1 != model.config.n_items:
        raise CheckpointError(f"vocabulary has {len(items)} items but the model has {model.config.n_items - 1}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "model": "jump",
        "config": model.config.to_dict(),
        "items": list(items),
        "vocab_sha256": sha256_json(list(items)),
        "dataset_fingerprint": dataset_fingerprint,
        "train": dict(train_info or {}),
        "state_sha256": state_sha256(state),
        "state_dict": state,
    }
    atomic_write(path, lambda f: torch.save(payload, f))
    return {k: v for k, v in payload.items() if k != "state_dict"}


def load_checkpoint(path: str | Path, map_location="cpu", expect_items: list[str] | None = None) -> tuple[Jump, dict]:
    """Load and validate a checkpoint; returns (model in eval mode, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file", "missing_file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, disallowed pickle content
        # torch's own message is long and advises weights_only=False, the unsafe option: keep only its cause
        text = str(e)
        if "Unsupported global" in text:
            why = "it holds Python objects other than tensors and plain data"
        elif "WeightsUnpickler error" in text:
            cause = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            why = f"not a checkpoint or corrupt ({cause[0].strip() if cause else 'unpickling failed'})"
        else:
            why = f"truncated or corrupt ({text.strip().splitlines()[0] if text.strip() else 'unreadable'})"
        raise CheckpointError(
            f"{path}: not a readable JUMP checkpoint ({type(e).__name__}: {why}); it is not loaded, since "
            "only plain-data checkpoints written by `jump train` are read",
            "unreadable",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a JUMP checkpoint (format {found!r})", "format")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
            f"by this code (version {__version__} reads format {FORMAT_VERSION})",
            "format",
        )
    known = {f.name for f in fields(JumpConfig)}
    cfg = payload.get("config")
    if not isinstance(cfg, dict) or set(cfg) - known or "n_items" not in cfg:
        raise CheckpointError(
            f"{path}: incompatible model config {sorted(set(cfg or {}) - known)} (expected fields {sorted(known)})",
            "config_mismatch",
        )
    state, items = payload.get("state_dict"), payload.get("items")
    if not isinstance(state, dict) or not isinstance(items, list):
        raise CheckpointError(f"{path}: checkpoint lacks weights or vocabulary", "format")
    if state_sha256(state) != payload.get("state_sha256"):
        raise CheckpointError(f"{path}: weights checksum mismatch (corrupt checkpoint)", "checksum")
    if len(items) + 1 != cfg["n_items"] or sha256_json(items) != payload.get("vocab_sha256"):
        raise CheckpointError(
            f"{path}: vocabulary ({len(items)} items) does not match the model config "
            f"({cfg['n_items'] - 1} items) or its checksum",
            "vocab_mismatch",
        )
    if expect_items is not None and list(expect_items) != items:
        raise CheckpointError(
            f"{path}: the model's item vocabulary differs from the dataset's "
            f"({len(items)} vs {len(expect_items)} items): it was trained on other data",
            "vocab_mismatch",
        )
    # fields added after a checkpoint was written: it was trained with the paper's setting of them
    cfg = {**PAPER_SETTINGS, **cfg}
    model = Jump(JumpConfig(**cfg))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the config: {str(e)[:300]}", "config_mismatch") from None
    model.to(map_location).eval()
    return model, {k: v for k, v in payload.items() if k != "state_dict"}
