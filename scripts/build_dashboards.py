"""Grafana dashboards as code: renders grafana/dashboards/*.json with grafana-foundation-sdk.

    python scripts/build_dashboards.py           # rewrite grafana/dashboards/*.json
    python scripts/build_dashboards.py --check   # exit 1 when the committed JSON is not what this renders

The JSON is committed so that `grafana/` drops into a Grafana install (and the Helm chart can glob it)
without Python; this script is its only source. Datasources are dashboard variables (``DS_PROMETHEUS``,
``DS_SPEX_SIDECAR``) whose default is the uid provisioned by grafana/provisioning/datasources, so the same
file works when provisioned, imported by hand, or pointed at an existing Prometheus. grafana-foundation-sdk
is a dev dependency (`pip install -e ".[dev]"`), never a runtime one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, text, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.text import TextMode

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grafana" / "dashboards"

PROMETHEUS_VAR = "DS_PROMETHEUS"
SIDECAR_VAR = "DS_SPEX_SIDECAR"
# (name, uid) as provisioned by grafana/provisioning/datasources/spex-monitor.yaml
PROMETHEUS_DEFAULT = ("spex-monitor Prometheus", "spex-prometheus")
SIDECAR_DEFAULT = ("spex-monitor sidecar", "spex-sidecar")
INFINITY = "yesoreyeram-infinity-datasource"
PROM = dm.DataSourceRef(type_val="prometheus", uid=f"${{{PROMETHEUS_VAR}}}")
SIDECAR = dm.DataSourceRef(type_val=INFINITY, uid=f"${{{SIDECAR_VAR}}}")

OVERVIEW_UID = "spex-monitor-overview"
MODEL_UID = "spex-monitor-model"
TAG = "spex-monitor"
RATE = "$__rate_interval"
# The alert rules' runbook_url base (prometheus/rules/spex-monitor.rules.yml); a test keeps the two in sync.
RUNBOOKS = "https://github.com/spex-monitor/spex-monitor/blob/main/docs/runbooks/"
ALARM_P_VALUE = 0.01  # baseline.alarm_p_value default: where the p-value panels draw their line
PSI_ALERT = 0.25  # InputDrift / OutputDrift thresholds
FAITHFULNESS_ALERT = 0.8  # FaithfulnessLow threshold
BUDGET_ALERT = 0.95  # ExplanationBudgetExhausted threshold
TOP_INTERACTIONS_PATH = "/api/top-interactions"

RUNBOOK_SUMMARY = {
    "InteractionShiftDetected": "windows changed which feature interactions drive predictions",
    "FaithfulnessLow": "surrogates no longer fit the model on held-out masks",
    "ExplanationBudgetExhausted": "ablation budget used up; windows fill slowly",
    "SidecarDroppingSamples": "observations or candidates lost (queue, budget, errors)",
    "BackendReplicaDown": "an ablation backend replica's breaker is open",
    "InputDrift": "input token/length distribution moved (PSI)",
    "OutputDrift": "predicted label/confidence distribution moved (PSI)",
    "SidecarDown": "Prometheus cannot scrape a sidecar",
    "StoreDegraded": "a sidecar's store writes fail; nothing new is persisted",
}


# ------------------------------------------------------------------------------------------ building blocks
@dataclass(frozen=True)
class Scope:
    """Label matchers a dashboard puts on every query: all models (overview) or one model (drill-down)."""

    model: str  # for metrics labelled by model only (budget, drops, latency, faithfulness)
    model_version: str  # for metrics labelled by model and version (traffic, shift, drift)


OVERVIEW_SCOPE = Scope('model=~"$model"', 'model=~"$model"')
MODEL_SCOPE = Scope('model="$model"', 'model="$model", version=~"$version"')


def runbook_url(alert: str) -> str:
    return f"{RUNBOOKS}{alert}.md"


def runbook_link(alert: str) -> db.DashboardLink:
    """A panel link to the runbook of the alert that fires on what the panel shows."""
    return (
        db.DashboardLink(f"Runbook: {alert}")
        .type(dm.DashboardLinkType.LINK)
        .url(runbook_url(alert))
        .target_blank(True)
    )


def drilldown_link() -> db.DashboardLink:
    """Data link from a series to the drill-down of its model, keeping the time range."""
    return (
        db.DashboardLink("Drill down: ${__field.labels.model}")
        .type(dm.DashboardLinkType.LINK)
        .url(f"/d/{MODEL_UID}?var-model=${{__field.labels.model}}&${{__url_time_range}}")
    )


def prom(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).range()


def thresholds(steps: Sequence[tuple[float | None, str]]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def alert_line(value: float, below_is_bad: bool = False) -> db.ThresholdsConfig:
    """Green/red split at an alert threshold, drawn as a dashed line on time series."""
    if below_is_bad:
        return thresholds([(None, "red"), (value, "green")])
    return thresholds([(None, "green"), (value, "red")])


def _with_targets(panel, targets: Sequence[prometheus.Dataquery]):  # noqa: ANN001, ANN202 - any panel builder
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        panel.with_target(target.ref_id(ref))
    return panel


@dataclass(frozen=True)
class Graph:
    """One time-series panel; the fields are the only knobs the dashboards use."""

    title: str
    description: str
    targets: Sequence[prometheus.Dataquery]
    unit: str = "short"
    runbook: str | None = None
    threshold: float | None = None
    below_is_bad: bool = False
    min: float | None = None
    max: float | None = None
    log: bool = False
    stacked: bool = False
    step: bool = False
    drilldown: bool = False
    width: int = 8
    height: int = 8

    def build(self) -> timeseries.Panel:
        panel = (
            timeseries.Panel()
            .title(self.title)
            .description(self.description)
            .datasource(PROM)
            .unit(self.unit)
            .span(self.width)
            .height(self.height)
            .line_width(1)
            .fill_opacity(60 if self.stacked else 10)
            .legend(
                cb.VizLegendOptions()
                .show_legend(True)
                .display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM)
            )
        )
        _with_targets(panel, self.targets)
        if self.min is not None:
            panel.min(self.min)
        if self.max is not None:
            panel.max(self.max)
        if self.log:
            panel.scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LOG).log(10))
        if self.stacked:
            panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        if self.step:
            panel.line_interpolation(cm.LineInterpolation.STEP_AFTER)
        if self.threshold is not None:
            panel.thresholds(alert_line(self.threshold, self.below_is_bad))
            panel.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
        if self.runbook:
            panel.links([runbook_link(self.runbook)])
        if self.drilldown:
            panel.data_links([drilldown_link()])
        return panel


@dataclass(frozen=True)
class Single:
    """One stat panel: a single number with alert-coloured thresholds."""

    title: str
    description: str
    target: prometheus.Dataquery
    unit: str = "short"
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),)
    runbook: str | None = None
    decimals: int | None = None
    no_value: str | None = None
    width: int = 4
    height: int = 4

    def build(self) -> stat.Panel:
        panel = (
            stat.Panel()
            .title(self.title)
            .description(self.description)
            .datasource(PROM)
            .unit(self.unit)
            .span(self.width)
            .height(self.height)
            .thresholds(thresholds(self.steps))
            .color_mode(cm.BigValueColorMode.BACKGROUND)
            .graph_mode(cm.BigValueGraphMode.AREA)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )
        _with_targets(panel, [self.target])
        if self.decimals is not None:
            panel.decimals(self.decimals)
        if self.no_value is not None:
            panel.no_value(self.no_value)
        if self.runbook:
            panel.links([runbook_link(self.runbook)])
        return panel


# ------------------------------------------------------------------------------------ Infinity (JSON) query
@dataclass(frozen=True)
class InfinityColumn:
    selector: str
    text: str
    type: str  # "string" | "number" | "boolean"


@dataclass(frozen=True)
class InfinityQuery(cogvariants.Dataquery):
    """The Infinity datasource's query model; the SDK ships no Infinity types, so this is its JSON, by hand.

    ``url`` is relative: Infinity prefixes the datasource's URL (the sidecar's metrics port), so dashboards
    carry no host names. The backend parser applies ``filter_expression`` after fetching.
    """

    url: str
    columns: tuple[InfinityColumn, ...]
    filter_expression: str
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": SIDECAR,
            "type": "json",
            "source": "url",
            "format": "table",
            "parser": "backend",
            "url": self.url,
            "url_options": {"method": "GET", "data": ""},
            "root_selector": "",
            "columns": [{"selector": c.selector, "text": c.text, "type": c.type} for c in self.columns],
            "filterExpression": self.filter_expression,
        }


class Infinity(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: InfinityQuery) -> None:
        self._query = query

    def build(self) -> InfinityQuery:
        return self._query


TOP_INTERACTION_COLUMNS = (
    InfinityColumn("interaction", "Interaction", "string"),
    InfinityColumn("delta", "Δ mean |coef| / request", "number"),
    InfinityColumn("baseline", "Baseline", "number"),
    InfinityColumn("window", "Window", "number"),
    InfinityColumn("exemplars", "Example request ids", "string"),
    InfinityColumn("version", "Version", "string"),
    InfinityColumn("p_value", "Window p-value", "number"),
    InfinityColumn("alarm", "Alarm", "boolean"),
    InfinityColumn("model", "Model", "string"),
)


# ----------------------------------------------------------------------------------------------- variables
def datasource_variable(
    name: str, plugin: str, label: str, default: tuple[str, str]
) -> db.DatasourceVariable:
    """Datasource picker; defaults to the provisioned (name, uid), and Grafana falls back to the default
    datasource of that type when it does not exist (an existing Prometheus just works)."""
    text, uid = default
    return (
        db.DatasourceVariable(name)
        .label(label)
        .type(plugin)
        .current(dm.VariableOption(selected=True, text=text, value=uid))
    )


def model_variable(multi: bool) -> db.QueryVariable:
    variable = (
        db.QueryVariable("model")
        .label("Model")
        .datasource(PROM)
        .query("label_values(spex_monitor_requests_observed_total, model)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable.multi(True).include_all(True)
    return variable


def version_variable() -> db.QueryVariable:
    return (
        db.QueryVariable("version")
        .label("Version")
        .datasource(PROM)
        .query('label_values(spex_monitor_requests_observed_total{model="$model"}, version)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_DESC)
        .multi(True)
        .include_all(True)
    )


def alerts_annotation() -> db.AnnotationQuery:
    """Grafana's built-in annotation: alert state changes (InteractionShiftDetected, ...) on every graph."""
    return (
        db.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )


