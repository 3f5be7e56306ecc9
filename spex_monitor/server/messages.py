"""ShiftReport messages from a fresh comparison or a stored report (the wire shape of one report)."""

from __future__ import annotations

from typing import Any

from ..monitor.contributors import STORED_FIELDS
from ..protocol.v1 import monitor_pb2 as pb


def report_message(model: str, version: str, window_id: int, report: Any, alarm: bool) -> pb.ShiftReport:
    """The ``ShiftReport`` message of a fresh comparison: scores, order shares, drift and the 10 top
    contributors (keys as given: the caller maps them to public keys).
    """
    message = pb.ShiftReport(
        model=model,
        version=version,
        window_id=window_id,
        score=report.score,
        p_value=report.p_value,
        alarm=alarm,
        first_order_ndcg=report.first_order_ndcg,
        window_requests=report.window_requests,
    )
    for order, (base, window) in report.order_shares.items():
        message.order_share_baseline[str(order)] = base
        message.order_share_window[str(order)] = window
    message.input_drift_psi.update(report.input_drift)
    message.output_drift_psi.update(report.output_drift)
    for c in report.top_contributors(10):
        message.top_contributors.add(
            keys=list(c.key),
            baseline=c.baseline,
            window=c.window,
            delta=c.delta,
            exemplar_request_ids=c.exemplars,
            baseline_exemplar_request_ids=list(c.baseline_exemplars),
            **(c.split.fields() if c.split is not None else {}),
        )
    message.shift_p_value = report.shift_p_value
    if report.decisive is not None:
        _decisive(message, report.decisive.fields())
    else:
        message.decisive_p_value = 1.0
    return message


def _decisive(message: pb.ShiftReport, fields: dict) -> None:
    """Fill the decisive-interaction fields from :meth:`~spex_monitor.monitor.decisive_shift.
    DecisiveReport.fields` output (fresh or stored)."""
    message.decisive_p_value = fields["p_value"]
    message.decisive_tested = int(fields["tested"])
    for t in fields["tuples"][:10]:
        message.decisive_tuples.add(**t)


def stored_report_message(model: str, version: str, stored: dict) -> pb.ShiftReport:
    """The ``ShiftReport`` message of a report as :meth:`~spex_monitor.monitor.store.SQLStore.reports`
    returns it (a fleet report also carries its scope, window range and pod count)."""
    message = pb.ShiftReport(
        model=model,
        version=version,
        window_id=stored["window_id"] or 0,
        score=stored["score"],
        p_value=stored["p_value"],
        alarm=bool(stored.get("alarm")),
        first_order_ndcg=stored.get("first_order_ndcg", 1.0),
        window_requests=stored.get("window_requests", 0.0),
        time_unix=stored["ts"],
        scope=stored.get("scope", "pod"),
        window_start_unix=stored.get("start_ts") or 0.0,
        window_end_unix=stored.get("end_ts") or 0.0,
        pods=int(stored.get("pods", 0)),
    )
    for order, (base, window) in stored.get("order_shares", {}).items():
        message.order_share_baseline[order] = base
        message.order_share_window[order] = window
    message.input_drift_psi.update(stored.get("input_drift", {}))
    message.output_drift_psi.update(stored.get("output_drift", {}))
    for keys, base, window, delta, exemplars, *rest in stored.get("top", []):
        # a sixth item (reports stored since issue 19): the mix / behaviour split and baseline exemplars
        split = {k: v for k, v in (rest[0] if rest else {}).items() if k in STORED_FIELDS}
        message.top_contributors.add(
            keys=keys, baseline=base, window=window, delta=delta, exemplar_request_ids=exemplars, **split
        )
    # reports stored since issue 21: the two tests behind p_value (older ones: p_value is the shift test's)
    message.shift_p_value = stored.get("shift_p_value", stored["p_value"])
    if stored.get("decisive"):
        _decisive(message, stored["decisive"])
    else:
        message.decisive_p_value = 1.0
    return message
