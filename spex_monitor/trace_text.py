"""The on-call trace as plain text: what ``spex-monitor trace`` prints and the demo shows.

It sits beside :mod:`.html_report` (the same trace as a self-contained HTML page), below both the CLI and
the demo, which import it from here.

Alarm rule (the same in the monitor, the alert rules and the docs): a window alarms when its permutation
p-value is **strictly below** ``baseline.alarm_p_value`` (``p < α``; ``p = α`` does not alarm). p-values are
printed rounded *down* to three significant digits (:func:`format_p`), so a printed p never reads as the
threshold when it is below it (10/1001 = 0.00999…, printed ``0.00999``, not ``0.0100``).

Range semantics (``trace --since``): every window closed in the range is listed with its *own* verdict; the
range is never pooled into one verdict (pooling a quiet baseline period with an incident hides the incident).
The detail below the list is the latest alarming window of the range, or the latest window when none alarmed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from .protocol.v1 import monitor_pb2 as pb

ALARM_RULE = "alarm when p < baseline.alarm_p_value"


def format_p(p: float, digits: int = 3) -> str:
    """``p`` rounded *down* to ``digits`` significant digits (so p < α never prints as α); "1" for p ≥ 1,
    "0" for p ≤ 0 and "nan" for a non-finite p."""
    if not math.isfinite(p):
        return "nan"
    if p >= 1:
        return "1"
    if p <= 0:
        return "0"
    exponent = math.floor(math.log10(p)) - digits + 1
    value = Decimal(repr(p)).quantize(Decimal(1).scaleb(exponent), rounding=ROUND_FLOOR)
    text = format(value.normalize(), "f")
    return text


def verdict(report: pb.ShiftReport) -> str:
    """"ALARM: interaction shift" or "no interaction shift alarm", as the sidecar decided it."""
    return "ALARM: interaction shift" if report.alarm else "no interaction shift alarm"


def render_trace(report: pb.ShiftReport, stub: Any, model: str, since: float = 0.0) -> str:
    """The on-call view of ``report``: verdict, summary, drift, the contributor table (at most 10), the
    stored requests where the top one mattered (``stub.ListExplanations``, at most 5, since ``since`` unix
    seconds), and one baseline request beside one window request for it (``stub.GetExplanation``).

    Raises:
        grpc.RpcError: a ListExplanations or GetExplanation call failed (NOT_FOUND aside).
    """
    where = f"window {report.window_id}"
    if report.scope == "fleet":
        where = f"fleet window {report.window_id} ({report.pods} pods)"
    lines = [
        f"{model} {report.version} {where}: {verdict(report)} "
        f"(score {report.score:.3f}, p = {format_p(report.p_value)}, {ALARM_RULE}; "
        f"{report.window_requests:.0f} explained)"
    ]
    if summary(report):
        lines.append(f"  {summary(report)}")
    lines.extend(decisive_lines(report))
    drift_in = ", ".join(f"{k} {v:.2f}" for k, v in report.input_drift_psi.items())
    drift_out = ", ".join(f"{k} {v:.2f}" for k, v in report.output_drift_psi.items())
    lines.append(
        f"  input drift PSI: {drift_in or '-'} | output drift PSI: {drift_out or '-'} | "
        f"first-order NDCG {report.first_order_ndcg:.3f}"
    )
    lines.extend(contributor_table(report.top_contributors[:10]))
    if report.top_contributors:
        top = list(report.top_contributors[0].keys)
        hits = stub.ListExplanations(
            pb.ListExplanationsRequest(model=model, key_tuple=top, since_unix=since, limit=5), timeout=30
        ).explanations
        lines.append(
            f"  requests where {' × '.join(top)} mattered: "
            + (", ".join(h.request_id for h in hits) or "none stored")
        )
        leader = report.top_contributors[0]
        lines.extend(exemplar_pair(leader, *fetch_pair(stub, model, leader)))
    return "\n".join(lines)


def decisive_lines(report: pb.ShiftReport, limit: int = 3) -> list[str]:
    """The two tests behind the one alarm's p-value, and the decisive-interaction tuples (at most
    ``limit``): for each, requests where it decided the prediction out of requests holding all of its keys,
    in the baseline and the window, and its Holm-adjusted p. Nothing for a report without the decisive
    test (an LLM's, or one stored before it existed)."""
    if report.decisive_tested == 0 and not report.decisive_tuples:
        return []
    lines = [
        f"  tests: interaction shift p = {format_p(report.shift_p_value)}, decisive interactions "
        f"p = {format_p(report.decisive_p_value)} over {report.decisive_tested} tuples "
        "(the alarm's p = min(1, shift/0.8, decisive/0.2))"
    ]
    for t in list(report.decisive_tuples)[:limit]:
        lines.append(
            f"  decisive {' × '.join(t.keys)}: baseline {t.baseline_decisive}/{t.baseline_opportunities}, "
            f"window {t.window_decisive}/{t.window_opportunities} requests where it decided the prediction "
            f"(Holm p = {format_p(t.adjusted_p_value)})"
        )
    return lines


def pick_detail(reports: Sequence[pb.ShiftReport]) -> pb.ShiftReport | None:
    """The window a range trace details: the latest alarming one, else the latest one (None when empty)."""
    alarming = [r for r in reports if r.alarm]
    return (alarming or list(reports) or [None])[-1]


def render_range(reports: Sequence[pb.ShiftReport], label: str) -> str:
    """Every window of a range (``reports`` oldest first; ``label`` names the range, e.g. "last 1h") with
    its own verdict: time (UTC), window id, p, explained requests, and — for alarming windows only, where
    a move is more than chance — the top moved interaction. The headline counts the alarms, so an alarm
    inside the range is never hidden by quiet windows around it."""
    alarming = [r for r in reports if r.alarm]
    if not reports:
        return f"{label}: no closed windows with a shift report"
    if alarming:
        ids = ", ".join(str(r.window_id) for r in alarming)
        head = f"{label}: ALARM in {len(alarming)} of {len(reports)} windows (window {ids})"
    else:
        head = f"{label}: no interaction shift alarm in {len(reports)} windows"
    lines = [f"{head}; {ALARM_RULE}"]
    lines.append(f"  {'closed (UTC)':<21}{'window':>7}{'p':>9}  {'verdict':<7}{'explained':>10}  top moved")
    for r in reports:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.time_unix)) if r.time_unix else "-"
        moved = "-"
        if r.alarm and r.top_contributors:
            top = r.top_contributors[0]
            moved = f"{' × '.join(top.keys)} ({top.delta:+.3f})"
        lines.append(
            f"  {stamp:<21}{r.window_id:>7}{format_p(r.p_value):>9}  {'ALARM' if r.alarm else 'quiet':<7}"
            f"{r.window_requests:>10.0f}  {moved}"
        )
    return "\n".join(lines)


