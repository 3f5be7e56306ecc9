"""Alert rules: promtool check + promtool unit tests, and every metric they use exists in the exporter."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from spex_monitor.server.metrics import Metrics

RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules"
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
}
promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian 'prometheus') missing"
)


def _rules() -> list[dict]:
    return [
        r
        for g in yaml.safe_load((RULES / "spex-monitor.rules.yml").read_text())["groups"]
        for r in g["rules"]
    ]


def test_every_alert_is_defined_with_severity_runbook_and_trace_command():
    rules = {r["alert"]: r for r in _rules()}
    assert set(rules) == EXPECTED
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}
        assert rule["annotations"]["runbook_url"].endswith(f"docs/runbooks/{name}.md")
        command = re.search(r"spex-monitor (trace|baseline export)", rule["annotations"]["description"])
        assert command or name == "FaithfulnessLow", name  # on-call gets the command to run


def test_metric_names_in_rules_exist_in_the_exporter():
    exported = {m.name for m in Metrics().registry.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    for rule in _rules():
        for name in re.findall(r"spex_monitor_[a-z0-9_]+", rule["expr"]):
            assert name in exported, (rule["alert"], name)


@promtool
def test_promtool_check_and_unit_tests_pass():
    check = subprocess.run(
        ["promtool", "check", "rules", "spex-monitor.rules.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "9 rules found" in check.stdout
    tests = subprocess.run(
        ["promtool", "test", "rules", "spex-monitor.rules.test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