def dashboard_links() -> list[db.DashboardLink]:
    return [
        db.DashboardLink("spex-monitor")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags([TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True),
        db.DashboardLink("Runbooks")
        .type(dm.DashboardLinkType.LINK)
        .icon("doc")
        .url(RUNBOOKS.removesuffix("/"))
        .target_blank(True),
    ]


# ------------------------------------------------------------------------------------------ shared panels
def traffic(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Observed and sampled requests/s",
        "Requests the sidecar saw, and those that became explanation candidates (sampling rate and "
        "per-label reservoirs decide). A gap between them is by design; see 'Dropped/s by reason'.",
        [
            prom(
                f"sum by (model, version) (rate(spex_monitor_requests_observed_total{{{s.model_version}}}"
                f"[{RATE}]))",
                "observed {{model}} {{version}}",
            ),
            prom(
                f"sum by (model, version) (rate(spex_monitor_sampled_total{{{s.model_version}}}[{RATE}]))",
                "sampled {{model}} {{version}}",
            ),
        ],
        unit="reqps",
        width=width,
    )


def dropped(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Dropped/s by reason",
        "Observations or candidates not explained. sampled_out and reservoir_* are the sampler working as "
        "configured; budget, queue, internal_error and shutdown lose data and page as "
        "SidecarDroppingSamples above 0.1/s for 10 min.",
        [
            prom(
                f"sum by (model, reason) (rate(spex_monitor_dropped_total{{{s.model}}}[{RATE}]))",
                "{{model}} {{reason}}",
            )
        ],
        unit="reqps",
        runbook="SidecarDroppingSamples",
        width=width,
    )


def budget(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Ablation budget use",
        "Share of the ablation token bucket in use. Above 95 % for 15 min fires ExplanationBudgetExhausted: "
        "explanations wait or are dropped and windows fill slowly.",
        [prom(f"max by (model) (spex_monitor_budget_utilization_ratio{{{s.model}}})", "{{model}}")],
        unit="percentunit",
        runbook="ExplanationBudgetExhausted",
        threshold=BUDGET_ALERT,
        min=0,
        max=1,
        width=width,
    )


def explanations(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Explanations/s by status",
        "Finished explanations; any status other than ok means the backend or the engine failed.",
        [
            prom(
                "sum by (model, status) "
                f"(rate(spex_monitor_explanations_total{{{s.model_version}}}[{RATE}]))",
                "{{model}} {{status}}",
            )
        ],
        unit="ops",
        width=width,
    )


def inferences(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Ablation inferences/s",
        "Model inferences spent on masked inputs (the cost the budget caps), by lens.",
        [
            prom(
                f"sum by (model, lens) (rate(spex_monitor_ablation_inferences_total{{{s.model}}}[{RATE}]))",
                "{{model}} {{lens}}",
            )
        ],
        unit="ops",
        width=width,
    )


def latency(s: Scope, width: int = 12) -> Graph:
    bucket = f"rate(spex_monitor_explanation_duration_seconds_bucket{{{s.model}}}[{RATE}])"
    return Graph(
        "Explanation latency (p50, p95)",
        "Wall time of one explanation (sampling masks, ablation batches, fitting). Long tails starve the "
        "budget and show up as drops.",
        [
            prom(f"histogram_quantile(0.5, sum by (model, le) ({bucket}))", "p50 {{model}}"),
            prom(f"histogram_quantile(0.95, sum by (model, le) ({bucket}))", "p95 {{model}}"),
        ],
        unit="s",
        width=width,
    )


def faithfulness(s: Scope, width: int = 12) -> Graph:
    bucket = f"rate(spex_monitor_explanation_faithfulness_r2_bucket{{{s.model}}}[{RATE}])"
    return Graph(
        "Explanation faithfulness (held-out R², median and p10)",
        "How well each sparse surrogate predicts the model on masks it never saw. A median below 0.8 for "
        "15 min fires FaithfulnessLow: shift statistics are then unreliable (raise engine.budget).",
        [
            prom(f"histogram_quantile(0.5, sum by (model, le) ({bucket}))", "median {{model}}"),
            prom(f"histogram_quantile(0.1, sum by (model, le) ({bucket}))", "p10 {{model}}"),
        ],
        unit="none",
        runbook="FaithfulnessLow",
        threshold=FAITHFULNESS_ALERT,
        below_is_bad=True,
        min=0,
        max=1,
        width=width,
    )


def shift_score(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Interaction-shift score",
        "Distance between the baseline's and the last closed window's interaction mass per request (key "
        "tuples of order ≥ 2). Read it with its p-value; click a series for the model's drill-down.",
        [
            prom(
                f"max by (model, version) (spex_monitor_interaction_shift_score{{{s.model_version}}})",
                "{{model}} {{version}}",
            )
        ],
        runbook="InteractionShiftDetected",
        step=True,
        drilldown=True,
        width=width,
    )


def shift_pvalue(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Interaction-shift p-value",
        "Exact permutation p-value of the last closed window against the baseline (log scale). Below the "
        "line (baseline.alarm_p_value, 0.01 by default) the window alarms.",
        [
            prom(
                f"min by (model, version) (spex_monitor_interaction_shift_pvalue{{{s.model_version}}})",
                "{{model}} {{version}}",
            )
        ],
        unit="none",
        runbook="InteractionShiftDetected",
        threshold=ALARM_P_VALUE,
        below_is_bad=True,
        log=True,
        step=True,
        drilldown=True,
        width=width,
    )


def alarmed_windows(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Alarmed windows (30 min, as the alert counts)",
        "The InteractionShiftDetected expression: windows whose p-value fell below the alarm threshold in "
        "the last 30 minutes. Two or more page.",
        [
            prom(
                "sum by (model, version) (increase(spex_monitor_windows_closed_total"
                f'{{{s.model_version}, alarm="true"}}[30m]))',
                "{{model}} {{version}}",
            )
        ],
        runbook="InteractionShiftDetected",
        threshold=2,
        min=0,
        drilldown=True,
        width=width,
    )


def order_shares(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "Interaction order shares",
        "Share of attribution energy in main effects (order 1), pairs (2) and higher orders (3 = 3+) in the "
        "last closed window. A growing order-2 share means predictions lean on word combinations.",
        [
            prom(
                f"max by (model, version, order) (spex_monitor_interaction_order_share{{{s.model_version}}})",
                "{{model}} {{version}} order {{order}}",
            )
        ],
        unit="percentunit",
        stacked=True,
        step=True,
        min=0,
        width=width,
    )


def ndcg(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "First-order attribution rank agreement (NDCG)",
        "How well the window's ranking of single features matches the baseline's (1 = same order), as "
        "SageMaker Clarify reports feature-attribution drift.",
        [
            prom(
                f"min by (model, version) (spex_monitor_attribution_rank_ndcg{{{s.model_version}}})",
                "{{model}} {{version}}",
            )
        ],
        unit="none",
        min=0,
        max=1,
        step=True,
        width=width,
    )


def input_drift(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "Input drift (PSI) by feature",
        "Population stability index of input tokens and lengths against the baseline. Above 0.25 for 15 min "
        "fires InputDrift (info): by itself not an incident; compare with the interaction shift.",
        [
            prom(
                f"max by (model, version, feature) (spex_monitor_input_drift_psi{{{s.model_version}}})",
                "{{model}} {{version}} {{feature}}",
            )
        ],
        unit="none",
        runbook="InputDrift",
        threshold=PSI_ALERT,
        step=True,
        width=width,
    )


def output_drift(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "Output drift (PSI) by kind",
        "Population stability index of the predicted label and confidence against the baseline. Above 0.25 "
        "for 15 min fires OutputDrift.",
        [
            prom(
                f"max by (model, version, kind) (spex_monitor_output_drift_psi{{{s.model_version}}})",
                "{{model}} {{version}} {{kind}}",
            )
        ],
        unit="none",
        runbook="OutputDrift",
        threshold=PSI_ALERT,
        step=True,
        width=width,
    )


# -------------------------------------------------------------------------------------------- dashboards
PanelSpec = Graph | Single | cogbuilder.Builder[dm.Panel]


def _add_rows(dashboard: db.Dashboard, rows: Sequence[tuple[str, Sequence[PanelSpec]]]) -> None:
    """Rows in order; the SDK lays panels out left to right and wraps at 24 columns."""
    for title, panels in rows:
        dashboard.with_row(db.Row(title))
        for panel in panels:
            dashboard.with_panel(panel.build() if isinstance(panel, Graph | Single) else panel)


def _base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .links(dashboard_links())
        .annotation(alerts_annotation())
    )


