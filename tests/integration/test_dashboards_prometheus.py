"""Every Grafana panel's query and every alert rule's data query, run against a real Prometheus that scraped
a running sidecar.

The sidecar sees a baseline window of plain reviews, then a window of negated reviews with another label
and confidence (the interaction shift, input and output drift the shift/drift panels plot), sampled-out
requests (the drops panel), one KServe inference-logger event pair (the receiver panels) and one malformed
event (a drop that loses data, what SidecarDroppingSamples counts). Then each PromQL target is run as a
Grafana panel runs it (a range query, template variables substituted) and must return a series with a
finite value carrying the labels its legend names; the variables' label_values queries must resolve; the
drill-down's Infinity table must find rows in the sidecar's JSON endpoint. Each Grafana alert rule's query
(grafana/provisioning/alerting) must return series carrying the alert's labels, and its threshold step,
applied as Grafana applies it, must select exactly the series the Prometheus rule's expression returns —
at the alert's own threshold and at each value the series hold (no Grafana can run here; the threshold
step is modelled from its documented evaluator types).
"""

from __future__ import annotations

import functools
import http.client
import importlib
import importlib.util
import json
import math
import operator
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from spex_monitor.client import MonitorClient
from spex_monitor.examples.grounded import make_example
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.examples.tiny_lm import model_path as lm_path
from spex_monitor.monitor.sampling import unit_hash

from .prometheus_harness import (
    SCRAPE_INTERVAL_S,
    api,
    label_values,
    prometheus_stack,
    query_range,
    requires_prometheus,
    sidecar_settings,
    wait_for,
)

pytestmark = [pytest.mark.integration, requires_prometheus]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
GRAFANA_RULES = ROOT / "grafana" / "provisioning" / "alerting" / "spex-monitor.yaml"
# Grafana's threshold evaluator types (grafana_foundation_sdk.models.expr) as comparisons.
EVALUATORS = {
    "gt": operator.gt,
    "lt": operator.lt,
    "gte": operator.ge,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}
PROMQL = {"gt": ">", "lt": "<", "gte": ">=", "lte": "<=", "eq": "==", "ne": "!="}
MODEL, VERSION, SEED = "sentiment", "v1", 0
LLM_MODEL = "llm"  # the LLM beside the classifier (see the stack fixture)
SAMPLING_RATE = 0.8
WINDOW = 20
# What Grafana substitutes: $__rate_interval = max($__interval + scrape, 4 x scrape) at a 1 s step.
VARIABLES = {
    "__rate_interval": f"{4 * SCRAPE_INTERVAL_S}s",
    "model": MODEL,
    "version": VERSION,
    "version:singlequote": f"'{VERSION}'",
}
# Panels allowed to come back empty, with the reason. None today: the harness drives every series.
EXCEPTIONS: dict[str, str] = {}


def _request_ids(prefix: str, n: int, sampled: bool) -> list[str]:
    """Ids the sampler (stable hash of seed and id) keeps, or drops as sampled_out: exact window contents."""
    ids, i = [], 0
    while len(ids) < n:
        rid = f"{prefix}{i}"
        if (unit_hash(rid, SEED) < SAMPLING_RATE) == sampled:
            ids.append(rid)
        i += 1
    return ids


def _observe(port: int, ids: list[str], texts: list[str], label: str, confidence: float) -> None:
    with MonitorClient(f"127.0.0.1:{port}") as client:
        for rid, text in zip(ids, texts, strict=False):
            client.observe(rid, MODEL, label, text=text, confidence=confidence)
        client.flush()


def _observe_generations(port: int, indices: range) -> None:
    """Grounded RAG generations for the LLM model (documents and question as named segments)."""
    with MonitorClient(f"127.0.0.1:{port}") as client:
        for index in indices:
            example = make_example(np.random.default_rng(index), injection_rate=0.0)
            client.observe_generation(
                f"gen-{index}", LLM_MODEL, example.answers["base"], messages=example.messages,
                segments=example.segments,
            )  # fmt: skip
        client.flush()


