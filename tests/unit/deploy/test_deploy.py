"""deploy/k8s and deploy/grafana agree with the code: settings, ports, probes, commands, metrics.

No cluster, no network: every manifest under deploy/k8s is parsed and checked structurally; the
Grafana dashboard's queries are checked against the metrics registry (pipeline.metrics). Each check
is a function returning a list of problems; the real files must give none, and the `*_catches_*`
tests feed a deliberately broken copy to each check to show that it can fail.
When `kubectl` is installed, its built-in kustomize also renders the base and the CPU variant.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipeline.config import Settings
from tests.helpers.prometheus import exported_series

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
CPU_PATCH = K8S / "patches" / "inference-cpu.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "jump-stream.json"
PROCFILE = ROOT / "Procfile"

COMPONENTS = {"sessionizer", "inference", "trainer"}  # the deployed process types
NAME_LABEL, COMPONENT_LABEL = "app.kubernetes.io/name", "app.kubernetes.io/component"
APP = "jump-stream"  # value of NAME_LABEL, and the scrape job
CONFIGMAP, SECRET, MODELS_PVC = "jump-stream-config", "jump-stream-kafka", "jump-models"
COMPONENT_META = "__meta_kubernetes_pod_label_app_kubernetes_io_component"
SETTINGS_ENV = {f.metadata["env"] for f in fields(Settings)}  # every JUMP_* and KAFKA_* variable


# -- loading --------------------------------------------------------------------------------------
def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifest_files(directory: Path = K8S) -> list[Path]:
    """The resource files of the base: *.yaml except kustomization.yaml and *.example.yaml."""
    return sorted(
        p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    )


def load_manifests(directory: Path = K8S) -> list[dict]:
    return [d for p in manifest_files(directory) for d in load_yaml_docs(p)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def component_of(obj: dict) -> str | None:
    return obj["metadata"].get("labels", {}).get(COMPONENT_LABEL)


def deployment(docs: list[dict], component: str) -> dict:
    found = [d for d in of_kind(docs, "Deployment") if component_of(d) == component]
    assert len(found) == 1, f"expected one Deployment of component {component}, found {len(found)}"
    return found[0]


def pod_spec(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]


def containers(dep: dict) -> list[dict]:
    return pod_spec(dep)["containers"]


def config(docs: list[dict]) -> dict[str, str]:
    return one(docs, "ConfigMap", CONFIGMAP)["data"]


@pytest.fixture
def docs() -> list[dict]:
    """A fresh copy of every manifest of the base (tests may mutate it)."""
    return load_manifests()


# -- checks (each returns a list of problems) -----------------------------------------------------
def kustomization_problems(directory: Path = K8S) -> list[str]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = list(kust.get("resources", []))
    present = [p.name for p in manifest_files(directory)]
    out = []
    if sorted(listed) != sorted(set(listed)):
        out.append(f"listed twice: {sorted({r for r in listed if listed.count(r) > 1})}")
    out += [f"present but not listed: {n}" for n in sorted(set(present) - set(listed))]
    out += [f"listed but not present: {n}" for n in sorted(set(listed) - set(present))]
    out += [f"example listed: {n}" for n in listed if n.endswith(".example.yaml")]
    for p in manifest_files(directory):
        for d in load_yaml_docs(p):
            if "namespace" in d.get("metadata", {}):
                out.append(f"{p.name}: {d['kind']} {d['metadata'].get('name')} names a namespace")
    return out


def configmap_problems(data: dict) -> list[str]:
    out = [f"not a Settings variable: {k}" for k in sorted(set(data) - SETTINGS_ENV)]
    out += [f"{k}: value must be a string, got {type(v).__name__}" for k, v in data.items() if not isinstance(v, str)]
    if not out:
        try:
            Settings.from_env(env=dict(data))
        except ValueError as e:
            out.append(f"Settings.from_env refuses it: {e}")
    return out


def probe_problems(docs: list[dict]) -> list[str]:
    port = int(config(docs)["JUMP_METRICS_PORT"])
    out = []
    for dep in of_kind(docs, "Deployment"):
        name = dep["metadata"]["name"]
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
        out += [f"{name}: annotation {k}={ann.get(k)!r}, want {v!r}" for k, v in want.items() if ann.get(k) != v]
        for c in containers(dep):
            where = f"{name}/{c['name']}"
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            if ports.get("metrics") != port:
                out.append(f"{where}: port 'metrics' is {ports.get('metrics')}, JUMP_METRICS_PORT is {port}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") != "metrics":
                    out.append(f"{where}: {probe} is {get}, want httpGet {path} on port 'metrics'")
    return out


def pod_problems(docs: list[dict]) -> list[str]:
    """resources, envFrom, security context and grace period of every container."""
    out = []
    for dep in of_kind(docs, "Deployment"):
        name, spec = dep["metadata"]["name"], pod_spec(dep)
        if spec.get("terminationGracePeriodSeconds", 30) < 60:
            out.append(f"{name}: terminationGracePeriodSeconds < 60 (Faust is slow to stop)")
        pod_nonroot = spec.get("securityContext", {}).get("runAsNonRoot") is True
        for c in containers(dep):
            where = f"{name}/{c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(res.get(part) or {})
                if missing:
                    out.append(f"{where}: resources.{part} lacks {sorted(missing)}")
            refs = c.get("envFrom", [])
            if not any(r.get("configMapRef", {}).get("name") == CONFIGMAP for r in refs):
                out.append(f"{where}: envFrom does not reference ConfigMap {CONFIGMAP}")
            for r in refs:
                if "secretRef" in r and (
                    r["secretRef"].get("name") != SECRET or r["secretRef"].get("optional") is not True
                ):
                    out.append(f"{where}: secretRef must be {SECRET} with optional: true, got {r['secretRef']}")
            if not (pod_nonroot or c.get("securityContext", {}).get("runAsNonRoot") is True):
                out.append(f"{where}: runAsNonRoot is not set")
    return out


def scaling_problems(docs: list[dict]) -> list[str]:
    partitions = int(config(docs)["JUMP_PARTITIONS"])
    out = []
    sess = deployment(docs, "sessionizer")
    if not 1 <= sess["spec"].get("replicas", 1) <= partitions:
        out.append(f"sessionizer replicas {sess['spec'].get('replicas', 1)} not in 1..JUMP_PARTITIONS ({partitions})")
    inf = deployment(docs, "inference")
    if inf["spec"].get("replicas", 1) > partitions:
        out.append(f"inference replicas {inf['spec']['replicas']} > JUMP_PARTITIONS ({partitions})")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    if len(hpas) != 1:
        out.append(f"expected one HPA, found {len(hpas)}")
    for hpa in hpas:
        spec = hpa["spec"]
        if hpa["apiVersion"] != "autoscaling/v2":
            out.append(f"HPA apiVersion {hpa['apiVersion']}")
        if spec["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "Deployment", "name": inf["metadata"]["name"]}:
            out.append(f"HPA targets {spec['scaleTargetRef']}, not the inference Deployment")
        if spec["maxReplicas"] > partitions:
            out.append(f"HPA maxReplicas {spec['maxReplicas']} > JUMP_PARTITIONS ({partitions})")
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            out.append("HPA minReplicas not in 1..maxReplicas")
        names = [(m.get(m["type"].lower(), {}).get("metric") or {}).get("name") for m in spec.get("metrics", [])]
        if "jump_consumer_lag_messages" not in names or not {m["type"] for m in spec["metrics"]} <= {
            "Pods",
            "External",
        }:
            out.append(f"HPA metrics {names}: want a Pods/External metric jump_consumer_lag_messages")
    tr = deployment(docs, "trainer")
    if tr["spec"].get("replicas", 1) != 1:
        out.append(f"trainer replicas {tr['spec'].get('replicas')} != 1")
    if tr["spec"].get("strategy", {}).get("type") != "Recreate":
        out.append("trainer strategy is not Recreate")
    return out


def gpu_of(dep: dict):
    return containers(dep)[0].get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def gpu_problems(docs: list[dict], cpu_docs: list[dict]) -> list[str]:
    """`docs`: the base; `cpu_docs`: the base with the CPU patch applied."""
    out = []
    inf, inf_cpu = deployment(docs, "inference"), deployment(cpu_docs, "inference")
    if str(gpu_of(inf)) != "1":
        out.append(f"inference limits nvidia.com/gpu = {gpu_of(inf)!r}, want 1")
    if env_of(containers(inf)[0]).get("JUMP_DEVICE", config(docs).get("JUMP_DEVICE")) not in ("auto", "cuda"):
        out.append("the GPU inference worker does not run with JUMP_DEVICE auto or cuda")
    if gpu_of(inf_cpu) is not None or "nvidia.com/gpu" in containers(inf_cpu)[0]["resources"].get("requests", {}):
        out.append("the CPU patch leaves a GPU request")
    if env_of(containers(inf_cpu)[0]).get("JUMP_DEVICE") != "cpu":
        out.append("the CPU patch does not set JUMP_DEVICE=cpu")
    for d in of_kind(docs, "Deployment"):
        if component_of(d) != "inference" and gpu_of(d) is not None:
            out.append(f"{d['metadata']['name']} requests a GPU")
    return out


def volume_problems(docs: list[dict]) -> list[str]:
    cfg = config(docs)
    model_dir, data_dir = cfg["JUMP_MODEL_DIR"], cfg["JUMP_DATA_DIR"]
    out = []
    pvc = one(docs, "PersistentVolumeClaim", MODELS_PVC)
    if pvc["spec"].get("accessModes") != ["ReadWriteMany"]:
        out.append(f"{MODELS_PVC} accessModes {pvc['spec'].get('accessModes')}, want [ReadWriteMany]")
    if not cfg["JUMP_CHECKPOINT"].startswith(model_dir.rstrip("/") + "/"):
        out.append("JUMP_CHECKPOINT (the bootstrap model) is not on the models volume")

    def mounts(component: str, source) -> list[dict]:
        dep = deployment(docs, component)
        vols = {v["name"] for v in pod_spec(dep).get("volumes", []) if source(v)}
        return [m for c in containers(dep) for m in c.get("volumeMounts", []) if m["name"] in vols]

    def is_models(v):
        return v.get("persistentVolumeClaim", {}).get("claimName") == MODELS_PVC

    for component, read_only in (("trainer", False), ("inference", True)):
        ms = mounts(component, is_models)
        if [(m["mountPath"], bool(m.get("readOnly"))) for m in ms] != [(model_dir, read_only)]:
            out.append(
                f"{component}: mounts {MODELS_PVC} as {[(m['mountPath'], m.get('readOnly')) for m in ms]}, "
                f"want {model_dir} {'read-only' if read_only else 'read-write'}"
            )
    if mounts("sessionizer", is_models):
        out.append(f"sessionizer mounts {MODELS_PVC}")
    if data_dir not in [m["mountPath"] for m in mounts("sessionizer", lambda v: "emptyDir" in v)]:
        out.append(f"sessionizer: JUMP_DATA_DIR {data_dir} is not an emptyDir")
    return out


def procfile_commands(text: str) -> dict[str, str]:
    """process type -> `jump` sub-command it runs."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, cmd = line.split(":", 1)
        tokens = shlex.split(cmd)
        i = next(i for i, t in enumerate(tokens) if t == "jump" or t.endswith("/jump"))
        out[name.strip()] = tokens[i + 1]
    return out