def overview() -> db.Dashboard:
    s = OVERVIEW_SCOPE
    up = 'up{job=~".*spex-monitor.*"}'
    dashboard = (
        _base(
            OVERVIEW_UID,
            "spex-monitor / Overview",
            "Every monitored model: traffic, sampling, ablation budget, explanation quality, interaction "
            "shift, drift and backend health. Click a shift series to drill down into one model.",
        )
        .with_variable(datasource_variable(PROMETHEUS_VAR, "prometheus", "Prometheus", PROMETHEUS_DEFAULT))
        .with_variable(model_variable(multi=True))
    )
    glance: list[Single] = [
        Single(
            "Sidecars down",
            "Sidecar targets Prometheus cannot scrape (SidecarDown pages after 2 min).",
            prom(f"sum(1 - {up})"),
            steps=((None, "green"), (1, "red")),
            runbook="SidecarDown",
            decimals=0,
        ),
        Single(
            "Observed requests/s",
            "All requests the sidecars saw, selected models.",
            prom(f"sum(rate(spex_monitor_requests_observed_total{{{s.model_version}}}[{RATE}]))"),
            unit="reqps",
        ),
        Single(
            "Shift alarms (30 min)",
            "Alarmed windows in the last 30 minutes, all selected models (2+ for one model pages).",
            prom(f'sum(increase(spex_monitor_windows_closed_total{{{s.model_version}, alarm="true"}}[30m]))'),
            steps=((None, "green"), (1, "orange"), (2, "red")),
            runbook="InteractionShiftDetected",
            decimals=0,
            no_value="0",
        ),
        Single(
            "Lowest shift p-value",
            "Smallest last-window p-value across selected models and versions.",
            prom(f"min(spex_monitor_interaction_shift_pvalue{{{s.model_version}}})"),
            steps=((None, "red"), (ALARM_P_VALUE, "green")),
            runbook="InteractionShiftDetected",
            decimals=4,
        ),
        Single(
            "Peak budget use",
            "Highest ablation budget utilization across selected models.",
            prom(f"max(spex_monitor_budget_utilization_ratio{{{s.model}}})"),
            unit="percentunit",
            steps=((None, "green"), (0.8, "orange"), (BUDGET_ALERT, "red")),
            runbook="ExplanationBudgetExhausted",
        ),
        Single(
            "Backend replicas down",
            "Ablation backend replicas whose circuit breaker is open (all models).",
            prom("sum(1 - spex_monitor_backend_up)"),
            steps=((None, "green"), (1, "red")),
            runbook="BackendReplicaDown",
            decimals=0,
        ),
    ]
    sampled_share = Graph(
        "Sampled share",
        "Sampled / observed: the effective sampling rate after per-label reservoirs.",
        [
            prom(
                f"sum by (model) (rate(spex_monitor_sampled_total{{{s.model_version}}}[{RATE}])) / "
                f"sum by (model) (rate(spex_monitor_requests_observed_total{{{s.model_version}}}[{RATE}]))",
                "{{model}}",
            )
        ],
        unit="percentunit",
        min=0,
        max=1,
    )
    backend_up = Graph(
        "Backend replica up",
        "1 while an ablation backend replica accepts work, 0 while its circuit breaker is open "
        "(BackendReplicaDown after 2 min). The in-process backend reports as replica 'local'.",
        [prom("min by (replica) (spex_monitor_backend_up)", "{{replica}}")],
        unit="none",
        runbook="BackendReplicaDown",
        threshold=1,
        below_is_bad=True,
        min=0,
        max=1,
        step=True,
    )
    backend_latency = Graph(
        "Ablation batch latency p95 by replica",
        "Latency of one masked batch on a backend replica; slow replicas stretch explanation latency.",
        [
            prom(
                "histogram_quantile(0.95, sum by (replica, le) "
                f"(rate(spex_monitor_backend_request_duration_seconds_bucket[{RATE}])))",
                "{{replica}}",
            )
        ],
        unit="s",
    )
    scrape_up = Graph(
        "Sidecar scrape up",
        "Prometheus's own up series per sidecar target; 0 for 2 min fires SidecarDown (serving is "
        "unaffected, monitoring is blind for that pod).",
        [prom(up, "{{instance}}")],
        unit="none",
        runbook="SidecarDown",
        threshold=1,
        below_is_bad=True,
        min=0,
        max=1,
        step=True,
    )
    store_degraded = Graph(
        "Sidecars with a degraded store",
        "1 while a sidecar's last store write failed (disk full, I/O error): metrics and alerts go on, but "
        "windows, reports and exemplar requests for `spex-monitor trace` are not persisted.",
        [prom("sum by (instance) (spex_monitor_store_degraded)", "{{instance}}")],
        threshold=1,
        min=0,
        step=True,
        width=12,
        runbook="StoreDegraded",
    )
    store_errors = Graph(
        "Store write errors/s",
        "Failed writes to the sidecar's SQLite store, per sidecar.",
        [
            prom(
                f"sum by (instance) (rate(spex_monitor_store_write_errors_total[{RATE}]))",
                "{{instance}}",
            )
        ],
        unit="ops",
        width=12,
    )
    events_received = Graph(
        "Inference-logger events/s by type",
        "CloudEvents posted by KServe's inference logger (attach mode 3), by type: request, response, or "
        "unknown. Refused or unpaired events are counted in 'Dropped/s by reason' (reasons event_*).",
        [prom(f"sum by (type) (rate(spex_monitor_events_received_total[{RATE}]))", "{{type}}")],
        unit="reqps",
        width=12,
    )
    events_pending = Graph(
        "Inference-logger events waiting for a partner",
        "Request or response halves held until the other half arrives (bounded by "
        "server.events_max_pending and events_pair_ttl_s); a steady climb means one half never comes "
        "(logger mode 'request' with the sidecar set to 'all', or a lossy network).",
        [prom("sum by (instance) (spex_monitor_events_pending)", "{{instance}}")],
        width=12,
    )
    _add_rows(
        dashboard,
        [
            ("At a glance", glance),
            ("Traffic and sampling", [traffic(s), sampled_share, dropped(s)]),
            ("Explanations", [budget(s), explanations(s), inferences(s), latency(s), faithfulness(s)]),
            (
                "Interaction shift (per model and version)",
                [shift_score(s), shift_pvalue(s), alarmed_windows(s), order_shares(s), ndcg(s)],
            ),
            ("Drift", [input_drift(s), output_drift(s)]),
            (
                "Backends and sidecars",
                [backend_up, backend_latency, scrape_up, store_degraded, store_errors],
            ),
            ("KServe inference-logger receiver", [events_received, events_pending]),
        ],
    )
    return dashboard


