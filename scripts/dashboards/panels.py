"""The panel vocabulary: a time series (``Graph``) and a single number (``Single``), with the few knobs the
dashboards use, plus the links and threshold styles they share. Families of panels are in families.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .alerts import MODEL_UID, runbook_url

PROMETHEUS_VAR = "DS_PROMETHEUS"
SIDECAR_VAR = "DS_SPEX_SIDECAR"
# (name, uid) as provisioned by grafana/provisioning/datasources/spex-monitor.yaml
PROMETHEUS_DEFAULT = ("spex-monitor Prometheus", "spex-prometheus")
SIDECAR_DEFAULT = ("spex-monitor sidecar", "spex-sidecar")
INFINITY = "yesoreyeram-infinity-datasource"
PROM = dm.DataSourceRef(type_val="prometheus", uid=f"${{{PROMETHEUS_VAR}}}")
SIDECAR = dm.DataSourceRef(type_val=INFINITY, uid=f"${{{SIDECAR_VAR}}}")


def prom(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    """A Prometheus range query, as time series and stat panels run it."""
    return prometheus.Dataquery().expr(expr).legend_format(legend).range()


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


def with_targets(panel, targets: Sequence[prometheus.Dataquery]):  # noqa: ANN001, ANN201 - any panel builder
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
        with_targets(panel, self.targets)
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
        with_targets(panel, [self.target])
        if self.decimals is not None:
            panel.decimals(self.decimals)
        if self.no_value is not None:
            panel.no_value(self.no_value)
        if self.runbook:
            panel.links([runbook_link(self.runbook)])
        return panel
