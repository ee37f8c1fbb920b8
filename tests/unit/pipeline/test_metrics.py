"""pipeline/metrics.py: the process, platform and GPU collectors, the bounded model_version label of
jump_predictions_total, the unit-consistent trainer families and the *_timestamp_seconds names.

The GPU collector is tested with a fake torch.cuda (this machine has no GPU); its families, like
every other, are checked against the rules and the dashboard in tests/unit/deploy/.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import metrics


def scrape() -> dict[str, float]:
    """The registry as /metrics serves it: 'name{k="v",...}' -> value (labels sorted)."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def series(name: str) -> dict[str, float]:
    return {k: v for k, v in scrape().items() if k == name or k.startswith(name + "{")}


# -- process and platform -------------------------------------------------------------------------
def test_every_worker_exports_its_process_and_platform():
    m = scrape()
    assert m["process_resident_memory_bytes"] > 1e6
    assert m["process_cpu_seconds_total"] > 0
    assert m["process_start_time_seconds"] > 1.6e9
    assert m["process_open_fds"] >= 3 and m["process_max_fds"] >= m["process_open_fds"]
    (info,) = series("python_info").items()
    major, minor = sys.version_info[:2]
    assert f'major="{major}"' in info[0] and f'minor="{minor}"' in info[0] and info[1] == 1
    assert series("python_gc_collections_total")