def reading(c: pb.Contributor) -> str:
    """How to read one contributor's move: "behaviour changed" (its behaviour term lies beyond its 95 %
    interval; "(inputs too)" when the mix term does as well), "not in the window's requests" / "new in the
    window's requests" (the keys stopped / began occurring together: an input change, nothing said about
    the model), "input mix" (only the co-occurrence moved beyond its interval), "within noise", or "-" when
    the maps hold no per-request keys."""
    if not c.cooccurrence_measured:
        return "-"
    if c.window_present_requests == 0:
        return "not in the window's requests"
    if c.baseline_present_requests == 0:
        return "new in the window's requests"
    behaviour = abs(c.behaviour_delta) > c.behaviour_delta_ci > 0
    mix = abs(c.mix_delta) > c.mix_delta_ci > 0
    if behaviour:
        return "behaviour changed" + (" (inputs too)" if mix else "")
    return "input mix" if mix else "within noise"


def _strength(value: float, ci: float, support: float) -> str:
    if support == 0:
        return "absent"
    return f"{value:.3f}±{ci:.3f}" if support >= 2 else f"{value:.3f} (n=1)"


def contributor_table(contributors: Sequence[pb.Contributor]) -> list[str]:
    """The contributor table, ranked as the sidecar ranked them (by behaviour change): mass per request
    (baseline → window), co-occurrence rate (share of requests holding all the keys), strength when present
    (mean |coef| over those requests ± 95 %), the behaviour and the mix terms of the move (± 95 %), how to
    read it (:func:`reading`), and example request ids."""
    lines = [
        f"  {'rank':<5}{'interaction':<24}{'mass/request':>16}{'co-occurrence':>15}  "
        f"{'strength when present':<27}{'behaviour Δ':>16}{'mix Δ':>15}  {'reads as':<29}examples"
    ]
    for rank, c in enumerate(contributors, start=1):
        mass = f"{c.baseline:.3f}→{c.window:.3f}"
        if c.cooccurrence_measured:
            rates = f"{c.baseline_cooccurrence:.0%}→{c.window_cooccurrence:.0%}"
            b, w = c.baseline_present_requests, c.window_present_requests
            before = _strength(c.baseline_strength_present, c.baseline_strength_present_ci, b)
            after = _strength(c.window_strength_present, c.window_strength_present_ci, w)
            strength = f"{before} → {after}"
            ci = f"±{c.behaviour_delta_ci:.3f}" if c.behaviour_delta_ci > 0 else " n/a  "
            behaviour = f"{c.behaviour_delta:+.3f}{ci}"
            mix = f"{c.mix_delta:+.3f}±{c.mix_delta_ci:.3f}"
        else:
            rates, strength, behaviour, mix = "-", "-", "-", "-"
        lines.append(
            f"  {rank:<5}{' × '.join(c.keys):<24}{mass:>16}{rates:>15}  {strength:<27}{behaviour:>16}"
            f"{mix:>15}  {reading(c):<29}{', '.join(c.exemplar_request_ids[:2])}"
        )
    return lines


