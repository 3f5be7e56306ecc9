"""The chart as a platform team reviews it before production (issue 24): probes that never take serving down,
per-pod state, no port clashes, CPU kept for serving, Pod Security "restricted", an install that works on a
real cluster, state across restarts. Every refused combination fails with a message naming the value.

What Kubernetes itself does with these pods (the kubelet's probes, readiness, evictions) cannot run here; the
tests check the rendered objects against the rules the docs cite, e.g. that a container's readiness counts
towards its pod's (regular containers and native sidecars alike: the kubelet's
GenerateContainersReadyCondition), which is why readiness gates only where serving traffic flows through
the sidecar.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import (
    CHART,
    LATEST_K8S,
    MODEL_SERVER,
    VALUES_FILES,
    check_pod_spec,
    ci_docs,
    helm,
    is_sidecar,
    isvc_pod,
    kubernetes_validate,
    load_values,
    min_k8s,
    notes,
    one,
    pod_spec,
    render,
    sidecar_config,
    sidecar_parts,
    spex_container,
    validate_manifest,
    with_changes,
)

pytestmark = pytest.mark.unit

SIDECAR_FILES = [p for p in VALUES_FILES if load_values(p).get("mode") == "sidecar"]
STANDALONE = CHART / "ci" / "standalone-local-cpu.yaml"
OBSERVE_SIDECAR = CHART / "ci" / "sidecar-deployment.yaml"
PROXY_SIDECAR = CHART / "ci" / "sidecar-kserve-proxy.yaml"
# A KServe predictor pod in Serverless mode: the model server, Knative's queue-proxy, KServe's agent.
QUEUE_PROXY = {
    "name": "queue-proxy",
    "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.15.0",
    "ports": [
        {"name": "http-queueadm", "containerPort": 8022},
        {"name": "http-autometric", "containerPort": 9090},
        {"name": "http-usermetric", "containerPort": 9091},
        {"name": "queue-port", "containerPort": 8012},
        {"name": "https-port", "containerPort": 8112},
        {"name": "profiling", "containerPort": 8008},
    ],
}
AGENT = {
    "name": "agent",
    "image": "kserve/agent:v0.15.0",
    "ports": [{"name": "agent-port", "containerPort": 9081}],
}


def _error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


# ------------------------------------------------------------------------------------- probes (items 2, 3)
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_every_mode_probes_the_http_health_endpoints_with_a_startup_budget(values_file: Path):
    container = spex_container(ci_docs(values_file))
    health = {"path": "/healthz", "port": "spex-metrics"}
    if load_values(values_file).get("tls", {}).get("enabled"):  # the metrics port inherits server.tls
        health["scheme"] = "HTTPS"
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    assert startup["httpGet"] == health and liveness["httpGet"] == health
    # Liveness waits for startup, so no initial delay; the startup budget covers the model load.
    assert "initialDelaySeconds" not in liveness
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert not {"tcpSocket", "grpc", "exec"} & set(container.get(probe, {})), (
            probe,
            "one idle TCP check",
        )
    if load_values(values_file).get("probes", {}).get("startup"):  # sized to a slow model load
        assert startup["periodSeconds"] * startup["failureThreshold"] == 900


def test_readiness_gates_the_pod_only_where_serving_traffic_flows_through_the_sidecar():
    ready = {"path": "/readyz", "port": "spex-metrics"}
    assert spex_container(ci_docs(STANDALONE))["readinessProbe"]["httpGet"] == ready
    assert spex_container(ci_docs(PROXY_SIDECAR))["readinessProbe"]["httpGet"] == ready
    assert "readinessProbe" not in spex_container(ci_docs(OBSERVE_SIDECAR)), "Observe mode: never gates"
    forced = render(with_changes(load_values(OBSERVE_SIDECAR), **{"sidecar.gateReadiness": True}))
    assert spex_container(forced)["readinessProbe"]["httpGet"] == ready
    off = render(with_changes(load_values(PROXY_SIDECAR), **{"sidecar.gateReadiness": False}))
    assert "readinessProbe" not in spex_container(off)
    disabled = spex_container(render(with_changes(load_values(STANDALONE), **{"probes.enabled": False})))
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(disabled)


def test_readme_says_what_a_monitor_failure_does_to_serving_in_each_mode():
    readme = (CHART / "README.md").read_text()
    section = readme.split("## What a monitor failure does to serving", 1)[1].split("\n## ", 1)[0]
    for mode in ("standalone", "sidecar, Observe", "sidecar, OIP-V2 proxy", "KServe inference logger"):
        assert mode in section, mode
    for failure in ("crash", "OOM", "image pull", "Secret"):
        assert failure in section, failure
    assert "GenerateContainersReadyCondition" in section, "the kubelet rule the design rests on"


# --------------------------------------------------------------------------------- per-pod state (items 1, 8)
def test_sidecar_mode_refuses_a_shared_claim():
    message = _error(with_changes(load_values(OBSERVE_SIDECAR), **{"persistence.enabled": True}))
    assert "persistence.enabled in mode sidecar" in message and "ReadWriteOnce" in message


def test_store_emptydir_is_sized_to_the_stores_own_cap():
    volumes = {v["name"]: v for v in pod_spec(ci_docs(OBSERVE_SIDECAR))["volumes"]}
    max_bytes = sidecar_config(ci_docs(OBSERVE_SIDECAR))["store"]["max_bytes"]
    limit = volumes["spex-monitor-data"]["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi") and int(limit[:-2]) * 2**20 >= 2 * max_bytes + 64 * 2**20
    assert limit == "1089Mi", "512 MiB store: 2 x 512 + 65"
    uncapped = render(with_changes(load_values(OBSERVE_SIDECAR), **{"config.store.max_bytes": None}))
    assert (
        "sizeLimit"
        not in {v["name"]: v for v in pod_spec(uncapped)["volumes"]}["spex-monitor-data"]["emptyDir"]
    )


@pytest.mark.parametrize(("source", "kind"), [("configMap", "configMap"), ("secret", "secret")])
def test_pinned_baseline_is_mounted_and_the_config_points_at_it(source: str, kind: str):
    values = with_changes(
        load_values(OBSERVE_SIDECAR),
        **{"baseline.pinned": {source: "reviews-v3-baseline", "key": "v3.bin"}},
    )
    docs = render(values)
    assert sidecar_config(docs)["baseline"]["file"] == "/etc/spex-monitor/baseline/v3.bin"
    volume = {v["name"]: v for v in pod_spec(docs)["volumes"]}["spex-monitor-baseline"]
    name_key = "name" if kind == "configMap" else "secretName"
    assert volume[kind][name_key] == "reviews-v3-baseline"
    assert volume[kind]["items"] == [{"key": "v3.bin", "path": "v3.bin"}]
    mount = next(m for m in spex_container(docs)["volumeMounts"] if m["name"] == "spex-monitor-baseline")
    assert mount == {
        "name": "spex-monitor-baseline",
        "mountPath": "/etc/spex-monitor/baseline",
        "readOnly": True,
    }


def test_learning_the_baseline_from_traffic_is_an_explicit_choice_with_the_way_to_pin_it():
    values = with_changes(load_values(OBSERVE_SIDECAR), **{"baseline.pinned.configMap": ""})
    message = _error(values)
    assert "no pinned baseline" in message and "baseline.learnFromTraffic" in message
    learned = with_changes(values, **{"baseline.learnFromTraffic": True})
    assert "file" not in (sidecar_config(render(learned)).get("baseline") or {})
    text = notes(learned)
    assert "spex-monitor baseline export" in text and "baseline.pinned.configMap" in text


def test_pod_disruption_budget_protects_the_one_standalone_pod():
    docs = ci_docs(STANDALONE)
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    deployment = one(docs, "Deployment")
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    changes = {"podDisruptionBudget.minAvailable": None, "podDisruptionBudget.maxUnavailable": 1}
    other = render(with_changes(load_values(STANDALONE), **changes))
    assert one(other, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": budget["spec"]["selector"],
    }
    assert not [
        d for d in ci_docs(CHART / "ci" / "standalone-gpu.yaml") if d["kind"] == "PodDisruptionBudget"
    ]


# ----------------------------------------------------------------------------------------- CPU (item 4)
def test_cpu_request_is_sized_for_the_explain_workers_unless_given():
    def cpu(values: dict[str, Any]) -> str:
        return spex_container(render(values))["resources"]["requests"]["cpu"]

    proxy = load_values(PROXY_SIDECAR)
    assert cpu(proxy) == "750m", "250m + 1 worker x 500m"
    assert cpu(with_changes(proxy, **{"config.server.workers": 3})) == "1750m"
    assert cpu(with_changes(proxy, **{"cpuRequest.perWorker": 1})) == "1250m", "quantities in cores too"
    local = with_changes(load_values(STANDALONE), **{"resources.requests": {"memory": "2Gi"}})
    assert cpu(local) == "1250m", "the local backend's torch_threads (2) per worker"
    assert cpu(load_values(STANDALONE)) == "2", "an explicit request wins"


def test_sidecar_examples_send_ablations_to_replicas_that_serve_no_live_traffic():
    for path in SIDECAR_FILES:
        config = sidecar_config(ci_docs(path))
        for model in config["models"]:
            for endpoint in model["backend"].get("endpoints", []):
                assert not endpoint.startswith(("127.", "localhost:", "[::1]:")), (path.name, endpoint)
        assert config["budget"]["max_latency_s"] > 0, (path.name, "the latency signal gates the budget")


def test_ablating_the_serving_container_is_refused_unless_chosen_with_a_latency_gate():
    values = with_changes(load_values(PROXY_SIDECAR))
    values["config"]["models"][0]["backend"]["endpoints"] = ["127.0.0.1:8081"]
    message = _error(values)
    assert "config.models[0].backend.endpoints" in message and "sidecar.ablateServingContainer" in message
    chosen = with_changes(values, **{"sidecar.ablateServingContainer": True})
    assert sidecar_config(render(chosen))["models"][0]["backend"]["endpoints"] == ["127.0.0.1:8081"]
    chosen["config"]["budget"].pop("max_latency_s")
    assert "config.budget.max_latency_s" in _error(chosen)


# ---------------------------------------------------------------------------------------- ports (item 5)
def _predictor_pod(sidecar: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    pod = isvc_pod([sidecar], volumes)
    pod["spec"]["containers"][1:1] = [copy.deepcopy(QUEUE_PROXY), copy.deepcopy(AGENT)]
    return pod


@pytest.mark.parametrize("events", [False, True], ids=["events-off", "events-on"])
@pytest.mark.parametrize("values_file", SIDECAR_FILES, ids=lambda p: p.stem)
def test_sidecar_ports_never_clash_with_a_kserve_predictor_pod(values_file: Path, events: bool):
    values = with_changes(load_values(values_file), **{"events.enabled": events})
    _, container, volumes = sidecar_parts(render(values))
    pod = _predictor_pod(container, volumes)
    numbers = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    assert len(numbers) == len(set(numbers)), sorted(numbers)
    check_pod_spec(pod["spec"])  # port names unique within the pod too
    for version in (min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(pod, version, strict=True)
    # The chart's own clash check knows every port of this pod.
    serving = {
        p["containerPort"]
        for c in pod["spec"]["containers"]
        if c["name"] != "spex-monitor"
        for p in c["ports"]
    }
    assert serving <= set(load_values(CHART / "values.yaml")["sidecar"]["servingPorts"])


@pytest.mark.parametrize(
    ("changes", "knob"),
    [
        ({"events.enabled": True, "events.port": 8080}, "events.port 8080"),
        ({"config.server.metrics_port": 9090}, "config.server.metrics_port 9090"),
        ({"config.server.proxy_port": 8081, "config.server.upstream": "127.0.0.1:8080"}, "proxy_port 8081"),
    ],
)
def test_sidecar_port_clashing_with_the_serving_pod_is_refused(changes: dict[str, Any], knob: str):
    message = _error(with_changes(load_values(OBSERVE_SIDECAR), **changes))
    assert knob in message and "sidecar.servingPorts" in message


# ------------------------------------------------------------------------------------- security (item 6)
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip


def _restricted_violations(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Pod Security Standards "restricted" (Kubernetes 1.27+) for one container in a pod."""
    problems = []
    pod_ctx, ctx = pod.get("securityContext") or {}, container.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    if ctx.get("privileged"):
        problems.append("privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    capabilities = ctx.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("capabilities.drop must include ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities.add")
    if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
        problems.append("runAsNonRoot")
    if 0 in (ctx.get("runAsUser"), pod_ctx.get("runAsUser")):
        problems.append("runAsUser 0")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile must be RuntimeDefault or Localhost")
    if any("hostPort" in p for p in container.get("ports", [])):
        problems.append("hostPort")
    return problems


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_pod_passes_pod_security_restricted(values_file: Path):
    docs = ci_docs(values_file)
    if is_sidecar(docs):
        # The serving pod may set no security context at all: the container must carry everything itself.
        _, container, volumes = sidecar_parts(docs)
        pod = {"containers": [copy.deepcopy(MODEL_SERVER), container], "volumes": volumes}
    else:
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        container = spex_container(docs)
    assert _restricted_violations(pod, container) == []


def test_tls_secret_is_readable_by_the_container_in_both_modes():
    tls = {"tls.enabled": True, "tls.secretName": "spex-monitor-tls"}
    standalone = render(with_changes(load_values(STANDALONE), **tls))
    sidecar = render(with_changes(load_values(OBSERVE_SIDECAR), **tls))
    secret = {v["name"]: v for v in pod_spec(standalone)["volumes"]}["spex-monitor-tls"]["secret"]
    pod = one(standalone, "Deployment")["spec"]["template"]["spec"]
    # 0440 owned by the pod's fsGroup: the container's uid reads it through its group.
    assert secret["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 10001
    # The serving pod sets no fsGroup: the files stay root's, so only "other" read bits let uid 10001 in.
    _, _, volumes = sidecar_parts(sidecar)
    secret = {v["name"]: v for v in volumes}["spex-monitor-tls"]["secret"]
    assert secret["defaultMode"] == 0o444


def test_image_pull_secrets_reach_the_serving_pod_in_sidecar_mode():
    docs = ci_docs(OBSERVE_SIDECAR)
    data = one(docs, "ConfigMap", "-sidecar")["data"]
    pull = [{"name": "registry-credentials"}]
    assert yaml.safe_load(data["image-pull-secrets.yaml"]) == pull
    assert (
        yaml.safe_load(data["deployment-patch.yaml"])["spec"]["template"]["spec"]["imagePullSecrets"] == pull
    )
    none = one(ci_docs(PROXY_SIDECAR), "ConfigMap", "-sidecar")["data"]
    assert "image-pull-secrets.yaml" not in none
    assert "imagePullSecrets" not in yaml.safe_load(none["deployment-patch.yaml"])["spec"]["template"]["spec"]


# -------------------------------------------------------------------------------- a real cluster (item 7)
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_operator_objects_render_only_where_the_cluster_serves_their_crds(values_file: Path):
    values = load_values(values_file)
    wanted = {k for k in ("serviceMonitor", "prometheusRule") if values.get(k, {}).get("enabled")}
    assert wanted, "every example scrapes"
    with_crds = {d["kind"] for d in ci_docs(values_file)}
    bare = render(values, api_versions=())
    assert not {"ServiceMonitor", "PrometheusRule"} & {d["kind"] for d in bare}, (
        "an install without CRDs works"
    )
    text = notes(values, api_versions=())
    for key, kind in (("serviceMonitor", "ServiceMonitor"), ("prometheusRule", "PrometheusRule")):
        assert (kind in with_crds) == (key in wanted)
        assert (f"WARNING: {key}.enabled" in text) == (key in wanted), key
    assert "WARNING" not in notes(values)
    for doc in ci_docs(values_file):
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule"):
            validate_manifest(doc)
            # kube-prometheus-stack selects them by its release label (a value; default its usual name).
            assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", doc["kind"]


@pytest.mark.parametrize("version", ["1.27.0", "1.37.0"])
def test_manifests_render_and_validate_at_both_ends_of_the_supported_range(version: str):
    for path in VALUES_FILES:
        for doc in render(load_values(path), kube_version=version):
            if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
                kubernetes_validate.validate(doc, version, strict=True)


def test_notes_list_the_objects_the_pod_needs_and_the_chart_does_not_create():
    text = notes(load_values(CHART / "ci" / "with-tls-networkpolicy.yaml"))
    for line in (
        "Secret spex-monitor-tls (tls.secretName): kubectl -n ml get secret spex-monitor-tls",
        "Secret spex-monitor-admin (adminToken.existingSecret)",
        "Secret registry-credentials (imagePullSecrets)",
        "ConfigMap fraud-v7-baseline (baseline.pinned.configMap): kubectl -n ml get configmap fraud-v7-",
    ):
        assert line in text, line


def test_kserve_selector_must_name_the_predictor_component():
    values = load_values(PROXY_SIDECAR)
    assert values["sidecar"]["podSelector"]["component"] == "predictor"
    assert one(ci_docs(PROXY_SIDECAR), "Service")["spec"]["selector"]["component"] == "predictor"
    del values["sidecar"]["podSelector"]["component"]
    assert "add component: predictor" in _error(values)


# --------------------------------------------------------------------- the refused combinations, by knob
@pytest.mark.parametrize(
    ("base", "changes", "message"),
    [
        (STANDALONE, {"replicaCount": 2}, "replicaCount 2"),
        (STANDALONE, {"podDisruptionBudget.maxUnavailable": 1}, "podDisruptionBudget: set minAvailable or"),
        (
            OBSERVE_SIDECAR,
            {"podDisruptionBudget.enabled": True},
            "podDisruptionBudget is for mode standalone",
        ),
        (
            OBSERVE_SIDECAR,
            {"baseline.pinned.secret": "x"},
            "baseline.pinned: set configMap or secret, not both",
        ),
        (
            OBSERVE_SIDECAR,
            {"config.baseline": {"file": "/x.bin"}},
            "config.baseline.file is set by the chart",
        ),
        (OBSERVE_SIDECAR, {"config.store.max_bytes": 1000}, "/config/store/max_bytes"),
        (OBSERVE_SIDECAR, {"sidecar.servingPorts": [50051]}, "config.server.grpc_port 50051 clashes"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_install_refuses_combinations_that_cannot_serve_naming_the_value(
    base: Path, changes: dict[str, Any], message: str
):
    assert message in _error(with_changes(load_values(base), **changes))
