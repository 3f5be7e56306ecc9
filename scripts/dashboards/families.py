"""Panels per metric family, for either scope: each function returns the panel one family is read with.

Thresholds and runbook links come from the alert definitions (alerts.py), so a dashboard's alert line is
the alert's own threshold.
"""

from __future__ import annotations

from .alerts import BY_NAME as ALERT
from .panels import Graph, Single, prom
from .promql import (
    BUDGET,
    DROPPED,
    EXPLANATIONS,
    FAITHFULNESS,
    INFERENCES,
    INPUT_PSI,
    LATENCY,
    NDCG,
    ORDER_SHARE,
    OUTPUT_PSI,
    REQUESTS,
    SAMPLED,
    SHIFT_PVALUE,
    SHIFT_SCORE,
    WINDOWS,
    Scope,
    aggregate,
    change,
    context_share_mean,
    quantile,
)

ALARM_P_VALUE = 0.01  # baseline.alarm_p_value default: where the p-value panels draw their line
ALARMED = 'alarm="true"'
BUDGET_STEPS = ((None, "green"), (0.8, "orange"), (ALERT["ExplanationBudgetExhausted"].threshold, "red"))
ALARM_STEPS = ((None, "green"), (1, "orange"), (ALERT["InteractionShiftDetected"].threshold, "red"))
PVALUE_STEPS = ((None, "red"), (ALARM_P_VALUE, "green"))