def top_interactions_table() -> table.Panel:
    query = InfinityQuery(
        url=TOP_INTERACTIONS_PATH,
        columns=TOP_INTERACTION_COLUMNS,
        filter_expression="model == '${model}' && version IN (${version:singlequote})",
    )
    return (
        table.Panel()
        .title("Top shifted interactions (last closed window)")
        .description(
            "From the sidecar's read-only JSON endpoint /api/top-interactions (Infinity datasource): the key "
            "tuples whose mean |coefficient| per request moved most against the baseline, with example "
            "request ids to pass to `spex-monitor trace` / `spex-monitor explain`. One sidecar answers "
            "(the one the Infinity datasource URL points at); history lives in the store, via trace."
        )
        .datasource(SIDECAR)
        .with_target(Infinity(query))
        .span(16)
        .height(10)
        .filterable(True)
        .sort_by([cb.TableSortByFieldState().display_name("Δ mean |coef| / request").desc(True)])
        .links([runbook_link("InteractionShiftDetected")])
    )


def runbooks_panel() -> text.Panel:
    lines = [
        "**When an alert fires**, start with the top shifted interactions, then run",
        "`spex-monitor trace --model $model --since 1h` against the sidecar.",
        "",
        *[f"- [{alert}]({runbook_url(alert)}): {summary}" for alert, summary in RUNBOOK_SUMMARY.items()],
    ]
    return (
        text.Panel()
        .title("Runbooks")
        .description("One runbook per alert in prometheus/rules/spex-monitor.rules.yml.")
        .mode(TextMode.MARKDOWN)
        .content("\n".join(lines))
        .span(8)
        .height(10)
    )


