"""Grafana dashboards: the committed JSON is what the generator renders, and it only speaks of real things.

Real things: metrics the exporter registers, runbooks that exist, datasources the provisioning files define,
panels the README explains. Whether each query returns data: tests/integration/test_dashboards_prometheus.py.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from spex_monitor.server.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RUNBOOKS = ROOT / "docs" / "runbooks"
DS_TYPES = {"DS_PROMETHEUS": "prometheus", "DS_SPEX_SIDECAR": "yesoreyeram-infinity-datasource"}
# Not exported by the sidecar but by Prometheus itself for every scrape target.
PROMETHEUS_SERIES = {"up"}


@functools.cache
def _generator():
    """scripts/ is not a package: load the generator by path, as `python scripts/build_dashboards.py` does."""
    path = ROOT / "scripts" / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("build_dashboards", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def _panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _promql(dashboard: dict) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"])
            assert match, ("only label_values(selector, label) variables are used", variable["query"])
            yield f"variable {variable['name']}", match.group(1)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACED = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.])[A-Za-z_:][\w:]*")  # not the unit of a duration like 5m
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left after dropping strings, {matchers}, [ranges]
    and grouping clauses that are neither a function call nor a keyword."""
    stripped = _GROUPING.sub(" ", _BRACED.sub(" ", _STRING.sub('""', expr)))
    names = set()
    for match in _IDENT.finditer(stripped):
        if stripped[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def _exported() -> set[str]:
    """Series names as Prometheus stores them: counters get _total, histograms _bucket/_sum/_count."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {f"{m.name}{s}" for m in Metrics().registry.collect() for s in suffixes[m.type]}


def test_metric_name_parser_finds_metrics_and_nothing_else():
    expr = (
        "histogram_quantile(0.5, sum by (model, le) "
        '(rate(a_bucket{model=~"$model", x="y z"}[$__rate_interval])))'
        " / on (model) group_left sum without (lens) (b_total offset 5m) and c == bool 1"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names('d{model="$model"} * 2.5e3') == {"d"}


def test_committed_json_is_what_the_generator_renders():
    rendered = _generator().render_all()
    committed = {path.name for path in DASHBOARDS.glob("*.json")}
    assert set(rendered) == committed, "run scripts/build_dashboards.py"
    for name, body in rendered.items():
        assert (DASHBOARDS / name).read_text() == body, f"{name} is stale: run scripts/build_dashboards.py"


def test_every_generated_file_is_current(capsys):
    """Dashboards, Prometheus rules and Grafana alerting files: what CI regenerates with --check."""
    assert _generator().main(["--check"]) == 0, capsys.readouterr().err


def test_generator_check_mode_flags_stale_missing_and_orphaned_files(tmp_path):
    generator = _generator()
    assert generator.main(["--root", str(tmp_path)]) == 0
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == set(generator.outputs())
    generated_rules = {
        "prometheus/rules/spex-monitor.rules.yml",
        "grafana/provisioning/alerting/spex-monitor.yaml",
    }
    assert generated_rules <= written
    assert generator.main(["--check", "--root", str(tmp_path)]) == 0
    first = sorted((tmp_path / "grafana" / "dashboards").glob("*.json"))[0]
    body = first.read_text()
    first.write_text(body.replace("spex_monitor_", "spex_monitr_", 1))
    assert generator.main(["--check", "--root", str(tmp_path)]) == 1
    first.write_text(body)
    rules = tmp_path / "prometheus" / "rules" / "spex-monitor.rules.yml"
    rules.unlink()
    assert generator.main(["--check", "--root", str(tmp_path)]) == 1, "a missing file is stale"
    assert generator.main(["--root", str(tmp_path)]) == 0 and rules.is_file()
    orphan = tmp_path / "grafana" / "provisioning" / "alerting" / "hand-written.yaml"
    orphan.write_text("apiVersion: 1\n")
    assert generator.main(["--check", "--root", str(tmp_path)]) == 1, "an orphan in a generated folder"


def test_every_metric_a_dashboard_queries_is_exported():
    exported = _exported() | PROMETHEUS_SERIES
    used = set()
    for name, dashboard in _dashboards().items():
        for title, expr in _promql(dashboard):
            names = metric_names(expr)
            assert names, (name, title, expr)
            assert names <= exported, (name, title, names - exported)
            used |= names
    # The dashboards show every family the exporter has (a new metric needs a panel or a reason here).
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert {m.name for m in Metrics().registry.collect()} <= families


def test_dashboards_are_self_contained_with_uid_and_datasource_variables():
    uids = set()
    for name, dashboard in _dashboards().items():
        assert dashboard["uid"] and dashboard["uid"] not in uids, name
        uids.add(dashboard["uid"])
        assert "spex-monitor" in dashboard["tags"]
        assert dashboard.get("id") is None, "provisioned dashboards must not pin a database id"
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        for panel in _panels(dashboard):
            refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            for ref in filter(None, refs):
                variable = ref["uid"].removeprefix("${").removesuffix("}")
                assert variable in DS_TYPES, (name, panel["title"], ref)
                assert variables[variable]["type"] == "datasource"
                assert variables[variable]["query"] == ref["type"] == DS_TYPES[variable]
        ids = [panel["id"] for panel in _panels(dashboard)]
        assert len(ids) == len(set(ids)), name


def test_panels_tile_the_grid_without_overlap():
    for name, dashboard in _dashboards().items():
        taken: set[tuple[int, int]] = set()
        for panel in _panels(dashboard):
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (name, panel["title"])
            cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
            assert not cells & taken, (name, panel["title"])
            taken |= cells


def test_runbook_links_exist_and_match_the_alert_rules():
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "spex-monitor.rules.yml").read_text())
    alert_urls = {r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]}
    base = _generator().RUNBOOKS
    assert all(url.startswith(base) for url in alert_urls), "dashboards and alert rules disagree on runbooks"
    runbooks = {path.name for path in RUNBOOKS.glob("*.md")}
    for name, dashboard in _dashboards().items():
        linked = set(re.findall(re.escape(base) + r"([A-Za-z]+\.md)", json.dumps(dashboard)))
        assert linked <= runbooks, (name, linked - runbooks)
        if dashboard["uid"] == "spex-monitor-model":
            assert linked == runbooks, ("the drill-down links every runbook", runbooks - linked)


def test_provisioning_defines_the_datasources_and_dashboard_folder():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "spex-monitor.yaml").read_text())
    provisioned = {d["uid"]: (d["type"], d["name"]) for d in datasources["datasources"]}
    for dashboard in _dashboards().values():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "datasource":
                current = variable["current"]
                expected = (variable["query"], current["text"])
                assert provisioned.get(current["value"]) == expected, (variable["name"], current)
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "spex-monitor.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_readme_explains_every_panel(name):
    readme = (GRAFANA / "README.md").read_text()
    for panel in _panels(_dashboards()[name]):
        if panel["type"] != "row":
            assert f"**{panel['title']}**" in readme, (name, panel["title"])
