"""deploy/prometheus/ for the tests: the repository's configuration and rules, the file-discovery
variant of its Kubernetes job, the labels Kubernetes pod discovery gives a pod, and `Prometheus` (a
real server on the loopback interface). Used by tests/unit/test_prometheus.py (promtool, relabelling)
and tests/integration/test_prometheus_workers.py (a Prometheus scraping the workers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "rules" / "jump-alerts.yml"

JOB = "jump-stream"


def exported_series() -> dict[str, set[str]]:
    """Every sample name the workers' registry (pipeline.metrics.REGISTRY) can expose -> the label names
    it may carry: counters as _total, histograms as _bucket (with le), _sum and _count, gauges as
    their name; the metric objects, the process, platform and GC collectors, and the GPU gauges --
    read from each collector's description, so they are there even without a GPU."""
    from pipeline import metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    out: dict[str, set[str]] = {}
    for collector in list(metrics.REGISTRY._collector_to_names):
        describe = getattr(collector, "describe", None)
        for family in describe() if describe else collector.collect():
            labels = set(getattr(collector, "_labelnames", ()) or getattr(family, "_labelnames", ()))
            for suffix in suffixes.get(family.type, ("",)):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def need(binary: str) -> str:
    """The path of `binary`, or skip the test (with how to install it)."""
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} not installed: run scripts/ensure-prometheus.sh (Debian package prometheus)")
    return path


def load_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def load_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def jump_job(config: dict) -> dict:
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    return job


def file_sd_variant(targets_file: Path, scrape_interval: str | None = None) -> dict:
    """The repository's configuration with the Kubernetes pod discovery replaced by file discovery
    (same relabel_configs, rules loaded by absolute path)."""
    config = load_config()
    job = jump_job(config)
    assert [sd["role"] for sd in job.pop("kubernetes_sd_configs")] == ["pod"]
    job["file_sd_configs"] = [{"files": [str(targets_file)]}]
    if scrape_interval:
        job["scrape_interval"] = job["scrape_timeout"] = scrape_interval
        config["global"].update(
            scrape_interval=scrape_interval, scrape_timeout=scrape_interval, evaluation_interval=scrape_interval
        )
    config["rule_files"] = [str(PROM_DIR / f) for f in config["rule_files"]]
    return config


def pod(ip: str, port: int, component: str, name: str, *, container_port: int = 8080, **overrides) -> dict:
    """A file_sd target group carrying the labels Kubernetes pod discovery gives a pod's container
    (manifest contract: app.kubernetes.io/name|component labels, prometheus.io/* annotations)."""
    m = "__meta_kubernetes_"
    address = f"[{ip}]:{container_port}" if ":" in ip else f"{ip}:{container_port}"
    labels = {
        f"{m}namespace": "jump",
        f"{m}pod_name": name,
        f"{m}pod_ip": ip,
        f"{m}pod_phase": "Running",
        f"{m}pod_node_name": "node-1",
        f"{m}pod_container_init": "false",
        f"{m}pod_label_app_kubernetes_io_name": JOB,
        f"{m}pod_label_app_kubernetes_io_component": component,
        f"{m}pod_annotation_prometheus_io_scrape": "true",
        f"{m}pod_annotation_prometheus_io_port": str(port),
        f"{m}pod_annotation_prometheus_io_path": "/metrics",
    }
    for k, v in overrides.items():
        if v is None:
            labels.pop(m + k, None)
        else:
            labels[m + k] = v
    return {"targets": [address], "labels": labels}


class Prometheus:
    """A Prometheus server on 127.0.0.1 in its own process group, stopped by pid."""

    def __init__(self, binary: str, config: dict, tmp: Path):
        from pipeline.devtools.broker import free_port

        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = tmp / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]

    def get(self, path: str, **params):
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait_ready(self, timeout_s: float = 60.0):
        deadline = time.time() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"prometheus not ready after {timeout_s:.0f} s:\n{self.log()}")
            time.sleep(0.2)

    def query(self, expr: str) -> dict[str, float]:
        """Instant query -> {'k="v",...': value} (labels sorted, __name__ left out)."""
        out = {}
        for s in self.get("/api/v1/query", query=expr)["result"]:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s["metric"].items()) if k != "__name__")
            out[labels] = float(s["value"][1])
        return out

    def value(self, expr: str) -> float | None:
        r = self.query(expr)
        assert len(r) <= 1, (expr, r)
        return next(iter(r.values()), None)

    def wait(self, what: str, predicate, timeout_s: float = 60.0, extra=lambda: ""):
        from pipeline.devtools import procs

        try:
            return procs.wait_for(predicate, timeout_s, interval_s=0.5, what=what)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{extra()}\n--- prometheus log\n{self.log()}") from None

    def stop(self):
        from pipeline.devtools import procs

        procs.stop(self.proc, grace_s=10.0)
