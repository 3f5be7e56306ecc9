"""Alert rules, from their one source (scripts/dashboards/alerts.py) to both targets.

Prometheus: promtool checks the generated rules and runs the hand-written unit tests beside them. Grafana:
the provisioning file must decode into the grafana-foundation-sdk's alerting types (no field the SDK does
not know, nothing lost on the way back), every Prometheus alert must have a Grafana twin with an equal
expression, ``for``, severity and annotations, and every twin must link to a time series panel that shows
what it alerts on. No Grafana server can run here (no Debian or PyPI package ships one), so what Grafana
itself does with the file is not tested; whether each rule's query returns series from a real Prometheus,
and fires where the Prometheus rule fires, is tests/integration/test_dashboards_prometheus.py.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import expr as em
from grafana_foundation_sdk.models import prometheus as pm
from test_dashboards import metric_names

from spex_monitor.server.metrics import Metrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules"
GRAFANA_RULES = ROOT / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml"
EXAMPLES = ROOT / "grafana" / "alerting-examples"
DASHBOARDS = ROOT / "grafana" / "dashboards"
EXPECTED = {
    "InteractionShiftDetected",
    "FaithfulnessLow",
    "ExplanationBudgetExhausted",
    "SidecarDroppingSamples",
    "BackendReplicaDown",
    "InputDrift",
    "OutputDrift",
    "SidecarDown",
    "StoreDegraded",
    "GenerationContextShareDropped",
}
# Fields of a rule and a group in Grafana's alerting file provisioning (AlertRuleV1 / AlertRuleGroupV1 in
# grafana/pkg/services/provisioning/alerting/rules_types.go); anything else is silently ignored by Grafana.
FILE_RULE_FIELDS = {
    "uid", "title", "condition", "data", "dashboardUid", "panelId", "noDataState", "execErrState", "for",
    "keepFiringFor", "annotations", "labels", "isPaused", "notification_settings", "record",
}  # fmt: skip
FILE_GROUP_FIELDS = {"orgId", "name", "folder", "interval", "rules"}
COMPARISONS = {"gt": ">", "lt": "<", "gte": ">=", "lte": "<=", "eq": "==", "ne": "!="}


@functools.cache
def _generator():
    path = ROOT / "scripts" / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _alerts():
    _generator()  # puts scripts/ on sys.path
    return importlib.import_module("dashboards.alerts")


def _rules() -> list[dict]:
    return [
        r
        for g in yaml.safe_load((RULES / "spex-monitor.rules.yml").read_text())["groups"]
        for r in g["rules"]
    ]


def _grafana() -> dict:
    return yaml.safe_load(GRAFANA_RULES.read_text())


def _grafana_rules() -> dict[str, dict]:
    return {rule["title"]: rule for group in _grafana()["groups"] for rule in group["rules"]}


def _json(model) -> object:  # noqa: ANN001 - any SDK model
    return json.loads(json.dumps(model, cls=JSONEncoder))


def _seconds(duration: str | None) -> int:
    """A Prometheus duration (``15m``, ``1h30m``, ``0s``; absent = 0) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration or "0s")
    assert "".join(n + u for n, u in parts) == (duration or "0s"), duration
    return int(sum(int(n) * units[u] for n, u in parts))


# ----------------------------------------------------------------------------------------------- Prometheus
def test_every_alert_is_defined_with_severity_runbook_and_the_trace_command_for_its_labels():
    definitions = {alert.name: alert for alert in _alerts().ALERTS}
    rules = {r["alert"]: r for r in _rules()}
    assert set(rules) == set(definitions) == EXPECTED
    for name, rule in rules.items():
        labels = definitions[name].labels + definitions[name].optional
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}
        assert rule["annotations"]["runbook_url"].endswith(f"docs/runbooks/{name}.md")
        assert (ROOT / "docs" / "runbooks" / f"{name}.md").is_file(), name
        description = rule["annotations"]["description"]
        assert re.search(r"spex-monitor (trace|baseline export) ", description), name  # on-call's command
        # The exact command for the instance: the labels the alert carries fill in model and version.
        if "model" in labels:
            assert "spex-monitor trace --model {{ $labels.model }}" in description, name
        if "version" in labels:
            assert "--version {{ $labels.version }}" in description, name
        for label in re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])):
            assert label in labels, (name, label, "an annotation names a label the alert does not carry")
        for label in definitions[name].optional:  # may be empty: used only under {{ if $labels.x }}
            for text in rule["annotations"].values():
                outside = re.sub(r"\{\{ if \$labels\.(\w+) \}\}.*?\{\{ end \}\}", "", text)
                assert f"$labels.{label}" not in outside, (name, label, text)


def test_metric_names_in_rules_exist_in_the_exporter():
    exported = {m.name for m in Metrics().registry.collect()}
    suffixes = ("_total", "_bucket", "_sum", "_count")  # counters' and histograms' sample names
    exported |= {f"{name}{suffix}" for name in exported for suffix in suffixes}
    for rule in _rules():
        names = re.findall(r"spex_monitor_[a-z0-9_]+", rule["expr"])
        assert names or rule["alert"] == "SidecarDown", rule["alert"]
        for name in names:
            assert name in exported, (rule["alert"], name)