# ----------------------------------------------------------------------------------- traffic and budget
def traffic(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Observed and sampled requests/s",
        "Requests the sidecar saw, and those that became explanation candidates (sampling rate and "
        "per-label reservoirs decide). A gap between them is by design; see 'Dropped/s by reason'.",
        [
            prom(aggregate("sum", "model, version", change(REQUESTS(s))), "observed {{model}} {{version}}"),
            prom(aggregate("sum", "model, version", change(SAMPLED(s))), "sampled {{model}} {{version}}"),
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
        [prom(aggregate("sum", "model, reason", change(DROPPED(s))), "{{model}} {{reason}}")],
        unit="reqps",
        runbook="SidecarDroppingSamples",
        width=width,
    )


def budget(s: Scope, width: int = 8) -> Graph:
    alert = ALERT["ExplanationBudgetExhausted"]
    return Graph(
        "Ablation budget use",
        "Share of the ablation token bucket in use. Above 95 % for 15 min fires ExplanationBudgetExhausted: "
        "explanations wait or are dropped and windows fill slowly.",
        [prom(aggregate("max", "model", BUDGET(s)), "{{model}}")],
        unit="percentunit",
        runbook=alert.name,
        threshold=alert.threshold,
        min=0,
        max=1,
        width=width,
    )


def budget_stat(s: Scope, title: str, description: str) -> Single:
    return Single(
        title,
        description,
        prom(aggregate("max", "", BUDGET(s))),
        unit="percentunit",
        steps=BUDGET_STEPS,
        runbook="ExplanationBudgetExhausted",
    )


# ------------------------------------------------------------------------------------------ explanations
def explanations(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Explanations/s by status",
        "Finished explanations; any status other than ok means the backend or the engine failed.",
        [prom(aggregate("sum", "model, status", change(EXPLANATIONS(s))), "{{model}} {{status}}")],
        unit="ops",
        width=width,
    )


def inferences(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Ablation inferences/s",
        "Model inferences spent on masked inputs (the cost the budget caps), by lens.",
        [prom(aggregate("sum", "model, lens", change(INFERENCES(s))), "{{model}} {{lens}}")],
        unit="ops",
        width=width,
    )


def latency(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "Explanation latency (p50, p95)",
        "Wall time of one explanation (sampling masks, ablation batches, fitting). Long tails starve the "
        "budget and show up as drops.",
        [
            prom(quantile(0.5, LATENCY(s), ["model"]), "p50 {{model}}"),
            prom(quantile(0.95, LATENCY(s), ["model"]), "p95 {{model}}"),
        ],
        unit="s",
        width=width,
    )


def faithfulness(s: Scope, width: int = 12) -> Graph:
    alert = ALERT["FaithfulnessLow"]
    return Graph(
        "Explanation faithfulness (held-out R², median and p10)",
        "How well each sparse surrogate predicts the model on masks it never saw. A median below 0.8 for "
        "15 min fires FaithfulnessLow: shift statistics are then unreliable (raise engine.budget).",
        [
            prom(quantile(0.5, FAITHFULNESS(s), ["model"]), "median {{model}}"),
            prom(quantile(0.1, FAITHFULNESS(s), ["model"]), "p10 {{model}}"),
        ],
        unit="none",
        runbook=alert.name,
        threshold=alert.threshold,
        below_is_bad=True,
        min=0,
        max=1,
        width=width,
    )


# -------------------------------------------------------------------------------------- interaction shift
def shift_score(s: Scope, width: int = 8) -> Graph:
    return Graph(
        "Interaction-shift score",
        "Distance between the baseline's and the last closed window's interaction mass per request (key "
        "tuples of order ≥ 2). Read it with its p-value; click a series for the model's drill-down.",
        [prom(aggregate("max", "model, version", SHIFT_SCORE(s)), "{{model}} {{version}}")],
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
        [prom(aggregate("min", "model, version", SHIFT_PVALUE(s)), "{{model}} {{version}}")],
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
    alert = ALERT["InteractionShiftDetected"]
    return Graph(
        "Alarmed windows (30 min, as the alert counts)",
        "The InteractionShiftDetected expression: windows whose p-value fell below the alarm threshold in "
        "the last 30 minutes. Two or more page.",
        [
            prom(
                aggregate("sum", "model, version", change(WINDOWS(s, ALARMED), "30m", "increase")),
                "{{model}} {{version}}",
            )
        ],
        runbook=alert.name,
        threshold=alert.threshold,
        min=0,
        drilldown=True,
        width=width,
    )


def alarm_count(s: Scope, title: str, description: str) -> Single:
    return Single(
        title,
        description,
        prom(aggregate("sum", "", change(WINDOWS(s, ALARMED), "30m", "increase"))),
        steps=ALARM_STEPS,
        runbook="InteractionShiftDetected",
        decimals=0,
        no_value="0",
    )


def pvalue_stat(s: Scope, title: str, description: str) -> Single:
    return Single(
        title,
        description,
        prom(aggregate("min", "", SHIFT_PVALUE(s))),
        steps=PVALUE_STEPS,
        runbook="InteractionShiftDetected",
        decimals=4,
    )


def order_shares(s: Scope, width: int = 12) -> Graph:
    return Graph(
        "Interaction order shares",
        "Share of attribution energy in main effects (order 1), pairs (2) and higher orders (3 = 3+) in the "
        "last closed window. A growing order-2 share means predictions lean on word combinations.",
        [
            prom(
                aggregate("max", "model, version, order", ORDER_SHARE(s)),
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
        [prom(aggregate("min", "model, version", NDCG(s)), "{{model}} {{version}}")],
        unit="none",
        min=0,
        max=1,
        step=True,
        width=width,
    )


# ------------------------------------------------------------------------------------------------- drift
def input_drift(s: Scope, width: int = 12) -> Graph:
    alert = ALERT["InputDrift"]
    return Graph(
        "Input drift (PSI) by feature",
        "Population stability index of input tokens and lengths against the baseline. Above 0.25 for 15 min "
        "fires InputDrift (info): by itself not an incident; compare with the interaction shift.",
        [
            prom(
                aggregate("max", "model, version, feature", INPUT_PSI(s)), "{{model}} {{version}} {{feature}}"
            )
        ],
        unit="none",
        runbook=alert.name,
        threshold=alert.threshold,
        step=True,
        width=width,
    )


def output_drift(s: Scope, width: int = 12) -> Graph:
    alert = ALERT["OutputDrift"]
    return Graph(
        "Output drift (PSI) by kind",
        "Population stability index of the predicted label and confidence against the baseline. Above 0.25 "
        "for 15 min fires OutputDrift.",
        [prom(aggregate("max", "model, version, kind", OUTPUT_PSI(s)), "{{model}} {{version}} {{kind}}")],
        unit="none",
        runbook=alert.name,
        threshold=alert.threshold,
        step=True,
        width=width,
    )


# ---------------------------------------------------------------------------------------- LLM generations
def context_share(width: int = 12, model: str = "") -> Graph:
    """Mean share of the completion log-prob effect carried by context-segment interactions, per LLM
    (``model``: a matcher for the drill-down, e.g. ``model="$model"``; none on the overview)."""
    alert = ALERT["GenerationContextShareDropped"]
    return Graph(
        "LLM: completion log-prob carried by context interactions",
        "Per LLM model (lens.kind: prompt), the mean over explained generations of the share of the "
        "completion's log-prob effect carried by interactions with a retrieved document or tool output "
        "(lens.context_prefixes). A fall means answers stopped depending on what was retrieved (a "
        "context-ignoring rollout, a broken retriever); the shift report names the segment tuples that "
        "moved. The second line is the mean of the last 6 hours: the 30-minute mean falling under half of "
        "it for 10 minutes fires GenerationContextShareDropped. See docs/llm.md.",
        [
            prom(context_share_mean(model), "{{model}}"),
            prom(context_share_mean(model, "6h"), "{{model}} (6 h mean)"),
        ],
        unit="percentunit",
        min=0,
        max=1,
        runbook=alert.name,
        width=width,
    )
