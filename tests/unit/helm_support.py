"""Rendering and checking the Helm chart offline, shared by the chart's test modules.

Helm's own Go library (PyPI ``helm-python-sdk``: no helm binary, no network) renders the chart; manifests are
validated against the Kubernetes JSON schemas shipped by ``kubernetes-validate`` (strict: unknown fields
fail) at the chart's oldest and the newest supported Kubernetes version, or, for the Prometheus Operator CRDs
that core schemas lack, against the subset schemas in helm/crd-schemas/; checks the API server makes but
schemas cannot express (names, labels, port and volume references) are here too, and so are the serving
pods the sidecar joins (a plain Deployment, a KServe predictor).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spex-monitor"
CRD_SCHEMAS = ROOT / "helm" / "crd-schemas"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE, NAMESPACE = "demo", "ml"
LATEST_K8S = "1.37.0"


def load_dependency(name: str) -> ModuleType:
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


helm = load_dependency("helm_python")
kubernetes_validate = load_dependency("kubernetes_validate")


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------- rendering
def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


# A cluster with the Prometheus Operator's CRDs (kube-prometheus-stack): what the ci/ values files target.
OPERATOR_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)


def render_files(
    values: dict[str, Any],
    chart: Path = CHART,
    release: str = RELEASE,
    api_versions: tuple[str, ...] = OPERATOR_APIS,
    kube_version: str | None = None,
) -> dict[str, str]:
    """Render like ``helm template --api-versions ... --kube-version ...``; the library also validates
    values.schema.json on the way. helm-python-sdk 0.2.2's ``Chart.render`` does not pass those two options
    through, though its native ``helm_render`` takes them: call that, as ``Chart.render`` does."""
    options: dict[str, Any] = {"name": release, "namespace": NAMESPACE, "api_versions": list(api_versions)}
    if kube_version is not None:
        options["kube_version"] = f"v{kube_version}"
    with helm.Chart.load(str(chart)) as loaded:
        return json.loads(
            helm._native.call_string("helm_render", loaded._raw(), json.dumps(values), json.dumps(options))
        )


def render(values: dict[str, Any], chart: Path = CHART, release: str = RELEASE, **options: Any) -> list[dict]:
    out = render_files(values, chart, release, **options)
    docs = [
        doc
        for path, text in sorted(out.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
    ]
    return [doc for doc in docs if doc]


def notes(values: dict[str, Any], **options: Any) -> str:
    return next(text for path, text in render_files(values, **options).items() if path.endswith("NOTES.txt"))


@cache
def rendered_ci(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(load_values(CHART / "ci" / name)))


def ci_docs(path: Path) -> list[dict[str, Any]]:
    return copy.deepcopy(list(rendered_ci(path.name)))


def one(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} *{suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def sidecar_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "ConfigMap", "-config")["data"]["config.yaml"])


def is_sidecar(docs: list[dict[str, Any]]) -> bool:
    return not any(d["kind"] == "Deployment" for d in docs)


def with_changes(values: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of values with dotted paths set: ``with_changes(v, **{"tls.enabled": True})``."""
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


def merge_by_name(current: list[dict[str, Any]], added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strategic-merge semantics for containers and volumes: same name replaces, a new name appends."""
    names = [item["name"] for item in added]
    return [item for item in current if item["name"] not in names] + added


def patched_deployment(patch: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """A plain serving Deployment with the chart's deployment-patch.yaml applied."""
    template_patch = patch["spec"]["template"]
    spec = {
        "containers": merge_by_name([copy.deepcopy(MODEL_SERVER)], template_patch["spec"]["containers"]),
        "volumes": merge_by_name([{"name": "cache", "emptyDir": {}}], template_patch["spec"]["volumes"]),
    }
    if "imagePullSecrets" in template_patch["spec"]:
        spec["imagePullSecrets"] = merge_by_name([], template_patch["spec"]["imagePullSecrets"])
    metadata = {"labels": dict(labels), "annotations": dict(template_patch["metadata"]["annotations"])}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serving-app", "namespace": NAMESPACE},
        "spec": {"selector": {"matchLabels": dict(labels)}, "template": {"metadata": metadata, "spec": spec}},
    }


