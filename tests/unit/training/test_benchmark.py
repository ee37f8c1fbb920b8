"""`jump benchmark` end to end on a tiny dataset: every model, the JSON keys, the report and the figures."""

import json
from dataclasses import fields
from pathlib import Path

import pytest

from jump_core.cli import main
from jump_core.contract import SessionModel
from jump_core.data.prepare import PrepareConfig, prepare
from jump_core.data.synth import SynthConfig, write_csv
from jump_core.experiments.benchmark import load_config, model_config, trial_params
from jump_core.registry import ALL_MODELS, MODELS, build, expand_models

ROOT = Path(__file__).resolve().parents[3]
TINY = ROOT / "configs" / "benchmark" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    write_csv(SynthConfig(clicks=6_000, seed=3, n_items=300), d / "clicks.csv")
    prepare(
        PrepareConfig(
            "csv",
            [str(d / "clicks.csv")],
            str(d / "data"),
            reader_options={"session_col": "session_id", "item_col": "item_id", "time_col": "timestamp"},
        ),
        log=lambda *_: None,
    )
    return d


def test_trials_are_the_defaults_then_distinct_grid_draws():
    entry = {"params": {"k": 100}, "train": {"lr": 0.003}, "search": {"k": [50, 100], "lr": [0.003, 0.01]}}
    trials = trial_params(entry, 10, seed=0)
    assert trials[0] == {"k": 100, "train.lr": 0.003}
    sigs = [(t["k"], t["train.lr"]) for t in trials]
    assert len(sigs) == len(set(sigs)) == 4  # the grid has 4 points, the defaults among them
    assert trial_params(entry, 3, seed=0) == trials[:3]  # seeded: the same draws in the same order
    assert trial_params({"params": {}, "train": {}, "search": {}}, 3, 0) == [{}]


def test_models_option_expands_all_and_shorthands():
    assert expand_models(["all"]) == list(ALL_MODELS)
    assert expand_models(["jump", "gru4rec", "gru4rec_ce", "knn"]) == [
        "jump",
        "gru4rec_ce",
        "gru4rec_bprmax",
        "sknn",
        "vsknn",
    ]


def test_every_registered_model_builds_from_both_configs():
    for path in (None, TINY):
        cfg = load_config(path)
        for name in ALL_MODELS:
            params = {
                k: v for k, v in trial_params(model_config(cfg, name), 1, 0)[0].items() if not k.startswith("train.")
            }
            model = build(name, 50, params, {"c1": 2000.0, "c2": 30.0})
            assert isinstance(model, MODELS[name].model) and isinstance(model, SessionModel), name
            assert model.config.n_items == 50
            if "c1" in {f.name for f in fields(model.config)}:
                assert (model.config.c1, model.config.c2) == (2000.0, 30.0)
    assert build("jump_variant", 50).config.time_buckets == "log"  # the variant's fixed fields
    from jump_core.model import PAPER_SETTINGS

    paper = build("jump_paper", 50, {"sigma": 10.0}).config
    assert {k: getattr(paper, k) for k in PAPER_SETTINGS} == PAPER_SETTINGS  # the paper's model, one name away
    served = build("jump", 50).config
    assert (served.objective, served.sigma_mode) == ("live", "global")  # JUMP as served: JumpConfig's defaults
    assert build("gru4rec_bprmax", 50).config.loss == "bpr-max"
    with pytest.raises(ValueError, match="no parameter"):
        build("sknn", 50, {"no_such_option": 1}, {})
    with pytest.raises(ValueError, match="unknown model"):
        build("nope", 50, {}, {})


def test_benchmark_end_to_end_on_a_tiny_dataset(tiny_data, tmp_path):
    out = tmp_path / "report" / "tiny.json"
    rc = main(
        [
            "benchmark",
            "--data",
            str(tiny_data / "data"),
            "--models",
            "all",
            "--json",
            str(out),
            "--config",
            str(TINY),
            "--ablations",
            "--sweeps",
            "sigma,dim",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert not (out.parent / "tiny.json.partial").exists()
    r = json.loads(out.read_text())
    assert set(r["models"]) == set(ALL_MODELS)
    for name, m in r["models"].items():
        model_cls = MODELS[name].model
        for key in (
            "recall@20",
            "mrr@20",
            "ndcg@20",
            "dwell_mae_s",
            "train_seconds",
            "eval_seconds",
            "params",
            "trials",
        ):
            assert key in m, (name, key)
        assert set(m["protocols"]) == {"paper", "live"}
        assert 1 <= len(m["trials"]) <= 2
        if model_cls.ranks_clicks:
            assert 0.0 <= m["recall@20"] <= 1.0 and m["mrr@20"] <= m["recall@20"], name
        else:
            assert m["recall@20"] is None, name
        if model_cls.predicts_dwell:
            assert m["dwell_mae_s"] > 0, name
        else:
            assert m["dwell_mae_s"] is None, name
    # dwell-aware models are scored under both protocols separately, the others once
    assert r["models"]["jump"]["protocols"]["paper"] != r["models"]["jump"]["protocols"]["live"]
    assert r["models"]["sknn"]["protocols"]["paper"] == r["models"]["sknn"]["protocols"]["live"]
    assert set(r["ablations"]) == {"no_fast_slow_gru", "no_attention"}
    assert [p["inv_sigma2"] for p in r["sweep_sigma"]] == [0.01, 1.0]
    assert set(r["sweep_dim"]) == {"jump", "narm"} and [p["dim"] for p in r["sweep_dim"]["narm"]] == [8, 16]
    md = Path(r["markdown"]).read_text()
    assert "Table 3" in md and "Table 2" in md and "Ablations" in md and "Fig. 5" in md and "Fig. 6" in md
    for label in (m["label"] for m in r["models"].values()):
        assert label in md
    for fig in ("fig7_recall_by_length", "training_curves", "fig5_sigma", "fig6_dim"):
        assert Path(r["figures"][fig]).stat().st_size > 5000, fig
    # the report can be written again from the JSON alone
    Path(r["markdown"]).unlink()
    assert main(["benchmark-render", str(out)]) == 0
    assert Path(r["markdown"]).read_text() == md
    # the merged tables across datasets
    summary = tmp_path / "summary.md"
    assert main(["benchmark-summary", str(out), str(out), "--names", "a,b", "--out", str(summary)]) == 0
    assert "a R@20" in summary.read_text() and "b R@20" in summary.read_text()
    other_seed = tmp_path / "seed1.json"
    other_seed.write_text(json.dumps({**r, "seed": 1}))
    assert main(["benchmark-summary", str(out), str(other_seed), "--names", "a,a", "--out", str(summary)]) == 0
    text = summary.read_text()  # two seeds of one dataset: mean ± sd (here sd 0)
    assert main(["benchmark-summary", str(out), "--names-from-dirs", "--out", str(summary)]) == 0
    assert "report R@20" in summary.read_text()  # named by the JSON's directory
    assert main(["benchmark-summary", str(out), str(other_seed), "--names", "a,a", "--out", str(summary)]) == 0
    text = summary.read_text()
    assert "a: 2 seeds" in text and f"{r['models']['sknn']['recall@20']:.4f} ± 0.0000" in text


def test_benchmark_refuses_unknown_models_and_sweeps(tiny_data, tmp_path, capsys):
    assert (
        main(
            ["benchmark", "--data", str(tiny_data / "data"), "--models", "pop,nope", "--json", str(tmp_path / "x.json")]
        )
        == 2
    )
    assert "unknown model" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "--data",
                str(tiny_data / "data"),
                "--models",
                "pop",
                "--sweeps",
                "sigma",
                "--json",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
