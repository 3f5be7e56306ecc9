"""Prometheus metrics of the sidecar (prometheus-client), on their own registry and port.

Names follow Prometheus conventions: ``spex_monitor_`` prefix, base units, ``_total`` counters, histograms
for latencies. Labels are limited to model, version, lens, replica and small enums (reason, status,
order, feature, kind): never request text, so cardinality stays bounded.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BACKEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
R2_BUCKETS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)


# OpenMetrics caps an exemplar's label set at 128 UTF-8 characters, names and values together.
_EXEMPLAR_MAX_CHARS = 128


def trace_exemplar(trace_id: str | None) -> dict[str, str] | None:
    """The ``{"trace_id": ...}`` exemplar for a histogram sample, or ``None`` when there is no usable id.

    Exemplars link a latency or faithfulness bucket in Grafana to the distributed trace of the request that
    landed in it. They are the one place a per-request value appears in the exposition, and only the
    caller's opaque trace id — never request text. Ids too long for OpenMetrics are dropped, not truncated
    (a truncated id would point at the wrong trace).
    """
    if not trace_id or len("trace_id") + len(trace_id) > _EXEMPLAR_MAX_CHARS:
        return None
    return {"trace_id": trace_id}


class Metrics:
    """Every metric the sidecar exports; one instance per process (tests make their own registries)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # configured model names: the only values a ``model`` label may take besides "" (see model_label)
        self.model_names: frozenset[str] = frozenset()
        r = self.registry
        mv = ["model", "version"]
        self.requests_observed = Counter(
            "spex_monitor_requests_observed", "Requests seen by the sidecar.", mv, registry=r
        )
        self.sampled = Counter(
            "spex_monitor_sampled", "Requests that became explanation candidates.", mv, registry=r
        )
        self.dropped = Counter(
            "spex_monitor_dropped",
            "Requests or candidates dropped, by reason.",
            ["model", "reason"],
            registry=r,
        )
        self.explanations = Counter(
            "spex_monitor_explanations",
            "Explanations finished, by status.",
            ["model", "version", "lens", "status"],
            registry=r,
        )
        self.ablation_inferences = Counter(
            "spex_monitor_ablation_inferences",
            "Model inferences spent on ablations.",
            ["model", "lens"],
            registry=r,
        )
        self.budget_utilization = Gauge(
            "spex_monitor_budget_utilization_ratio",
            "Share of the ablation budget in use (0-1).",
            ["model"],
            registry=r,
        )
        self.explanation_duration = Histogram(
            "spex_monitor_explanation_duration_seconds",
            "Wall time of one explanation.",
            ["model", "lens"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.faithfulness = Histogram(
            "spex_monitor_explanation_faithfulness_r2",
            "Held-out R² of each explanation's surrogate.",
            ["model", "lens"],
            buckets=R2_BUCKETS,
            registry=r,
        )
        self.context_share = Histogram(
            "spex_monitor_generation_context_share_ratio",
            "Per explained LLM generation: share of the completion log-prob effect carried by interactions "
            "involving a context segment (lens.context_prefixes: retrieved documents, tool outputs).",
            ["model"],
            buckets=R2_BUCKETS,
            registry=r,
        )
        self.shift_score = Gauge(
            "spex_monitor_interaction_shift_score",
            "Interaction-shift score of the last closed window.",
            mv,
            registry=r,
        )
        self.shift_pvalue = Gauge(
            "spex_monitor_interaction_shift_pvalue",
            "Permutation p-value of the last closed window.",
            mv,
            registry=r,
        )
        self.order_share = Gauge(
            "spex_monitor_interaction_order_share",
            "Energy share of interaction order (1, 2, 3 = 3+) in the last window.",
            [*mv, "order"],
            registry=r,
        )
        self.rank_ndcg = Gauge(
            "spex_monitor_attribution_rank_ndcg",
            "First-order attribution rank agreement with the baseline (NDCG).",
            mv,
            registry=r,
        )
        self.input_drift = Gauge(
            "spex_monitor_input_drift_psi", "Input drift (PSI) by feature.", [*mv, "feature"], registry=r
        )
        self.output_drift = Gauge(
            "spex_monitor_output_drift_psi", "Output drift (PSI) by kind.", [*mv, "kind"], registry=r
        )
        self.backend_up = Gauge(
            "spex_monitor_backend_up", "1 when the backend replica accepts work.", ["replica"], registry=r
        )
        self.backend_duration = Histogram(
            "spex_monitor_backend_request_duration_seconds",
            "Latency of one ablation batch on a backend replica.",
            ["replica"],
            buckets=BACKEND_BUCKETS,
            registry=r,
        )
        self.store_write_errors = Counter(
            "spex_monitor_store_write_errors", "Store writes that failed (disk full, I/O error).", registry=r
        )
        self.store_degraded = Gauge(
            "spex_monitor_store_degraded",
            "1 while the last store write failed: monitoring continues without persistence.",
            registry=r,
        )
        self.windows_closed = Counter(
            "spex_monitor_windows_closed", "Windows closed and compared.", [*mv, "alarm"], registry=r
        )
        self.events_received = Counter(
            "spex_monitor_events_received",
            "Inference-logger CloudEvents received, by type (request, response, unknown).",
            ["type"],
            registry=r,
        )
        self.events_pending = Gauge(
            "spex_monitor_events_pending",
            "Inference-logger events waiting for their request/response partner.",
            registry=r,
        )

    def model_label(self, name: str) -> str:
        """``name`` when it is a configured model, else ``""``: callers choose model names, and a label per
        unknown name would grow the exposition (and Prometheus) by one series per name sent."""
        return name if name in self.model_names else ""

    def drop(self, model: str, reason: str, count: float = 1.0) -> None:
        """Count a drop under the model's label (``""`` for unknown models)."""
        self.dropped.labels(self.model_label(model), reason).inc(count)

    def record_report(self, model: str, version: str, report: object) -> None:
        """Export a :class:`~spex_monitor.monitor.ShiftReport`; a non-finite value is never exported (the
        gauge keeps its last finite value)."""
        _set(self.shift_score.labels(model, version), report.score)  # type: ignore[attr-defined]
        _set(self.shift_pvalue.labels(model, version), report.p_value)  # type: ignore[attr-defined]
        for order, (_, window) in report.order_shares.items():  # type: ignore[attr-defined]
            _set(self.order_share.labels(model, version, str(order)), window)
        _set(self.rank_ndcg.labels(model, version), report.first_order_ndcg)  # type: ignore[attr-defined]
        for feature, value in report.input_drift.items():  # type: ignore[attr-defined]
            _set(self.input_drift.labels(model, version, feature), value)
        for kind, value in report.output_drift.items():  # type: ignore[attr-defined]
            _set(self.output_drift.labels(model, version, kind), value)


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite number, else ``None``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _set(gauge: object, value: object) -> None:
    number = finite(value)
    if number is not None:
        gauge.set(number)  # type: ignore[attr-defined]
