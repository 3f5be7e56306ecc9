"""spex-monitor / Overview: every monitored model at a glance, then one row per concern."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from . import families as f
from . import infrastructure as infra
from .alerts import OVERVIEW_UID
from .layout import dashboard as make_dashboard
from .layout import datasource_variable, model_variable
from .panels import PROMETHEUS_DEFAULT, PROMETHEUS_VAR, Graph, Single, prom
from .promql import BACKEND_UP, OVERVIEW_SCOPE, REQUESTS, SAMPLED, SCRAPE_UP, aggregate, change

S = OVERVIEW_SCOPE


def glance() -> list[Single]:
    return [
        Single(
            "Sidecars down",
            "Sidecar targets Prometheus cannot scrape (SidecarDown pages after 2 min).",
            prom(f"sum(1 - {SCRAPE_UP})"),
            steps=((None, "green"), (1, "red")),
            runbook="SidecarDown",
            decimals=0,
        ),
        Single(
            "Observed requests/s",
            "All requests the sidecars saw, selected models.",
            prom(aggregate("sum", "", change(REQUESTS(S)))),
            unit="reqps",
        ),
        f.alarm_count(
            S,
            "Shift alarms (30 min)",
            "Alarmed windows in the last 30 minutes, all selected models (2+ for one model pages).",
        ),
        f.pvalue_stat(
            S, "Lowest shift p-value", "Smallest last-window p-value across selected models and versions."
        ),
        f.budget_stat(S, "Peak budget use", "Highest ablation budget utilization across selected models."),
        Single(
            "Backend replicas down",
            "Ablation backend replicas whose circuit breaker is open (all models).",
            prom(f"sum(1 - {BACKEND_UP()})"),
            steps=((None, "green"), (1, "red")),
            runbook="BackendReplicaDown",
            decimals=0,
        ),
    ]


def sampled_share() -> Graph:
    ratio = (
        f"{aggregate('sum', 'model', change(SAMPLED(S)))} / {aggregate('sum', 'model', change(REQUESTS(S)))}"
    )
    return Graph(
        "Sampled share",
        "Sampled / observed: the effective sampling rate after per-label reservoirs.",
        [prom(ratio, "{{model}}")],
        unit="percentunit",
        min=0,
        max=1,
    )


def overview() -> db.Dashboard:
    return make_dashboard(
        OVERVIEW_UID,
        "spex-monitor / Overview",
        "Every monitored model: traffic, sampling, ablation budget, explanation quality, interaction "
        "shift, drift and backend health. Click a shift series to drill down into one model.",
        [
            ("At a glance", glance()),
            ("Traffic and sampling", [f.traffic(S), sampled_share(), f.dropped(S)]),
            (
                "Explanations",
                [f.budget(S), f.explanations(S), f.inferences(S), f.latency(S), f.faithfulness(S)],
            ),
            (
                "Interaction shift (per model and version)",
                [f.shift_score(S), f.shift_pvalue(S), f.alarmed_windows(S), f.order_shares(S), f.ndcg(S)],
            ),
            ("Drift", [f.input_drift(S), f.output_drift(S)]),
            (
                "Backends and sidecars",
                [
                    infra.backend_up(),
                    infra.backend_latency(),
                    infra.scrape_up(),
                    infra.store_degraded(),
                    infra.store_errors(),
                ],
            ),
            ("KServe inference-logger receiver", [infra.events_received(), infra.events_pending()]),
            ("LLM generations", [f.context_share()]),
        ],
        [
            datasource_variable(PROMETHEUS_VAR, "prometheus", "Prometheus", PROMETHEUS_DEFAULT),
            model_variable(multi=True),
        ],
    )
