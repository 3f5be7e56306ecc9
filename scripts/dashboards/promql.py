"""The PromQL vocabulary shared by dashboards and alert rules: metric families, scopes and query shapes.

Every query the dashboards and alerts run is one of three shapes over a family: an aggregated gauge
(``max by (model) (family{scope})``), an aggregated counter change (``sum by (model) (rate(family[w]))``) or
a histogram quantile. Writing them through these helpers keeps the ~60 queries uniform; the family names
are checked against the exporter by tests/unit/test_dashboards.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RATE = "$__rate_interval"  # Grafana's rate window: max($__interval + scrape, 4 x scrape)


@dataclass(frozen=True)
class Scope:
    """Label matchers a dashboard puts on every query: all models (overview) or one model (drill-down)."""

    model: str  # for metrics labelled by model only (budget, drops, latency, faithfulness)
    model_version: str  # for metrics labelled by model and version (traffic, shift, drift)


OVERVIEW_SCOPE = Scope('model=~"$model"', 'model=~"$model"')
MODEL_SCOPE = Scope('model="$model"', 'model="$model", version=~"$version"')


@dataclass(frozen=True)
class Family:
    """A metric family as Prometheus stores it, and which scope matcher its labels take.

    ``labels``: ``"model, version"``, ``"model"`` or ``""`` (not per model: replicas, the store, events).
    Calling a family gives its selector: ``REQUESTS(scope, 'alarm="true"')``.
    """

    name: str
    labels: str = "model, version"

    def __call__(self, scope: Scope | None = None, *matchers: str) -> str:
        scoped = None
        if scope is not None and self.labels:
            scoped = scope.model_version if "version" in self.labels else scope.model
        found = [m for m in (scoped, *matchers) if m]
        return f"{self.name}{{{', '.join(found)}}}" if found else self.name


# ------------------------------------------------------------------------- the exporter's metric families
REQUESTS = Family("spex_monitor_requests_observed_total")
SAMPLED = Family("spex_monitor_sampled_total")
DROPPED = Family("spex_monitor_dropped_total", "model")
BUDGET = Family("spex_monitor_budget_utilization_ratio", "model")
EXPLANATIONS = Family("spex_monitor_explanations_total")
INFERENCES = Family("spex_monitor_ablation_inferences_total", "model")
LATENCY = Family("spex_monitor_explanation_duration_seconds_bucket", "model")
FAITHFULNESS = Family("spex_monitor_explanation_faithfulness_r2_bucket", "model")
SHIFT_SCORE = Family("spex_monitor_interaction_shift_score")
SHIFT_PVALUE = Family("spex_monitor_interaction_shift_pvalue")
WINDOWS = Family("spex_monitor_windows_closed_total")
ORDER_SHARE = Family("spex_monitor_interaction_order_share")
NDCG = Family("spex_monitor_attribution_rank_ndcg")
INPUT_PSI = Family("spex_monitor_input_drift_psi")
OUTPUT_PSI = Family("spex_monitor_output_drift_psi")
BACKEND_UP = Family("spex_monitor_backend_up", "")
BACKEND_LATENCY = Family("spex_monitor_backend_request_duration_seconds_bucket", "")
STORE_DEGRADED = Family("spex_monitor_store_degraded", "")
STORE_ERRORS = Family("spex_monitor_store_write_errors_total", "")
EVENTS = Family("spex_monitor_events_received_total", "")
EVENTS_PENDING = Family("spex_monitor_events_pending", "")
# LLM models only (lens.kind: prompt); read without a model matcher so a classifier selection shows no gap
CONTEXT_SHARE_SUM = Family("spex_monitor_generation_context_share_ratio_sum", "")
CONTEXT_SHARE_COUNT = Family("spex_monitor_generation_context_share_ratio_count", "")
# Prometheus's own series for every scrape target of a job whose name says spex-monitor.
SCRAPE_UP = 'up{job=~".*spex-monitor.*"}'


# ------------------------------------------------------------------------------------------- query shapes
def aggregate(function: str, by: str, inner: str) -> str:
    """``function by (by) (inner)``, or ``function(inner)`` when ``by`` is empty."""
    return f"{function} by ({by}) ({inner})" if by else f"{function}({inner})"


def change(selector: str, window: str = RATE, function: str = "rate", offset: str = "") -> str:
    """A counter's per-second ``rate`` (or total ``increase``) over ``window``, ``offset`` back in time."""
    shifted = f" offset {offset}" if offset else ""
    return f"{function}({selector}[{window}]{shifted})"


def quantile(q: float, buckets: str, by: Sequence[str] = (), window: str = RATE) -> str:
    """``histogram_quantile`` of a histogram's bucket selector, per ``by`` labels."""
    return f"histogram_quantile({q}, {aggregate('sum', ', '.join([*by, 'le']), change(buckets, window))})"


def context_share_mean(model: str = "", window: str = RATE, offset: str = "") -> str:
    """Mean context share per LLM model over ``window`` (``offset`` back): the histogram's sum over its
    count (``model``: an optional matcher such as ``model="$model"``)."""
    sums = change(CONTEXT_SHARE_SUM(None, model), window, offset=offset)
    counts = change(CONTEXT_SHARE_COUNT(None, model), window, offset=offset)
    return f"{aggregate('sum', 'model', sums)} / {aggregate('sum', 'model', counts)}"
