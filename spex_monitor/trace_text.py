"""The on-call trace as plain text: what ``spex-monitor trace`` prints and the demo shows.

It sits beside :mod:`.html_report` (the same trace as a self-contained HTML page), below both the CLI and
the demo, which import it from here.
"""

from __future__ import annotations

from typing import Any

from .protocol.v1 import monitor_pb2 as pb


def render_trace(report: pb.ShiftReport, stub: Any, model: str, since: float = 0.0) -> str:
    """The on-call view of ``report``: verdict, drift, the interactions that moved (at most 10), and the
    stored requests where the top one mattered (``stub.ListExplanations``, at most 5, since ``since``
    unix seconds).

    Raises:
        grpc.RpcError: the ListExplanations call failed.
    """
    verdict = "ALARM: interaction shift" if report.alarm else "no interaction shift alarm"
    where = f"window {report.window_id}"
    if report.scope == "fleet":
        where = f"fleet window {report.window_id} ({report.pods} pods)"
    lines = [
        f"{model} {report.version} {where}: {verdict} "
        f"(score {report.score:.3f}, p = {report.p_value:.4f}, {report.window_requests:.0f} explained)"
    ]
    drift_in = ", ".join(f"{k} {v:.2f}" for k, v in report.input_drift_psi.items())
    drift_out = ", ".join(f"{k} {v:.2f}" for k, v in report.output_drift_psi.items())
    lines.append(
        f"  input drift PSI: {drift_in or '-'} | output drift PSI: {drift_out or '-'} | "
        f"first-order NDCG {report.first_order_ndcg:.3f}"
    )
    lines.append(f"  {'rank':<5}{'interaction':<28}{'baseline':>10}{'window':>10}{'delta':>10}  examples")
    for rank, c in enumerate(report.top_contributors[:10], start=1):
        examples = ", ".join(c.exemplar_request_ids[:3])
        lines.append(
            f"  {rank:<5}{' × '.join(c.keys):<28}{c.baseline:>10.3f}{c.window:>10.3f}{c.delta:>+10.3f}"
            f"  {examples}"
        )
    if report.top_contributors:
        top = list(report.top_contributors[0].keys)
        hits = stub.ListExplanations(
            pb.ListExplanationsRequest(model=model, key_tuple=top, since_unix=since, limit=5), timeout=30
        ).explanations
        lines.append(
            f"  requests where {' × '.join(top)} mattered: "
            + (", ".join(h.request_id for h in hits) or "none stored")
        )
    return "\n".join(lines)