def cli_commands() -> set[str]:
    from pipeline.cli import build_parser

    parser = build_parser()
    return {c for a in parser._actions if isinstance(a, argparse._SubParsersAction) for c in a.choices}


def command_problems(docs: list[dict], procfile: str, cli: set[str]) -> list[str]:
    out = []
    deployed = {}
    for dep in of_kind(docs, "Deployment"):
        for c in containers(dep):
            cmd = c.get("command", [])
            if len(cmd) != 2 or cmd[0] != "jump" or cmd[1] != component_of(dep):
                out.append(f"{dep['metadata']['name']}/{c['name']}: command {cmd}, want ['jump', component]")
            if len(cmd) == 2:
                deployed[component_of(dep)] = cmd[1]
    if set(deployed.values()) != COMPONENTS:
        out.append(f"deployed commands {sorted(deployed.values())}, want {sorted(COMPONENTS)}")
    missing = set(deployed.values()) - cli
    if missing:
        out.append(f"not sub-commands of `jump`: {sorted(missing)}")
    proc = procfile_commands(procfile)
    served = {k: v for k, v in proc.items() if k != "broker"}
    if served != deployed:
        out.append(f"Procfile runs {served}, the Deployments run {deployed}")
    return out


def label_problems(docs: list[dict]) -> list[str]:
    out = []
    for d in docs:
        if d["kind"] not in ("Kustomization",) and d["metadata"].get("labels", {}).get(NAME_LABEL) != APP:
            out.append(f"{d['kind']} {d['metadata']['name']}: label {NAME_LABEL} != {APP}")
    pods = {}
    for dep in of_kind(docs, "Deployment"):
        comp = component_of(dep)
        want = {NAME_LABEL: APP, COMPONENT_LABEL: comp}
        for where, labels in (
            ("selector", dep["spec"]["selector"]["matchLabels"]),
            ("pod", dep["spec"]["template"]["metadata"]["labels"]),
        ):
            if {k: labels.get(k) for k in want} != want:
                out.append(f"{dep['metadata']['name']}: {where} labels {labels}, want {want}")
        if comp not in COMPONENTS:
            out.append(f"{dep['metadata']['name']}: component {comp!r}")
        pods[comp] = dep["spec"]["template"]["metadata"]["labels"]
    services = of_kind(docs, "Service")
    for comp in COMPONENTS:
        svc = [s for s in services if component_of(s) == comp]
        if len(svc) != 1:
            out.append(f"expected one metrics Service for {comp}, found {len(svc)}")
            continue
        spec = svc[0]["spec"]
        if (
            any(pods.get(comp, {}).get(k) != v for k, v in spec["selector"].items())
            or spec["selector"].get(COMPONENT_LABEL) != comp
        ):
            out.append(f"Service {svc[0]['metadata']['name']} does not select the {comp} pods")
        if [p.get("name") for p in spec["ports"]] != ["metrics"] or spec["ports"][0].get("targetPort") != "metrics":
            out.append(f"Service {svc[0]['metadata']['name']}: ports {spec['ports']}, want one named metrics")
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(all(p.get(k) == v for k, v in sel.items()) for p in pods.values()):
            out.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no pods")
    return out


