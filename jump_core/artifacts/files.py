"""Files the project writes and fingerprints: one atomic write, one SHA-256 of files, one of JSON values."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, write, mode: str = "wb") -> None:
    """write(file) into a temporary file next to `path`, fsync, then rename it over `path`: readers
    see the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, sort_keys=True), mode="w")


def sha256_files(*paths: str | Path) -> str:
    """SHA-256 of the files' contents, read in order as one stream."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    """SHA-256 of a JSON value (dict keys sorted): the fingerprint of a vocabulary, a config, a list of ids."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
