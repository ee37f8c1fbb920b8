"""deploy/prometheus/: the scrape configuration, the recording and alerting rules, their unit tests,
and the relabelling in a real Prometheus (a real Prometheus scraping real workers on the broker:
tests/integration/test_prometheus_workers.py).

promtool and prometheus come from `scripts/ensure-prometheus.sh` (Debian package `prometheus`, run
by `make test`); without them the tests that need them skip. Debian's build has no Kubernetes
service discovery, so the Kubernetes job is checked and run with its `kubernetes_sd_configs`
replaced by a file_sd_configs that hands Prometheus the same `__meta_kubernetes_*` labels: the
repository's relabel_configs run unchanged in a real Prometheus. Every address the Prometheus
servers of these tests scrape is on the loopback interface.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.prometheus import (
    CONFIG,
    JOB,
    PROM_DIR,
    ROOT,
    RULES,
    Prometheus,
    exported_series,
    file_sd_variant,
    jump_job,
    load_config,
    load_rules,
    need,
    pod,
)

RULES_TEST = PROM_DIR / "rules" / "jump-alerts.test.yml"
RUNBOOK = ROOT / "deploy" / "README.md"  # the alerts' runbook_url sections
RUNBOOK_BASE = "https://git.example.com/jump-stream/blob/main/"  # the placeholder deployers replace
ENSURE = ROOT / "scripts" / "ensure-prometheus.sh"

COMPONENTS = ("sessionizer", "inference", "trainer")
TARGET_LABELS = {"job", "component", "namespace", "pod", "instance", "node"}  # what relabelling leaves
SEVERITIES = {"critical", "warning", "info"}
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"  # promtool/prometheus built without it (Debian)


@pytest.fixture(scope="module")
def promtool() -> str:
    return need("promtool")


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return need("prometheus")


def run_promtool(promtool: str, *args, cwd=PROM_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


# -- static checks: promtool ---------------------------------------------------------------------------


def test_promtool_check_config_as_written(promtool):
    r = run_promtool(promtool, "check", "config", CONFIG.name)
    if r.returncode and NO_KUBERNETES_SD in r.stdout + r.stderr:
        pytest.skip(
            "this promtool is built without Kubernetes service discovery (Debian's package); "
            "test_promtool_check_config_with_file_discovery checks everything else"
        )
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
    local = yaml.safe_load(
        "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in block.splitlines())
    )
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
    _sum, _count; gauges: the name; the process, platform and GPU collectors' too) -> their label names."""
    return exported_series()


def family_names() -> set[str]:
    from pipeline import metrics

    return {
        f.name
        for c in metrics.REGISTRY._collector_to_names
        for f in (c.describe() if hasattr(c, "describe") else c.collect())
    }


_NAME = re.compile(r"(?<![A-Za-z0-9_:])(?:jump|process|python)_[a-z0-9_]+")
_SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])((?:jump|process|python)_[a-z0-9_]+)\s*\{([^}]*)\}")


def unknown_metric_names(text: str, known: set[str]) -> set[str]:
    """jump_*, process_* and python_* identifiers of PromQL text that pipeline.metrics does not export
    (recording rules are named jump:...:..., so they never match)."""
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
    assert len(set(_NAME.findall(text))) >= 10  # the check does look at something
    assert unknown_metric_names(text, set(known)) == set()
    assert unknown_selector_labels(text, known) == set()
    # annotations and the runbook's hints may name a histogram by its family name
    notes = "\n".join(v for r in rules for v in r.get("annotations", {}).values())
    assert unknown_metric_names(notes, set(known) | family_names()) == set()
    assert unknown_metric_names(runbook_text(), set(known) | family_names()) == set()
    # the unit tests' input series and expressions too (a test on a wrong name proves nothing)
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    test_text = "\n".join(
        [s["series"] for t in tests for s in t.get("input_series", [])]
        + [e["expr"] for t in tests for e in t.get("promql_expr_test", [])]
    )
    assert unknown_metric_names(test_text, set(known)) == set()
    assert unknown_selector_labels(test_text, known) == set()


def test_name_check_catches_wrong_names():
    """Negative control: a misspelt metric, a wrong suffix for its type, a label the metric lacks."""
    known = exported_names()
    assert unknown_metric_names("rate(jump_clicks_consumed_total[5m])", set(known)) == set()
    assert unknown_metric_names("rate(jump_click_consumed_total[5m])", set(known)) == {"jump_click_consumed_total"}
    assert unknown_metric_names("jump_predictions_count + jump_model_info_total", set(known)) == {
        "jump_predictions_count",
        "jump_model_info_total",
    }
    assert unknown_metric_names("jump:dead_letter_ratio:rate5m > 0.05", set(known)) == set()
    assert unknown_selector_labels('jump_dead_letters_total{job="jump-stream",reason="late"}', known) == set()
    assert unknown_selector_labels('jump_dead_letters_total{result="late"}', known) == {
        ("jump_dead_letters_total", "result")
    }


