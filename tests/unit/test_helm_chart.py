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

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_support import (
    CHART,
    LATEST_K8S,
    NAMESPACE,
    ROOT,
    VALUES_FILES,
    check_metadata,
    check_pod_spec,
    check_references,
    ci_docs,
    helm,
    is_sidecar,
    isvc_pod,
    kubernetes_validate,
    load_script,
    load_values,
    min_k8s,
    one,
    patched_deployment,
    pod_spec,
    render,
    sidecar_config,
    sidecar_parts,
    spex_container,
    validate_inference_service,
    validate_manifest,
    with_changes,
)

from spex_monitor.config import ServerConfig, Settings


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
        "sidecar-fleet-postgres.yaml",
        "standalone-vllm-openai.yaml",
    } <= names
    readme = (CHART / "README.md").read_text()
    for name in names:
        assert f"ci/{name}" in readme, f"helm/spex-monitor/README.md does not mention ci/{name}"


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_helm_lint_is_clean(values_file: Path):
    report = helm.lint(
        str(CHART), load_values(values_file), strict=True, namespace=NAMESPACE, kube_version=f"v{min_k8s()}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_rendered_manifests_are_valid_kubernetes_objects(values_file: Path):
    docs = ci_docs(values_file)
    kinds = [d["kind"] for d in docs]
    assert {"ConfigMap", "Service"} <= set(kinds)
    sidecar = load_values(values_file).get("mode") == "sidecar"
    assert kinds.count("Deployment") == (0 if sidecar else 1)
    assert any(d["metadata"]["name"].endswith("-sidecar") for d in docs) == sidecar
    for doc in docs:
        validate_manifest(doc)
        check_metadata(doc)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    check_references(docs)


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_rendered_config_loads_with_the_sidecars_own_settings(values_file: Path):
    docs = ci_docs(values_file)
    settings = Settings.model_validate(sidecar_config(docs))
    container = spex_container(docs)
    # The container and the Service expose exactly the ports the config binds.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    server = settings.server
    expected = {"spex-grpc": server.grpc_port, "spex-metrics": server.metrics_port}
    if server.proxy_port is not None:
        expected["spex-proxy"] = server.proxy_port
    if server.events_port is not None:
        expected["spex-events"] = server.events_port
    if server.openai_proxy_port is not None:
        expected["spex-openai"] = server.openai_proxy_port
    assert ports == expected
    assert server.host == "0.0.0.0", "the Service and Prometheus reach the pod IP, not loopback"
    service = one(docs, "Service")
    assert {p["port"] for p in service["spec"]["ports"]} == set(expected.values())
    # Every file the config names lies on a mounted volume (the root filesystem is read-only and bare).
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
    files = [settings.store.path, settings.baseline.file]
    files += [m.backend.path for m in settings.models if m.backend.kind in ("local", "causal")]
    files += [m.backend.tokenizer_path for m in settings.models if m.backend.kind == "openai"]
    for tls in [server.tls, *(getattr(m.backend, "tls", None) for m in settings.models)]:
        files += [tls.cert_file, tls.key_file, tls.ca_file] if tls else []
    for path in filter(None, files):
        assert any(f"{path}/".startswith(m) for m in mounts), f"{path} is on no mounted volume {mounts}"
    # The --config file is the ConfigMap's key, mounted where the argument says.
    config_file = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spex-monitor-config")
    assert config_file.parent == Path(mount["mountPath"])
    assert config_file.name in one(docs, "ConfigMap", "-config")["data"]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.stem)
def test_pod_is_non_root_with_read_only_root_and_writable_tmp(values_file: Path):
    docs = ci_docs(values_file)
    container = spex_container(docs)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MALLOC_ARENA_MAX"] == "2"  # bounded heap arenas: less RSS creep under load
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    if not is_sidecar(docs):
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False


# ---------------------------------------------------------------------------------------- sidecar mode
SIDECAR_FILES = [p for p in VALUES_FILES if load_values(p).get("mode") == "sidecar"]


