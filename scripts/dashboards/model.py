"""spex-monitor / Model drill-down: one model's verdict, what moved (the sidecar's top shifted interactions),
the statistics over time and the explanation pipeline behind them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, text
from grafana_foundation_sdk.models.text import TextMode

from . import families as f
from .alerts import ALERTS, BY_NAME, MODEL_UID
from .infinity import TOP_INTERACTION_COLUMNS, TOP_INTERACTIONS_PATH, Infinity, InfinityQuery
from .layout import dashboard as make_dashboard
from .layout import datasource_variable, model_variable, version_variable
from .panels import (
    INFINITY,
    PROMETHEUS_DEFAULT,
    PROMETHEUS_VAR,
    SIDECAR,
    SIDECAR_DEFAULT,
    SIDECAR_VAR,
    Single,
    prom,
    runbook_link,
)
from .promql import FAITHFULNESS, MODEL_SCOPE, NDCG, SHIFT_SCORE, aggregate, quantile

S = MODEL_SCOPE


def verdict() -> list[Single]:
    return [
        Single(
            "Shift score",
            "Last closed window's interaction-shift score (highest across selected versions).",
            prom(aggregate("max", "", SHIFT_SCORE(S))),
            runbook="InteractionShiftDetected",
            decimals=3,
        ),
        f.pvalue_stat(
            S, "Shift p-value", "Last closed window's permutation p-value (lowest across selected versions)."
        ),
        f.alarm_count(
            S, "Alarmed windows (30 min)", "As InteractionShiftDetected counts them; 2 or more page."
        ),
        Single(
            "First-order NDCG",
            "Rank agreement of single-feature attributions with the baseline (1 = same order).",
            prom(aggregate("min", "", NDCG(S))),
            steps=((None, "orange"), (0.8, "green")),
            decimals=3,
        ),
        Single(
            "Median faithfulness (R²)",
            "Held-out R² of recent explanations; below 0.8 the shift statistics are unreliable.",
            prom(quantile(0.5, FAITHFULNESS(S))),
            steps=((None, "red"), (BY_NAME["FaithfulnessLow"].threshold, "green")),
            runbook="FaithfulnessLow",
            decimals=3,
        ),
        f.budget_stat(S, "Budget use", "Ablation budget utilization of this model."),
    ]


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
        *[f"- [{alert.name}]({alert.runbook_url}): {alert.meaning}" for alert in ALERTS],
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
    return make_dashboard(
        MODEL_UID,
        "spex-monitor / Model drill-down",
        "One model: what moved (top shifted interactions from the sidecar), the shift and drift "
        "statistics per version, and the explanation pipeline behind them. Runbooks on the right.",
        [
            ("Verdict: $model", verdict()),
            ("What moved", [top_interactions_table(), runbooks_panel()]),
            (
                "Shift and drift over time",
                [
                    f.shift_score(S),
                    f.shift_pvalue(S),
                    f.alarmed_windows(S),  # InteractionShiftDetected's Grafana rule shows its state here
                    f.order_shares(S),
                    f.ndcg(S),
                    f.input_drift(S),
                    f.output_drift(S),
                ],
            ),
            (
                "Explanation pipeline",
                [
                    f.traffic(S),
                    f.dropped(S),
                    f.explanations(S),
                    f.latency(S, width=8),
                    f.faithfulness(S, width=8),
                    f.budget(S),
                ],
            ),
            ("LLM generations", [f.context_share(model='model="$model"')]),
        ],
        [
            datasource_variable(PROMETHEUS_VAR, "prometheus", "Prometheus", PROMETHEUS_DEFAULT),
            datasource_variable(SIDECAR_VAR, INFINITY, "Sidecar (JSON)", SIDECAR_DEFAULT),
            model_variable(multi=False),
            version_variable(),
        ],
    )
