"""What every dashboard shares: datasource and model variables, the alert annotation, links, rows, and the
rendering to the committed JSON (stable panel ids, sorted keys)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from .alerts import RUNBOOKS
from .panels import PROM, Graph, Single

TAG = "spex-monitor"
PanelSpec = Graph | Single | cogbuilder.Builder[dm.Panel]
Rows = Sequence[tuple[str, Sequence[PanelSpec]]]


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


def dashboard(uid: str, title: str, description: str, rows: Rows, variables: Sequence) -> db.Dashboard:
    """A dashboard with the shared settings, its variables, and rows laid out in order (the SDK places
    panels left to right and wraps at 24 columns)."""
    board = (
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
    for variable in variables:
        board.with_variable(variable)
    for row_title, panels in rows:
        board.with_row(db.Row(row_title))
        for panel in panels:
            board.with_panel(panel.build() if isinstance(panel, Graph | Single) else panel)
    return board


def to_model(build: Callable[[], db.Dashboard]) -> dict:
    """The dashboard as JSON data, with stable panel ids (1, 2, ... in layout order): links, alert rules
    (grafana/provisioning/alerting) and Grafana's state keys rely on them."""
    model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
    return model


def render(build: Callable[[], db.Dashboard]) -> str:
    """Dashboard JSON text exactly as committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(to_model(build), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