def runbook_text() -> str:
    text = RUNBOOK.read_text()
    return text[text.index("\n## Runbook\n") :].split("\n## ", 2)[1]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown` (lower case, punctuation dropped, spaces -> -)."""
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#{1,6} (.+)$", markdown, re.M)
    }


def runbook_url_problems(url: str) -> list[str]:
    """A runbook_url must be the placeholder base + a file of this repository + an anchor of one of its headings."""
    if not url.startswith(RUNBOOK_BASE) or "#" not in url:
        return [f"{url}: not {RUNBOOK_BASE}<path>#<anchor>"]
    path, anchor = url[len(RUNBOOK_BASE) :].split("#", 1)
    if not (ROOT / path).is_file():
        return [f"{url}: no file {path} in the repository"]
    if anchor not in github_anchors((ROOT / path).read_text()):
        return [f"{url}: no heading with anchor #{anchor} in {path}"]
    return []


def test_every_runbook_url_names_a_section_of_the_runbook():
    alerts = [r for r in load_rules() if "alert" in r]
    for a in alerts:
        url = a["annotations"]["runbook_url"]
        assert runbook_url_problems(url) == [], a["alert"]
        assert url == f"{RUNBOOK_BASE}deploy/README.md#{a['alert'].lower()}", a["alert"]
    assert {f"### {a['alert']}" for a in alerts} <= set(runbook_text().splitlines())
    # negative controls: a missing anchor, a missing file, another base
    assert runbook_url_problems(f"{RUNBOOK_BASE}deploy/README.md#jumpnosuchalert")
    assert runbook_url_problems(f"{RUNBOOK_BASE}deploy/RUNBOOK.md#jumpworkerdown")
    assert runbook_url_problems("https://example.org/deploy/README.md#jumpworkerdown")
    assert runbook_url_problems(f"{RUNBOOK_BASE}deploy/README.md#jumpworkerdown") == []


def test_every_alert_has_severity_summary_description_runbook():
    alerts = [r for r in load_rules() if "alert" in r]
    assert {a["alert"] for a in alerts} == {
        "JumpConsumerLagHigh",
        "JumpConsumerLagGrowing",
        "JumpDeadLetterRatioHigh",
        "JumpClickToPredictionP99High",
        "JumpInferenceFailures",
        "JumpModelStale",
        "JumpModelRefused",
        "JumpTrainerFailing",
        "JumpTrainerNotPromoting",
        "JumpWorkerDown",
        "JumpComponentAbsent",
    }
    for a in alerts:
        assert a["labels"]["severity"] in SEVERITIES, a["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert a["annotations"].get(key, "").strip(), f"{a['alert']}: no {key}"
        assert "runbook" not in a["annotations"], f"{a['alert']}: runbook, not runbook_url"
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
    for c in cases:  # fired alerts are checked in full
        for exp in c.get("exp_alerts") or []:
            assert exp["exp_labels"]["severity"] in SEVERITIES
            assert {"summary", "description", "runbook_url"} <= set(exp["exp_annotations"])
    for component in COMPONENTS:  # one absent-alert per component
        assert any(
            c["alertname"] == "JumpComponentAbsent"
            and any(e["exp_labels"].get("component") == component for e in c.get("exp_alerts") or [])
            for c in cases
        )
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
    r = subprocess.run(
        [str(bin_dir / "bash"), str(ENSURE)], env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "will be skipped" in lines[0], r.stdout


def test_install_script_is_idempotent(promtool, prometheus_bin):
    r = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "already installed" in r.stdout and len(r.stdout.strip().splitlines()) == 1, r.stdout


# -- a real Prometheus ----------------------------------------------------------------------------------


def test_relabelling_keeps_the_jump_pods_and_applies_the_label_contract(prometheus_bin, tmp_path):
    """The repository's relabel_configs in a real Prometheus, fed the labels Kubernetes pod discovery
    gives: the three components' pods become targets with job/component/namespace/pod labels at the
    annotated port and path; other pods, opted-out, pending and init containers are dropped.
    Loopback addresses only; nothing listens there (the scrape interval is long)."""
    from pipeline.devtools.broker import free_port

    ports = [free_port() for _ in range(3)]
    good = [
        pod("127.0.0.1", ports[0], "sessionizer", "jump-sessionizer-0"),
        pod(
            "127.0.0.2",
            ports[1],
            "inference",
            "jump-inference-7f9c-abcde",
            pod_annotation_prometheus_io_path="/custom/metrics",
        ),
        pod("::1", ports[2], "trainer", "jump-trainer-0", pod_annotation_prometheus_io_path=None, pod_node_name=None),
    ]
    dropped = [
        pod("127.0.0.3", ports[0], "sessionizer", "opted-out", pod_annotation_prometheus_io_scrape="false"),
        pod("127.0.0.3", ports[0], "sessionizer", "no-annotation", pod_annotation_prometheus_io_scrape=None),
        pod("127.0.0.4", ports[0], "inference", "other-app", pod_label_app_kubernetes_io_name="other"),
        pod("127.0.0.5", ports[0], "broker", "unknown-component"),
        pod("127.0.0.6", ports[0], "inference", "pending", pod_phase="Pending"),
        pod("127.0.0.7", ports[0], "inference", "init", pod_container_init="true"),
    ]
    (tmp_path / "targets.json").write_text(json.dumps(good + dropped))
    config = file_sd_variant(tmp_path / "targets.json")
    jump_job(config)["scrape_interval"] = "1h"
    prom = Prometheus(prometheus_bin, config, tmp_path)
    try:
        prom.wait_ready()
        data = prom.wait(
            "the targets to be discovered",
            lambda: (
                (d := prom.get("/api/v1/targets"))
                and len(d["activeTargets"]) + len(d["droppedTargets"]) == len(good) + len(dropped)
                and d
            ),
            timeout_s=30,
        )
        active = {t["labels"]["pod"]: t for t in data["activeTargets"]}
        assert set(active) == {"jump-sessionizer-0", "jump-inference-7f9c-abcde", "jump-trainer-0"}
        expect = {
            "jump-sessionizer-0": ("sessionizer", f"http://127.0.0.1:{ports[0]}/metrics"),
            "jump-inference-7f9c-abcde": ("inference", f"http://127.0.0.2:{ports[1]}/custom/metrics"),
            "jump-trainer-0": ("trainer", f"http://[::1]:{ports[2]}/metrics"),
        }
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