def isvc_pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """The predictor pod of an InferenceService whose predictor lists kserve-container plus these containers.

    The predictor inlines a PodSpec, so the merged spec must be a valid Pod spec.
    """
    spec = {"containers": [copy.deepcopy(MODEL_SERVER), *containers], "volumes": volumes}
    metadata = {"name": "sentiment-predictor-0", "namespace": NAMESPACE, "labels": dict(SERVING_LABELS)}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def sidecar_parts(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The sidecar ConfigMap's deployment patch, container and volumes."""
    data = one(docs, "ConfigMap", "-sidecar")["data"]
    return (
        yaml.safe_load(data["deployment-patch.yaml"]),
        yaml.safe_load(data["container.yaml"]),
        yaml.safe_load(data["volumes.yaml"]),
    )


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec spex-monitor runs in: its own Deployment's, or a serving Deployment patched with it."""
    if is_sidecar(docs):
        deployment_patch, _, _ = sidecar_parts(docs)
        return patched_deployment(deployment_patch, {"app": "x"})["spec"]["template"]["spec"]
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def spex_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(c for c in pod_spec(docs)["containers"] if c["name"] == "spex-monitor")


# ------------------------------------------------------------------------------------ schema validation
def min_k8s() -> str:
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", constraint)
    assert match, f"unexpected kubeVersion constraint {constraint!r}"
    return f"{match.group(1)}.0"


@cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator | None:
    path = CRD_SCHEMAS / f"{kind.lower()}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_manifest(doc: dict[str, Any]) -> None:
    """Kubernetes' OpenAPI-derived schemas (strict) at both ends of the supported range, or our CRD subset."""
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        validator = crd_validator(doc["kind"])
        assert validator is not None, f"no schema in helm/crd-schemas/ for {doc['kind']}"
        validator.validate(doc)
        return
    for version in (min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(doc, version, strict=True)


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def check_metadata(doc: dict[str, Any]) -> None:
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


def check_pod_spec(spec: dict[str, Any]) -> None:
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


def check_references(docs: list[dict[str, Any]]) -> None:
    """Cross-object references a cluster resolves by name: Service ports, selectors, policy ports."""
    spec = pod_spec(docs)
    check_pod_spec(spec)
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


# ------------------------------------------------------------------------------ KServe's v1beta1 schema
def _model_class(name: str) -> type:
    """An OpenAPI model class by name: KServe's own (kserve.models, generated from its v1beta1 OpenAPI
    schema) or Kubernetes' (kubernetes.client.models) that KServe's types embed."""
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no OpenAPI model {name}")


def _check_openapi(value: Any, type_name: str, where: str) -> None:
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str, "date": str}
    if type_name == "object":
        return
    if type_name in scalars:
        assert isinstance(value, scalars[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        ), f"{where}: {value!r} is not {type_name}"
        return
    if match := re.fullmatch(r"(?:list|List)\[(.+)\]", type_name):
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            _check_openapi(item, match.group(1), f"{where}[{index}]")
        return
    if match := re.fullmatch(r"(?:dict|Dict)\((?:str|string), *(.+)\)|Dict\[str, *(.+)\]", type_name):
        assert isinstance(value, dict), f"{where}: expected a mapping"
        inner = match.group(1) or match.group(2)
        for key, item in value.items():
            if inner == "str" and isinstance(item, int | float):  # quantities may be written as numbers
                continue
            _check_openapi(item, inner, f"{where}.{key}")
        return
    cls = _model_class(type_name)
    assert isinstance(value, dict), f"{where}: expected a {type_name} mapping"
    fields = {json_name: cls.openapi_types[attr] for attr, json_name in cls.attribute_map.items()}
    for key, item in value.items():
        assert key in fields, f"{where}.{key}: not a field of {type_name}"
        _check_openapi(item, fields[key], f"{where}.{key}")


def validate_inference_service(doc: dict[str, Any]) -> None:
    """Strict structural check of an InferenceService against KServe's v1beta1 types (unknown fields fail);
    its predictor's pod spec is checked by the Kubernetes schemas separately (isvc_pod)."""
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    _check_openapi(doc, "V1beta1InferenceService", "InferenceService")