def model_drilldown() -> db.Dashboard:
    s = MODEL_SCOPE
    dashboard = (
        _base(
            MODEL_UID,
            "spex-monitor / Model drill-down",
            "One model: what moved (top shifted interactions from the sidecar), the shift and drift "
            "statistics per version, and the explanation pipeline behind them. Runbooks on the right.",
        )
        .with_variable(datasource_variable(PROMETHEUS_VAR, "prometheus", "Prometheus", PROMETHEUS_DEFAULT))
        .with_variable(datasource_variable(SIDECAR_VAR, INFINITY, "Sidecar (JSON)", SIDECAR_DEFAULT))
        .with_variable(model_variable(multi=False))
        .with_variable(version_variable())
    )
    faithfulness_bucket = f"rate(spex_monitor_explanation_faithfulness_r2_bucket{{{s.model}}}[{RATE}])"
    verdict: list[Single] = [
        Single(
            "Shift score",
            "Last closed window's interaction-shift score (highest across selected versions).",
            prom(f"max(spex_monitor_interaction_shift_score{{{s.model_version}}})"),
            runbook="InteractionShiftDetected",
            decimals=3,
        ),
        Single(
            "Shift p-value",
            "Last closed window's permutation p-value (lowest across selected versions).",
            prom(f"min(spex_monitor_interaction_shift_pvalue{{{s.model_version}}})"),
            steps=((None, "red"), (ALARM_P_VALUE, "green")),
            runbook="InteractionShiftDetected",
            decimals=4,
        ),
        Single(
            "Alarmed windows (30 min)",
            "As InteractionShiftDetected counts them; 2 or more page.",
            prom(f'sum(increase(spex_monitor_windows_closed_total{{{s.model_version}, alarm="true"}}[30m]))'),
            steps=((None, "green"), (1, "orange"), (2, "red")),
            runbook="InteractionShiftDetected",
            decimals=0,
            no_value="0",
        ),
        Single(
            "First-order NDCG",
            "Rank agreement of single-feature attributions with the baseline (1 = same order).",
            prom(f"min(spex_monitor_attribution_rank_ndcg{{{s.model_version}}})"),
            steps=((None, "orange"), (0.8, "green")),
            decimals=3,
        ),
        Single(
            "Median faithfulness (R²)",
            "Held-out R² of recent explanations; below 0.8 the shift statistics are unreliable.",
            prom(f"histogram_quantile(0.5, sum by (le) ({faithfulness_bucket}))"),
            steps=((None, "red"), (FAITHFULNESS_ALERT, "green")),
            runbook="FaithfulnessLow",
            decimals=3,
        ),
        Single(
            "Budget use",
            "Ablation budget utilization of this model.",
            prom(f"max(spex_monitor_budget_utilization_ratio{{{s.model}}})"),
            unit="percentunit",
            steps=((None, "green"), (0.8, "orange"), (BUDGET_ALERT, "red")),
            runbook="ExplanationBudgetExhausted",
        ),
    ]
    _add_rows(
        dashboard,
        [
            ("Verdict: $model", verdict),
            ("What moved", [top_interactions_table(), runbooks_panel()]),
            (
                "Shift and drift over time",
                [
                    shift_score(s),
                    shift_pvalue(s),
                    order_shares(s, width=8),
                    ndcg(s, width=8),
                    input_drift(s, width=8),
                    output_drift(s, width=8),
                ],
            ),
            (
                "Explanation pipeline",
                [
                    traffic(s),
                    dropped(s),
                    explanations(s),
                    latency(s, width=8),
                    faithfulness(s, width=8),
                    budget(s),
                ],
            ),
        ],
    )
    return dashboard


