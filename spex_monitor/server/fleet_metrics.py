"""Prometheus series of the fleet view (issue 20 §3), exported by the sidecar whose aggregator holds a
model's lock.

A family of its own (``spex_monitor_fleet_*``, each series labelled ``scope="fleet"``) rather than a
``scope`` label added to the pod series: every existing dashboard, alert rule and query selects
``spex_monitor_interaction_shift_score{model=...}`` and would otherwise mix fleet values into pod panels,
and ``sum``/``avg`` over the pod family never counts a fleet window twice. docs/fleet.md gives the queries.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..monitor.fleet import FleetResult
from .metrics import finite

LABELS = ["model", "version", "scope"]


class FleetMetrics:
    """The fleet series, registered on ``registry`` (the sidecar's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows = Counter(
            "spex_monitor_fleet_windows_total",
            "Fleet windows merged by this sidecar's aggregator (it holds the model's lock).",
            LABELS,
            registry=registry,
        )
        self.pods = Gauge(
            "spex_monitor_fleet_window_pods", "Pods whose windows the last fleet window merged.", LABELS,
            registry=registry,
        )  # fmt: skip
        self.requests = Gauge(
            "spex_monitor_fleet_window_requests",
            "Explained requests in the last fleet window, over every pod.",
            LABELS,
            registry=registry,
        )
        self.score = Gauge(
            "spex_monitor_fleet_interaction_shift_score",
            "Interaction-shift score of the last compared fleet window.",
            LABELS,
            registry=registry,
        )
        self.pvalue = Gauge(
            "spex_monitor_fleet_interaction_shift_pvalue",
            "Permutation p-value of the last compared fleet window.",
            LABELS,
            registry=registry,
        )
        self.alarm = Gauge(
            "spex_monitor_fleet_shift_alarm",
            "1 when the last compared fleet window alarmed, else 0.",
            LABELS,
            registry=registry,
        )

    def record(self, result: FleetResult) -> None:
        """Export one stored fleet window; the score, p-value and alarm only when it was compared, and a
        non-finite value never (the gauge keeps its last finite one)."""
        labels = (result.model, result.version, "fleet")
        self.windows.labels(*labels).inc()
        self.pods.labels(*labels).set(result.pods)
        self.requests.labels(*labels).set(result.requests)
        if result.report is None:
            return
        for gauge, value in ((self.score, result.report.score), (self.pvalue, result.report.p_value)):
            number = finite(value)
            if number is not None:
                gauge.labels(*labels).set(number)
        self.alarm.labels(*labels).set(1.0 if result.alarm else 0.0)