def test_promtool_check_and_unit_tests_pass():
    if shutil.which("promtool") is None:
        message = "promtool (Debian package 'prometheus', `make system-deps`) is not installed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    check = subprocess.run(
        ["promtool", "check", "rules", "spex-monitor.rules.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(EXPECTED)} rules found" in check.stdout
    tests = subprocess.run(
        ["promtool", "test", "rules", "spex-monitor.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "spex-monitor.rules.test.yml").read_text()))
    assert tested == EXPECTED, f"alerts without a promtool test: {EXPECTED - tested}"


# --------------------------------------------------------------------------------------------------- Grafana
def test_grafana_provisioning_decodes_into_the_sdk_alerting_types():
    document = _grafana()
    assert document["apiVersion"] == 1 and set(document) == {"apiVersion", "groups"}
    (group,) = document["groups"]
    assert set(group) == FILE_GROUP_FIELDS and group["orgId"] == 1 and _seconds(group["interval"]) == 60
    uids = set()
    for rule in group["rules"]:
        assert set(rule) <= FILE_RULE_FIELDS, (rule["title"], set(rule) - FILE_RULE_FIELDS)
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", rule["uid"]) and rule["uid"] not in uids
        uids.add(rule["uid"])
        # The rule in the SDK's (HTTP API) shape decodes into am.Rule and encodes back unchanged.
        api = _generator_module("grafana_alerting").to_api(rule)
        assert _json(am.Rule.from_json(copy.deepcopy(api))) == api, rule["title"]
        query, threshold = rule["data"]
        assert _json(pm.Dataquery.from_json(copy.deepcopy(query["model"]))) == query["model"]
        assert _json(em.TypeThreshold.from_json(copy.deepcopy(threshold["model"]))) == threshold["model"]
        assert query["model"]["instant"] is True and query["model"]["range"] is False
        assert query["datasourceUid"] == query["model"]["datasource"]["uid"] == "spex-prometheus"
        assert threshold["datasourceUid"] == "__expr__" and threshold["model"]["expression"] == "A"
        assert rule["condition"] == "B" and rule["noDataState"] == "OK"


def _generator_module(name: str):  # noqa: ANN202
    _generator()
    return importlib.import_module(f"dashboards.{name}")


def test_every_prometheus_alert_has_a_grafana_twin_with_equal_expression_and_for():
    twins = _grafana_rules()
    assert set(twins) == {r["alert"] for r in _rules()}
    for rule in _rules():
        twin = twins[rule["alert"]]
        query, threshold = twin["data"]
        (condition,) = threshold["model"]["conditions"]
        evaluator = condition["evaluator"]
        (value,) = evaluator["params"]
        rebuilt = f"{query['model']['expr']} {COMPARISONS[evaluator['type']]} {value:g}"
        assert " ".join(rebuilt.split()) == " ".join(rule["expr"].split()), rule["alert"]
        assert _seconds(twin["for"]) == _seconds(rule.get("for")), rule["alert"]
        assert twin["labels"] == rule["labels"], rule["alert"]
        grafana = {k: v.replace("$values.A.Value", "$value") for k, v in twin["annotations"].items()}
        assert grafana == rule["annotations"], rule["alert"]


def test_grafana_annotations_use_grafana_template_values_and_no_environment_variables():
    for title, rule in _grafana_rules().items():
        text = json.dumps(rule["annotations"])
        assert not re.search(r"\$value\b", text), (
            title,
            "$value is Prometheus's; Grafana's is $values.A.Value",
        )
        # Grafana expands ${VAR} in provisioned annotations from its environment.
        assert "${" not in text, title


def test_each_grafana_rule_links_to_the_time_series_panel_that_shows_it():
    dashboards = {d["uid"]: d for d in (json.loads(p.read_text()) for p in DASHBOARDS.glob("*.json"))}
    for title, rule in _grafana_rules().items():
        panels = {p["id"]: p for p in dashboards[rule["dashboardUid"]]["panels"]}
        panel = panels[rule["panelId"]]
        assert panel["type"] == "timeseries", (title, panel["title"])
        links = {link["url"] for link in panel.get("links", [])}
        assert any(url.endswith(f"/{title}.md") for url in links), (title, panel["title"], "runbook link")
        shown = set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
        alerted = metric_names(rule["data"][0]["model"]["expr"])
        assert alerted <= shown, (title, panel["title"], alerted - shown)
        if "model" in _alerts().BY_NAME[title].labels:
            assert rule["dashboardUid"] == "spex-monitor-model", (
                title,
                "per-model alerts link the drill-down",
            )


def test_example_contact_point_and_policy_decode_into_sdk_types_and_route_the_rules():
    points = yaml.safe_load((EXAMPLES / "contact-points.yaml").read_text())
    (point,) = points["contactPoints"]
    for receiver in point["receivers"]:
        api = {**receiver, "name": point["name"]}
        assert _json(am.ContactPoint.from_json(copy.deepcopy(api))) == api
    policies = yaml.safe_load((EXAMPLES / "notification-policies.yaml").read_text())
    (root,) = policies["policies"]
    tree = {k: v for k, v in root.items() if k != "orgId"}
    assert _json(am.NotificationPolicy.from_json(copy.deepcopy(tree))) == tree
    (group,) = _grafana()["groups"]
    (route,) = [r for r in tree["routes"] if ["grafana_folder", "=", group["folder"]] in r["object_matchers"]]
    assert route["receiver"] == point["name"]
    assert "model" in route["group_by"], "one notification per model"
    assert _seconds(route["repeat_interval"]) >= 4 * 3600, "a drift alarm persists: no reminder storm"
    severities = {r["labels"]["severity"] for r in _grafana_rules().values()}
    for sub in route.get("routes", []):
        for name, op, value in sub["object_matchers"]:
            assert name != "severity" or (op == "=" and value in severities), sub