DASHBOARDS = {"spex-monitor-overview.json": overview, "spex-monitor-model.json": model_drilldown}


# ---------------------------------------------------------------------------------------------- rendering
def _number_panels(model: dict) -> None:
    """Stable panel ids (1, 2, ... in layout order): links and Grafana's state keys rely on them."""
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number


def render(build: Callable[[], db.Dashboard]) -> str:
    """Dashboard JSON text exactly as committed: sorted keys, 2-space indent, trailing newline."""
    model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    _number_panels(model)
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def _stale(out: Path, rendered: dict[str, str]) -> list[str]:
    problems = []
    for name, body in rendered.items():
        path = out / name
        current = path.read_text() if path.exists() else ""
        if current != body:
            diff = difflib.unified_diff(
                current.splitlines(), body.splitlines(), str(path), "rendered", lineterm=""
            )
            problems.append("\n".join(list(diff)[:40]))
    extra = sorted(p.name for p in out.glob("*.json") if p.name not in rendered)
    problems += [f"{out / name}: not produced by this script (remove it or add a builder)" for name in extra]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: grafana/dashboards)")
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        problems = _stale(args.out, rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("dashboards are stale: run python scripts/build_dashboards.py", file=sys.stderr)
        return 1 if problems else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in rendered.items():
        (args.out / name).write_text(body)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