def servicemonitor_problems(docs: list[dict]) -> list[str]:
    sms = of_kind(docs, "ServiceMonitor")
    if len(sms) != 1:
        return [f"expected one ServiceMonitor, found {len(sms)}"]
    sm = sms[0]
    spec, out = sm["spec"], []
    if sm["apiVersion"] != "monitoring.coreos.com/v1":
        out.append(f"apiVersion {sm['apiVersion']}")
    if spec.get("jobLabel") != NAME_LABEL:
        out.append(f"jobLabel {spec.get('jobLabel')!r}, want {NAME_LABEL} (job={APP})")
    sel = spec["selector"]["matchLabels"]
    selected = {
        component_of(s)
        for s in of_kind(docs, "Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())
    }
    if selected != COMPONENTS:
        out.append(f"selects the Services of {sorted(c for c in selected if c)}, want {sorted(COMPONENTS)}")
    if not spec.get("endpoints"):
        out.append("no endpoints")
    for ep in spec.get("endpoints", []):
        if ep.get("port") != "metrics" or ep.get("path", "/metrics") != "/metrics":
            out.append(f"endpoint {ep.get('port')} {ep.get('path')}, want port metrics, /metrics")
        if not any(
            r.get("sourceLabels") == [COMPONENT_META]
            and r.get("targetLabel") == "component"
            and r.get("action", "replace") == "replace"
            for r in ep.get("relabelings", [])
        ):
            out.append(f"endpoint {ep.get('port')}: no relabeling {COMPONENT_META} -> component")
    return out


# -- applying the CPU patch -----------------------------------------------------------------------
def strategic_merge(base, patch):
    """The subset of a Kubernetes strategic merge patch the CPU patch uses: maps merge, `null`
    deletes a key, lists of named objects (containers, env) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge(out[k], v) if k in out else v
        return out
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    )
    if named:
        out = [copy.deepcopy(x) for x in base]
        for p in patch:
            i = next((i for i, x in enumerate(out) if x["name"] == p["name"]), None)
            if i is None:
                out.append(p)
            else:
                out[i] = strategic_merge(out[i], p)
        return out
    return patch


def with_cpu_patch(docs: list[dict]) -> list[dict]:
    (patch,) = load_yaml_docs(CPU_PATCH)
    return [
        strategic_merge(d, patch)
        if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
        else d
        for d in docs
    ]


# -- Grafana ----------------------------------------------------------------------------------------
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:jump|process|python)_[a-z0-9_]+")
SELECTOR_RE = re.compile(r"(?<![A-Za-z0-9_:])((?:jump|process|python)_[a-z0-9_]+)\s*\{([^}]*)\}")
TARGET_LABELS = {"job", "component", "instance", "namespace", "pod", "container", "service", "endpoint"}


def registry_series() -> dict[str, set[str]]:
    """Every series name the workers expose -> the label names it may carry (process_*, python_* and
    the GPU gauges included)."""
    return exported_series()


def expr_problems(expr: str, series: dict[str, set[str]]) -> list[str]:
    out = []
    used = METRIC_RE.findall(expr)
    out += [f"not a series of the registry: {n}" for n in used if n not in series]
    bare = [
        m.group(0)
        for m in re.finditer(r"(?<![A-Za-z0-9_:])(?:jump|process|python)_[a-z0-9_]+(?!\s*\{|[a-z0-9_])", expr)
    ]
    out += [f'{n}: no selector (want job="{APP}")' for n in bare]
    for name, matchers in SELECTOR_RE.findall(expr):
        got = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', matchers))
        unknown = set(got) - series.get(name, set()) - TARGET_LABELS
        out += [f"{name}: unknown label {lab}" for lab in sorted(unknown)]
        if got.get("job") != APP:
            out.append(f'{name}: selector lacks job="{APP}"')
    allowed = TARGET_LABELS | {"le"} | set().union(*(series.get(n, set()) for n in used))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        out += [
            f"grouping by unknown label {lab}"
            for lab in (g.strip() for g in group.split(","))
            if lab and lab not in allowed
        ]
    if not used and "up{" not in expr:
        out.append(f"no jump metric in {expr!r}")
    return out


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out += p.get("panels", [])  # collapsed rows keep their panels inside
    return out


def dashboard_problems(dash: dict) -> list[str]:
    out = []
    if dash.get("schemaVersion", 0) < 36:
        out.append(f"schemaVersion {dash.get('schemaVersion')} < 36")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        out.append("no datasource variable of type prometheus")
    if variables.get("component", {}).get("datasource", {}).get("uid") != "${datasource}":
        out.append("no component variable querying ${datasource}")
    series = registry_series()
    ids = [p.get("id") for p in all_panels(dash)]
    if len(ids) != len(set(ids)) or None in ids:
        out.append(f"panel ids not unique: {ids}")
    for p in all_panels(dash):
        title = p.get("title", "")
        if not title.strip():
            out.append(f"panel {p.get('id')} has no title")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            out.append(f"{title}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            out.append(f"{title}: no targets")
        for t in p.get("targets", []):
            if not t.get("expr", "").strip():
                out.append(f"{title}: empty expr")
            out += [f"{title}: {e}" for e in expr_problems(t.get("expr", ""), series)]
    return out


def dashboard_exprs(dash: dict) -> str:
    return "\n".join(t.get("expr", "") for p in all_panels(dash) for t in p.get("targets", []))


@pytest.fixture
def dash() -> dict:
    return json.loads(DASHBOARD.read_text())


# == the real files ===============================================================================
def test_kustomization_lists_exactly_the_manifests():
    assert kustomization_problems() == []
    assert {d["kind"] for d in load_manifests()} >= {
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


def test_configmap_holds_valid_settings(docs):
    assert configmap_problems(config(docs)) == []
    s = Settings.from_env(env=config(docs))
    assert s.metrics_port and s.model_dir and s.partitions >= 1


def test_secret_example_overrides_validly(docs):
    (secret,) = load_yaml_docs(K8S / "secret-kafka.example.yaml")
    assert secret["metadata"]["name"] == SECRET
    assert configmap_problems(secret["stringData"]) == []
    assert configmap_problems({**config(docs), **secret["stringData"]}) == []  # secretRef comes last
    assert "KAFKA_SASL_PASSWORD" in secret["stringData"] and "KAFKA_SASL_PASSWORD" not in config(docs)
    for dep in of_kind(docs, "Deployment"):  # listed after the ConfigMap
        kinds = [next(iter(r)) for r in containers(dep)[0]["envFrom"]]
        assert kinds == ["configMapRef", "secretRef"], dep["metadata"]["name"]


def test_probes_and_metrics_port(docs):
    assert probe_problems(docs) == []


def test_resources_env_and_security(docs):
    assert pod_problems(docs) == []


def test_scaling_rules(docs):
    assert scaling_problems(docs) == []


def test_gpu_request_and_cpu_patch(docs):
    assert gpu_problems(docs, with_cpu_patch(docs)) == []


def test_models_volume_and_faust_data_dir(docs):
    assert volume_problems(docs) == []


def test_commands_match_cli_and_procfile(docs):
    assert command_problems(docs, PROCFILE.read_text(), cli_commands()) == []


def test_labels_services_and_pdbs(docs):
    assert label_problems(docs) == []


def test_servicemonitor(docs):
    assert servicemonitor_problems(docs) == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) not installed")
def test_kustomize_renders_base_and_cpu_variant(tmp_path):
    def render(directory: Path) -> list[dict]:
        r = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [d for d in yaml.safe_load_all(r.stdout) if d]

    base = render(K8S)
    overlay = tmp_path / "cpu"  # kustomize wants relative paths to bases
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"resources": [os.path.relpath(K8S, overlay)], "components": [os.path.relpath(K8S / "patches", overlay)]}
        )
    )
    cpu = render(overlay)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in base) == sorted(
        (d["kind"], d["metadata"]["name"]) for d in load_manifests()
    )
    assert gpu_problems(base, cpu) == []
    # the in-test patch application agrees with kustomize's
    assert deployment(with_cpu_patch(load_manifests()), "inference") == deployment(cpu, "inference")


def test_dashboard(dash):
    assert dashboard_problems(dash) == []
    exprs = dashboard_exprs(dash)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(jump_click_to_prediction_seconds_bucket" in exprs
    for name in (
        "jump_clicks_consumed_total",
        "jump_clicks_accepted_total",
        "jump_dead_letters_total",
        "jump_duplicates_dropped_total",
        "jump_open_sessions",
        "jump_sessions_closed_total",
        "jump_session_length_clicks_bucket",
        "jump_predictions_total",
        "jump_inference_queue_wait_seconds_bucket",
        "jump_inference_compute_seconds_bucket",
        "jump_inference_batch_size_bucket",
        "jump_inference_failures_total",
        "jump_unknown_items_total",
        "jump_consumer_lag_messages",
        "jump_model_info",
        "jump_model_created_timestamp_seconds",
        "jump_model_reloads_total",
        "jump_model_refusals_total",
        "jump_trainer_runs_total",
        "jump_trainer_holdout_ratio",
        "jump_trainer_holdout_dwell_mae_seconds",
        "jump_stream_time_timestamp_seconds",
        "jump_trainer_window_sessions",
        "jump_trainer_train_loss_per_click",
        "jump_trainer_run_seconds_count",
        "jump_trainer_last_promotion_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "jump_gpu_memory_allocated_bytes",
        "jump_gpu_memory_reserved_bytes",
        "jump_gpu_utilization_ratio",
    ):
        assert name in METRIC_RE.findall(exprs), name
    assert "rate(process_cpu_seconds_total{" in exprs
    assert "sum by (model_version) (rate(jump_predictions_total{" in exprs
    assert "time() - max(jump_model_created_timestamp_seconds" in exprs
    assert re.search(r'up\{job="jump-stream"', exprs)
    rows = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert rows >= {"Input", "Sessions", "Inference", "Consumer lag", "Model", "Trainer", "Workers"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_dashboard_queries_parse(dash, tmp_path):
    """Every query is valid PromQL (promtool parses them as recording rules; $component -> .*)."""
    rules = [
        {"record": f"jump:dashboard_query:{i}", "expr": t["expr"].replace("$component", ".*")}
        for i, t in enumerate(t for p in all_panels(dash) for t in p.get("targets", []))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [{"record": "x", "expr": "sum(("}]}]}))
    assert subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True).returncode != 0


# == each check can fail ==========================================================================
def _container(docs, component):
    return containers(deployment(docs, component))[0]


def _set(path_fn, value):
    def mutate(docs):
        obj, key = path_fn(docs)
        obj[key] = value

    return mutate


def _drop(path_fn):
    def mutate(docs):
        obj, key = path_fn(docs)
        del obj[key]

    return mutate


#: a Procfile matching the Deployments (the real one is checked by test_commands_match_cli_and_procfile)
SYNTHETIC_PROCFILE = "broker: jump broker\n" + "".join(f"{c}: jump {c}\n" for c in sorted(COMPONENTS))

BREAKAGES = {
    # name: (mutation of the manifests, check that must notice)
    "readiness on /healthz": (
        _set(lambda d: (_container(d, "inference")["readinessProbe"]["httpGet"], "path"), "/healthz"),
        probe_problems,
    ),
    "liveness on a numbered port": (
        _set(lambda d: (_container(d, "trainer")["livenessProbe"]["httpGet"], "port"), 9464),
        probe_problems,
    ),
    "port renamed": (_set(lambda d: (_container(d, "sessionizer")["ports"][0], "name"), "http"), probe_problems),
    "annotation port differs": (
        _set(
            lambda d: (deployment(d, "trainer")["spec"]["template"]["metadata"]["annotations"], "prometheus.io/port"),
            "9465",
        ),
        probe_problems,
    ),
    "configmap port differs": (_set(lambda d: (config(d), "JUMP_METRICS_PORT"), "9465"), probe_problems),
    "no limits": (_drop(lambda d: (_container(d, "sessionizer")["resources"], "limits")), pod_problems),
    "no envFrom": (_drop(lambda d: (_container(d, "trainer"), "envFrom")), pod_problems),
    "secret not optional": (
        _set(lambda d: (_container(d, "inference")["envFrom"][1]["secretRef"], "optional"), False),
        pod_problems,
    ),
    "root allowed": (
        lambda d: [
            c.get("securityContext", {}).pop("runAsNonRoot", None)
            for c in [_container(d, "inference"), pod_spec(deployment(d, "inference"))]
        ],
        pod_problems,
    ),
    "short grace period": (
        _set(lambda d: (pod_spec(deployment(d, "sessionizer")), "terminationGracePeriodSeconds"), 30),
        pod_problems,
    ),
    "sessionizer above partitions": (
        _set(lambda d: (deployment(d, "sessionizer")["spec"], "replicas"), 13),
        scaling_problems,
    ),
    "fewer partitions": (_set(lambda d: (config(d), "JUMP_PARTITIONS"), "2"), scaling_problems),
    "HPA above partitions": (
        _set(lambda d: (one(d, "HorizontalPodAutoscaler")["spec"], "maxReplicas"), 13),
        scaling_problems,
    ),
    "HPA on CPU": (
        _set(
            lambda d: (one(d, "HorizontalPodAutoscaler")["spec"], "metrics"),
            [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        ),
        scaling_problems,
    ),
    "two trainers": (_set(lambda d: (deployment(d, "trainer")["spec"], "replicas"), 2), scaling_problems),
    "rolling trainer": (
        _set(lambda d: (deployment(d, "trainer")["spec"], "strategy"), {"type": "RollingUpdate"}),
        scaling_problems,
    ),
    "no GPU": (
        _drop(lambda d: (_container(d, "inference")["resources"]["limits"], "nvidia.com/gpu")),
        lambda d: gpu_problems(d, with_cpu_patch(d)),
    ),
    "GPU on the sessionizer": (
        _set(lambda d: (_container(d, "sessionizer")["resources"]["limits"], "nvidia.com/gpu"), 1),
        lambda d: gpu_problems(d, with_cpu_patch(d)),
    ),
    "models read-write in inference": (
        _drop(lambda d: (_container(d, "inference")["volumeMounts"][0], "readOnly")),
        volume_problems,
    ),
    "models read-only in trainer": (
        _set(lambda d: (_container(d, "trainer")["volumeMounts"][0], "readOnly"), True),
        volume_problems,
    ),
    "models elsewhere": (_set(lambda d: (config(d), "JUMP_MODEL_DIR"), "/srv/models"), volume_problems),
    "models RWO": (
        _set(lambda d: (one(d, "PersistentVolumeClaim")["spec"], "accessModes"), ["ReadWriteOnce"]),
        volume_problems,
    ),
    "faust data dir not mounted": (_set(lambda d: (config(d), "JUMP_DATA_DIR"), "/data"), volume_problems),
    "trainer runs `jump train`": (
        _set(lambda d: (_container(d, "trainer"), "command"), ["jump", "train"]),
        lambda d: command_problems(d, SYNTHETIC_PROCFILE, cli_commands()),
    ),
    "component label wrong": (
        _set(lambda d: (deployment(d, "inference")["spec"]["template"]["metadata"]["labels"], COMPONENT_LABEL), "gpu"),
        label_problems,
    ),
    "name label missing": (
        _drop(lambda d: (one(d, "PersistentVolumeClaim")["metadata"]["labels"], NAME_LABEL)),
        label_problems,
    ),
    "service port renamed": (
        _set(
            lambda d: (
                next(s for s in of_kind(d, "Service") if component_of(s) == "trainer")["spec"]["ports"][0],
                "name",
            ),
            "http",
        ),
        label_problems,
    ),
    "monitor on port http": (
        _set(lambda d: (one(d, "ServiceMonitor")["spec"]["endpoints"][0], "port"), "http"),
        servicemonitor_problems,
    ),
    "monitor relabels to comp": (
        _set(lambda d: (one(d, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"][0], "targetLabel"), "comp"),
        servicemonitor_problems,
    ),
    "monitor job from the component": (
        _set(lambda d: (one(d, "ServiceMonitor")["spec"], "jobLabel"), COMPONENT_LABEL),
        servicemonitor_problems,
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_manifest_checks_catch(name, docs):
    mutate, check = BREAKAGES[name]
    assert check(docs) == [], "the unbroken manifests pass"
    mutate(docs)
    assert check(docs), f"{name} went unnoticed"


@pytest.mark.parametrize(
    "data",
    [
        {"JUMP_NOT_A_SETTING": "1"},
        {"JUMP_PARTITIONS": "zero"},
        {"JUMP_TRAINER_MODE": "sometimes"},
        {"JUMP_PARTITIONS": 12},
    ],
)
def test_configmap_check_catches(data, docs):
    assert configmap_problems({**config(docs), **data})


def test_kustomization_check_catches(tmp_path):
    for p in K8S.glob("*.yaml"):
        shutil.copy(p, tmp_path / p.name)
    assert kustomization_problems(tmp_path) == []
    (tmp_path / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert kustomization_problems(tmp_path) == ["present but not listed: extra.yaml"]
    (tmp_path / "extra.yaml").unlink()
    (tmp_path / "pdb.yaml").unlink()
    assert kustomization_problems(tmp_path) == ["listed but not present: pdb.yaml"]


def test_procfile_check_catches(docs):
    assert procfile_commands("# c\nweb: A=1 .venv/bin/jump inference --x\n") == {"web": "inference"}
    cli = cli_commands()
    assert command_problems(docs, SYNTHETIC_PROCFILE, cli) == []
    without_trainer = "\n".join(ln for ln in SYNTHETIC_PROCFILE.splitlines() if not ln.startswith("trainer:"))
    assert command_problems(docs, without_trainer, cli)
    assert command_problems(docs, SYNTHETIC_PROCFILE.replace("jump trainer", "jump train --data d"), cli)
    assert command_problems(docs, SYNTHETIC_PROCFILE, cli - {"sessionizer"})


@pytest.mark.parametrize(
    "expr",
    [
        'rate(jump_predictions{job="jump-stream"}[5m])',  # a counter without _total
        'rate(jump_click_to_prediction_seconds_total{job="jump-stream"}[5m])',  # a histogram as a counter
        'jump_consumer_lag{job="jump-stream"}',  # no such metric
        'jump_open_sessions_total{job="jump-stream"}',  # a gauge as a counter
        'sum by (reasn) (rate(jump_dead_letters_total{job="jump-stream"}[5m]))',  # unknown label
        'jump_trainer_holdout_ratio{job="jump-stream", metrc="mrr_at_20"}',  # unknown label
        'jump_trainer_holdout_metric{job="jump-stream"}',  # the old mixed-unit family, split
        'jump_trainer_holdout_dwell_mae_seconds{job="jump-stream", metric="dwell_mae_seconds"}',  # no metric label
        'jump_stream_time_seconds{job="jump-stream"}',  # renamed *_timestamp_seconds
        'process_resident_memory_bytes{job="jump-stream", device="cuda:0"}',  # unknown label
        'rate(process_cpu_seconds{job="jump-stream"}[5m])',  # a counter without _total
        "process_resident_memory_bytes",  # no job selector
        "jump_open_sessions",  # no job selector
        'jump_open_sessions{job="jump_stream"}',  # wrong job
    ],
)
def test_expr_check_catches(expr):
    assert expr_problems(expr, registry_series())


def test_dashboard_check_catches(dash):
    broken = copy.deepcopy(dash)
    broken["panels"][-1]["id"] = broken["panels"][0]["id"]
    assert any("ids" in p for p in dashboard_problems(broken))
    broken = copy.deepcopy(dash)
    next(p for p in broken["panels"] if p["type"] != "row")["targets"] = []
    assert any("no targets" in p for p in dashboard_problems(broken))
    broken = copy.deepcopy(dash)
    next(p for p in broken["panels"] if p["type"] != "row")["title"] = ""
    assert any("no title" in p for p in dashboard_problems(broken))
    broken = copy.deepcopy(dash)
    next(p for p in broken["panels"] if p["type"] != "row")["targets"][0]["expr"] += " + jump_bogus_total"
    assert any("jump_bogus_total" in p for p in dashboard_problems(broken))
    broken = copy.deepcopy(dash)
    broken["schemaVersion"] = 30
    broken["templating"]["list"] = []
    assert len(dashboard_problems(broken)) == 3
