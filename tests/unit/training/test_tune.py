"""`jump tune`: the search runs on the training split only (the test split is never read), the best trial
is the maximum of the validation objective, and its YAML is what `jump train --config` reads."""

import json

import numpy as np
import pytest
import torch
import yaml

import jump_core.training.train as train_mod
import jump_core.training.tune as tune_mod
from jump_core.artifacts.checkpoint import load_checkpoint
from jump_core.cli import build_parser, main, train_config_from_args
from jump_core.data.dataset import SessionSet, load_prepared
from jump_core.data.prepare import PrepareConfig, prepare
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.model import JumpConfig
from jump_core.registry import build
from jump_core.training.train import TrainConfig, fit_model, split_validation

CSV_OPTS = {"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    write_csv(SynthConfig(clicks=1500, seed=7, n_items=150), d / "clicks.csv")
    prepare(
        PrepareConfig("csv", [str(d / "clicks.csv")], str(d / "data"), reader_options=CSV_OPTS), log=lambda *_: None
    )
    return d


@pytest.fixture(scope="module")
def tuned(tiny):
    """One `jump tune` run (2 trials of 1 epoch, d = 8) with the data loads and every evaluation recorded."""
    loaded, evaluated = [], []
    real_load, real_eval_tune, real_eval_train = SessionSet.load, tune_mod.evaluate, train_mod.evaluate

    def load(path):
        loaded.append(str(path))
        return real_load(path)

    def spy(real):
        def evaluate(model, data, protocol="paper", *args, **kw):
            evaluated.append((set(data.session_ids.tolist()), protocol))
            return real(model, data, protocol, *args, **kw)

        return evaluate

    out, study = tiny / "cfg" / "tiny.yaml", tiny / "study.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SessionSet, "load", staticmethod(load))
        mp.setattr(tune_mod, "evaluate", spy(real_eval_tune))
        mp.setattr(train_mod, "evaluate", spy(real_eval_train))
        rc = main(
            [
                "tune", "--data", str(tiny / "data"), "--trials", "2", "--time-budget", "2", "--seed", "3",
                "--set", "dim=8", "--set", "epochs=1", "--set", "weight_decay=1e-05",
                "--out", str(out), "--study-json", str(study), "--no-progress",
            ]
        )  # fmt: skip
    assert rc == 0
    return {"out": out, "study": study, "loaded": loaded, "evaluated": evaluated}


def test_the_test_split_is_never_read_or_evaluated(tiny, tuned):
    assert tuned["loaded"] and all(p.endswith("train.npz") for p in tuned["loaded"]), tuned["loaded"]
    data = load_prepared(tiny / "data")
    test_ids = set(data.test.session_ids.tolist())
    _, val = tune_mod.time_split(data.train, 0.2)
    val_ids = set(val.session_ids.tolist())
    # every evaluation (per epoch in fit_model, and the objective) is on the validation part, live protocol
    assert len(tuned["evaluated"]) == 4  # 2 trials x (1 epoch's validation + the objective)
    for ids, protocol in tuned["evaluated"]:
        assert ids == val_ids and not ids & test_ids
        assert protocol == "live"


def test_best_trial_is_the_maximum_of_the_validation_objective(tuned):
    doc = yaml.safe_load(tuned["out"].read_text())
    table = doc["study"]["table"]
    assert [r["trial"] for r in table] == [0, 1] and all(r["state"] == "complete" for r in table)
    recalls = [r["recall@20"] for r in table]
    assert doc["validation"]["best_trial"] == int(np.argmax(recalls))
    assert doc["validation"]["recall@20"] == pytest.approx(max(recalls), rel=1e-3)
    # trial 0 is the current defaults; the searched values of the best trial are the written config
    assert (
        table[0]["lr"] == TrainConfig.lr and table[0]["dropout"] == JumpConfig.dropout and table[0]["z"] == JumpConfig.z
    )
    best = table[doc["validation"]["best_trial"]]
    assert doc["train"]["lr"] == pytest.approx(best["lr"], rel=1e-3)
    assert doc["model"]["dropout"] == pytest.approx(best["dropout"], rel=1e-3, abs=1e-9)
    assert doc["model"]["z"] == pytest.approx(best["z"], rel=1e-3)
    assert doc["model"]["dim"] == 8 and doc["train"]["epochs"] == 1  # --set: fixed, not searched
    assert doc["train"]["weight_decay"] == 1e-05  # a float, though YAML 1.1 reads "1e-05" as a string
    assert "dim" not in doc["study"]["search_space"] and "weight_decay" not in doc["study"]["search_space"]
    assert (
        doc["data"]["fingerprint"]
        == json.loads((tuned["out"].parents[1] / "data" / "meta.json").read_text())["fingerprint"]
    )
    assert doc["command"] is None or doc["command"].startswith("jump tune")  # None: not run as `jump`
    study = json.loads(tuned["study"].read_text())
    assert [t["value"] for t in study["trials"]] == pytest.approx([r["recall@20"] for r in table], rel=1e-3)
    # the pruner's input: each epoch's validation Recall@20, reported through fit_model's on_epoch hook
    assert [t["intermediate"]["1"] for t in study["trials"]] == pytest.approx([t["value"] for t in study["trials"]])


def test_jump_train_reads_the_config_and_explicit_flags_win(tiny, tuned):
    doc = yaml.safe_load(tuned["out"].read_text())
    ckpt = tiny / "from_config.ckpt"
    args = ["train", "--data", str(tiny / "data"), "--out", str(ckpt), "--config", str(tuned["out"])]
    assert main([*args, "--lr", "0.02", "--sigma", "2.5", "--no-progress"]) == 0
    _, meta = load_checkpoint(ckpt)
    for key in ("dim", "z", "dropout", "time_buckets", "sigma_mode"):
        assert meta["config"][key] == doc["model"][key], key
    assert meta["config"]["sigma"] == 2.5  # the flag, not the file's 1.0
    assert meta["train"]["train_config"]["lr"] == 0.02  # the flag, not the file's
    assert meta["train"]["train_config"]["epochs"] == 1  # the file's, not the default 30
    assert meta["train"]["train_config"]["weight_decay"] == doc["train"]["weight_decay"]
    # precedence without training: defaults < --paper < file < flags
    a = build_parser().parse_args(["train", "--data", "x", "--out", "y", "--paper", "--config", str(tuned["out"])])
    cfg = train_config_from_args(a, 2000.0, 30.0)
    assert cfg.lr == doc["train"]["lr"] and cfg.model["dropout"] == doc["model"]["dropout"]
    assert cfg.model["c1"] == 2000.0  # the dataset's censoring, never the file's


def test_time_split_holds_out_the_newest_sessions(tiny):
    train = load_prepared(tiny / "data").train
    fit, val = tune_mod.time_split(train, 0.25)
    assert len(fit) + len(val) == len(train) and len(val) == round(0.25 * len(train))
    assert fit.n_clicks + val.n_clicks == train.n_clicks
    start = lambda s: s.ts[s.offsets[:-1]]  # noqa: E731
    assert start(val).min() >= start(fit).max()
    assert not set(fit.session_ids.tolist()) & set(val.session_ids.tolist())
    with pytest.raises(ValueError):
        tune_mod.time_split(train, 1.0)


def test_fit_model_calls_on_epoch_and_stops_on_its_exception(tiny):
    data = load_prepared(tiny / "data")
    tr, val = split_validation(data.train.subset(np.arange(60)), 0.25, 0)
    torch.manual_seed(0)
    model = build("jump", data.n_items, {"dim": 8})
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(rec):
        seen.append(rec)
        if rec["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit_model(model, tr, val, TrainConfig(epochs=5, patience=5), False, lambda *_: None, on_epoch=on_epoch)
    assert [r["epoch"] for r in seen] == [1, 2]
    assert all(r["val_recall@20"] is not None and r["clicks"] > 0 for r in seen)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trials", "0"], "at least 1"),
        (["--trials", "1", "--search", "lr,momentum"], "unknown search parameter"),
        (["--trials", "1", "--set", "colour=red"], "unknown parameter 'colour'"),
        (["--trials", "1", "--set", "dim"], "NAME=VALUE"),
        (["--trials", "1", "--set", "dropout=1.5"], "dropout"),
        (["--trials", "1", "--val-fraction", "1"], "validation fraction"),
        (["--trials", "1", "--prune-warmup", "-1"], "--prune-warmup"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, extra, message):
    rc = main(["tune", "--data", str(tiny / "data"), "--time-budget", "1", "--out", str(tiny / "x.yaml"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tiny / "x.yaml").exists()


def test_no_training_split_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    for name in ("meta.json", "items.json", "test.npz"):
        (tmp_path / name).write_bytes((tiny / "data" / name).read_bytes())
    rc = main(["tune", "--data", str(tmp_path), "--trials", "1", "--time-budget", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no training split" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: [1, 2", "not valid YAML"),
        ("- just\n- a list\n", "not a jump configuration"),
        ("model: {dim: 8, colour: red}\n", "unknown model parameter(s) colour"),
        ("train: {lr: 0.01, momentum: 0.9}\n", "unknown train parameter(s) momentum"),
        ("model: {c1: 100}\n", "unknown model parameter(s) c1"),
        ("model: {dropout: 2.0}\n", "dropout"),
        (None, "cannot read"),
    ],
)
def test_jump_train_bad_config_file_is_one_line_and_exit_2(tiny, tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.yaml"
    if text is not None:
        cfg.write_text(text)
    rc = main(["train", "--data", str(tiny / "data"), "--out", str(tmp_path / "m.ckpt"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m.ckpt").exists()


def test_importances_need_no_scikit_learn_and_rank_the_parameter_that_matters():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 0, 1) + 0.001 * t.suggest_float("dropout", 0, 1), n_trials=30)
    imp = tune_mod.importances(study)
    assert set(imp) == {"lr", "dropout"} and imp["lr"] > imp["dropout"]


def test_prune_warmup_leaves_the_first_epochs_alone(tiny, monkeypatch):
    import optuna

    made = []
    real = optuna.pruners.MedianPruner

    def median(**kw):
        made.append(real(**kw))
        return made[-1]

    monkeypatch.setattr(optuna.pruners, "MedianPruner", median)
    with pytest.raises(ValueError, match="--prune-warmup"):
        tune_mod.tune(tiny / "data", 1, 1.0, prune_warmup=-1, log=lambda *_: None)
    tune_mod.tune(tiny / "data", 1, 0.5, prune_warmup=2, fixed={"dim": 4, "epochs": 1}, log=lambda *_: None)
    # a trial can be pruned at its third epoch at the earliest: optuna's earliest step (= epoch) is n_warmup_steps
    assert made[-1]._n_warmup_steps == 3
