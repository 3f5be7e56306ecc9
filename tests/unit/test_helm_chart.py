"""The Helm chart, checked offline the way a cluster would check it.

Helm's own Go library (PyPI ``helm-python-sdk``: no helm binary, no network) lints the chart and renders it
for every values file in helm/spex-monitor/ci/; every rendered manifest is validated against the Kubernetes
JSON schemas shipped by ``kubernetes-validate`` (strict: unknown fields fail) at the chart's oldest and the
newest supported Kubernetes version, or, for the Prometheus Operator CRDs that core schemas lack, against
the subset schemas in helm/crd-schemas/. Checks the API server makes but schemas cannot express (names,
labels, port and volume references) are done here too. The rendered sidecar config must load with the
pydantic ``Settings`` — the same validation ``spex-monitor serve`` does — and the chart's synced rule and
dashboard copies and its generated config schema must be current.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from spex_monitor.config import ServerConfig, Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spex-monitor"
CRD_SCHEMAS = ROOT / "helm" / "crd-schemas"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE, NAMESPACE = "demo", "ml"
LATEST_K8S = "1.37.0"


def _load(name: str) -> ModuleType:
    """Import a test-time dependency (the ``dev`` extra). Where it cannot load, skip with the reason — except
    under CI (CI=true), where the dev extra must have installed it and a skip would hide a broken setup."""
    try:
        module = importlib.import_module(name)
        if name == "helm_python":
            module.helm_sdk_version()  # loads the bundled native library
        return module
    except Exception as exc:  # ImportError, or the native library failing to load (HelmLibraryError)
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{name} cannot load: {exc} (pip install -e '.[dev]')", allow_module_level=True)


helm = _load("helm_python")
kubernetes_validate = _load("kubernetes_validate")


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------- rendering
def _values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _render(values: dict[str, Any], chart: Path = CHART, release: str = RELEASE) -> list[dict[str, Any]]:
    """Render like ``helm template``; the library also validates values.schema.json on the way."""
    with helm.Chart.load(str(chart)) as loaded:
        out = loaded.render(values, name=release, namespace=NAMESPACE)
    docs = [
        doc
        for path, text in sorted(out.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
    ]
    return [doc for doc in docs if doc]


@cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(_render(_values(CHART / "ci" / name)))


def _docs(path: Path) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(path.name)))


def _one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(_one(docs, "ConfigMap", "-config")["data"]["config.yaml"])


def _is_sidecar(docs: list[dict[str, Any]]) -> bool:
    return not any(d["kind"] == "Deployment" for d in docs)


def _with(values: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of values with dotted paths set: ``_with(v, **{"tls.enabled": True})``."""
    result = copy.deepcopy(values)
    for dotted, value in changes.items():
        node = result
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return result


# ---------------------------------------------------------------------- the serving pod the sidecar joins
SERVING_LABELS = {"serving.kserve.io/inferenceservice": "sentiment"}
MODEL_SERVER = {
    "name": "kserve-container",
    "image": "kserve/huggingfaceserver:v0.15.0",
    # A port named "grpc" on the model server: the sidecar's own port names must not collide with it.
    "ports": [{"name": "http1", "containerPort": 8080}, {"name": "grpc", "containerPort": 8081}],
}


def _merge_by_name(current: list[dict[str, Any]], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strategic-merge semantics for containers and volumes: same name replaces, a new name appends."""
    names = [item["name"] for item in added]
    return [item for item in current if item["name"] not in names] + added


def _patched_deployment(patch: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """A plain serving Deployment with the chart's deployment-patch.yaml applied."""
    template_patch = patch["spec"]["template"]
    spec = {
        "containers": _merge_by_name([copy.deepcopy(MODEL_SERVER)], template_patch["spec"]["containers"]),
        "volumes": _merge_by_name([{"name": "cache", "emptyDir": {}}], template_patch["spec"]["volumes"]),
    }
    metadata = {"labels": dict(labels), "annotations": dict(template_patch["metadata"]["annotations"])}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serving-app", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": dict(labels)}, "template": {"metadata": metadata, "spec": spec}},
    }


