"""What the sidecar exports from the monitor's events: Prometheus metrics, the latest reports for
``/api/top-interactions``, and the alarm log line (words only with ``server.log_request_content``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..monitor.worker import WindowResult
from .metrics import finite, trace_exemplar

if TYPE_CHECKING:
    from .app import Sidecar

log = logging.getLogger("spex_monitor.server.app")


def on_event(sidecar: Sidecar, kind: str, data: dict) -> None:
    model = str(data.get("model", ""))
    version = str(data.get("version", ""))
    m = sidecar.metrics
    if kind == "observed":
        m.requests_observed.labels(model, version).inc()
    elif kind == "sampled":
        m.sampled.labels(model, version).inc()
    elif kind == "dropped":
        m.drop(model, str(data["reason"]), float(data.get("count", 1)))
    elif kind == "store_error":
        m.store_write_errors.inc()
        m.store_degraded.set(1.0)
    elif kind == "explained":
        lens = sidecar.lens.get(model, "")
        exemplar = trace_exemplar(data.get("trace_id"))
        m.explanations.labels(model, version, lens, data["status"]).inc()
        seconds = finite(data["seconds"])
        if seconds is not None:
            m.explanation_duration.labels(model, lens).observe(seconds, exemplar)
        if data["status"] == "ok":
            m.ablation_inferences.labels(model, lens).inc(int(data["inferences"]))
            faithfulness = finite(data["faithfulness"])
            if faithfulness is not None:  # never NaN or ±inf into a histogram
                m.faithfulness.labels(model, lens).observe(faithfulness, exemplar)
        m.budget_utilization.labels(model).set(sidecar.monitor.budget.utilization())


def on_window(sidecar: Sidecar, result: WindowResult) -> None:
    window = result.window
    for alarm in (
        "true",
        "false",
    ):  # both series exist from the first window, so increase() sees the first alarm
        sidecar.metrics.windows_closed.labels(window.model, window.version, alarm)
    sidecar.metrics.windows_closed.labels(window.model, window.version, str(result.alarm).lower()).inc()
    if result.report is None:
        return
    sidecar.metrics.record_report(window.model, window.version, result.report)
    entry = {
        "model": window.model,
        "version": window.version,
        "window_id": result.window_id,
        "score": result.report.score,
        "p_value": result.report.p_value,
        "alarm": result.alarm,
        "top": [
            {
                "keys": list(sidecar.monitor.public_key(c.key)),
                "baseline": c.baseline,
                "window": c.window,
                "delta": c.delta,
                "exemplars": c.exemplars,
            }
            for c in result.report.top_contributors(10)
        ],
    }
    with sidecar._reports_lock:
        sidecar.last_reports[(window.model, window.version)] = entry
    if result.alarm:
        top = result.report.top_contributors(1)
        shown = sidecar.monitor.public_key(top[0].key) if top else None
        log.warning(
            "interaction shift: model=%s version=%s window=%s p=%.4g%s",
            window.model,
            window.version,
            result.window_id,
            result.report.p_value,
            # words stay out of logs unless server.log_request_content (trace shows them to readers)
            f" top={shown}" if sidecar.settings.server.log_request_content else "",
        )


def top_interactions(sidecar: Sidecar) -> list[dict]:
    """Rows of ``/api/top-interactions``: each model's last report's strongest moves."""
    with sidecar._reports_lock:
        reports = list(sidecar.last_reports.values())
    rows = []
    for report in reports:
        for c in report["top"]:
            rows.append(
                {
                    "model": report["model"],
                    "version": report["version"],
                    "p_value": report["p_value"],
                    "alarm": report["alarm"],
                    "interaction": " × ".join(c["keys"]),
                    "baseline": c["baseline"],
                    "window": c["window"],
                    "delta": c["delta"],
                    "exemplars": ", ".join(c["exemplars"]),
                }
            )
    return rows