@pytest.mark.parametrize("values_file", SIDECAR_FILES, ids=lambda p: p.stem)
def test_sidecar_patches_make_valid_serving_workloads(values_file: Path):
    docs = ci_docs(values_file)
    assert not {"Deployment", "ServiceAccount", "NetworkPolicy"} & {d["kind"] for d in docs}
    deployment_patch, container, volumes = sidecar_parts(docs)
    selector = load_values(values_file)["sidecar"]["podSelector"]
    deployment = patched_deployment(deployment_patch, selector)
    pod = isvc_pod([container], volumes)
    for workload in (deployment, pod):
        for version in (min_k8s(), LATEST_K8S):
            kubernetes_validate.validate(workload, version, strict=True)
    check_pod_spec(deployment["spec"]["template"]["spec"])
    check_pod_spec(pod["spec"])
    # The patch and the separate container/volumes (and pull secrets) describe one sidecar.
    pull = yaml.safe_load(one(docs, "ConfigMap", "-sidecar")["data"].get("image-pull-secrets.yaml", "null"))
    expected = {"containers": [container], "volumes": volumes} | ({"imagePullSecrets": pull} if pull else {})
    assert deployment_patch["spec"]["template"]["spec"] == expected
    # The Service reaches the sidecar in the serving pods; the ServiceMonitor scrapes that Service.
    service = one(docs, "Service")
    assert service["spec"]["selector"] == selector
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_proxy_mode_wires_the_proxy_port_through_the_service():
    docs = ci_docs(CHART / "ci" / "sidecar-kserve-proxy.yaml")
    config = sidecar_config(docs)["server"]
    service_ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports["oip-proxy"]["port"] == config["proxy_port"] == 8001
    assert service_ports["oip-proxy"]["targetPort"] == "spex-proxy"
    assert config["upstream"] == "127.0.0.1:8081"