def summary(report: pb.ShiftReport) -> str:
    """One sentence on the report's contributors, e.g. "(good, not) lost 90 % of its strength where all
    its keys occur; 2 other tuples moved with the input mix; 7 moved by chance" (no alarm: says so first).
    Built from :func:`reading`; "" without contributors."""
    contributors = list(report.top_contributors)
    if not contributors:
        return ""
    readings = [reading(c) for c in contributors]
    parts = []
    top = contributors[0]
    if readings[0].startswith("behaviour changed") and top.baseline_strength_present > 0:
        change = top.window_strength_present / top.baseline_strength_present - 1
        verb = "lost" if change < 0 else "gained"
        parts.append(
            f"({', '.join(top.keys)}) {verb} {abs(change):.0%} of its strength where all its keys occur "
            f"({top.baseline_strength_present:.3f} → {top.window_strength_present:.3f} ± "
            f"{top.window_strength_present_ci:.3f})"
        )
        rest = readings[1:]
    else:
        rest = readings
    behaviour = sum(r.startswith("behaviour changed") for r in rest)
    mixed = ("input mix", "not in the window's requests", "new in the window's requests")
    mix = sum(r in mixed for r in rest)
    chance = sum(r == "within noise" for r in rest)
    other = "other " if parts else ""
    if behaviour:
        parts.append(f"{behaviour} {other}tuple{'s' * (behaviour != 1)} changed behaviour too")
    if mix:
        parts.append(f"{mix} {other}moved with the input mix (their keys occur together more or less often)")
    if chance:
        parts.append(f"{chance} {other}moved by chance")
    if not parts:
        return ""
    text = "; ".join(parts)
    return text if report.alarm else f"no alarm (any move is within chance): {text}"


def fetch_explanation(stub: Any, model: str, request_id: str) -> pb.StoredExplanation | None:
    """``stub.GetExplanation`` of ``request_id``; ``None`` when it is not stored (NOT_FOUND) or the sidecar
    predates the RPC (UNIMPLEMENTED). Other RPC errors propagate."""
    import grpc

    try:
        request = pb.GetExplanationRequest(model=model, request_id=request_id, top_k=100)  # all stored terms
        return stub.GetExplanation(request, timeout=30)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
            return None
        raise


def fetch_pair(
    stub: Any, model: str, contributor: pb.Contributor
) -> tuple[pb.StoredExplanation | None, pb.StoredExplanation | None]:
    """One stored baseline exemplar and one stored window exemplar of ``contributor`` (the first of its
    ids that is still stored on each side; at most 3 lookups a side)."""
    found = []
    for ids in (contributor.baseline_exemplar_request_ids, contributor.exemplar_request_ids):
        hit = None
        for request_id in list(ids)[:3]:
            if (hit := fetch_explanation(stub, model, request_id)) is not None:
                break
        found.append(hit)
    return found[0], found[1]


def term_value(explanation: pb.StoredExplanation, keys: Sequence[str]) -> float | None:
    """Sum of the explanation's stored terms over the key tuple ``keys`` (None when none is stored)."""
    wanted = sorted(keys)
    values = [t.fourier for t in explanation.top if sorted(t.keys) == wanted]
    return sum(values) if values else None


def _text(explanation: pb.StoredExplanation, width: int = 44) -> str:
    if not explanation.text_stored:
        return "(text not stored)"
    text = explanation.text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def exemplar_pair(
    contributor: pb.Contributor, before: pb.StoredExplanation | None, after: pb.StoredExplanation | None
) -> list[str]:
    """For ``contributor``, one baseline request beside one window request: id, (redacted) text when
    stored, the interaction's coefficient in each, R² and version."""
    keys = " × ".join(contributor.keys)
    lines = [f"  {keys}, one request on each side:", f"    {'':<16}{'baseline':<46}window"]

    def cell(e: pb.StoredExplanation | None, what: str) -> str:
        if e is None:
            return "(none stored)" if what == "request" else "-"
        if what == "request":
            return e.request_id
        if what == "text":
            return _text(e)
        if what == "coef":
            value = term_value(e, contributor.keys)
            return f"{value:+.3f}" if value is not None else "weaker than every stored term"
        return f"R² {e.faithfulness:.2f}, {e.version}"

    rows = (("request", "request"), ("text", "text"), ("coef", keys[:15]), ("fit", "explanation"))
    for what, label in rows:
        lines.append(f"    {label:<16}{cell(before, what):<46}{cell(after, what)}")
    return lines


def render_explanation(e: pb.StoredExplanation) -> str:
    """``trace --request``: one stored explanation — model/version, time (UTC), trace id, faithfulness,
    inferences, the redacted text when stored, and its strongest terms."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.time_unix)) if e.time_unix else "-"
    lines = [
        f"request {e.request_id}: {e.model} {e.version}, explained {when}, trace id {e.trace_id or '-'}",
        f"  held-out R² {e.faithfulness:.3f}, {e.inferences} inferences",
        "  text: "
        + (e.text if e.text_stored else "not stored (store.store_text is off, or past store.text_ttl_s)"),
        f"  {'interaction':<36}{'fourier':>10}",
    ]
    for term in e.top:
        keys = " × ".join(k or f"#{i}" for k, i in zip(term.keys, term.features, strict=False))
        lines.append(f"  {keys:<36}{term.fourier:>+10.3f}")
    if any(not k for t in e.top for k in t.keys):
        lines.append("  (#n: feature n, whose word was not kept or has expired)")
    return "\n".join(lines)
