"""Every model by name: JUMP, its variant and the baselines, each built from its config dataclass.

`build(name, n_items, params)` is the one construction path of `jump train`, the benchmark and the
trainer (the checkpoint loader builds `Jump(JumpConfig(...))` from the saved config the same way).
A registry name is a model class plus the config fields that define the variant (e.g. GRU4Rec with
the cross-entropy or the BPR-max loss); the class declares the contract's capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .baselines.dtgru import DTGRU, DTGRUConfig
from .baselines.gru4rec import GRU4Rec, GRU4RecConfig
from .baselines.item_dwell import ItemLogNormalDwell, ItemLogNormalDwellConfig, ItemMedianDwell, ItemMedianDwellConfig
from .baselines.narm import NARM, NARMConfig
from .baselines.pop import Popularity, PopularityConfig
from .baselines.rmtpp import RMTPP, RMTPPConfig
from .baselines.sknn import VSKNN, SessionKNN, SessionKNNConfig, VSKNNConfig
from .contract import SessionModel
from .model import PAPER_SETTINGS, Jump, JumpConfig

# the paper's settings that define a variant; its sigma (10, §5.2) is a parameter the configs set and sweep
PAPER_SETTINGS_FIXED = {k: v for k, v in PAPER_SETTINGS.items() if k != "sigma"}


@dataclass(frozen=True)
class ModelSpec:
    model: type  # implements contract.SessionModel
    config: type  # its config dataclass (first field: n_items)
    label: str  # the row label of the tables (the paper's name in brackets)
    fixed: dict = field(default_factory=dict)  # config fields that define the variant


MODELS: dict[str, ModelSpec] = {
    # JUMP as served: JumpConfig's defaults (trained as served, sigma learned; README's model section).
    "jump": ModelSpec(Jump, JumpConfig, "JUMP (as served)"),
    # The paper's model (§4-5): fixed sigma, the printed eq. 17, the median dwell (`jump train --paper`).
    "jump_paper": ModelSpec(Jump, JumpConfig, "JUMP (the paper's settings)", dict(PAPER_SETTINGS_FIXED)),
    # The paper's model with the two changes of docs/RESULTS.md's first investigation (JumpConfig documents them).
    "jump_variant": ModelSpec(
        Jump,
        JumpConfig,
        "JUMP paper + log-scale time rows, live-censored training (ours)",
        {**PAPER_SETTINGS_FIXED, "time_buckets": "log", "live_censor_p": 0.3},
    ),
    "pop": ModelSpec(Popularity, PopularityConfig, "POP (+ global median dwell)"),
    "sknn": ModelSpec(SessionKNN, SessionKNNConfig, "SKNN"),
    "vsknn": ModelSpec(VSKNN, VSKNNConfig, "V-SKNN"),
    "gru4rec_ce": ModelSpec(GRU4Rec, GRU4RecConfig, "GRU4Rec cross-entropy (GRU)", {"loss": "cross-entropy"}),
    "gru4rec_bprmax": ModelSpec(GRU4Rec, GRU4RecConfig, "GRU4Rec BPR-max (IGRU)", {"loss": "bpr-max"}),
    "narm": ModelSpec(NARM, NARMConfig, "NARM"),
    "dtgru": ModelSpec(DTGRU, DTGRUConfig, "DTGRU (dwell-aware GRU)"),
    "rmtpp": ModelSpec(RMTPP, RMTPPConfig, "RMTPP (RMTP)"),
    "item_median": ModelSpec(ItemMedianDwell, ItemMedianDwellConfig, "per-item median dwell"),
    "item_lognormal": ModelSpec(ItemLogNormalDwell, ItemLogNormalDwellConfig, "per-item censored log-normal dwell"),
}
ALL_MODELS = tuple(MODELS)
ALIASES = {"gru4rec": ("gru4rec_ce", "gru4rec_bprmax"), "knn": ("sknn", "vsknn")}  # --models shorthands


def expand_models(names: list[str]) -> list[str]:
    """--models entries with 'all' and the aliases expanded, in order, without repeats."""
    out: list[str] = []
    for n in names:
        for m in ALL_MODELS if n == "all" else ALIASES.get(n, (n,)):
            if m not in out:
                out.append(m)
    return out


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(ALL_MODELS)})")
    return MODELS[name]


def build(name: str, n_items: int, params: dict | None = None, censoring: dict | None = None) -> SessionModel:
    """A fresh model of registry entry `name` over `n_items` (index 0 included).

    `params` are fields of the model's config; `censoring` (the dataset's c1, c2) is passed to the
    models whose config has those fields. An unknown parameter is a ValueError naming it.
    """
    s = spec(name)
    accepted = {f.name for f in fields(s.config)} - {"n_items"}
    kwargs = {k: v for k, v in (censoring or {}).items() if k in accepted}
    kwargs.update(s.fixed)
    kwargs.update(params or {})
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"model {name!r} has no parameter(s) {', '.join(unknown)}")
    return s.model(s.config(n_items=n_items, **kwargs))
