"""The alert definitions: the one source of prometheus/rules/spex-monitor.rules.yml, the Grafana alert-rule
provisioning in grafana/provisioning/alerting/, the runbook links and the alert lines the dashboards draw.

Each alert is a query (whose series are the alert's instances), a comparison with a threshold, a ``for``,
a severity and the annotations on-call acts on. Prometheus evaluates ``query op threshold``; Grafana runs
``query`` as data query A and the same comparison as a threshold expression B, so the two cannot drift
(tests/unit/test_alert_rules.py compares them). Annotation text uses the template syntax both understand
(``{{ $labels.model }}``, ``humanize``); ``$value`` becomes ``$values.A.Value`` for Grafana.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .promql import (
    BACKEND_UP,
    BUDGET,
    CONTEXT_SHARE_COUNT,
    DROPPED,
    FAITHFULNESS,
    INPUT_PSI,
    OUTPUT_PSI,
    SCRAPE_UP,
    STORE_DEGRADED,
    WINDOWS,
    aggregate,
    change,
    context_share_mean,
    quantile,
)

# GenerationContextShareDropped: the mean of the last 30 min against the mean of the last 6 h (which holds
# them: no offset, so a fresh deployment compares like with like and stays quiet), once 20 generations
# were explained
CONTEXT_NOW, CONTEXT_BEFORE, CONTEXT_MIN_EXPLAINED = ("30m", "6h", 20)

RUNBOOKS = "https://github.com/spex-monitor/spex-monitor/blob/main/docs/runbooks/"
OVERVIEW_UID = "spex-monitor-overview"
MODEL_UID = "spex-monitor-model"
# Prometheus comparison -> Grafana threshold evaluator (grafana_foundation_sdk.models.expr).
OPERATORS = {">": "gt", "<": "lt", ">=": "gte", "<=": "lte", "==": "eq", "!=": "ne"}
Severity = Literal["page", "ticket", "info"]


@dataclass(frozen=True)
class Alert:
    """One alert, as both Prometheus and Grafana evaluate it.

    ``labels``: the labels every series ``query`` returns carries (one alert instance each; the integration
    test checks them against a real Prometheus); ``optional``: labels some series carry and others do not
    (an empty label is no label), which annotations may only use under ``{{ if }}``. ``panel``: (dashboard
    uid, panel title) of the time series panel Grafana shows the alert on. ``meaning``: one line for the
    runbooks panel and the docs.
    """

    name: str
    query: str
    op: str
    threshold: float
    for_: str  # a Prometheus duration; "0s" fires at the first evaluation that matches
    severity: Severity
    labels: tuple[str, ...]
    summary: str
    description: str
    meaning: str
    panel: tuple[str, str]
    optional: tuple[str, ...] = ()

    @property
    def expr(self) -> str:
        """The Prometheus rule expression: the query compared with the threshold."""
        return f"{self.query} {self.op} {self.threshold:g}"

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOKS}{self.name}.md"


def runbook_url(name: str) -> str:
    return f"{RUNBOOKS}{name}.md"


ALERTS: tuple[Alert, ...] = (
    Alert(
        "InteractionShiftDetected",
        aggregate("sum", "model, version", change(WINDOWS(None, 'alarm="true"'), "30m", "increase")),
        ">=",
        2,
        "0s",
        "page",
        ("model", "version"),
        "Interaction shift in {{ $labels.model }} {{ $labels.version }}",
        "{{ $value | humanize }} windows in the last 30 minutes changed which feature interactions drive "
        "predictions (permutation p below the alarm threshold). Run: spex-monitor trace --model "
        "{{ $labels.model }} --version {{ $labels.version }} --since 1h",
        "windows changed which feature interactions drive predictions",
        (MODEL_UID, "Alarmed windows (30 min, as the alert counts)"),
    ),
    Alert(
        "FaithfulnessLow",
        quantile(0.5, FAITHFULNESS(), ["model"], "15m"),
        "<",
        0.8,
        "15m",
        "ticket",
        ("model",),
        "Explanations of {{ $labels.model }} are not faithful (median R² {{ $value | humanize }})",
        "The sparse surrogates no longer fit the model on held-out masks; shift statistics are unreliable. "
        "Raise engine.budget or max_order. Check: spex-monitor trace --model {{ $labels.model }} --since 1h, "
        "then spex-monitor explain '<a request>' --model {{ $labels.model }}",
        "surrogates no longer fit the model on held-out masks",
        (MODEL_UID, "Explanation faithfulness (held-out R², median and p10)"),
    ),
    Alert(
        "ExplanationBudgetExhausted",
        aggregate("max", "model", BUDGET()),
        ">",
        0.95,
        "15m",
        "ticket",
        ("model",),
        "Ablation budget for {{ $labels.model }} is exhausted",
        "Explanations wait or are dropped (reason=budget); windows fill slowly and detection is delayed. "
        "Check: spex-monitor trace --model {{ $labels.model }}",
        "ablation budget used up; windows fill slowly",
        (MODEL_UID, "Ablation budget use"),
    ),
    Alert(
        "SidecarDroppingSamples",
        aggregate(
            "sum",
            "model, reason",
            change(DROPPED(None, 'reason!~"sampled_out|reservoir_replaced|reservoir_full"'), "10m"),
        ),
        ">",
        0.1,
        "10m",
        "ticket",
        ("reason",),
        "spex-monitor drops {{ if $labels.model }}{{ $labels.model }} {{ end }}samples "
        "({{ $labels.reason }})",
        "{{ $value | humanize }}/s observations or candidates are lost for reason {{ $labels.reason }}. "
        "Check: {{ if $labels.model }}spex-monitor trace --model {{ $labels.model }}{{ else }}the sidecar's "
        "log: calls refused before a configured model was known (overloaded, invalid, unknown model or a "
        "malformed event){{ end }}",
        "observations or candidates lost (queue, budget, errors)",
        (MODEL_UID, "Dropped/s by reason"),
        optional=("model",),
    ),
    Alert(
        "BackendReplicaDown",
        BACKEND_UP(),
        "==",
        0,
        "2m",
        "ticket",
        ("replica",),
        "Ablation backend replica {{ $labels.replica }} is down",
        "The circuit breaker is open; explanations go to the other replicas or fail. "
        "Check: spex-monitor trace --model <model>",
        "an ablation backend replica's breaker is open",
        (OVERVIEW_UID, "Backend replica up"),
    ),
    Alert(
        "InputDrift",
        aggregate("max", "model, version, feature", INPUT_PSI()),
        ">",
        0.25,
        "15m",
        "info",
        ("model", "version", "feature"),
        "Input drift in {{ $labels.model }} ({{ $labels.feature }} PSI {{ $value | humanize }})",
        "Inputs changed; by itself not an incident. Look at interaction shift before acting: "
        "spex-monitor trace --model {{ $labels.model }} --version {{ $labels.version }} --since 1h",
        "input token/length distribution moved (PSI)",
        (MODEL_UID, "Input drift (PSI) by feature"),
    ),
    Alert(
        "OutputDrift",
        aggregate("max", "model, version, kind", OUTPUT_PSI()),
        ">",
        0.25,
        "15m",
        "ticket",
        ("model", "version", "kind"),
        "Output drift in {{ $labels.model }} ({{ $labels.kind }} PSI {{ $value | humanize }})",
        "The predicted-label or confidence distribution moved. Run: spex-monitor trace --model "
        "{{ $labels.model }} --version {{ $labels.version }} --since 1h",
        "predicted label/confidence distribution moved (PSI)",
        (MODEL_UID, "Output drift (PSI) by kind"),
    ),
    Alert(
        "SidecarDown",
        SCRAPE_UP,
        "==",
        0,
        "2m",
        "page",
        ("job", "instance"),
        "spex-monitor sidecar {{ $labels.instance }} is down",
        "Prometheus cannot scrape the sidecar; no monitoring for this pod. Serving is unaffected. Check the "
        "pod, then: spex-monitor trace --model <model> --target <pod>:50051",
        "Prometheus cannot scrape a sidecar",
        (OVERVIEW_UID, "Sidecar scrape up"),
    ),
    Alert(
        "StoreDegraded",
        aggregate("max", "instance", STORE_DEGRADED()),
        "==",
        1,
        "10m",
        "ticket",
        ("instance",),
        "spex-monitor store on {{ $labels.instance }} cannot write",
        "Store writes fail (disk full or I/O error): windows, reports and explanations are not persisted, "
        "baselines will not survive a restart. Monitoring and serving continue. Check the volume, then: "
        "spex-monitor baseline export --model <model> --target <pod>:50051",
        "a sidecar's store writes fail; nothing new is persisted",
        (OVERVIEW_UID, "Sidecars with a degraded store"),
    ),
    Alert(
        "GenerationContextShareDropped",
        f"(({context_share_mean('', CONTEXT_NOW)}) / ({context_share_mean('', CONTEXT_BEFORE)})"
        f" and on (model) {aggregate('sum', 'model', change(CONTEXT_SHARE_COUNT(), CONTEXT_NOW, 'increase'))}"
        f" >= {CONTEXT_MIN_EXPLAINED})",
        "<",
        0.5,
        "10m",
        "page",
        ("model",),
        "Answers of {{ $labels.model }} stopped depending on the retrieved context",
        "The share of the completion log-prob carried by interactions with retrieved documents or tool "
        "outputs over the last 30 minutes (at least 20 explained generations) fell to "
        "{{ $value | humanizePercentage }} of its mean over the last 6 hours: a context-ignoring rollout or "
        "a broken retriever. Run: "
        "spex-monitor trace --model {{ $labels.model }} --since 1h",
        "LLM answers stopped depending on retrieved documents (context share halved)",
        (MODEL_UID, "LLM: completion log-prob carried by context interactions"),
    ),
)
BY_NAME = {alert.name: alert for alert in ALERTS}
