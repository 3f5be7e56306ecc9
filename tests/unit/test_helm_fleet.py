"""The chart's shared-store and fleet knobs: the store URL with its password from a Secret (never in the
ConfigMap), the aggregator modes, and the standalone aggregator Deployment; what the chart refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from helm_support import (
    CHART,
    check_metadata,
    check_pod_spec,
    check_references,
    helm,
    load_values,
    one,
    render,
    sidecar_config,
    sidecar_parts,
    spex_container,
    validate_manifest,
    with_changes,
)

from spex_monitor.config import Settings

BASE = CHART / "ci" / "standalone-local-cpu.yaml"
URL = "postgresql://spex@pg.ml.svc:5432/spex?sslmode=verify-full"
SHARED = {"store.postgres.url": URL, "store.postgres.passwordSecret.name": "spex-pg"}


def _docs(**changes: Any) -> list[dict[str, Any]]:
    docs = render(with_changes(load_values(BASE), **changes))
    for doc in docs:
        validate_manifest(doc)
        check_metadata(doc)
    ours = [d for d in docs if d["metadata"]["name"].endswith("-aggregator")]  # its Deployment, PodMonitor
    aggregators = [d for d in ours if d["kind"] == "Deployment"]
    check_references([d for d in docs if d not in ours])  # the monitor's pod (helm_support: one)
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for deployment in aggregators:  # the aggregator's pod mounts the same config
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            assert "configMap" not in volume or volume["configMap"]["name"] in configmaps
    return docs


def _error(**changes: Any) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(with_changes(load_values(BASE), **changes))
    return str(caught.value)


def test_the_store_url_and_a_mounted_password_secret_reach_the_config():
    docs = _docs(**SHARED)
    config = sidecar_config(docs)
    settings = Settings.model_validate(config)  # max_bytes dropped: the config would refuse it with a url
    assert settings.store.url == URL and settings.store.max_bytes is None
    assert str(settings.store.password_file) == "/etc/spex-monitor/store/password"
    container = spex_container(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spex-monitor-store-password")
    assert mount["mountPath"] == "/etc/spex-monitor/store" and mount["readOnly"]
    volume = next(
        v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "spex-monitor-store-password"
    )  # fmt: skip
    assert volume["secret"]["secretName"] == "spex-pg"
    assert volume["secret"]["items"] == [{"key": "password", "path": "password"}]
    assert not any(e["name"] == "PGPASSWORD" for e in container["env"])
    assert "fleet" not in config or not config["fleet"].get("aggregate")


def test_a_shared_store_allows_replicas_and_the_sidecar_gets_the_secret_too():
    docs = _docs(**SHARED, replicaCount=3)
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    sidecar = render(load_values(CHART / "ci" / "sidecar-fleet-postgres.yaml"))
    _, container, volumes = sidecar_parts(sidecar)
    assert any(m["name"] == "spex-monitor-store-password" for m in container["volumeMounts"])
    (volume,) = [v for v in volumes if v["name"] == "spex-monitor-store-password"]
    assert volume["secret"]["defaultMode"] == 0o444  # the serving pod sets no fsGroup for uid 10001
    assert sidecar_config(sidecar)["fleet"]["aggregate"] is True  # aggregator.mode sidecars


def test_the_standalone_aggregator_is_its_own_deployment_on_the_same_config():
    docs = _docs(**SHARED, **{"aggregator.mode": "standalone"})
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 2
    aggregator = one(docs, "Deployment", "-aggregator")
    spec = aggregator["spec"]["template"]["spec"]
    check_pod_spec(spec)
    (container,) = spec["containers"]
    assert "command" not in container and container["args"][0] == "aggregate"  # `spex-monitor aggregate`
    config_path = container["args"][container["args"].index("--config") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert config_path.startswith(mounts["spex-monitor-config"] + "/")
    assert mounts["spex-monitor-store-password"] == "/etc/spex-monitor/store"
    assert spec["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert aggregator["spec"]["replicas"] == 2
    # the Service (and PDB) select the monitor's pods only, never the aggregator's
    selector = one(docs, "Service")["spec"]["selector"]
    labels = aggregator["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())
    assert aggregator["spec"]["selector"]["matchLabels"].items() <= labels.items()
    settings = Settings.model_validate(sidecar_config(docs))
    assert settings.store.url == URL and not settings.fleet.aggregate  # the sidecars only write


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aggregator.mode": "standalone"}, "needs the shared PostgreSQL store"),
        ({"aggregator.mode": "sidecars"}, "store.postgres.url"),
        ({"aggregator.mode": "sometimes"}, "/aggregator/mode"),
        ({"store.postgres.url": "postgresql://spex:hunter2@pg/spex"}, "must not carry a password"),
        ({"store.postgres.url": "mysql://spex@db/spex"}, "/store/postgres/url"),
        ({"config.store.url": URL}, "owned by the chart"),
        ({**SHARED, "config.fleet": {"aggregate": True}}, "aggregator.mode"),
        (
            {**SHARED, "aggregator.mode": "standalone", "config.windows": {"seconds": None, "requests": 100}},
            "config.fleet.window_s",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_store_and_aggregator_values_are_refused_naming_the_knob(changes: dict[str, Any], message: str):
    assert message in _error(**changes)


def test_rendered_configmap_never_holds_the_password():
    docs = _docs(**SHARED, **{"aggregator.mode": "standalone"})
    text = yaml.safe_dump(one(docs, "ConfigMap", "-config"))
    assert "password_file" in text and "hunter2" not in text and "password:" not in text


def test_the_standalone_aggregator_exports_its_fleet_series_and_is_scraped():
    docs = _docs(**SHARED, **{"aggregator.mode": "standalone"})
    aggregator = one(docs, "Deployment", "-aggregator")
    (container,) = aggregator["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    config = sidecar_config(docs)  # the same file the aggregator reads: its server.metrics_port
    metrics_port = config["server"].get("metrics_port", 9464)
    assert (port["name"], port["containerPort"]) == ("spex-metrics", metrics_port)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "spex-metrics"}
    monitor = one(docs, "PodMonitor", "-aggregator")
    labels = aggregator["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "spex-metrics"
    sidecar_only = _docs(**SHARED, **{"aggregator.mode": "sidecars"})
    assert not [d for d in sidecar_only if d["kind"] == "PodMonitor"]
