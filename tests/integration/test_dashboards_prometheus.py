"""Every Grafana panel's query, run against a real Prometheus that scraped a running sidecar.

The sidecar sees a baseline window of plain reviews, then a window of negated reviews with another label
and confidence (the interaction shift, input and output drift the shift/drift panels plot), sampled-out
requests (the drops panel) and one KServe inference-logger event pair (the receiver panels). Then each
PromQL target is run as a Grafana panel runs it (a range query, template variables substituted) and must
return a series with a finite value carrying the labels its legend names; the variables' label_values
queries must resolve; the drill-down's Infinity table must find rows in the sidecar's JSON endpoint.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from spex_monitor.client import MonitorClient
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.monitor.sampling import unit_hash

from .prometheus_harness import (
    SCRAPE_INTERVAL_S,
    label_values,
    prometheus_stack,
    query_range,
    requires_prometheus,
    sidecar_settings,
    wait_for,
)

pytestmark = [pytest.mark.integration, requires_prometheus]

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
MODEL, VERSION, SEED = "sentiment", "v1", 0
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grafana")
    model = dict(sidecar_settings(folder)["models"][0], sampling_rate=SAMPLING_RATE)
    server = {"grpc_port": 0, "metrics_port": 0, "events_port": 0, "tick_s": 0.2, "queue_per_label": 500}
    # 20 vs 20 requests give p of 0.005-0.015 for this shift; the test needs an alarm, not detection power.
    baseline = dict(sidecar_settings(folder)["baseline"], alarm_p_value=0.05)
    settings = sidecar_settings(folder, models=[model], server=server, baseline=baseline)
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
        wait_for(base, "sum(spex_monitor_events_received_total)", lambda v: v >= 2)
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
    empty: dict[str, str] = {}
    for name, title, expr, legend in targets:
        result = query_range(base, substitute(expr), started, end, step_s=SCRAPE_INTERVAL_S)
        finite = [s for s in result if any(math.isfinite(float(v)) for _, v in s["values"])]
        if not finite:
            empty[title] = f"{name} / {title}: {expr}"
            continue
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            assert all(label in s["metric"] for s in finite), (name, title, legend, finite[0]["metric"])
    unexpected = [line for title, line in empty.items() if title not in EXCEPTIONS]
    assert not unexpected, "panels without data:\n" + "\n".join(unexpected)
    stale = set(EXCEPTIONS) - set(empty)
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
