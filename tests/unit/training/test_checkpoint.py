"""Checkpoint round trip and refusal of corrupt or mismatched checkpoints."""

import pytest
import torch

from jump_core.artifacts.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from jump_core.contract import SessionBatch
from jump_core.model import Jump, JumpConfig

ITEMS = [f"item{i}" for i in range(1, 12)]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Jump(JumpConfig(n_items=12, dim=8)).eval()
    with torch.no_grad():
        model.emb_norm.running_mean.normal_()
    path = tmp_path / "m.ckpt"
    meta = save_checkpoint(path, model, ITEMS, "fp123", {"best_epoch": 3, "history": [{"loss": 1.5}]})
    return model, path, meta


def _batch():
    return SessionBatch.from_sessions([[1, 2, 3], [4, 5]], [[10.0, 300.0, 30.0], [5.0, 30.0]], [[0, 0, 1], [0, 1]])


def test_round_trip_gives_identical_predictions(saved):
    model, path, _meta = saved
    loaded, meta2 = load_checkpoint(path, expect_items=ITEMS)
    b = _batch()
    for protocol in ("paper", "live"):
        want, got = model.predict(b, protocol), loaded.predict(b, protocol)
        assert torch.equal(want.scores, got.scores) and torch.equal(want.dwell.median, got.dwell.median)
    assert meta2["dataset_fingerprint"] == "fp123" and meta2["items"] == ITEMS
    assert meta2["train"]["best_epoch"] == 3 and meta2["code_version"]
    assert not list(path.parent.glob("*.tmp"))  # atomic write left nothing behind


def test_truncated_file_is_refused(saved, tmp_path):
    _, path, _ = saved
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable JUMP checkpoint"):
        load_checkpoint(bad)


def test_flipped_weight_is_refused_by_checksum(saved, tmp_path):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["item_emb.weight"][3, 2] += 1.0
    torch.save(payload, tmp_path / "flip.ckpt")
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "flip.ckpt")


def test_other_vocabulary_is_refused(saved):
    _, path, _ = saved
    with pytest.raises(CheckpointError, match="vocabulary differs"):
        load_checkpoint(path, expect_items=ITEMS[::-1])


def test_incompatible_config_and_version_are_refused(saved, tmp_path):
    _, path, _ = saved
    payload = torch.load(path, weights_only=True)
    p2 = dict(payload, config=dict(payload["config"], n_layers=3))
    torch.save(p2, tmp_path / "cfg.ckpt")
    with pytest.raises(CheckpointError, match="incompatible model config"):
        load_checkpoint(tmp_path / "cfg.ckpt")
    p3 = dict(payload, format_version=99)
    torch.save(p3, tmp_path / "ver.ckpt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(tmp_path / "ver.ckpt")
    p4 = dict(payload, config=dict(payload["config"], dim=16))
    torch.save(p4, tmp_path / "dim.ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "dim.ckpt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arbitrary_pickle_is_not_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"format": "jump-checkpoint", "x": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_missing_file_and_foreign_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope.ckpt")
    torch.save({"hello": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a JUMP checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_checkpoint_from_before_the_served_defaults_loads_with_the_paper_settings(tmp_path):
    """Written before sigma_mode/objective/dwell_point/dropout existed: trained as the paper, so loaded so."""
    from jump_core.model import PAPER_SETTINGS

    torch.manual_seed(0)
    old = Jump(JumpConfig(n_items=12, dim=8, **PAPER_SETTINGS)).eval()
    save_checkpoint(tmp_path / "old.ckpt", old, ITEMS, "fp", {})
    payload = torch.load(tmp_path / "old.ckpt", weights_only=True)
    cfg = {k: v for k, v in payload["config"].items() if k not in ("sigma_mode", "objective", "dwell_point", "dropout")}
    torch.save(dict(payload, config=cfg), tmp_path / "legacy.ckpt")
    loaded, _ = load_checkpoint(tmp_path / "legacy.ckpt")
    c = loaded.config
    assert (c.sigma_mode, c.objective, c.dwell_point, c.sigma) == ("fixed", "paper", "median", 10.0)
    b = _batch()
    torch.testing.assert_close(loaded.predict(b, "live").scores, old.predict(b, "live").scores)
    torch.testing.assert_close(loaded.predict(b).dwell.median, old.predict(b).dwell.median)