def test_openai_proxy_mode_fronts_vllm_through_the_service():
    docs = ci_docs(CHART / "ci" / "standalone-vllm-openai.yaml")
    config = sidecar_config(docs)
    service_ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports["openai-proxy"]["port"] == config["server"]["openai_proxy_port"] == 8000
    assert service_ports["openai-proxy"]["targetPort"] == "spex-openai"
    assert config["server"]["openai_upstream"] == "http://vllm.llm-serving.svc:8000"
    (model,) = Settings.model_validate(config).models
    backend = model.backend
    assert (model.lens.kind, backend.kind, backend.served_model) == ("prompt", "openai", "rag-llm")
    container = spex_container(docs)
    names = {e["name"]: e for e in container.get("env", [])}
    assert names["LLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vllm-api-key"


# ---------------------------------------------------------------------------------- GPU, TLS, policy
def test_gpu_values_request_the_gpu_and_schedule_on_gpu_nodes():
    docs = ci_docs(CHART / "ci" / "standalone-gpu.yaml")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spex_container(docs)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["cpu"] == "4", "user resources survive the GPU limit"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    cpu = one(ci_docs(CHART / "ci" / "standalone-local-cpu.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})
    assert "runtimeClassName" not in cpu and "tolerations" not in cpu


def test_tls_mounts_the_secret_and_points_the_config_at_it():
    docs = ci_docs(CHART / "ci" / "with-tls-networkpolicy.yaml")
    tls = sidecar_config(docs)["server"]["tls"]
    assert tls == {
        "cert_file": "/etc/spex-monitor/tls/tls.crt",
        "key_file": "/etc/spex-monitor/tls/tls.key",
        "ca_file": "/etc/spex-monitor/tls/ca.crt",
    }
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["spex-monitor-tls"]["secret"]["secretName"] == "spex-monitor-tls"
    container = spex_container(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spex-monitor-tls")
    assert mount == {"name": "spex-monitor-tls", "mountPath": "/etc/spex-monitor/tls", "readOnly": True}
    # The metrics port inherits server.tls: the probes (kubelet does not verify the certificate) ask HTTPS.
    ready = {"path": "/readyz", "port": "spex-metrics", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == ready
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    token = next(e for e in container["env"] if e["name"] == "SPEX_MONITOR_SERVER__ADMIN_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "spex-monitor-admin", "key": "token"}
    one_way = render(
        with_changes(load_values(CHART / "ci" / "with-tls-networkpolicy.yaml"), **{"tls.mutual": False})
    )
    assert "ca_file" not in sidecar_config(one_way)["server"]["tls"]
    plain_metrics = render(
        with_changes(
            load_values(CHART / "ci" / "with-tls-networkpolicy.yaml"), **{"config.server.metrics_tls": "off"}
        )
    )
    assert "scheme" not in spex_container(plain_metrics)["startupProbe"]["httpGet"]  # HTTP, the default


def test_service_monitor_scrapes_https_with_the_given_tls_config_when_the_metrics_port_serves_tls():
    """Before: tls.enabled made the metrics port serve TLS (it inherits server.tls) while the probes and the
    ServiceMonitor still asked plain HTTP, so the pod never became ready."""
    values = with_changes(
        load_values(CHART / "ci" / "standalone-local-cpu.yaml"),
        **{
            "tls.enabled": True,
            "tls.secretName": "spex-monitor-tls",
            "serviceMonitor.tlsConfig": {"ca": {"secret": {"name": "spex-monitor-tls", "key": "ca.crt"}}},
        },
    )
    endpoint = one(render(values), "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "spex-monitor-tls", "key": "ca.crt"}}}
    plain = one(ci_docs(CHART / "ci" / "standalone-local-cpu.yaml"), "ServiceMonitor")["spec"]["endpoints"][0]
    assert plain["scheme"] == "http" and "tlsConfig" not in plain


def test_network_policy_opens_only_the_declared_ports():
    docs = ci_docs(CHART / "ci" / "with-tls-networkpolicy.yaml")
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    clients, scrape = policy["ingress"]
    assert [p["port"] for p in clients["ports"]] == ["spex-grpc"]
    assert clients["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ml-serving"
    }
    assert [p["port"] for p in scrape["ports"]] == ["spex-metrics"]
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {53}, "DNS first"
    assert policy["egress"][1]["ports"] == [{"port": 8081, "protocol": "TCP"}]
    assert not any(d["kind"] == "NetworkPolicy" for d in ci_docs(CHART / "ci" / "standalone-local-cpu.yaml"))


def test_persistence_creates_a_kept_claim_and_recreates_the_pod():
    docs = ci_docs(CHART / "ci" / "standalone-local-cpu.yaml")
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["spex-monitor-data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    existing = render(
        with_changes(
            load_values(CHART / "ci" / "standalone-local-cpu.yaml"), **{"persistence.existingClaim": "old"}
        )
    )
    assert not any(d["kind"] == "PersistentVolumeClaim" for d in existing)
    pod = one(existing, "Deployment")["spec"]["template"]["spec"]
    assert {v["name"]: v for v in pod["volumes"]}["spex-monitor-data"]["persistentVolumeClaim"][
        "claimName"
    ] == "old"


# ------------------------------------------------------------------------------- events receiver (KServe)
def test_events_receiver_port_reaches_config_container_and_service():
    docs = ci_docs(CHART / "ci" / "standalone-kserve-logger.yaml")
    settings = Settings.model_validate(sidecar_config(docs))
    assert settings.server.events_port == 9465, "the default: not 8080, KServe's model HTTP port"
    ports = {p["name"]: p["containerPort"] for p in spex_container(docs)["ports"]}
    assert ports["spex-events"] == 9465
    service_ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    assert service_ports["events"]["port"] == 9465 and service_ports["events"]["targetPort"] == "spex-events"
    off = ci_docs(CHART / "ci" / "standalone-local-cpu.yaml")
    assert "events_port" not in sidecar_config(off)["server"]
    assert "events" not in {p["name"] for p in one(off, "Service")["spec"]["ports"]}
    # The InferenceService's logger URL the README gives is this Service's events port.
    readme = (CHART / "README.md").read_text()
    assert "url: http://<release>-spex-monitor.<namespace>.svc:9465/" in readme
    service = one(
        render(load_values(CHART / "ci" / "standalone-kserve-logger.yaml"), release="spex-monitor"), "Service"
    )
    assert f"url: http://{service['metadata']['name']}.{NAMESPACE}.svc:9465/" in readme


# ------------------------------------------------------------------------- monitoring objects from files
def test_prometheus_rule_is_the_repositorys_rule_file():
    docs = ci_docs(CHART / "ci" / "sidecar-kserve-proxy.yaml")
    rule = one(docs, "PrometheusRule")
    source = yaml.safe_load((ROOT / "prometheus" / "rules" / "spex-monitor.rules.yml").read_text())
    assert rule["spec"] == source
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    labelled = one(ci_docs(CHART / "ci" / "standalone-local-cpu.yaml"), "PrometheusRule")["spec"]
    alerts = [r for g in labelled["groups"] for r in g["rules"]]
    assert len(alerts) == sum(len(g["rules"]) for g in source["groups"])
    assert all(r["labels"]["team"] == "ml-platform" and "severity" in r["labels"] for r in alerts)


def test_service_monitor_job_label_matches_the_sidecar_down_alert():
    docs = ci_docs(CHART / "ci" / "standalone-local-cpu.yaml")
    monitor = one(docs, "ServiceMonitor")
    job_label = monitor["spec"]["jobLabel"]
    job = one(docs, "Service")["metadata"]["labels"][job_label]
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
    values = load_values(CHART / "ci" / "standalone-local-cpu.yaml")
    docs = render(values, chart=chart)
    configmap = one(docs, "ConfigMap", "-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "ML monitoring"}
    assert {k: json.loads(v) for k, v in configmap["data"].items()} == dashboards
    validate_manifest(configmap)
    check_references(docs)
    off = render(with_changes(values, **{"dashboards.enabled": False}), chart=chart)
    assert not [d for d in off if d["metadata"]["name"].endswith("-dashboards")]


def test_dashboards_configmap_holds_exactly_the_repositorys_dashboards():
    docs = ci_docs(CHART / "ci" / "standalone-local-cpu.yaml")
    sources = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")]
    if not sources:
        assert not found, "no dashboards in grafana/dashboards/, so no ConfigMap"
        return
    assert {k: json.loads(v) for k, v in found[0]["data"].items()} == {
        p.name: json.loads(p.read_text()) for p in sources
    }


def test_grafana_alerts_configmap_carries_the_repositorys_rules_with_the_loader_label():
    values = load_values(CHART / "ci" / "standalone-local-cpu.yaml")
    source = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml").read_text()
    )
    assert not [
        d
        for d in ci_docs(CHART / "ci" / "standalone-local-cpu.yaml")
        if "-grafana-alerts" in d["metadata"]["name"]
    ]
    docs = render(with_changes(values, **{"grafanaAlerts.enabled": True}))
    configmap = one(docs, "ConfigMap", "-grafana-alerts")
    assert configmap["metadata"]["labels"]["grafana_alert"] == "1"
    validate_manifest(configmap)
    (body,) = configmap["data"].values()
    assert yaml.safe_load(body) == source, "defaults: the generated file unchanged"
    # The loader label, the datasource uid, the folder and routing labels are the installer's.
    custom = render(
        with_changes(
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
    code = load_script("sync_chart_files").main(["--check"])
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
    sync = load_script("sync_chart_files")
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
    gen = load_script("gen_chart_schema")
    assert gen.main(["--check"]) == 0, capsys.readouterr().err
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings = Settings.model_json_schema()
    assert schema["$defs"] == settings["$defs"]
    assert schema["properties"]["config"]["properties"] == settings["properties"]


def test_schema_generator_detects_a_changed_settings_model(tmp_path: Path):
    gen = load_script("gen_chart_schema")
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
        render(values)
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
        ({"replicaCount": 2}, "more than one replica needs a shared store"),
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
    assert message in _error(with_changes(load_values(BASE), **changes))


def test_port_fallbacks_are_the_settings_defaults():
    """A null port (Helm drops the key) leaves it to Settings' default; the pod must declare that one."""
    values = with_changes(
        load_values(BASE), **{"config.server.grpc_port": None, "config.server.metrics_port": None}
    )
    docs = render(values)
    assert not {"grpc_port", "metrics_port"} & set(sidecar_config(docs)["server"])
    defaults = ServerConfig()
    ports = {p["name"]: p["containerPort"] for p in spex_container(docs)["ports"]}
    assert ports == {"spex-grpc": defaults.grpc_port, "spex-metrics": defaults.metrics_port}


def test_long_release_names_keep_every_name_valid_and_distinct():
    release = "a-rather-long-release-name-for-the-interaction-monitor-x"
    docs = render(load_values(CHART / "ci" / "sidecar-kserve-proxy.yaml"), release=release)
    for doc in docs:
        check_metadata(doc)
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    assert len(set(names)) == len(names) and all(len(n) <= 63 for n in names)
    for suffix in ("-sidecar", "-config"):
        assert any(n.endswith(suffix) for n in names), f"the {suffix} suffix was cut off: {names}"


# ------------------------------------------------------------------------------------------- the README
BAGS = {
    "resources",
    "aggregator.resources",
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
    missing = [p for p in _leaf_paths(load_values(CHART / "values.yaml")) if p not in documented]
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
    values = load_values(CHART / "ci" / values_name)
    _, container, volumes = sidecar_parts(render(values, release="spex-monitor"))
    doc = _readme_snippet(snippet)
    if doc["kind"] == "Deployment":
        workload, spec = doc, doc["spec"]["template"]["spec"]
        assert (
            values["sidecar"]["podSelector"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        )
    else:
        validate_inference_service(doc)
        spec = doc["spec"]["predictor"]
        assert spec["containers"][0]["name"] == "kserve-container"
        workload = isvc_pod(spec["containers"][1:], spec["volumes"])
        workload["spec"]["containers"][0] = spec["containers"][0]
    pull = yaml.safe_load(
        one(render(values), "ConfigMap", "-sidecar")["data"].get("image-pull-secrets.yaml", "[]")
    )
    assert spec.get("imagePullSecrets", []) == pull, f"README {snippet}: imagePullSecrets"
    for version in (min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(workload, version, strict=True)
    check_pod_spec(workload["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else workload["spec"])
    shown = next(c for c in spec["containers"] if c["name"] == "spex-monitor")
    for key, value in shown.items():
        assert value == container[key], f"README {snippet}: {key} differs from the chart's container.yaml"
    assert spec["volumes"] == volumes, f"README {snippet}: volumes differ from the chart's volumes.yaml"


def test_readme_shadow_predictor_is_a_valid_inference_service_and_the_proxy_examples_ablation_target():
    doc = _readme_snippet("kserve-shadow")
    validate_inference_service(doc)
    predictor = doc["spec"]["predictor"]
    pod = isvc_pod([], predictor.get("volumes", []))
    pod["spec"]["containers"] = predictor["containers"]
    for version in (min_k8s(), LATEST_K8S):
        kubernetes_validate.validate(pod, version, strict=True)
    (model,) = sidecar_config(ci_docs(CHART / "ci" / "sidecar-kserve-proxy.yaml"))["models"]
    assert model["backend"]["endpoints"] == [
        f"{doc['metadata']['name']}-predictor.{doc['metadata']['namespace']}.svc:8081"
    ]
    serving = _readme_snippet("kserve-sidecar")
    assert not {"logger", "transformer"} & set(doc["spec"]), "the shadow takes no live traffic"
    assert predictor["containers"][0]["args"] == serving["spec"]["predictor"]["containers"][0]["args"], (
        "same model"
    )


def test_the_default_image_is_the_one_make_image_builds():
    """Issue 24: the chart's default image (repository + appVersion) is scripts/build_image.py's default
    reference (its repository + the version in pyproject.toml), so `make image` builds what installs pull."""
    build_image = load_script("build_image")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = load_values(CHART / "values.yaml")
    assert values["image"]["repository"] == build_image.DEFAULT_REPOSITORY
    assert not values["image"]["tag"] and not values["image"]["digest"]  # the appVersion decides
    assert chart["appVersion"] == build_image.project_version()
    container = spex_container(ci_docs(CHART / "ci" / "standalone-local-cpu.yaml"))
    assert container["image"] == f"{build_image.DEFAULT_REPOSITORY}:{build_image.project_version()}"
