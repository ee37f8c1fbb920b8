"""The model directory shared by the trainer (writer) and the inference workers (readers).

Layout of JUMP_MODEL_DIR:
    jump-v000001.ckpt, jump-v000002.ckpt, ...   immutable checkpoints (checkpoint.py), one per promotion
    jump-v000002.json                            the announcement record of each checkpoint (sidecar)
    current.json                                 the announcement of the model to serve

Every file is written atomically (temporary file, fsync, rename), so a reader sees an old or a new
file, never half of one; current.json is replaced only after its checkpoint is complete. The
announcement (the `model_update` record of the jump-model-updates topic) carries the file's
SHA-256 and the weights', vocabulary's and config's fingerprints: `verify` checks all of them
before a worker serves the file, and `smoke_test` runs the model once on a two-click session.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch

from ..contract import SessionBatch
from ..model import Jump
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .files import sha256_files, sha256_json, write_json_atomic

CURRENT = "current.json"
_NAME = re.compile(r"^jump-v(\d{6,})\.ckpt$")


def model_version(path: str | Path, state_sha256: str) -> str:
    """The version string of a checkpoint: what every prediction's model_version carries."""
    return f"{Path(path).stem}:{state_sha256[:12]}"


@torch.no_grad()
def smoke_test(model: Jump) -> None:
    """One live prediction on a two-click session of known items; CheckpointError unless finite."""
    n = model.config.n_items
    items = [min(1, n - 1), min(2, n - 1)]
    device = next(model.parameters()).device
    batch = SessionBatch.from_sessions([items], [[5.0, model.config.c2]], [[0, 1]]).to(device)
    out, _, _ = model.live_predict(batch, torch.zeros(1, dtype=torch.long, device=device), batch.lengths - 1)
    if not torch.isfinite(out.scores[:, 1:]).all() or not torch.isfinite(out.median).all():
        raise CheckpointError("the model's predictions are not finite (NaN or inf weights)", "smoke_test")


class ModelStore:
    def __init__(self, directory: str | Path, keep: int = 10):
        self.dir = Path(directory)
        self.keep = keep

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(seq, path) of the checkpoints present, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found)

    def current(self) -> dict | None:
        """The announcement of the model to serve, or None when nothing was published yet."""
        path = self.dir / CURRENT
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable ({e})", "unreadable") from None
        if not isinstance(record, dict) or not {"seq", "path", "file_sha256"} <= set(record):
            raise CheckpointError(f"{path}: not a model announcement", "format")
        return record

    def resolve(self, record: dict) -> Path:
        """The checkpoint file of an announcement, in this directory (the volume may be mounted at a
        different path in the trainer and in the workers; the file name is what counts)."""
        return self.dir / Path(record["path"]).name

    def next_seq(self) -> int:
        seqs = [seq for seq, _ in self.checkpoints()]
        cur = self.current()
        return max([*seqs, int(cur["seq"]) if cur else 0]) + 1

    def publish(
        self,
        model: Jump,
        items: list[str],
        dataset_fingerprint: str,
        *,
        train_info: dict | None = None,
        parent_version: str | None = None,
        sessions_used: int = 0,
        metrics: dict | None = None,
        make_current: bool = True,
    ) -> dict:
        """Write the next checkpoint and (unless make_current=False) make it current; returns its
        announcement (model_update fields without `schema`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        seq = self.next_seq()
        path = self.dir / f"jump-v{seq:06d}.ckpt"
        meta = save_checkpoint(path, model, items, dataset_fingerprint, train_info)
        metrics = metrics or {}
        record = {
            "version": model_version(path, meta["state_sha256"]),
            "seq": seq,
            "path": str(path),
            "file_sha256": sha256_files(path),
            "state_sha256": meta["state_sha256"],
            "vocab_sha256": meta["vocab_sha256"],
            "n_items": len(items),
            "config_sha256": sha256_json(meta["config"]),
            "parent_version": parent_version,
            "created_ts": time.time(),
            "sessions_used": int(sessions_used),
            "recall20": metrics.get("recall@20"),
            "mrr20": metrics.get("mrr@20"),
            "dwell_mae_s": metrics.get("dwell_mae_s"),
        }
        write_json_atomic(path.with_suffix(".json"), record)
        if make_current:
            write_json_atomic(self.dir / CURRENT, record)
        self.prune()
        return record

    def find(self, source: str) -> Path:
        """A checkpoint named by its version ("jump-v000002:3f2a9c1e0b7d"), its seq ("2"), its file name in
        this directory, or any checkpoint file path."""
        if source.isdigit():
            path = self.dir / f"jump-v{int(source):06d}.ckpt"
        elif ":" in source and not Path(source).exists():
            path = self.dir / f"{source.split(':', 1)[0]}.ckpt"
        else:
            path = Path(source) if Path(source).exists() else self.dir / source
        if not path.is_file():
            raise CheckpointError(f"{source}: no such checkpoint (in {self.dir} or as a path)", "missing_file")
        return path

    def adopt(self, source: str) -> dict:
        """Publish a copy of an existing checkpoint as the next version and make it current: a rollback
        to an older version, or a model trained offline by `jump train`. Versions only move forward,
        so a rollback is a new seq with the old weights (parent_version: the model it replaces)."""
        path = self.find(source)
        model, meta = load_checkpoint(path)
        smoke_test(model)
        cur = self.current()
        sidecar = path.with_suffix(".json")
        old = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        return self.publish(
            model,
            meta["items"],
            meta["dataset_fingerprint"],
            train_info=meta.get("train"),
            parent_version=cur["version"] if cur else None,
            sessions_used=old.get("sessions_used", 0),
            metrics={
                "recall@20": old.get("recall20"),
                "mrr@20": old.get("mrr20"),
                "dwell_mae_s": old.get("dwell_mae_s"),
            },
        )

    def prune(self) -> list[Path]:
        """Delete all but the newest `keep` checkpoints (never the current one); returns what went."""
        cur = self.current()
        current_name = Path(cur["path"]).name if cur else None
        removed = []
        for _seq, path in self.checkpoints()[: -self.keep]:
            if path.name == current_name:
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            removed.append(path)
        return removed

    def verify(self, record: dict, map_location="cpu") -> tuple[Jump, dict]:
        """Load the checkpoint of an announcement after checking it against the announcement.

        Raises CheckpointError (with `reason`: missing_file, checksum, unreadable, format,
        vocab_mismatch, config_mismatch, smoke_test) when anything disagrees."""
        path = self.resolve(record)
        if not path.is_file():
            raise CheckpointError(f"{path}: announced checkpoint not found", "missing_file")
        if sha256_files(path) != record["file_sha256"]:
            raise CheckpointError(f"{path}: file checksum differs from the announcement", "checksum")
        model, meta = load_checkpoint(path, map_location=map_location)
        if meta["state_sha256"] != record.get("state_sha256"):
            raise CheckpointError(f"{path}: weights differ from the announcement", "checksum")
        if meta["vocab_sha256"] != record.get("vocab_sha256") or len(meta["items"]) != record.get("n_items"):
            raise CheckpointError(
                f"{path}: vocabulary ({len(meta['items'])} items) differs from the announcement "
                f"({record.get('n_items')} items)",
                "vocab_mismatch",
            )
        if sha256_json(meta["config"]) != record.get("config_sha256"):
            raise CheckpointError(f"{path}: model config differs from the announcement", "config_mismatch")
        smoke_test(model)
        return model, meta
