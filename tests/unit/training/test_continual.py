"""jump_core.training.continual (window, split, vocabulary growth, one training run, promotion rule) and
jump_core.artifacts.model_store (atomic versioned checkpoints, verification against the announcement)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from jump_core.artifacts.checkpoint import CheckpointError, save_checkpoint
from jump_core.artifacts.files import sha256_files
from jump_core.artifacts.model_store import CURRENT, ModelStore, smoke_test
from jump_core.contract import SessionBatch
from jump_core.model import Jump, JumpConfig
from jump_core.training.continual import (
    ContinualConfig,
    LoggedSession,
    TrainingWindow,
    build_vocabulary,
    grow_vocabulary,
    holdout_metrics,
    session_from_record,
    split_window,
    to_session_set,
    train_candidate,
)
from tests.helpers.baselines import one_torch_thread
from tests.helpers.continual import as_record, logged_sessions

CFG = ContinualConfig(epochs=2, dim=32, lr=3e-3, device="cpu", time_budget_s=60)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def sess(sid, items, t0=0.0, step=10.0):
    ts = tuple(t0 + step * k for k in range(len(items)))
    tau = tuple([step] * (len(items) - 1) + [30.0])
    return LoggedSession(sid, tuple(items), ts, tau, tuple([0] * (len(items) - 1) + [1]))


# -- records and the window --------------------------------------------------------------------------
def test_session_from_record_accepts_a_logged_session_and_rejects_malformed_ones():
    s = logged_sessions()[10]
    assert session_from_record(as_record(s)) == s
    good = as_record(s)
    bad = [
        {**good, "items": good["items"][:-1]},
        {**good, "items": [1] * len(good["items"])},
        {**good, "ts": good["ts"][::-1]} if len(good["ts"]) > 1 and good["ts"][0] != good["ts"][-1] else None,
        {**good, "delta": [2] * len(good["delta"])},
        {**good, "tau": [float("nan")] * len(good["tau"])},
        {**good, "session_id": ""},
        {k: v for k, v in good.items() if k != "tau"},
        {**good, "items": []},
        {**good, "ts": "not a list"},
    ]
    for b in bad:
        if b is None:
            continue
        with pytest.raises(ValueError):
            session_from_record(b)


def test_window_deduplicates_skips_single_clicks_and_keeps_the_newest():
    w = TrainingWindow(3)
    assert w.add(sess("a", ["1", "2"], 0)) == "added"
    assert w.add(sess("a", ["1", "2"], 0)) == "duplicate"
    assert w.add(sess("one", ["1"], 5)) == "too_short"
    assert w.add(sess("one", ["1"], 5)) == "duplicate"
    for k, t0 in enumerate((100, 50, 200)):
        assert w.add(sess(f"s{k}", ["1", "2", "3"], t0)) == "added"
    assert len(w) == 3  # "a" evicted (oldest arrival)
    assert [s.session_id for s in w.snapshot()] == ["s1", "s0", "s2"]  # by end time


def test_split_holds_out_the_most_recent_sessions():
    sessions = [sess(f"s{k}", ["1", "2"], t0=1000 - 10 * k) for k in range(20)]
    train, hold = split_window(sessions, 0.25)
    assert len(hold) == 5 and len(train) == 15
    assert min(s.end_ts for s in hold) > max(s.end_ts for s in train)
    train, hold = split_window(sessions[:2], 0.01)
    assert len(train) == len(hold) == 1


def test_vocabulary_keeps_the_base_order_and_appends_frequent_new_items():
    train = [sess("a", ["x", "new1", "new2", "new1"]), sess("b", ["new2", "new1", "rare"])]
    items, new = build_vocabulary(train, ["y", "x"], min_count=2)
    assert items == ["y", "x", "new1", "new2"] and new == ["new1", "new2"]
    items, new = build_vocabulary(train, None, min_count=1)
    assert items == new == ["new1", "new2", "rare", "x"]


def test_session_set_maps_unknown_items_to_zero():
    data = to_session_set([sess("a", ["x", "q", "y"]), sess("b", ["y", "y"])], ["x", "y"])
    assert data.items.tolist() == [1, 0, 2, 2, 2] and data.offsets.tolist() == [0, 3, 5]
    assert [sid.decode() for sid in data.session_ids] == ["a", "b"]


def test_grown_vocabulary_scores_the_old_items_exactly_as_before():
    torch.manual_seed(0)
    old = Jump(JumpConfig(n_items=11, dim=8)).eval()
    with torch.no_grad():
        old.dwell_bias.weight.normal_()
        old.dwell_item_log_median.normal_()
    old.config.dwell_blend = 0.5  # the fitted dwell blend (JumpConfig.dwell_item_blend) is carried over
    grown = grow_vocabulary(old, 16).eval()
    batch = SessionBatch.from_sessions([[1, 5, 3], [10, 2]], [[4.0, 100.0, 30.0], [7.0, 30.0]], [[0, 0, 1], [0, 1]])
    s_old, (med_old, _, _) = old.predict(batch, "live")
    s_new, (med_new, _, _) = grown.predict(batch, "live")
    assert s_new.shape[1] == 16
    assert torch.allclose(s_new[:, :11], s_old, atol=1e-6) and torch.allclose(med_new, med_old)
    assert not torch.equal(grown.item_emb.weight[11:], torch.zeros(5, 8))  # new rows initialised
    assert (grown.dwell_item_log_median[11:] == old.dwell_item_log_median[0]).all()  # new items: the global median
    with pytest.raises(ValueError):
        grow_vocabulary(old, 5)


# -- one run and the promotion rule -------------------------------------------------------------------
@pytest.fixture(scope="module")
def first_run():
    sessions = [s for s in logged_sessions() if len(s.items) > 1]
    return sessions, train_candidate(sessions[:1500], None, CFG, log=lambda *_: None)


def test_first_run_trains_from_scratch_and_promotes(first_run):
    _sessions, r = first_run
    assert r.mode == "initial" and r.promote and r.serving is None and r.reason == "no serving model yet"
    assert r.model.config.n_items == len(r.items) + 1 and r.items == r.new_items
    assert all(math.isfinite(h["train_loss_per_click"]) for h in r.summary["history"])  # OOV clicks left out
    assert r.sessions_train + r.sessions_holdout <= 1500 and r.candidate["n_predictions"] > 0


def test_a_better_candidate_is_promoted_and_new_items_enter_the_vocabulary(first_run):
    sessions, r = first_run
    window = sessions[:3500]  # later sessions bring items the first model lacks
    r2 = train_candidate(window, (r.model, r.items), CFG, log=lambda *_: None)
    assert r2.mode == "finetune" and r2.new_items and r2.items[: len(r.items)] == r.items
    assert r2.serving["recall@20"] == pytest.approx(
        holdout_metrics(r.model, r.items, split_window(window, CFG.holdout_fraction)[1])["recall@20"]
    )
    assert r2.candidate["recall@20"] > r2.serving["recall@20"] + CFG.margin
    assert r2.promote and ">=" in r2.reason


def test_a_worse_candidate_is_refused(first_run):
    sessions, r = first_run
    window = sessions[:1500]
    good = train_candidate(
        window, (r.model, r.items), ContinualConfig(**{**CFG.__dict__, "epochs": 3}), log=lambda *_: None
    )
    # A retrain with a learning rate too small to learn anything: an untrained model, honestly evaluated.
    bad_cfg = ContinualConfig(**{**CFG.__dict__, "mode": "retrain", "lr": 1e-9, "epochs": 1})
    bad = train_candidate(window, (good.model, good.items), bad_cfg, log=lambda *_: None)
    assert bad.mode == "retrain"
    assert bad.candidate["recall@20"] < bad.serving["recall@20"] - bad_cfg.margin
    assert not bad.promote and "<" in bad.reason


def test_the_margin_decides(first_run):
    sessions, r = first_run
    window = sessions[:1500]
    untrained = {**CFG.__dict__, "mode": "retrain", "lr": 1e-9, "epochs": 1}
    for margin in (0.0, 0.99):
        out = train_candidate(
            window, (r.model, r.items), ContinualConfig(**{**untrained, "margin": margin}), log=lambda *_: None
        )
        assert out.candidate["recall@20"] < out.serving["recall@20"]
        assert out.promote == (margin == 0.99)
        assert out.promote == (out.candidate["recall@20"] >= out.serving["recall@20"] - margin)


def test_a_serving_model_with_other_censoring_thresholds_is_not_fine_tuned(first_run):
    sessions, r = first_run
    other = grow_vocabulary(r.model, r.model.config.n_items)
    other.config.c2 = 60.0
    msgs = []
    out = train_candidate(
        sessions[:600], (other, r.items), ContinualConfig(**{**CFG.__dict__, "epochs": 1}), log=msgs.append
    )
    assert out.mode == "retrain" and out.model.config.c2 == CFG.c2 and any("c2=60.0" in m for m in msgs)


# -- the model store ------------------------------------------------------------------------------------
def small_model(seed=0, n=6):
    torch.manual_seed(seed)
    return Jump(JumpConfig(n_items=n, dim=8)).eval()


ITEMS = ["a", "b", "c", "d", "e"]


def test_publish_writes_versioned_checkpoints_and_the_current_pointer(tmp_path):
    store = ModelStore(tmp_path / "models", keep=3)
    assert store.current() is None and store.next_seq() == 1
    r1 = store.publish(small_model(1), ITEMS, "fp", sessions_used=10, metrics={"recall@20": 0.5, "mrr@20": 0.1})
    r2 = store.publish(small_model(2), ITEMS, "fp", parent_version=r1["version"])
    assert (r1["seq"], r2["seq"]) == (1, 2) and r2["parent_version"] == r1["version"]
    assert store.current() == r2 == json.loads((tmp_path / "models" / "jump-v000002.json").read_text())
    assert r2["version"].startswith("jump-v000002:") and r2["file_sha256"] == sha256_files(r2["path"])
    assert r1["recall20"] == 0.5 and r1["sessions_used"] == 10
    assert not list((tmp_path / "models").glob("*.tmp"))  # nothing half-written left behind
    model, meta = store.verify(r1)
    assert meta["items"] == ITEMS and torch.equal(model.item_emb.weight, small_model(1).item_emb.weight)


def test_prune_keeps_the_newest_and_never_the_current(tmp_path):
    store = ModelStore(tmp_path, keep=2)
    records = [store.publish(small_model(k), ITEMS, "fp") for k in range(4)]
    assert [seq for seq, _ in store.checkpoints()] == [3, 4]
    # an operator pointed current.json back at seq 3 (a rollback): pruning to one file keeps it
    (tmp_path / CURRENT).write_text(json.dumps(records[2]))
    assert ModelStore(tmp_path, keep=1).prune() == []
    assert [seq for seq, _ in store.checkpoints()] == [3, 4]


def test_verify_refuses_what_disagrees_with_the_announcement(tmp_path):
    store = ModelStore(tmp_path)
    rec = store.publish(small_model(), ITEMS, "fp")
    cases = {
        "vocab_mismatch": {**rec, "n_items": 4},
        "config_mismatch": {**rec, "config_sha256": "0" * 64},
        "checksum": {**rec, "state_sha256": "1" * 64},
        "missing_file": {**rec, "path": "jump-v000099.ckpt"},
    }
    for reason, bad in cases.items():
        with pytest.raises(CheckpointError) as e:
            store.verify(bad)
        assert e.value.reason == reason
    path = tmp_path / "jump-v000001.ckpt"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError) as e:
        store.verify(rec)
    assert e.value.reason == "checksum"


def test_smoke_test_refuses_non_finite_weights(tmp_path):
    model = small_model()
    smoke_test(model)
    with torch.no_grad():
        model.item_emb.weight[1:] = float("nan")
    with pytest.raises(CheckpointError) as e:
        smoke_test(model)
    assert e.value.reason == "smoke_test"
    store = ModelStore(tmp_path)
    rec = store.publish(model, ITEMS, "fp")  # consistent checksums, unusable weights
    with pytest.raises(CheckpointError, match="not finite"):
        store.verify(rec)


def test_checkpoint_errors_carry_a_reason(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"garbage")
    from jump_core.artifacts.checkpoint import load_checkpoint

    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert e.value.reason == "unreadable"
    save_checkpoint(path, small_model(), ITEMS, "fp")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path, expect_items=ITEMS[:-1])
    assert e.value.reason == "vocab_mismatch"


def test_adopt_rolls_back_as_a_new_version_and_takes_offline_checkpoints(tmp_path):
    store = ModelStore(tmp_path / "models")
    r1 = store.publish(small_model(1), ITEMS, "fp", metrics={"recall@20": 0.4, "mrr@20": 0.2}, sessions_used=7)
    r2 = store.publish(small_model(2), ITEMS, "fp")
    for source in (r1["version"], "1", "jump-v000001.ckpt", str(tmp_path / "models" / "jump-v000001.ckpt")):
        assert store.find(source) == tmp_path / "models" / "jump-v000001.ckpt"
    back = store.adopt(r1["version"])
    assert back["seq"] == 3 and back["state_sha256"] == r1["state_sha256"] and back["version"] != r1["version"]
    assert back["parent_version"] == r2["version"] and back["recall20"] == 0.4 and back["sessions_used"] == 7
    assert store.current() == back
    offline = tmp_path / "offline.ckpt"
    save_checkpoint(offline, small_model(5), ITEMS, "offline-data")
    rec = store.adopt(str(offline))
    assert rec["seq"] == 4 and rec["recall20"] is None and store.verify(rec)[1]["dataset_fingerprint"] == "offline-data"
    with pytest.raises(CheckpointError) as e:
        store.adopt("jump-v000042:000000000000")
    assert e.value.reason == "missing_file"