def _isvc_pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """The predictor pod of an InferenceService whose predictor lists kserve-container plus these containers.

    The predictor inlines a PodSpec, so the merged spec must be a valid Pod spec.
    """
    spec = {"containers": [copy.deepcopy(MODEL_SERVER), *containers], "volumes": volumes}
    metadata = {"name": "sentiment-predictor-0", "namespace": NAMESPACE, "labels": dict(SERVING_LABELS)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _sidecar_parts(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The sidecar ConfigMap's deployment patch, container and volumes."""
    data = _one(docs, "ConfigMap", "-sidecar")["data"]
    return (
        yaml.safe_load(data["deployment-patch.yaml"]),
        yaml.safe_load(data["container.yaml"]),
        yaml.safe_load(data["volumes.yaml"]),
    )


def _pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec spex-monitor runs in: its own Deployment's, or a serving Deployment patched with it."""
    if _is_sidecar(docs):
        deployment_patch, _, _ = _sidecar_parts(docs)
        return _patched_deployment(deployment_patch, {"app": "x"})["spec"]["template"]["spec"]
    return _one(docs, "Deployment")["spec"]["template"]["spec"]


def _spex_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in _pod_spec(docs)["containers"] if c["name"] == "spex-monitor")


# ------------------------------------------------------------------------------------ schema validation
def _min_k8s() -> str:
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", constraint)
    assert match, f"unexpected kubeVersion constraint {constraint!r}"
    return f"{match.group(1)}.0"


@cache
def _crd_validator(kind: str) -> jsonschema.protocols.Validator | None:
    path = CRD_SCHEMAS / f"{kind.lower()}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _validate_manifest(doc: dict[str, Any]) -> None:
    """Kubernetes' OpenAPI-derived schemas (strict) at both ends of the supported range, or our CRD subset."""
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        validator = _crd_validator(doc["kind"])
        assert validator is not None, f"no schema in helm/crd-schemas/ for {doc['kind']}"
        validator.validate(doc)
        return
    for version in (_min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(doc, version, strict=True)


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _check_metadata(doc: dict[str, Any]) -> None:
    """What the API server's validation adds to the schemas: name and label syntax and lengths."""
    meta = doc["metadata"]
    name = meta["name"]
    if doc["kind"] == "Service":
        assert DNS_1035.match(name) and len(name) <= 63, f"Service name {name!r} is not a DNS-1035 label"
    else:
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, f"{doc['kind']} name {name!r}"
    assert meta.get("namespace") == NAMESPACE, f"{doc['kind']} {name} is not in the release namespace"
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        assert LABEL_NAME.match(label) and len(label) <= 63, f"label key {key!r}"
        assert not prefix or DNS_SUBDOMAIN.match(prefix), f"label prefix {key!r}"
        assert isinstance(value, str) and len(value) <= 63, f"label {key}={value!r}"
        assert value == "" or LABEL_NAME.match(value), f"label {key}={value!r}"


def _check_pod_spec(spec: dict[str, Any]) -> None:
    """References inside a pod: mounts name volumes, probes name ports, port and volume names are valid."""
    volumes = [v["name"] for v in spec.get("volumes", [])]
    assert len(volumes) == len(set(volumes)), f"duplicate volume names {volumes}"
    assert all(DNS_LABEL.match(v) and len(v) <= 63 for v in volumes), volumes
    port_names = [p["name"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p]
    assert len(port_names) == len(set(port_names)), f"port names repeat within the pod: {port_names}"
    for container in spec["containers"]:
        ports = {p["name"] for p in container.get("ports", []) if "name" in p}
        for port in ports:
            assert PORT_NAME.match(port) and len(port) <= 15 and re.search("[a-z]", port), port
        mounts = container.get("volumeMounts", [])
        assert {m["name"] for m in mounts} <= set(volumes), f"{container['name']} mounts a missing volume"
        paths = [m["mountPath"] for m in mounts]
        assert len(paths) == len(set(paths)), f"{container['name']} mounts one path twice: {paths}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            for handler in ("tcpSocket", "httpGet"):
                port = container.get(probe, {}).get(handler, {}).get("port")
                assert not isinstance(port, str) or port in ports, f"{probe} names unknown port {port}"


def _check_references(docs: list[dict[str, Any]]) -> None:
    """Cross-object references a cluster resolves by name: Service ports, selectors, policy ports."""
    spec = _pod_spec(docs)
    _check_pod_spec(spec)
    pod_ports = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
    for doc in docs:
        kind = doc["kind"]
        if kind == "Deployment":
            template_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        elif kind == "Service":
            assert {p["targetPort"] for p in doc["spec"]["ports"]} <= pod_ports
        elif kind == "NetworkPolicy":
            named = {p["port"] for rule in doc["spec"]["ingress"] for p in rule["ports"]}
            assert named <= pod_ports, named - pod_ports
        elif kind == "ConfigMap":
            assert all(CONFIGMAP_KEY.match(key) for key in doc.get("data", {}))
            assert len(json.dumps(doc["data"]).encode()) < 1024 * 1024, "ConfigMaps hold at most 1 MiB"


# ------------------------------------------------------------------------------- per values file
def test_every_documented_values_file_is_here():
    names = {p.name for p in VALUES_FILES}
    assert {
        "standalone-local-cpu.yaml",
        "standalone-gpu.yaml",
        "sidecar-kserve-proxy.yaml",
        "sidecar-deployment.yaml",
        "with-tls-networkpolicy.yaml",
        "standalone-kserve-logger.yaml",
    } <= names
    readme = (CHART / "README.md").read_text()
    for name in names:
        assert f"ci/{name}" in readme, f"helm/spex-monitor/README.md does not mention ci/{name}"


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_helm_lint_is_clean(values_file: Path):
    report = helm.lint(
        str(CHART), _values(values_file), strict=True, namespace=NAMESPACE, kube_version=f"v{_min_k8s()}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_rendered_manifests_are_valid_kubernetes_objects(values_file: Path):
    docs = _docs(values_file)
    kinds = [d["kind"] for d in docs]
    assert {"ConfigMap", "Service"} <= set(kinds)
    sidecar = _values(values_file).get("mode") == "sidecar"
    assert kinds.count("Deployment") == (0 if sidecar else 1)
    assert any(d["metadata"]["name"].endswith("-sidecar") for d in docs) == sidecar
    for doc in docs:
        _validate_manifest(doc)
        _check_metadata(doc)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    _check_references(docs)


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_rendered_config_loads_with_the_sidecars_own_settings(values_file: Path):
    docs = _docs(values_file)
    settings = Settings.model_validate(_config(docs))
    container = _spex_container(docs)
    # The container and the Service expose exactly the ports the config binds.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    server = settings.server
    expected = {"spex-grpc": server.grpc_port, "spex-metrics": server.metrics_port}
    if server.proxy_port is not None:
        expected["spex-proxy"] = server.proxy_port
    if server.events_port is not None:
        expected["spex-events"] = server.events_port
    assert ports == expected
    assert server.host == "0.0.0.0", "the Service and Prometheus reach the pod IP, not loopback"
    service = _one(docs, "Service")
    assert {p["port"] for p in service["spec"]["ports"]} == set(expected.values())
    # Every file the config names lies on a mounted volume (the root filesystem is read-only and bare).
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
    files = [settings.store.path, settings.baseline.file]
    files += [m.backend.path for m in settings.models if m.backend.kind == "local"]
    for tls in [server.tls, *(getattr(m.backend, "tls", None) for m in settings.models)]:
        files += [tls.cert_file, tls.key_file, tls.ca_file] if tls else []
    for path in filter(None, files):
        assert any(f"{path}/".startswith(m) for m in mounts), f"{path} is on no mounted volume {mounts}"
    # The --config file is the ConfigMap's key, mounted where the argument says.
    config_file = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spex-monitor-config")
    assert config_file.parent == Path(mount["mountPath"])
    assert config_file.name in _one(docs, "ConfigMap", "-config")["data"]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_pod_is_non_root_with_read_only_root_and_writable_tmp(values_file: Path):
    docs = _docs(values_file)
    container = _spex_container(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MALLOC_ARENA_MAX"] == "2"  # bounded heap arenas: less RSS creep under load
    volumes = {v["name"]: v for v in _pod_spec(docs)["volumes"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    if not _is_sidecar(docs):
        pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False


# ---------------------------------------------------------------------------------------- sidecar mode
SIDECAR_FILES = [p for p in VALUES_FILES if _values(p).get("mode") == "sidecar"]


@pytest.mark.parametrize("values_file", SIDECAR_FILES, ids=lambda p: p.stem)
def test_sidecar_patches_make_valid_serving_workloads(values_file: Path):
    docs = _docs(values_file)
    assert not {"Deployment", "ServiceAccount", "NetworkPolicy"} & {d["kind"] for d in docs}
    deployment_patch, container, volumes = _sidecar_parts(docs)
    selector = _values(values_file)["sidecar"]["podSelector"]
    deployment = _patched_deployment(deployment_patch, selector)
    pod = _isvc_pod([container], volumes)
    for workload in (deployment, pod):
        for version in (_min_k8s(), LATEST_K8S):
            kubernetes_validate.validate(workload, version, strict=True)
    _check_pod_spec(deployment["spec"]["template"]["spec"])
    _check_pod_spec(pod["spec"])
    # The patch and the separate container/volumes describe one sidecar.
    assert deployment_patch["spec"]["template"]["spec"] == {"containers": [container], "volumes": volumes}
    # The Service reaches the sidecar in the serving pods; the ServiceMonitor scrapes that Service.
    service = _one(docs, "Service")
    assert service["spec"]["selector"] == selector
    monitor = _one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_sidecar_readiness_gates_serving_only_in_proxy_mode():
    by_file = {p.stem: _spex_container(_docs(p)) for p in SIDECAR_FILES}
    proxied, observed = by_file["sidecar-kserve-proxy"], by_file["sidecar-deployment"]
    assert "readinessProbe" in proxied and "startupProbe" in proxied
    assert "readinessProbe" not in observed and "startupProbe" not in observed
    assert observed["livenessProbe"]["initialDelaySeconds"] >= 60, "a model load must not trip liveness"
    forced = _render(
        _with(_values(CHART / "ci" / "sidecar-deployment.yaml"), **{"sidecar.gateReadiness": True})
    )
    assert "readinessProbe" in _spex_container(forced)


def test_proxy_mode_wires_the_proxy_port_through_the_service():
    docs = _docs(CHART / "ci" / "sidecar-kserve-proxy.yaml")
    config = _config(docs)["server"]
    service_ports = {p["name"]: p for p in _one(docs, "Service")["spec"]["ports"]}
    assert service_ports["oip-proxy"]["port"] == config["proxy_port"] == 8001
    assert service_ports["oip-proxy"]["targetPort"] == "spex-proxy"
    assert config["upstream"] == "127.0.0.1:8081"


# ---------------------------------------------------------------------------------- GPU, TLS, policy
def test_gpu_values_request_the_gpu_and_schedule_on_gpu_nodes():
    docs = _docs(CHART / "ci" / "standalone-gpu.yaml")
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _spex_container(docs)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["cpu"] == "4", "user resources survive the GPU limit"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    cpu = _one(_docs(CHART / "ci" / "standalone-local-cpu.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})
    assert "runtimeClassName" not in cpu and "tolerations" not in cpu


def test_tls_mounts_the_secret_and_points_the_config_at_it():
    docs = _docs(CHART / "ci" / "with-tls-networkpolicy.yaml")
    tls = _config(docs)["server"]["tls"]
    assert tls == {
        "cert_file": "/etc/spex-monitor/tls/tls.crt",
        "key_file": "/etc/spex-monitor/tls/tls.key",
        "ca_file": "/etc/spex-monitor/tls/ca.crt",
    }
    volumes = {v["name"]: v for v in _pod_spec(docs)["volumes"]}
    assert volumes["spex-monitor-tls"]["secret"]["secretName"] == "spex-monitor-tls"
    container = _spex_container(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spex-monitor-tls")
    assert mount == {"name": "spex-monitor-tls", "mountPath": "/etc/spex-monitor/tls", "readOnly": True}
    # Kubernetes' gRPC probe cannot speak TLS: the probes fall back to TCP.
    assert "tcpSocket" in container["readinessProbe"] and "grpc" not in container["readinessProbe"]
    token = next(e for e in container["env"] if e["name"] == "SPEX_MONITOR_SERVER__ADMIN_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "spex-monitor-admin", "key": "token"}
    one_way = _render(_with(_values(CHART / "ci" / "with-tls-networkpolicy.yaml"), **{"tls.mutual": False}))
    assert "ca_file" not in _config(one_way)["server"]["tls"]


def test_network_policy_opens_only_the_declared_ports():
    docs = _docs(CHART / "ci" / "with-tls-networkpolicy.yaml")
    policy = _one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    clients, scrape = policy["ingress"]
    assert [p["port"] for p in clients["ports"]] == ["spex-grpc"]
    assert clients["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ml-serving"
    }
    assert [p["port"] for p in scrape["ports"]] == ["spex-metrics"]
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {53}, "DNS first"
    assert policy["egress"][1]["ports"] == [{"port": 8081, "protocol": "TCP"}]
    assert not any(d["kind"] == "NetworkPolicy" for d in _docs(CHART / "ci" / "standalone-local-cpu.yaml"))


def test_persistence_creates_a_kept_claim_and_recreates_the_pod():
    docs = _docs(CHART / "ci" / "standalone-local-cpu.yaml")
    claim = _one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = _one(docs, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["spex-monitor-data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    existing = _render(
        _with(_values(CHART / "ci" / "standalone-local-cpu.yaml"), **{"persistence.existingClaim": "old"})
    )
    assert not any(d["kind"] == "PersistentVolumeClaim" for d in existing)
    pod = _one(existing, "Deployment")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["spex-monitor-data"]["persistentVolumeClaim"][
        "claimName"
    ] == "old"


# ------------------------------------------------------------------------------- events receiver (KServe)
def test_events_receiver_port_reaches_config_container_and_service():
    docs = _docs(CHART / "ci" / "standalone-kserve-logger.yaml")
    settings = Settings.model_validate(_config(docs))
    assert settings.server.events_port == 8080
    ports = {p["name"]: p["containerPort"] for p in _spex_container(docs)["ports"]}
    assert ports["spex-events"] == 8080
    service_ports = {p["name"]: p for p in _one(docs, "Service")["spec"]["ports"]}
    assert service_ports["events"]["port"] == 8080 and service_ports["events"]["targetPort"] == "spex-events"
    off = _docs(CHART / "ci" / "standalone-local-cpu.yaml")
    assert "events_port" not in _config(off)["server"]
    assert "events" not in {p["name"] for p in _one(off, "Service")["spec"]["ports"]}
    # The InferenceService's logger URL the README gives is this Service's events port.
    readme = (CHART / "README.md").read_text()
    assert "url: http://<release>-spex-monitor.<namespace>.svc:8080/" in readme
    service = _one(
        _render(_values(CHART / "ci" / "standalone-kserve-logger.yaml"), release="spex-monitor"), "Service"
    )
    assert f"url: http://{service['metadata']['name']}.{NAMESPACE}.svc:8080/" in readme


# ------------------------------------------------------------------------- monitoring objects from files
def test_prometheus_rule_is_the_repositorys_rule_file():
    docs = _docs(CHART / "ci" / "sidecar-kserve-proxy.yaml")
    rule = _one(docs, "PrometheusRule")
    source = yaml.safe_load((ROOT / "prometheus" / "rules" / "spex-monitor.rules.yml").read_text())
    assert rule["spec"] == source
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    labelled = _one(_docs(CHART / "ci" / "standalone-local-cpu.yaml"), "PrometheusRule")["spec"]
    alerts = [r for g in labelled["groups"] for r in g["rules"]]
    assert len(alerts) == sum(len(g["rules"]) for g in source["groups"])
    assert all(r["labels"]["team"] == "ml-platform" and "severity" in r["labels"] for r in alerts)


def test_service_monitor_job_label_matches_the_sidecar_down_alert():
    docs = _docs(CHART / "ci" / "standalone-local-cpu.yaml")
    monitor = _one(docs, "ServiceMonitor")
    job_label = monitor["spec"]["jobLabel"]
    job = _one(docs, "Service")["metadata"]["labels"][job_label]
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "spex-monitor.rules.yml").read_text())
    expr = next(r["expr"] for g in rules["groups"] for r in g["rules"] if r["alert"] == "SidecarDown")
    pattern = re.search(r'job=~"([^"]+)"', expr).group(1)
    assert re.fullmatch(pattern, job), (pattern, job)
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def _chart_copy_with_dashboards(tmp_path: Path, dashboards: dict[str, Any]) -> Path:
    chart = tmp_path / "spex-monitor"
    shutil.copytree(CHART, chart)
    for stale in (chart / "files" / "dashboards").glob("*.json"):
        stale.unlink()
    (chart / "files" / "dashboards").mkdir(parents=True, exist_ok=True)
    for name, body in dashboards.items():
        (chart / "files" / "dashboards" / name).write_text(json.dumps(body, indent=2))
    return chart


def test_dashboards_configmap_carries_each_dashboard_with_the_grafana_label(tmp_path: Path):
    dashboards = {
        "spex-monitor-overview.json": {
            "title": "spex-monitor",
            "panels": [{"title": "{{ not a template }}"}],
        },
        "spex-monitor-oncall.json": {"title": "on-call", "panels": []},
    }
    chart = _chart_copy_with_dashboards(tmp_path, dashboards)
    values = _values(CHART / "ci" / "standalone-local-cpu.yaml")
    docs = _render(values, chart=chart)
    configmap = _one(docs, "ConfigMap", "-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "ML monitoring"}
    assert {k: json.loads(v) for k, v in configmap["data"].items()} == dashboards
    _validate_manifest(configmap)
    _check_references(docs)
    off = _render(_with(values, **{"dashboards.enabled": False}), chart=chart)
    assert not [d for d in off if d["metadata"]["name"].endswith("-dashboards")]


def test_dashboards_configmap_holds_exactly_the_repositorys_dashboards():
    docs = _docs(CHART / "ci" / "standalone-local-cpu.yaml")
    sources = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")]
    if not sources:
        assert not found, "no dashboards in grafana/dashboards/, so no ConfigMap"
        return
    assert {k: json.loads(v) for k, v in found[0]["data"].items()} == {
        p.name: json.loads(p.read_text()) for p in sources
    }


def test_grafana_alerts_configmap_carries_the_repositorys_rules_with_the_loader_label():
    values = _values(CHART / "ci" / "standalone-local-cpu.yaml")
    source = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml").read_text()
    )
    assert not [
        d
        for d in _docs(CHART / "ci" / "standalone-local-cpu.yaml")
        if "-grafana-alerts" in d["metadata"]["name"]
    ]
    docs = _render(_with(values, **{"grafanaAlerts.enabled": True}))
    configmap = _one(docs, "ConfigMap", "-grafana-alerts")
    assert configmap["metadata"]["labels"]["grafana_alert"] == "1"
    _validate_manifest(configmap)
    (body,) = configmap["data"].values()
    assert yaml.safe_load(body) == source, "defaults: the generated file unchanged"
    # The loader label, the datasource uid, the folder and routing labels are the installer's.
    custom = _render(
        _with(
            values,
            **{
                "grafanaAlerts.enabled": True,
                "grafanaAlerts.label": "alerts",
                "grafanaAlerts.labelValue": "spex",
                "grafanaAlerts.namespace": "monitoring",
                "grafanaAlerts.datasourceUid": "prometheus",
                "grafanaAlerts.folder": "ML",
                "grafanaAlerts.ruleLabels": {"team": "ml-platform"},
            },
        )
    )
    configmap = next(d for d in custom if d["metadata"]["name"].endswith("-grafana-alerts"))
    assert (
        configmap["metadata"]["labels"]["alerts"] == "spex"
        and configmap["metadata"]["namespace"] == "monitoring"
    )
    (group,) = yaml.safe_load(next(iter(configmap["data"].values())))["groups"]
    assert group["folder"] == "ML"
    (source_group,) = source["groups"]
    assert len(group["rules"]) == len(source_group["rules"])
    for rule, original in zip(group["rules"], source_group["rules"], strict=True):
        assert rule["labels"] == {**original["labels"], "team": "ml-platform"}
        query, threshold = rule["data"]
        assert query["datasourceUid"] == query["model"]["datasource"]["uid"] == "prometheus"
        assert threshold["datasourceUid"] == "__expr__", "server-side expressions keep their uid"
        assert rule["data"][0]["model"]["expr"] == original["data"][0]["model"]["expr"]


# ------------------------------------------------------------------------- one source of truth, no drift
def test_chart_copies_of_rules_and_dashboards_are_current(capsys: pytest.CaptureFixture[str]):
    code = _script("sync_chart_files").main(["--check"])
    assert code == 0, capsys.readouterr().err


def _tree(root: Path, dashboards: dict[str, str]) -> None:
    (root / "prometheus" / "rules").mkdir(parents=True)
    (root / "prometheus" / "rules" / "spex-monitor.rules.yml").write_text("groups: []\n")
    (root / "grafana" / "provisioning" / "alerting").mkdir(parents=True)
    (root / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml").write_text("apiVersion: 1\n")
    (root / "grafana" / "dashboards").mkdir(parents=True)
    for name, text in dashboards.items():
        (root / "grafana" / "dashboards" / name).write_text(text)


def test_sync_script_copies_detects_staleness_and_removes_orphans(tmp_path: Path):
    sync = _script("sync_chart_files")
    _tree(tmp_path, {"a.json": '{"title": "a"}'})
    files = tmp_path / "helm" / "spex-monitor" / "files"
    (files / "dashboards").mkdir(parents=True)
    (files / "dashboards" / "gone.json").write_text("{}")
    assert sync.main(["--check", "--root", str(tmp_path)]) == 1
    assert (files / "dashboards" / "gone.json").exists(), "--check changes nothing"
    assert sync.main(["--root", str(tmp_path)]) == 0
    assert sync.main(["--check", "--root", str(tmp_path)]) == 0
    assert (files / "dashboards" / "a.json").read_text() == '{"title": "a"}'
    assert not (files / "dashboards" / "gone.json").exists()
    (tmp_path / "prometheus" / "rules" / "spex-monitor.rules.yml").write_text(
        "groups: [{name: x, rules: []}]\n"
    )
    assert sync.main(["--check", "--root", str(tmp_path)]) == 1
    (tmp_path / "grafana" / "dashboards" / "b.json").write_text("{not json")
    with pytest.raises(SystemExit, match="b.json is not valid JSON"):
        sync.main(["--root", str(tmp_path)])
    (tmp_path / "grafana" / "dashboards" / "b.json").unlink()
    assert sync.main(["--root", str(tmp_path)]) == 0
    assert (files / "grafana-alerting" / "spex-monitor.yaml").read_text() == "apiVersion: 1\n"
    (files / "grafana-alerting" / "old.yaml").write_text("apiVersion: 1\n")
    assert sync.main(["--check", "--root", str(tmp_path)]) == 1, "an orphaned alert-rule copy"
    (tmp_path / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml").write_text("groups: [\n")
    with pytest.raises(SystemExit, match="spex-monitor.yaml is not valid YAML"):
        sync.main(["--root", str(tmp_path)])


def test_values_schema_config_is_generated_from_settings(capsys: pytest.CaptureFixture[str]):
    gen = _script("gen_chart_schema")
    assert gen.main(["--check"]) == 0, capsys.readouterr().err
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = Settings.model_json_schema()
    assert schema["$defs"] == settings["$defs"]
    assert schema["properties"]["config"]["properties"] == settings["properties"]


def test_schema_generator_detects_a_changed_settings_model(tmp_path: Path):
    gen = _script("gen_chart_schema")
    stale = tmp_path / "values.schema.json"
    current = json.loads((CHART / "values.schema.json").read_text())
    del current["$defs"]["ServerConfig"]["properties"]["grpc_port"]
    stale.write_text(json.dumps(current))
    assert gen.main(["--check", "--schema", str(stale)]) == 1
    assert gen.main(["--schema", str(stale)]) == 0
    assert gen.main(["--check", "--schema", str(stale)]) == 0
    assert json.loads(stale.read_text())["properties"]["mode"] == current["properties"]["mode"], (
        "hand part kept"
    )


# ------------------------------------------------------------------------ what an install must refuse
def _error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        _render(values)
    return str(caught.value)


def test_default_values_ask_for_a_model():
    assert "/config/models" in _error({})


BASE = CHART / "ci" / "standalone-local-cpu.yaml"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"persistance": {"enabled": True}}, "additional properties 'persistance'"),
        ({"config.server.grpc_prot": 1}, "additional properties 'grpc_prot'"),
        ({"config.engine.budget": 8}, "/config/engine/budget"),
        ({"config.models": [{"name": "m", "backend": {"kind": "oip", "endpoints": ["h:1"]}}]}, "model_name"),
        ({"mode": "daemonset"}, "/mode"),
        ({"config.server.proxy_port": 8001}, "upstream"),
        ({"config.server.admin_token": "s3cret"}, "adminToken.existingSecret"),
        ({"config.server.events_port": 8080}, "events.enabled"),
        ({"config.server.grpc_port": 0}, "fixed port"),
        ({"tls.enabled": True}, "tls.secretName"),
        ({"config.store.path": "spex-monitor.db"}, "persistence.mountPath"),
        ({"replicaCount": 2}, "one writer"),
        ({"mode": "sidecar"}, "sidecar.podSelector"),
        (
            {"mode": "sidecar", "sidecar.podSelector": {"app": "x"}, "networkPolicy.enabled": True},
            "standalone",
        ),
        (
            {
                "gpu.enabled": True,
                "config.models": [
                    {"name": "m", "backend": {"kind": "oip", "endpoints": ["h:1"], "model_name": "m"}}
                ],
            },
            "backend.kind local",
        ),
        ({"serviceMonitor.enabled": True, "service.enabled": False}, "service.enabled"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_install_refuses_bad_values_naming_the_knob(changes: dict[str, Any], message: str):
    assert message in _error(_with(_values(BASE), **changes))


def test_port_fallbacks_are_the_settings_defaults():
    """A null port (Helm drops the key) leaves it to Settings' default; the pod must declare that one."""
    values = _with(_values(BASE), **{"config.server.grpc_port": None, "config.server.metrics_port": None})
    docs = _render(values)
    assert not {"grpc_port", "metrics_port"} & set(_config(docs)["server"])
    defaults = ServerConfig()
    ports = {p["name"]: p["containerPort"] for p in _spex_container(docs)["ports"]}
    assert ports == {"spex-grpc": defaults.grpc_port, "spex-metrics": defaults.metrics_port}


def test_long_release_names_keep_every_name_valid_and_distinct():
    release = "a-rather-long-release-name-for-the-interaction-monitor-x"
    docs = _render(_values(CHART / "ci" / "sidecar-kserve-proxy.yaml"), release=release)
    for doc in docs:
        _check_metadata(doc)
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert len(set(names)) == len(names) and all(len(n) <= 63 for n in names)
    for suffix in ("-sidecar", "-config"):
        assert any(n.endswith(suffix) for n in names), f"the {suffix} suffix was cut off: {names}"


# ------------------------------------------------------------------------------------------- the README
BAGS = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "probes.startup",
    "probes.readiness",
    "probes.liveness",
}


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml's knobs; Kubernetes-shaped objects passed through whole are one knob."""
    if isinstance(node, dict) and node and prefix not in BAGS:
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def test_readme_documents_every_values_knob():
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"`([A-Za-z0-9_.]+)`", readme))
    missing = [p for p in _leaf_paths(_values(CHART / "values.yaml")) if p not in documented]
    assert not missing, f"helm/spex-monitor/README.md lacks: {missing}"


def _readme_snippet(name: str) -> dict[str, Any]:
    readme = (CHART / "README.md").read_text()
    match = re.search(rf"<!-- snippet: {name} .*?-->\n```yaml\n(.*?)```", readme, re.S)
    assert match, f"README snippet {name} not found"
    return yaml.safe_load(match.group(1))


@pytest.mark.parametrize(
    ("snippet", "values_name"),
    [("deployment-sidecar", "sidecar-deployment.yaml"), ("kserve-sidecar", "sidecar-kserve-proxy.yaml")],
)
def test_readme_sidecar_snippets_are_valid_and_match_the_rendered_sidecar(snippet: str, values_name: str):
    values = _values(CHART / "ci" / values_name)
    _, container, volumes = _sidecar_parts(_render(values, release="spex-monitor"))
    doc = _readme_snippet(snippet)
    if doc["kind"] == "Deployment":
        workload, spec = doc, doc["spec"]["template"]["spec"]
        assert (
            values["sidecar"]["podSelector"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        )
    else:
        spec = doc["spec"]["predictor"]
        assert spec["containers"][0]["name"] == "kserve-container"
        workload = _isvc_pod(spec["containers"][1:], spec["volumes"])
        workload["spec"]["containers"][0] = spec["containers"][0]
    for version in (_min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(workload, version, strict=True)
    _check_pod_spec(workload["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else workload["spec"])
    shown = next(c for c in spec["containers"] if c["name"] == "spex-monitor")
    for key, value in shown.items():
        assert value == container[key], f"README {snippet}: {key} differs from the chart's container.yaml"
    assert spec["volumes"] == volumes, f"README {snippet}: volumes differ from the chart's volumes.yaml"
