"""Metrics recording driven by the monitor's typed events and closed windows.

:class:`MetricsRecorder` is the monitor's ``on_event`` and ``on_window`` hook: each event type
(:mod:`spex_monitor.monitor.events`) moves its own metrics; a closed window moves the window and shift
series, posts its report to the :class:`~.reports.ReportBoard` and logs an alarm (with words only under
``server.log_request_content``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ..monitor.events import (
    ExplanationFinished,
    MonitorEvent,
    RequestDropped,
    RequestObserved,
    RequestSampled,
    StoreWriteFailed,
)
from ..monitor.records import WindowResult
from .metrics import Metrics, finite, trace_exemplar
from .reports import LatestReport, MovedInteraction, ReportBoard

log = logging.getLogger("spex_monitor.server.app")

TOP_MOVES = 10  # moves kept per report for /api/top-interactions


class MetricsRecorder:
    """Turns monitor events into Prometheus samples (explicit metrics, no hidden globals).

    Args:
        metrics: where samples go.
        lens_of: model name → lens kind (the ``lens`` label).
        utilization: the ablation budget's current utilization (0-1), read after each explanation.
        public_key: makes a key tuple safe to leave the process (rare words → ``<rare>``).
        reports: where each closed window's report is posted.
        log_content: whether an alarm's log line may name its top interaction's words.
    """

    def __init__(
        self,
        metrics: Metrics,
        lens_of: Mapping[str, str],
        utilization: Callable[[], float],
        public_key: Callable[[tuple[str, ...]], tuple[str, ...]],
        reports: ReportBoard,
        log_content: bool = False,
    ) -> None:
        self.metrics = metrics
        self.lens_of = dict(lens_of)
        self.utilization = utilization
        self.public_key = public_key
        self.reports = reports
        self.log_content = log_content

    def on_event(self, event: MonitorEvent) -> None:
        """Record one monitor event (the monitor's ``on_event`` hook)."""
        m = self.metrics
        match event:
            case RequestObserved(model, version):
                m.requests_observed.labels(model, version).inc()
            case RequestSampled(model, version):
                m.sampled.labels(model, version).inc()
            case RequestDropped(model, reason, count):
                m.drop(model, reason, float(count))
            case StoreWriteFailed():
                m.store_write_errors.inc()
                m.store_degraded.set(1.0)
            case ExplanationFinished():
                self._explained(event)

    def _explained(self, event: ExplanationFinished) -> None:
        m = self.metrics
        model, version = event.model, event.version
        lens = self.lens_of.get(model, "")
        exemplar = trace_exemplar(event.trace_id)
        m.explanations.labels(model, version, lens, event.status).inc()
        seconds = finite(event.seconds)
        if seconds is not None:
            m.explanation_duration.labels(model, lens).observe(seconds, exemplar)
        if event.status == "ok":
            m.ablation_inferences.labels(model, lens).inc(int(event.inferences))
            faithfulness = finite(event.faithfulness)
            if faithfulness is not None:  # never NaN or ±inf into a histogram
                m.faithfulness.labels(model, lens).observe(faithfulness, exemplar)
        m.budget_utilization.labels(model).set(self.utilization())

    def on_window(self, result: WindowResult) -> None:
        """Record one closed window (the monitor's ``on_window`` hook)."""
        window = result.window
        for alarm in ("true", "false"):  # both series exist from the first window: increase() sees alarm 1
            self.metrics.windows_closed.labels(window.model, window.version, alarm)
        self.metrics.windows_closed.labels(window.model, window.version, str(result.alarm).lower()).inc()
        report = result.report
        if report is None:
            return
        self.metrics.record_report(window.model, window.version, report)
        self.reports.post(
            LatestReport(
                model=window.model,
                version=window.version,
                window_id=result.window_id,
                score=report.score,
                p_value=report.p_value,
                alarm=result.alarm,
                top=[
                    MovedInteraction(self.public_key(c.key), c.baseline, c.window, c.delta, c.exemplars)
                    for c in report.top_contributors(TOP_MOVES)
                ],
            )
        )
        if result.alarm:
            top = report.top_contributors(1)
            shown = self.public_key(top[0].key) if top else None
            log.warning(
                "interaction shift: model=%s version=%s window=%s p=%.4g%s",
                window.model,
                window.version,
                result.window_id,
                report.p_value,
                # words stay out of logs unless server.log_request_content (trace shows them to readers)
                f" top={shown}" if self.log_content else "",
            )