def test_the_metrics_module_never_imports_torch():
    """A sessionizer imports pipeline.metrics and serves /metrics without torch (and so without GPU series)."""
    code = (
        "import sys\n"
        "from prometheus_client import generate_latest\n"
        "from pipeline import metrics\n"
        "text = generate_latest(metrics.REGISTRY).decode()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'process_resident_memory_bytes' in text and 'jump_gpu_' not in text\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# -- GPU --------------------------------------------------------------------------------------------
class FakeCuda:
    """torch.cuda as the collector uses it; `util` raises `util_error` when set."""

    def __init__(self, reserved, allocated, initialized=True, util=None, util_error=None):
        self.reserved, self.allocated, self.initialized = reserved, allocated, initialized
        self.util, self.util_error, self.util_calls = util or {}, util_error, 0

    def is_initialized(self):
        return self.initialized

    def device_count(self):
        return len(self.reserved)

    def memory_reserved(self, i):
        return self.reserved[i]

    def memory_allocated(self, i):
        return self.allocated[i]

    def utilization(self, i):
        self.util_calls += 1
        if self.util_error is not None:
            raise self.util_error
        return self.util[i]


@pytest.fixture
def fake_torch(monkeypatch):
    """Install a fake torch module whose cuda is the returned function's argument."""

    def install(cuda: FakeCuda) -> FakeCuda:
        monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
        return cuda

    monkeypatch.setattr(metrics.gpu, "_utilization", True)
    return install


def test_gpu_gauges_per_device_in_use_read_at_scrape_time(fake_torch):
    cuda = fake_torch(FakeCuda(reserved=[2**30, 0], allocated=[3 * 2**28, 0], util={0: 37, 1: 90}))
    assert series("jump_gpu_memory_allocated_bytes") == {'jump_gpu_memory_allocated_bytes{device="cuda:0"}': 3 * 2**28}
    assert series("jump_gpu_memory_reserved_bytes") == {'jump_gpu_memory_reserved_bytes{device="cuda:0"}': 2**30}
    assert series("jump_gpu_utilization_ratio") == {'jump_gpu_utilization_ratio{device="cuda:0"}': 0.37}
    cuda.allocated[0], cuda.util[0] = 2**20, 80  # read at each scrape
    assert series("jump_gpu_memory_allocated_bytes") == {'jump_gpu_memory_allocated_bytes{device="cuda:0"}': 2**20}
    assert series("jump_gpu_utilization_ratio") == {'jump_gpu_utilization_ratio{device="cuda:0"}': 0.8}


def test_no_gpu_series_without_cuda_in_use(fake_torch, monkeypatch):
    fake_torch(FakeCuda(reserved=[2**30], allocated=[2**20], initialized=False))  # torch imported, CUDA unused
    assert not [k for k in scrape() if k.startswith("jump_gpu_")]
    fake_torch(FakeCuda(reserved=[], allocated=[]))  # no device
    assert not [k for k in scrape() if k.startswith("jump_gpu_")]
    monkeypatch.delitem(sys.modules, "torch")  # torch never imported
    assert not [k for k in scrape() if k.startswith("jump_gpu_")]
    assert "torch" not in sys.modules  # the collector did not import it


def test_no_utilisation_series_without_nvml_and_no_error(fake_torch):
    cuda = fake_torch(
        FakeCuda(reserved=[2**30], allocated=[2**20], util_error=ModuleNotFoundError("nvidia-ml-py not installed"))
    )
    m = scrape()
    assert m['jump_gpu_memory_reserved_bytes{device="cuda:0"}'] == 2**30
    assert not [k for k in m if k.startswith("jump_gpu_utilization_ratio")]
    scrape()
    assert cuda.util_calls == 1  # NVML missing: not looked for again at every scrape


def test_a_failing_nvml_query_skips_one_scrape_only(fake_torch):
    cuda = fake_torch(FakeCuda(reserved=[2**30], allocated=[2**20], util={0: 50}, util_error=RuntimeError("NVML")))
    assert not series("jump_gpu_utilization_ratio") and series("jump_gpu_memory_reserved_bytes")
    cuda.util_error = None
    assert series("jump_gpu_utilization_ratio") == {'jump_gpu_utilization_ratio{device="cuda:0"}': 0.5}


def test_a_failing_cuda_query_yields_no_series_and_no_error(fake_torch):
    class Broken(FakeCuda):
        def memory_reserved(self, i):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    fake_torch(Broken(reserved=[1], allocated=[1]))
    assert not [k for k in scrape() if k.startswith("jump_gpu_")]


def test_gpu_families_are_described_without_a_gpu():
    assert {f.name for f in metrics.gpu.describe()} == {name for name, _ in metrics.GpuCollector.FAMILIES}
    assert all(f.type == "gauge" and f._labelnames == ("device",) for f in metrics.gpu.describe())


# -- jump_predictions_total{model_version} ------------------------------------------------------------
@pytest.fixture
def fresh_predictions():
    metrics.predictions.clear()
    metrics._served_versions.clear()
    yield
    metrics.predictions.clear()
    metrics._served_versions.clear()


def test_predictions_keep_the_served_and_the_replaced_version_only(fresh_predictions):
    from pipeline.core.inference import InferenceRunner

    runner = InferenceRunner.__new__(InferenceRunner)  # only its model swap: no store, no Kafka
    runner.engine = None
    for n, version in enumerate(["jump-v000001", "jump-v000002", "jump-v000003", "jump-v000004"], 1):
        runner._serve(types.SimpleNamespace(version=version, device="cpu"), n, 0.0)
        metrics.count_predictions(version, 10 * n)
        got = series("jump_predictions_total")
        kept = {f"jump-v00000{n - 1}", version} if n > 1 else {version}
        assert {k.split('"')[1] for k in got} == kept, got
        assert got[f'jump_predictions_total{{model_version="{version}"}}'] == 10 * n
    assert series("jump_model_info") == {'jump_model_info{device="cpu",model_version="jump-v000004"}': 1}


def test_a_new_version_starts_at_zero_and_counts_add_up(fresh_predictions):
    metrics.serving("a")
    assert series("jump_predictions_total") == {'jump_predictions_total{model_version="a"}': 0}  # rate() sees it
    metrics.count_predictions("a", 5)
    metrics.count_predictions("b", 2)  # not announced by serving(): served now, still bounded
    metrics.count_predictions("c", 1)
    assert series("jump_predictions_total") == {
        'jump_predictions_total{model_version="b"}': 2,
        'jump_predictions_total{model_version="c"}': 1,
    }
    metrics.serving("b")  # served again (a rollback): the version it replaces stays
    metrics.serving("d")
    assert {k.split('"')[1] for k in series("jump_predictions_total")} == {"b", "d"}


# -- trainer families and timestamp names -----------------------------------------------------------
def test_holdout_metrics_are_split_by_unit():
    from pipeline.core.trainer import TrainerCore

    rec = {
        "result": "promoted",
        "duration_s": 12.0,
        "finished_ts": 1_700_000_000.0,
        "candidate_recall20": 0.41,
        "candidate_mrr20": 0.17,
        "candidate_dwell_mae_s": 95.5,
        "serving_recall20": None,
        "serving_mrr20": None,
        "serving_dwell_mae_s": None,
        "train_loss": 3.2,
        "sessions_train": 900,
        "sessions_holdout": 100,
        "n_items": 500,
    }
    TrainerCore._observe(rec)
    m = scrape()
    assert m['jump_trainer_holdout_ratio{metric="recall_at_20",model="candidate"}'] == 0.41
    assert m['jump_trainer_holdout_ratio{metric="mrr_at_20",model="candidate"}'] == 0.17
    assert m['jump_trainer_holdout_dwell_mae_seconds{model="candidate"}'] == 95.5
    assert not [k for k in m if k.startswith("jump_trainer_holdout_ratio") and "dwell" in k]
    assert not [k for k in m if "jump_trainer_holdout_metric" in k]
    assert m["jump_trainer_last_run_timestamp_seconds"] == 1_700_000_000.0


def test_gauges_holding_a_unix_time_are_named_timestamp_seconds():
    gauges = [m for m in vars(metrics).values() if isinstance(m, metrics.Gauge)]
    times = {g._name for g in gauges if "Unix s" in g._documentation}
    assert times == {
        "jump_stream_time_timestamp_seconds",
        "jump_model_created_timestamp_seconds",
        "jump_model_loaded_timestamp_seconds",
        "jump_trainer_last_run_timestamp_seconds",
        "jump_trainer_last_promotion_timestamp_seconds",
    }
    assert all(g._name.endswith("_timestamp_seconds") == (g._name in times) for g in gauges)