def _post_logger_pair(port: int) -> None:
    """One request/response pair as KServe's inference logger posts it (binary CloudEvents, same ce-id)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for kind, data in (("request", {"instances": ["the cast was dull"]}), ("response", {"predictions": [0]})):
        attributes = {
            "type": f"org.kubeflow.serving.inference.{kind}",
            "source": "http://localhost:9081/",
            "id": "logger-pair-1",
            "inferenceservicename": MODEL,
            "datacontenttype": "application/json",
        }
        headers, body = to_binary(CloudEvent(attributes, data))
        connection.request("POST", "/", body=body, headers=headers)
        reply = connection.getresponse()
        reply.read()
        assert reply.status in (200, 202), (kind, reply.status)
    connection.close()


def _post_malformed_request(port: int) -> None:
    """A logged request whose body is no V1/V2 request: refused with 400, dropped as event_malformed."""
    attributes = {
        "type": "org.kubeflow.serving.inference.request",
        "source": "http://localhost:9081/",
        "id": "logger-malformed-1",
        "inferenceservicename": MODEL,
        "datacontenttype": "application/json",
    }
    headers, body = to_binary(CloudEvent(attributes, {"instances": 5}))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/", body=body, headers=headers)
    reply = connection.getresponse()
    reply.read()
    connection.close()
    assert reply.status == 400, reply.status


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grafana")
    model = dict(sidecar_settings(folder)["models"][0], sampling_rate=SAMPLING_RATE)
    server = {"grpc_port": 0, "metrics_port": 0, "events_port": 0, "tick_s": 0.2, "queue_per_label": 500}
    # 20 vs 20 requests give p of 0.005-0.015 for this shift; the test needs an alarm, not detection power.
    baseline = dict(sidecar_settings(folder)["baseline"], alarm_p_value=0.05)
    # an LLM beside the classifier: its explained generations feed the LLM panels
    llm = {
        "name": LLM_MODEL,
        "sampling_rate": 1.0,
        "lens": {"kind": "prompt"},
        "backend": {"kind": "causal", "path": str(lm_path("base"))},
    }
    settings = sidecar_settings(folder, models=[model, llm], server=server, baseline=baseline)
    started = time.time()
    with prometheus_stack(folder, settings) as (sidecar, base):
        texts, _ = generate_corpus(600, seed=3)
        plain = [t for t in texts if not {"not", "but"} & set(t.split()) and len(t.split()) <= 6]
        negated = [t for t in texts if "not" in t.split() and "but" not in t.split() and len(t.split()) <= 7]
        _observe(sidecar.grpc_port, _request_ids("base-", WINDOW, True), plain, "positive", 0.8)
        _observe(sidecar.grpc_port, _request_ids("out-", 5, False), plain[WINDOW:], "positive", 0.8)
        wait_for(base, "sum(spex_monitor_windows_closed_total)", lambda v: v >= 1, timeout_s=60)
        _observe(sidecar.grpc_port, _request_ids("shift-", WINDOW, True), negated, "negative", 0.4)
        wait_for(base, 'sum(spex_monitor_windows_closed_total{alarm="true"})', lambda v: v >= 1, timeout_s=60)
        _post_logger_pair(sidecar.events_port)
        _post_malformed_request(sidecar.events_port)
        wait_for(base, "sum(spex_monitor_events_received_total)", lambda v: v >= 3)
        wait_for(base, 'sum(spex_monitor_dropped_total{reason="event_malformed"})', lambda v: v >= 1)
        # one generation first: the histogram's series must exist before the next ones for rate() to rise
        _observe_generations(sidecar.grpc_port, range(1))
        count = "sum(spex_monitor_generation_context_share_ratio_count)"
        wait_for(base, count, lambda v: v >= 1, timeout_s=120)
        time.sleep(2 * SCRAPE_INTERVAL_S)
        # 21 in all: GenerationContextShareDropped compares only models with >= 20 explained generations
        _observe_generations(sidecar.grpc_port, range(1, 21))
        wait_for(base, count, lambda v: v >= 21, timeout_s=180)
        time.sleep(3 * SCRAPE_INTERVAL_S)  # a few more scrapes so every rate() window has two samples
        yield sidecar, base, started


def _panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def substitute(text: str, values: dict[str, str] = VARIABLES) -> str:
    """Grafana's template interpolation for the forms the dashboards use: ${name}, ${name:format}, $name."""
    out = re.sub(r"\$\{([A-Za-z_][\w:]*)\}", lambda m: values[m.group(1)], text)
    out = re.sub(r"\$([A-Za-z_]\w*)", lambda m: values[m.group(1)], out)
    assert "$" not in out, out
    return out


