"""deploy/prometheus/: the scrape configuration, the recording and alerting rules, their unit tests,
and a real Prometheus scraping real workers.

promtool and prometheus come from `scripts/ensure-prometheus.sh` (Debian package `prometheus`, run
by `make test`); without them the tests that need them skip. Debian's build has no Kubernetes
service discovery, so the Kubernetes job is checked and run with its `kubernetes_sd_configs`
replaced by a file_sd_configs that hands Prometheus the same `__meta_kubernetes_*` labels: the
repository's relabel_configs run unchanged in a real Prometheus. Every address the Prometheus
servers of these tests scrape is on the loopback interface.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "rules" / "jump-alerts.yml"
RULES_TEST = PROM_DIR / "rules" / "jump-alerts.test.yml"
ENSURE = ROOT / "scripts" / "ensure-prometheus.sh"

JOB = "jump-stream"
COMPONENTS = ("sessionizer", "inference", "trainer")
TARGET_LABELS = {"job", "component", "namespace", "pod", "instance", "node"}   # what relabelling leaves
SEVERITIES = {"critical", "warning", "info"}
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"   # promtool/prometheus built without it (Debian)


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} not installed: run scripts/ensure-prometheus.sh (Debian package prometheus)")
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return _need("promtool")


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return _need("prometheus")


def run_promtool(promtool: str, *args, cwd=PROM_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


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
        config["global"].update(scrape_interval=scrape_interval, scrape_timeout=scrape_interval,
                                evaluation_interval=scrape_interval)
    config["rule_files"] = [str(PROM_DIR / f) for f in config["rule_files"]]
    return config


def pod(ip: str, port: int, component: str, name: str, *, container_port: int = 8080, **overrides) -> dict:
    """A file_sd target group carrying the labels Kubernetes pod discovery gives a pod's container
    (manifest contract: app.kubernetes.io/name|component labels, prometheus.io/* annotations)."""
    m = "__meta_kubernetes_"
    address = f"[{ip}]:{container_port}" if ":" in ip else f"{ip}:{container_port}"
    labels = {f"{m}namespace": "jump", f"{m}pod_name": name, f"{m}pod_ip": ip, f"{m}pod_phase": "Running",
              f"{m}pod_node_name": "node-1", f"{m}pod_container_init": "false",
              f"{m}pod_label_app_kubernetes_io_name": JOB, f"{m}pod_label_app_kubernetes_io_component": component,
              f"{m}pod_annotation_prometheus_io_scrape": "true", f"{m}pod_annotation_prometheus_io_port": str(port),
              f"{m}pod_annotation_prometheus_io_path": "/metrics"}
    for k, v in overrides.items():
        if v is None:
            labels.pop(m + k, None)
        else:
            labels[m + k] = v
    return {"targets": [address], "labels": labels}


# -- static checks: promtool ---------------------------------------------------------------------------

def test_promtool_check_config_as_written(promtool):
    r = run_promtool(promtool, "check", "config", CONFIG.name)
    if r.returncode and NO_KUBERNETES_SD in r.stdout + r.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian's package); "
                    "test_promtool_check_config_with_file_discovery checks everything else")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_check_config_with_file_discovery(promtool, tmp_path):
    """Globals, relabel_configs (regexes, actions, target labels) and the rule file, by promtool."""
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(file_sd_variant(targets)))
    r = run_promtool(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout + r.stderr


def test_local_variant_is_a_valid_config(promtool, tmp_path):
    """The commented local (no Kubernetes) variant in prometheus.yml, uncommented, is valid and
    keeps the label contract (job jump-stream, a component label on every target)."""
    text = CONFIG.read_text()
    block = re.search(r"^# BEGIN LOCAL\n(.*?)^# END LOCAL$", text, re.S | re.M).group(1)
    local = yaml.safe_load("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                     for line in block.splitlines()))
    config = load_config()
    config["scrape_configs"] = local["scrape_configs"]
    config["rule_files"] = [str(PROM_DIR / f) for f in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    r = run_promtool(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    job = jump_job(config)
    assert {sc["labels"]["component"] for sc in job["static_configs"]} <= set(COMPONENTS)
    assert {"sessionizer", "inference"} <= {sc["labels"]["component"] for sc in job["static_configs"]}


def test_promtool_check_rules(promtool):
    r = run_promtool(promtool, "check", "rules", RULES.relative_to(PROM_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in r.stdout


def test_promtool_rule_unit_tests(promtool):
    r = run_promtool(promtool, "test", "rules", RULES_TEST.relative_to(PROM_DIR))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


# -- static checks: the rules against the code -----------------------------------------------------------

def exported_names() -> dict[str, set[str]]:
    """Sample names the metrics of pipeline.metrics expose (counters: _total; histograms: _bucket,
    _sum, _count; gauges: the name) -> their label names."""
    from pipeline import metrics
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    out = {}
    for family in metrics.REGISTRY.collect():
        collector = metrics.REGISTRY._names_to_collectors[family.name]
        for suffix in suffixes[family.type]:
            out[family.name + suffix] = set(collector._labelnames) | ({"le"} if suffix == "_bucket" else set())
    return out


def family_names() -> set[str]:
    from pipeline import metrics
    return {family.name for family in metrics.REGISTRY.collect()}


_NAME = re.compile(r"(?<![A-Za-z0-9_:])jump_[a-z0-9_]+")
_SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])(jump_[a-z0-9_]+)\s*\{([^}]*)\}")


def unknown_metric_names(text: str, known: set[str]) -> set[str]:
    """jump_* identifiers of PromQL text that pipeline.metrics does not export (recording rules are
    named jump:...:..., so they never match)."""
    return set(_NAME.findall(text)) - known


def unknown_selector_labels(text: str, known: dict[str, set[str]]) -> set[tuple[str, str]]:
    """(metric, label) pairs selected on that neither the metric nor the scrape config provides."""
    bad = set()
    for name, body in _SELECTOR.findall(text):
        for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body):
            if label not in known.get(name, set()) | TARGET_LABELS:
                bad.add((name, label))
    return bad


def test_rules_reference_only_exported_metrics_and_labels():
    known = exported_names()
    rules = load_rules()
    text = "\n".join(r["expr"] for r in rules)
    assert len(set(_NAME.findall(text))) >= 10                     # the check does look at something
    assert unknown_metric_names(text, set(known)) == set()
    assert unknown_selector_labels(text, known) == set()
    # annotations (runbook hints) may name a histogram by its family name
    notes = "\n".join(v for r in rules for v in r.get("annotations", {}).values())
    assert unknown_metric_names(notes, set(known) | family_names()) == set()
    # the unit tests' input series and expressions too (a test on a wrong name proves nothing)
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    test_text = "\n".join([s["series"] for t in tests for s in t.get("input_series", [])]
                          + [e["expr"] for t in tests for e in t.get("promql_expr_test", [])])
    assert unknown_metric_names(test_text, set(known)) == set()
    assert unknown_selector_labels(test_text, known) == set()


def test_name_check_catches_wrong_names():
    """Negative control: a misspelt metric, a wrong suffix for its type, a label the metric lacks."""
    known = exported_names()
    assert unknown_metric_names('rate(jump_clicks_consumed_total[5m])', set(known)) == set()
    assert unknown_metric_names('rate(jump_click_consumed_total[5m])', set(known)) == {"jump_click_consumed_total"}
    assert unknown_metric_names('jump_predictions_count + jump_model_info_total', set(known)) == \
        {"jump_predictions_count", "jump_model_info_total"}
    assert unknown_metric_names('jump:dead_letter_ratio:rate5m > 0.05', set(known)) == set()
    assert unknown_selector_labels('jump_dead_letters_total{job="jump-stream",reason="late"}', known) == set()
    assert unknown_selector_labels('jump_dead_letters_total{result="late"}', known) == \
        {("jump_dead_letters_total", "result")}


def test_every_alert_has_severity_summary_description_runbook():
    alerts = [r for r in load_rules() if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "JumpConsumerLagHigh", "JumpConsumerLagGrowing", "JumpDeadLetterRatioHigh", "JumpClickToPredictionP99High",
        "JumpInferenceFailures", "JumpModelStale", "JumpModelRefused", "JumpTrainerFailing",
        "JumpTrainerNotPromoting", "JumpWorkerDown", "JumpComponentAbsent"}
    for a in alerts:
        assert a["labels"]["severity"] in SEVERITIES, a["alert"]
        for key in ("summary", "description", "runbook"):
            assert a["annotations"].get(key, "").strip(), f"{a['alert']}: no {key}"
    # every selector is restricted to the job, directly or through the recording rules it reads
    records = {r["record"]: r["expr"] for r in load_rules() if "record" in r}
    for r in load_rules():
        expr = r["expr"]
        while any(name in expr for name in records):
            for name, rec in records.items():
                expr = expr.replace(name, f"({rec})")
        for name, body in _SELECTOR.findall(expr) + re.findall(r"\b(up)\s*\{([^}]*)\}", expr):
            assert f'job="{JOB}"' in body, f"{r.get('alert') or r.get('record')}: {name} not restricted to {JOB}"
        bare = re.findall(r"(?<![A-Za-z0-9_:])(jump_[a-z0-9_]+|up)(?![A-Za-z0-9_:])\s*+(?!\{)", expr)
        assert not bare, f"{r.get('alert') or r.get('record')}: selector without a job matcher: {bare}"


def test_every_rule_is_unit_tested_firing_and_not_firing():
    rules = load_rules()
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == [RULES.name]
    cases = [c for t in tests["tests"] for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert alerts - fired == set(), "alerts never fired by a unit test"
    assert alerts - quiet == set(), "alerts without a healthy (not firing) unit test"
    for c in cases:                                                  # fired alerts are checked in full
        for exp in c.get("exp_alerts") or []:
            assert exp["exp_labels"]["severity"] in SEVERITIES
            assert {"summary", "description", "runbook"} <= set(exp["exp_annotations"])
    for component in COMPONENTS:                                     # one absent-alert per component
        assert any(c["alertname"] == "JumpComponentAbsent" and any(
            e["exp_labels"].get("component") == component for e in c.get("exp_alerts") or []) for c in cases)
    records = {r["record"] for r in rules if "record" in r}
    tested = " ".join(e["expr"] for t in tests["tests"] for e in t.get("promql_expr_test", []))
    assert records and {r for r in records if r not in tested} == set(), "recording rules without a test"


def test_config_loads_the_rules_file_but_not_its_tests():
    config = load_config()
    import glob
    loaded = {Path(p).resolve() for pattern in config["rule_files"] for p in glob.glob(str(PROM_DIR / pattern))}
    assert loaded == {RULES.resolve()}
    job = jump_job(config)
    assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["pod"]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"


# -- the install script and the Makefile ---------------------------------------------------------------

def test_make_test_runs_the_install_script_non_fatally_before_pytest():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1).splitlines()
    ensure = [i for i, line in enumerate(recipe) if "scripts/ensure-prometheus.sh" in line]
    pytest_line = [i for i, line in enumerate(recipe) if "pytest" in line]
    assert ensure and pytest_line and ensure[0] < pytest_line[0]
    line = recipe[ensure[0]].strip()
    assert line.startswith(("-", "@-")) or "|| true" in line, "the install step must not fail the build"


def test_install_script_never_fails(tmp_path):
    """Without promtool, prometheus and apt-get on PATH: one line saying why, exit status 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "date", "head"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    r = subprocess.run([str(bin_dir / "bash"), str(ENSURE)], env={"PATH": str(bin_dir)}, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "will be skipped" in lines[0], r.stdout


def test_install_script_is_idempotent(promtool, prometheus_bin):
    r = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "already installed" in r.stdout and len(r.stdout.strip().splitlines()) == 1, r.stdout


# -- a real Prometheus ----------------------------------------------------------------------------------

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
                [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

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


def test_relabelling_keeps_the_jump_pods_and_applies_the_label_contract(prometheus_bin, tmp_path):
    """The repository's relabel_configs in a real Prometheus, fed the labels Kubernetes pod discovery
    gives: the three components' pods become targets with job/component/namespace/pod labels at the
    annotated port and path; other pods, opted-out, pending and init containers are dropped.
    Loopback addresses only; nothing listens there (the scrape interval is long)."""
    from pipeline.devtools.broker import free_port
    ports = [free_port() for _ in range(3)]
    good = [pod("127.0.0.1", ports[0], "sessionizer", "jump-sessionizer-0"),
            pod("127.0.0.2", ports[1], "inference", "jump-inference-7f9c-abcde",
                pod_annotation_prometheus_io_path="/custom/metrics"),
            pod("::1", ports[2], "trainer", "jump-trainer-0", pod_annotation_prometheus_io_path=None,
                pod_node_name=None)]
    dropped = [pod("127.0.0.3", ports[0], "sessionizer", "opted-out", pod_annotation_prometheus_io_scrape="false"),
               pod("127.0.0.3", ports[0], "sessionizer", "no-annotation", pod_annotation_prometheus_io_scrape=None),
               pod("127.0.0.4", ports[0], "inference", "other-app", pod_label_app_kubernetes_io_name="other"),
               pod("127.0.0.5", ports[0], "broker", "unknown-component"),
               pod("127.0.0.6", ports[0], "inference", "pending", pod_phase="Pending"),
               pod("127.0.0.7", ports[0], "inference", "init", pod_container_init="true")]
    (tmp_path / "targets.json").write_text(json.dumps(good + dropped))
    config = file_sd_variant(tmp_path / "targets.json")
    jump_job(config)["scrape_interval"] = "1h"
    prom = Prometheus(prometheus_bin, config, tmp_path)
    try:
        prom.wait_ready()
        data = prom.wait("the targets to be discovered",
                         lambda: (d := prom.get("/api/v1/targets")) and
                         len(d["activeTargets"]) + len(d["droppedTargets"]) == len(good) + len(dropped) and d,
                         timeout_s=30)
        active = {t["labels"]["pod"]: t for t in data["activeTargets"]}
        assert set(active) == {"jump-sessionizer-0", "jump-inference-7f9c-abcde", "jump-trainer-0"}
        expect = {"jump-sessionizer-0": ("sessionizer", f"http://127.0.0.1:{ports[0]}/metrics"),
                  "jump-inference-7f9c-abcde": ("inference", f"http://127.0.0.2:{ports[1]}/custom/metrics"),
                  "jump-trainer-0": ("trainer", f"http://[::1]:{ports[2]}/metrics")}
        for name, (component, url) in expect.items():
            t = active[name]
            assert t["labels"]["job"] == JOB and t["labels"]["component"] == component
            assert t["labels"]["namespace"] == "jump"
            assert set(t["labels"]) <= TARGET_LABELS, t["labels"]
            assert t["scrapeUrl"] == url
        assert active["jump-sessionizer-0"]["labels"]["node"] == "node-1"
        assert len(data["droppedTargets"]) == len(dropped)
    finally:
        prom.stop()


@pytest.mark.timeout(240)
def test_prometheus_scrapes_the_workers_and_evaluates_the_rules(prometheus_bin, kafka_bootstrap, tmp_path):
    """A sessionizer and an inference worker on the test broker, scraped every second by a real
    Prometheus through the repository's relabel_configs and rules: the counters Prometheus sees
    add up to the clicks replayed, latency quantiles are finite, every rule evaluates without
    error, and a stopped worker shows as down."""
    from jump_core.data import readers
    from jump_core.data.prepare import read_sessions
    from jump_core.data.synth import SynthConfig, write_csv
    from pipeline.devtools import procs
    from pipeline.devtools.replay import replay
    from tests.integration.test_pipeline import Pipeline, make_settings, random_model

    clicks_csv = tmp_path / "clicks.csv"
    write_csv(SynthConfig(clicks=1500, seed=11), clicks_csv)
    options = {"user_col": "user_id", "item_col": "item_id", "time_col": "timestamp"}
    clicks = list(readers.read_clicks("csv", [str(clicks_csv)], **options))
    counts = Counter(c[1] for c in clicks)
    random_model(tmp_path / "model.ckpt", sorted(i for i, n in counts.items() if n >= 2))
    longest = int(read_sessions("csv", [str(clicks_csv)], 3600.0, 2000.0, 30.0, options=options)
                  .sessions.lengths.max())
    cap = max(100, longest + 1)                                     # no session_too_long dead letter
    pipe = Pipeline(make_settings(kafka_bootstrap, "prom", tmp_path, context_clicks=cap, max_session_clicks=cap),
                    tmp_path)
    (tmp_path / "targets.json").write_text(json.dumps(
        [pod("127.0.0.1", pipe.ports[role], role, f"jump-{role}-0") for role in ("sessionizer", "inference")]))
    prom = Prometheus(prometheus_bin, file_sd_variant(tmp_path / "targets.json", scrape_interval="1s"), tmp_path)

    def logs():
        return "\n".join(f"--- {role}\n{pipe.log(role)}" for role in pipe.procs)

    try:
        pipe.start("sessionizer")
        pipe.start("inference")
        prom.wait_ready()
        up = prom.wait("both workers up", lambda: (u := prom.query(f'up{{job="{JOB}"}}')) and len(u) == 2
                       and all(v == 1 for v in u.values()) and u, timeout_s=30, extra=logs)
        assert {re.search(r'component="(\w+)"', k).group(1) for k in up} == {"sessionizer", "inference"}

        sent = replay(pipe.s, "csv", [str(clicks_csv)], progress=False, reader_options=options)["clicks"]
        assert sent == len(clicks)
        consumed = 'sum(jump_clicks_consumed_total{job="jump-stream", component="sessionizer"})'
        accepted = 'sum(jump_clicks_accepted_total{job="jump-stream", component="sessionizer"})'
        preds = 'sum(jump_predictions_total{job="jump-stream", component="inference"})'
        count = 'sum(jump_click_to_prediction_seconds_count{job="jump-stream", component="inference"})'
        prom.wait(f"{sent} clicks consumed", lambda: prom.value(consumed) == sent, timeout_s=90, extra=logs)
        n_accepted = prom.value(accepted)
        assert n_accepted == sent                                    # clean input: every click accepted
        prom.wait("a prediction per accepted click",
                  lambda: prom.value(preds) == n_accepted and prom.value(count) == n_accepted,
                  timeout_s=90, extra=logs)
        # nothing counted twice: every other process reports zero of what it does not own
        assert prom.value('sum(jump_clicks_consumed_total{job="jump-stream"})') == sent
        assert prom.value('sum(jump_predictions_total{job="jump-stream"})') == n_accepted

        p99 = prom.value('histogram_quantile(0.99, sum by (le) '
                         '(jump_click_to_prediction_seconds_bucket{job="jump-stream"}))')
        assert p99 is not None and math.isfinite(p99) and p99 > 0

        # recording rules on live data (evaluated every second)
        rec_p99 = prom.wait("the p99 recording rule to be finite and > 0", lambda: (
            v := prom.value("jump:click_to_prediction_seconds:p99_5m")) is not None and math.isfinite(v) and v > 0
            and v, timeout_s=15)
        assert prom.query("jump:click_to_prediction_seconds:p99_5m") == \
            {'component="inference",job="jump-stream",namespace="jump"': rec_p99}
        assert prom.wait("the dead-letter ratio", lambda: prom.query("jump:dead_letter_ratio:rate5m"),
                         timeout_s=15) == {'component="sessionizer",job="jump-stream",namespace="jump"': 0.0}
        lag = prom.wait("the group lag of both components",
                        lambda: (q := prom.query("jump:consumer_lag_messages:sum")) and len(q) == 2 and q,
                        timeout_s=15)
        assert all(v >= 0 for v in lag.values())

        # every rule of the repository loaded and evaluated without error
        def evaluated():
            groups = prom.get("/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None
        rules = prom.wait("every rule evaluated without error", evaluated, timeout_s=15,
                          extra=lambda: json.dumps(prom.get("/api/v1/rules"))[:3000])
        ours = load_rules()
        assert Counter((r["type"], r["name"]) for r in rules) == Counter(
            ("alerting", r["alert"]) if "alert" in r else ("recording", r["record"]) for r in ours)
        assert {r["type"] for r in rules} == {"alerting", "recording"}

        # the alerts on a healthy stream: the trainer is missing (not part of this test); the replay is
        # one burst, so the p99 of click-to-prediction may exceed 1 s for a while; nothing else, and
        # nothing firing yet (every for: is longer than the test)
        alerts = prom.get("/api/v1/alerts")["alerts"]
        active = {(a["labels"]["alertname"], a["labels"].get("component")) for a in alerts}
        assert ("JumpComponentAbsent", "trainer") in active
        assert active <= {("JumpComponentAbsent", "trainer"), ("JumpClickToPredictionP99High", "inference")}, alerts
        assert {a["state"] for a in alerts} == {"pending"}, alerts

        procs.stop(pipe.procs["inference"])
        inf_up = f'up{{job="{JOB}", component="inference"}}'
        prom.wait("the stopped inference worker to be down", lambda: prom.value(inf_up) == 0, timeout_s=30)
        assert prom.value(f'up{{job="{JOB}", component="sessionizer"}}') == 1
        prom.wait("JumpWorkerDown pending for the inference worker", lambda: any(
            a["labels"]["alertname"] == "JumpWorkerDown" and a["labels"]["component"] == "inference"
            and a["labels"]["pod"] == "jump-inference-0" and a["state"] == "pending"
            for a in prom.get("/api/v1/alerts")["alerts"]), timeout_s=15)
    finally:
        prom.stop()
        pipe.stop()
