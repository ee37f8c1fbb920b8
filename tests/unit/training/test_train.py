"""Training end to end on synthetic data: JUMP must beat the simple baselines, deterministically."""

import json
from pathlib import Path

import pytest
import torch

from jump_core.artifacts.checkpoint import load_checkpoint
from jump_core.baselines.pop import Popularity, PopularityConfig
from jump_core.cli import main
from jump_core.data.dataset import load_prepared
from jump_core.data.prepare import PrepareConfig, prepare
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.training.evaluate import evaluate
from jump_core.training.train import TrainConfig, train

CSV_OPTS = {"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    write_csv(SynthConfig(clicks=40_000, seed=5), d / "clicks.csv")
    prepare(
        PrepareConfig("csv", [str(d / "clicks.csv")], str(d / "data"), reader_options=CSV_OPTS), log=lambda *_: None
    )
    return d, load_prepared(d / "data")


@pytest.mark.slow
def test_jump_beats_popularity_on_recall(synthetic):
    d, data = synthetic
    train(
        data,
        str(d / "jump.ckpt"),
        TrainConfig(epochs=3, lr=3e-3, model={"dim": 48}),
        progress=False,
        log=lambda *_: None,
    )
    model, _ = load_checkpoint(d / "jump.ckpt", expect_items=data.items)
    pop = Popularity(PopularityConfig(data.n_items)).fit(data.train)
    for protocol in ("paper", "live"):
        r_jump = evaluate(model, data.test, protocol)
        r_pop = evaluate(pop, data.test, protocol)
        assert r_jump["n_predictions"] == r_pop["n_predictions"] > 5000
        assert r_jump["recall@20"] > r_pop["recall@20"] + 0.05, (protocol, r_jump["recall@20"], r_pop["recall@20"])
        assert r_jump["mrr@20"] > r_pop["mrr@20"]


@pytest.mark.slow
def test_jump_beats_global_median_on_dwell_mae_at_sigma_1(synthetic):
    # Fig. 5's trade-off: a large 1/sigma^2 favours dwell prediction. At the paper's sigma = 10
    # the censored terms bias mu upwards and the median loses to the global median (README).
    d, data = synthetic
    train(
        data,
        str(d / "jump_s1.ckpt"),
        TrainConfig(epochs=3, lr=3e-3, model={"dim": 48, "sigma": 1.0}),
        progress=False,
        log=lambda *_: None,
    )
    model, _ = load_checkpoint(d / "jump_s1.ckpt")
    r_jump = evaluate(model, data.test, "live")
    r_med = evaluate(Popularity(PopularityConfig(data.n_items)).fit(data.train), data.test, "live")
    assert r_jump["n_dwell"] == r_med["n_dwell"] > 5000
    assert r_jump["dwell_mae_s"] < 0.95 * r_med["dwell_mae_s"], (r_jump["dwell_mae_s"], r_med["dwell_mae_s"])


def test_training_is_deterministic_under_a_seed(tmp_path, synthetic):
    _, data = synthetic
    small = data.train.subset(range(300))
    data_small = type(data)(small, data.test.subset(range(50)), data.items, data.meta)
    cfg = TrainConfig(epochs=1, model={"dim": 16}, seed=11)
    s1 = train(data_small, str(tmp_path / "a.ckpt"), cfg, progress=False, log=lambda *_: None)
    s2 = train(data_small, str(tmp_path / "b.ckpt"), cfg, progress=False, log=lambda *_: None)
    a, _ = load_checkpoint(tmp_path / "a.ckpt")
    b, _ = load_checkpoint(tmp_path / "b.ckpt")
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name
    assert s1["history"][0]["train_loss_per_click"] == s2["history"][0]["train_loss_per_click"]


def test_cli_evaluate_writes_json_markdown_and_figures(tmp_path, synthetic):
    d, data = synthetic
    small = data.train.subset(range(200))
    data_small = type(data)(small, data.test.subset(range(60)), data.items, data.meta)
    train(
        data_small,
        str(tmp_path / "m.ckpt"),
        TrainConfig(epochs=1, model={"dim": 16}),
        progress=False,
        log=lambda *_: None,
    )
    out = tmp_path / "rep" / "live.json"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(d / "data"),
                "--model",
                str(tmp_path / "m.ckpt"),
                "--protocol",
                "live",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert {"recall@20", "mrr@20", "ndcg@20", "dwell_mae_s", "by_length", "protocol", "n_predictions"} <= set(r)
    assert r["protocol"] == "live" and r["baselines"]["pop"]["n_predictions"] == r["n_predictions"]
    for f in r["figures"].values():
        assert Path(f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| JUMP (live) |" in (tmp_path / "rep" / "live.md").read_text()
    assert main(["report", str(out), "--out", str(tmp_path / "rep" / "summary.md")]) == 0
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| JUMP m (live) |" in summary and "- `m`: objective live, sigma learned (global)" in summary

    # --protocol elapsed: the curve next to live on the same positions, fewer positions as E grows
    base = ["evaluate", "--data", str(d / "data"), "--model", str(tmp_path / "m.ckpt"), "--protocol", "elapsed"]
    out = tmp_path / "rep" / "elapsed.json"
    assert main([*base, "--elapsed", "0,30,120", "--json", str(out)]) == 0
    curve = json.loads(out.read_text())["curve"]
    assert [row["elapsed_s"] for row in curve] == [0.0, 30.0, 120.0]
    counts = [row["n_predictions"] for row in curve]
    assert counts[0] <= r["n_predictions"] and counts[0] > counts[1] > counts[2] > 0
    assert curve[1]["elapsed"]["recall@20"] == curve[1]["live"]["recall@20"]  # E = c2 is the live rule
    assert (tmp_path / "rep" / "elapsed_elapsed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 120 |" in (tmp_path / "rep" / "elapsed.md").read_text()
    assert main([*base, "--elapsed", "5,-1", "--json", str(out)]) == 2


def _train_args(*argv):
    from jump_core.cli import build_parser

    return build_parser().parse_args(["train", "--data", "d", "--out", "o", *argv])


def test_jump_train_defaults_are_the_dataclasses_and_paper_is_one_flag_away():
    from jump_core.cli import train_config_from_args
    from jump_core.model import PAPER_SETTINGS, JumpConfig
    from jump_core.training.train import PAPER_TRAIN

    cfg = train_config_from_args(_train_args(), 2000.0, 30.0)
    assert cfg == TrainConfig(model={"c1": 2000.0, "c2": 30.0})
    model = JumpConfig(n_items=5, **cfg.model)
    assert (model.objective, model.sigma_mode, cfg.select, cfg.protocol) == ("live", "global", "val_recall", "live")
    paper = train_config_from_args(_train_args("--paper"), 2000.0, 30.0)
    assert {k: getattr(paper, k) for k in PAPER_TRAIN} == PAPER_TRAIN
    assert {k: paper.model[k] for k in PAPER_SETTINGS} == PAPER_SETTINGS
    # an explicit option wins over --paper's
    mixed = train_config_from_args(_train_args("--paper", "--sigma", "2", "--lr", "0.01", "--dropout", "0.2"), 1, 2)
    assert (mixed.model["sigma"], mixed.lr, mixed.model["dropout"], mixed.model["sigma_mode"]) == (
        2.0,
        0.01,
        0.2,
        "fixed",
    )
    # boolean settings take true/false; --paper turns the dwell blend and calibration off
    assert (paper.model["dwell_item_blend"], paper.model["dwell_calibration"]) == (False, False)
    on = train_config_from_args(_train_args("--paper", "--dwell-item-blend", "true", "--dwell-calibration", "on"), 1, 2)
    assert (on.model["dwell_item_blend"], on.model["dwell_calibration"]) == (True, True)
    with pytest.raises(SystemExit):
        _train_args("--dwell-item-blend", "maybe")


def test_jump_train_refuses_a_bad_setting_with_one_line(tmp_path, synthetic, capsys):
    d, _ = synthetic
    code = main(["train", "--data", str(d / "data"), "--out", str(tmp_path / "x.ckpt"), "--dropout", "1.5"])
    assert code == 2 and not (tmp_path / "x.ckpt").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dropout" in err[0]


def test_plateau_schedule_halves_the_rate_after_an_epoch_without_improvement(synthetic, monkeypatch):
    _, data = synthetic
    from jump_core import registry
    from jump_core.training import train as train_mod

    scores = iter([1.0, 0.5, 0.7, 0.8, 0.4])  # scripted validation losses: better, worse, worse, better
    monkeypatch.setattr(train_mod, "validation_loss", lambda *a, **k: next(scores))
    tr, val = train_mod.split_validation(data.train.subset(list(range(60))), 0.2, 0)
    model = registry.build("jump", data.n_items, {"dim": 8})
    s = train_mod.fit_model(
        model,
        tr,
        val,
        TrainConfig(epochs=5, lr=0.01, patience=5),
        progress=False,
        log=lambda *_: None,
        select="val_loss",
    )
    # the rate recorded is the one the epoch trained with; a worse epoch halves the next epoch's
    assert [h["lr"] for h in s["history"]] == pytest.approx([0.01, 0.01, 0.01, 0.005, 0.0025])
    none = TrainConfig(epochs=5, lr=0.01, patience=5, lr_schedule="none")
    scores = iter([1.0, 0.5, 0.7, 0.8, 0.4])
    s = train_mod.fit_model(model, tr, val, none, progress=False, log=lambda *_: None, select="val_loss")
    assert [h["lr"] for h in s["history"]] == [0.01] * 5