def _prometheus_targets() -> list[tuple[str, str, str, str]]:
    return [
        (name, panel["title"], target["expr"], target.get("legendFormat", ""))
        for name, dashboard in _dashboards().items()
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_every_panel_query_returns_series(stack):
    _, base, started = stack
    end = time.time()
    targets = _prometheus_targets()
    empty: dict[tuple[str, str, str], str] = {}  # (dashboard, panel title, query) -> the line reported
    for name, title, expr, legend in targets:
        # the drill-down's LLM panels are read with the LLM model selected, the rest with the classifier
        values = VARIABLES | {"model": LLM_MODEL} if title.startswith("LLM:") else VARIABLES
        result = query_range(base, substitute(expr, values), started, end, step_s=SCRAPE_INTERVAL_S)
        finite = [s for s in result if any(math.isfinite(float(v)) for _, v in s["values"])]
        if not finite:
            empty[(name, title, expr)] = f"{name} / {title}: {expr}"
            continue
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            assert all(label in s["metric"] for s in finite), (name, title, legend, finite[0]["metric"])
    unexpected = [line for (_, title, _), line in empty.items() if title not in EXCEPTIONS]
    assert not unexpected, "panels without data:\n" + "\n".join(unexpected)
    stale = set(EXCEPTIONS) - {title for _, title, _ in empty}
    assert not stale, f"these panels return data now: drop them from EXCEPTIONS: {stale}"
    assert len(targets) >= 2 * len(_dashboards())


def test_template_variables_resolve_to_the_driven_model_and_version(stack):
    _, base, _ = stack
    expected = {"model": MODEL, "version": VERSION}
    for dashboard in _dashboards().values():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
            assert match, variable["query"]
            metric, label = substitute(match.group(1)), match.group(2)
            assert expected[variable["name"]] in label_values(base, label, metric), variable["name"]


def _filter(rows: list[dict], expression: str) -> list[dict]:
    """The subset of Infinity's filter syntax the dashboard uses: ``a == 'x' && b IN ('y','z')``."""
    kept = rows
    for clause in substitute(expression).split("&&"):
        if match := re.fullmatch(r"\s*(\w+) == '([^']*)'\s*", clause):
            field, values = match.group(1), {match.group(2)}
        elif match := re.fullmatch(r"\s*(\w+) IN \(([^)]*)\)\s*", clause):
            field, values = match.group(1), set(re.findall(r"'([^']*)'", match.group(2)))
        else:
            raise AssertionError(f"filter clause the test does not understand: {clause!r}")
        kept = [row for row in kept if str(row[field]) in values]
    return kept


def test_top_interactions_table_reads_the_sidecar_json(stack):
    sidecar, _, _ = stack
    python_types = {"string": str, "number": (int, float), "boolean": bool}
    tables = 0
    for dashboard in _dashboards().values():
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("type") != "json":
                    continue
                tables += 1
                url = f"http://127.0.0.1:{sidecar.metrics_port}{substitute(target['url'])}"
                body = json.loads(urllib.request.urlopen(url, timeout=5).read())
                rows = _filter(body, target["filterExpression"])
                assert rows, (panel["title"], url)
                assert any("not" in row["interaction"] for row in rows), rows[:3]  # the shift we drove
                for column in target["columns"]:
                    expected = python_types[column["type"]]
                    assert all(isinstance(row[column["selector"]], expected) for row in rows), column
    assert tables == 1


# ----------------------------------------------------------------------------------------- alert rules
@functools.cache
def _alert_labels() -> dict[str, tuple[str, ...]]:
    """Each alert's declared instance labels, from the one source (scripts/dashboards/alerts.py)."""
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", ROOT / "scripts" / "build_dashboards.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # puts scripts/ on sys.path
    return {alert.name: alert.labels for alert in importlib.import_module("dashboards.alerts").ALERTS}


def _grafana_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(GRAFANA_RULES.read_text())["groups"] for rule in group["rules"]]


def _instant(base: str, promql: str, at: float) -> dict[frozenset, str]:
    """Instant query at ``at``: {label set without __name__: value}."""
    result = api(base, "/api/v1/query", {"query": promql, "time": f"{at:.3f}"})["result"]
    return {
        frozenset((k, v) for k, v in s["metric"].items() if k != "__name__"): s["value"][1] for s in result
    }


def test_every_alert_rule_query_returns_series_with_the_alert_labels(stack):
    _, base, _ = stack
    rules = _grafana_rules()
    assert {rule["title"] for rule in rules} == set(_alert_labels())
    at = time.time()
    for rule in rules:
        query = rule["data"][0]["model"]["expr"]
        series = _instant(base, query, at)
        assert series, f"{rule['title']}: no series for {query}"
        for labels in series:
            names = {name for name, _ in labels}
            assert set(_alert_labels()[rule["title"]]) <= names, (rule["title"], sorted(names))


def test_grafana_threshold_selects_the_series_the_prometheus_rule_returns(stack):
    """The twin's B step (threshold on A) against Prometheus evaluating ``query op threshold``, at the rule's
    threshold and at each value a series holds (where > and >= differ)."""
    _, base, _ = stack
    at = time.time()
    compared = 0
    for rule in _grafana_rules():
        query = rule["data"][0]["model"]["expr"]
        (condition,) = rule["data"][1]["model"]["conditions"]
        kind, (threshold,) = condition["evaluator"]["type"], condition["evaluator"]["params"]
        values = _instant(base, query, at)
        for level in {repr(float(threshold)), *(v for v in values.values() if math.isfinite(float(v)))}:
            grafana = {labels for labels, v in values.items() if EVALUATORS[kind](float(v), float(level))}
            prometheus = set(_instant(base, f"{query} {PROMQL[kind]} {level}", at))
            assert grafana == prometheus, (rule["title"], level)
            compared += len(grafana)
    assert compared >= len(_alert_labels()), "every alert compared at least one firing series"
