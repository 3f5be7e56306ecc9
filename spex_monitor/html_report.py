"""Self-contained HTML for the CLI's ``--html`` / ``--report`` outputs: inline SVG, no JavaScript, no CDN.

On-call engineers open these files from a laptop or attach them to an incident ticket, often without
network access to the cluster; so the page carries its own charts as SVG strings built here, and every
piece of user-controlled text (request keys, model names) goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .monitor.decisive_shift import SHIFT_WEIGHT
from .trace_text import ALARM_RULE, format_p, reading, summary, term_value

POSITIVE = "#2e86c1"
NEGATIVE = "#c0392b"
BASELINE = "#95a5a6"
ALARM = "#e74c3c"

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}"
    "th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".alarm{color:#c0392b;font-weight:700}.ok{color:#1e8449;font-weight:700}"
    "section{margin-bottom:28px}"
)


def page(title: str, body: str) -> str:
    """A self-contained HTML document: ``title`` escaped, ``body`` inserted as is (the caller escapes it)."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def signed_bars(labels: Sequence[str], values: Sequence[float], width: int = 300) -> str:
    """Horizontal bars, blue for positive and red for negative values, scaled to the largest magnitude."""
    peak = max((abs(v) for v in values), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td class='num'>{value:+.3f}</td><td>"
        f"<svg width='{width}' height='12'><rect width='{max(1, int(width * abs(value) / peak))}' "
        f"height='12' fill='{NEGATIVE if value < 0 else POSITIVE}'/></svg></td></tr>"
        for label, value in zip(labels, values, strict=True)
    )
    return f"<table>{rows}</table>"


def paired_bars(
    labels: Sequence[str], before: Sequence[float], after: Sequence[float], width: int = 260
) -> str:
    """Baseline (grey) and window (coloured) magnitude of each row on one scale: what moved, at a glance."""
    peak = max((abs(v) for v in (*before, *after)), default=0.0) or 1.0
    rows = []
    for label, b, a in zip(labels, before, after, strict=True):
        wb, wa = max(1, int(width * abs(b) / peak)), max(1, int(width * abs(a) / peak))
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td class='num'>{b:.3f}</td><td class='num'>{a:.3f}</td>"
            f"<td class='num'>{a - b:+.3f}</td><td><svg width='{width}' height='20'>"
            f"<rect y='0' width='{wb}' height='9' fill='{BASELINE}'/>"
            f"<rect y='10' width='{wa}' height='9' fill='{NEGATIVE if a < b else POSITIVE}'/></svg></td></tr>"
        )
    head = "<tr><th>interaction</th><th>baseline</th><th>window</th><th>delta</th><th></th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def axis_labels(start: float, end: float) -> tuple[str, str]:
    """Labels (UTC) of a time axis from ``start`` to ``end`` unix seconds, precise enough that two distinct
    ends never read the same: seconds below 10 minutes of span, the date from a day on."""
    span = end - start
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < 86_400 else "%Y-%m-%d %H:%M"
    return tuple(time.strftime(fmt, time.gmtime(t)) + " UTC" for t in (start, end))  # type: ignore[return-value]


def line_chart(
    xs: Sequence[float],
    series: dict[str, Sequence[float]],
    marks: Sequence[bool] = (),
    threshold: float | None = None,
    width: int = 720,
    height: int = 200,
) -> str:
    """A time-series chart (x = unix seconds) with optional alarm markers and a dashed threshold line."""
    if not xs:
        return "<p>no closed windows yet</p>"
    colours = [POSITIVE, "#8e44ad", "#16a085"]
    pad, x0, x1 = 30, min(xs), max(xs)
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    if threshold is not None:
        values.append(threshold)
    lo, hi = min(values, default=0.0), max(values, default=1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5

    def px(x: float) -> float:
        return pad + (width - 2 * pad) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def py(y: float) -> float:
        return height - pad - (height - 2 * pad) * (y - lo) / (hi - lo)

    parts = [f"<svg width='{width}' height='{height}' style='border:1px solid #eee'>"]
    parts.append(f"<text x='4' y='{py(hi) + 4:.0f}' font-size='10'>{hi:.3g}</text>")
    parts.append(f"<text x='4' y='{py(lo):.0f}' font-size='10'>{lo:.3g}</text>")
    if threshold is not None:
        y = py(threshold)
        parts.append(
            f"<line x1='{pad}' x2='{width - pad}' y1='{y:.1f}' y2='{y:.1f}' stroke='{ALARM}' "
            "stroke-dasharray='4 3'/>"
        )
    for (name, ys), colour in zip(series.items(), colours, strict=False):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{points}'/>")
        parts.append(
            f"<text x='{width - pad - 120}' y='{14 + 12 * list(series).index(name)}' font-size='11' "
            f"fill='{colour}'>{html.escape(name)}</text>"
        )
    first = next(iter(series.values()))
    for x, y, alarm in zip(xs, first, marks, strict=False):
        if alarm and math.isfinite(y):
            parts.append(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='4' fill='{ALARM}'/>")
    when = axis_labels(x0, x1)
    parts.append(f"<text x='{pad}' y='{height - 8}' font-size='10'>{when[0]}</text>")
    parts.append(f"<text x='{width - pad - 90}' y='{height - 8}' font-size='10'>{when[1]}</text>")
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class TraceReport:
    """Everything ``spex-monitor trace --report`` shows, already fetched from the sidecar.

    ``history`` and ``latest`` are ``ShiftReport`` messages; ``baseline_top`` / ``window_top`` list the
    strongest key tuples of each interaction map as ``(keys, strength)``; ``examples`` are
    ``ExplanationSummary`` messages of requests where the top contributor mattered; ``pair`` one stored
    baseline and one window request of the top contributor (``StoredExplanation`` or None each); ``data``
    the data lens's ``DataTrace`` (``trace --data``) or None.
    """

    model: str
    latest: Any
    history: Sequence[Any]
    baseline_top: Sequence[tuple[tuple[str, ...], float]]
    window_top: Sequence[tuple[tuple[str, ...], float]]
    examples: Sequence[Any]
    alarm_p_value: float = 0.01
    pair: tuple[Any, Any] = (None, None)  # StoredExplanation of a baseline and a window exemplar, or None
    data: Any = None  # the data lens's DataTrace (trace --data), or None


def _p_to_log(p: float) -> float:
    return -math.log10(max(p, 1e-12))


def render_trace_report(data: TraceReport) -> str:
    """The ``spex-monitor trace --report`` page: the latest verdict, shift and drift over time, the
    interactions that moved, the strongest ones before and after, and the stored requests where the top mover
    mattered.
    """
    report = data.latest
    verdict = (
        "<span class='alarm'>ALARM: interaction shift</span>"
        if report.alarm
        else "<span class='ok'>no interaction-shift alarm</span>"
    )
    title = f"spex-monitor trace: {data.model} {report.version}"
    body = [f"<h2>{html.escape(title)}</h2>"]
    if summary(report):
        body.append(f"<p class='summary'><b>{html.escape(summary(report))}</b></p>")
    body.append(
        f"<p>window {report.window_id}: {verdict} — score {report.score:.3f}, "
        f"p = {format_p(report.p_value)} ({ALARM_RULE}), {report.window_requests:.0f} explained requests, "
        f"first-order NDCG {report.first_order_ndcg:.3f}</p>"
    )
    history = list(data.history)
    xs = [r.time_unix for r in history]
    body.append("<section><h3>Shift over time</h3>")
    body.append(
        line_chart(
            xs,
            {"-log10 p": [_p_to_log(r.p_value) for r in history]},
            marks=[r.alarm for r in history],
            threshold=_p_to_log(data.alarm_p_value),
        )
    )
    body.append(line_chart(xs, {"shift score": [r.score for r in history]}, marks=[r.alarm for r in history]))
    drift_names = sorted({k for r in history for k in r.input_drift_psi})
    if drift_names:
        body.append(
            line_chart(
                xs,
                {
                    f"input PSI {name}": [r.input_drift_psi.get(name, math.nan) for r in history]
                    for name in drift_names[:3]
                },
                threshold=0.2,
            )
        )
    body.append("</section>")
    contributors = list(report.top_contributors)
    body.append(decisive_html(report))
    body.append("<section><h3>What moved, and why: input mix or behaviour</h3>")
    body.append(contributor_table(contributors) if contributors else "<p>no contributors</p>")
    body.append("</section>")
    body.append("<section><h3>Interactions that moved (baseline vs window, mean mass per request)</h3>")
    body.append(
        paired_bars(
            [" × ".join(c.keys) for c in contributors],
            [c.baseline for c in contributors],
            [c.window for c in contributors],
        )
        if contributors
        else "<p>no contributors</p>"
    )
    body.append("</section><section><h3>Strongest interactions, before and after</h3><table><tr>")
    for name, top in (("baseline", data.baseline_top), ("window", data.window_top)):
        body.append(f"<td style='vertical-align:top'><b>{name}</b>")
        body.append(signed_bars([" × ".join(k) for k, _ in top], [v for _, v in top], width=200))
        body.append("</td>")
    body.append("</tr></table></section>")
    if contributors:
        top_keys = " × ".join(contributors[0].keys)
        rows = "".join(
            f"<tr><td>{html.escape(e.request_id)}</td><td>{html.escape(e.trace_id or '-')}</td>"
            f"<td>{html.escape(e.version)}</td><td class='num'>{e.faithfulness:.3f}</td>"
            f"<td>{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.time_unix))}</td></tr>"
            for e in data.examples
        )
        body.append(
            f"<section><h3>Requests where {html.escape(top_keys)} mattered</h3><table>"
            "<tr><th>request id</th><th>trace id</th><th>version</th><th>R²</th><th>time</th></tr>"
            f"{rows or '<tr><td>none stored</td></tr>'}</table></section>"
        )
        body.append(exemplar_pair_html(contributors[0], *data.pair))
    if data.data is not None:
        body.append(data_trace_html(data.data))
    return page(title, "".join(body))


def decisive_html(report: Any) -> str:
    """The decisive-interaction test of a ``ShiftReport``: its p-value beside the shift test's, and each
    decisive tuple's counts (requests where it decided the prediction / requests holding its keys) in the
    baseline and the window with its Holm-adjusted p. Empty for a report without the test."""
    if report.decisive_tested == 0 and not report.decisive_tuples:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(' × '.join(t.keys))}</td>"
        f"<td class='num'>{t.baseline_decisive}/{t.baseline_opportunities}</td>"
        f"<td class='num'>{t.window_decisive}/{t.window_opportunities}</td>"
        f"<td class='num'>{format_p(t.adjusted_p_value)}</td></tr>"
        for t in report.decisive_tuples
    )
    return (
        "<section><h3>Decisive interactions</h3>"
        f"<p>interaction shift p = {format_p(report.shift_p_value)}, decisive interactions p = "
        f"{format_p(report.decisive_p_value)} over {report.decisive_tested} tuples "
        f"(the alarm's p = min(1, shift/{SHIFT_WEIGHT:g}, decisive/{1 - SHIFT_WEIGHT:g}))</p>"
        "<table><tr><th>tuple</th><th>baseline decided / held</th><th>window decided / held</th>"
        f"<th>Holm p</th></tr>{rows or '<tr><td>none significant</td></tr>'}</table></section>"
    )


def data_trace_html(found: Any, groups: int = 10, examples: int = 8) -> str:
    """The data lens's section (``trace --data``): the tuple's joint effect on the exemplar, the training
    groups ranked by Banzhaf value (bars), and the top groups' examples with their labels."""
    keys = html.escape(" × ".join(found.keys))
    how = "from the cache" if found.cached else f"{found.retrains} head retrains in {found.seconds:.1f} s"
    top = found.groups[:groups]
    rows = "".join(
        f"<tr><td class='num'>{e.banzhaf:+.3f}</td><td>{html.escape(found.label_name(e.label))}</td>"
        f"<td>{html.escape(e.group)}</td><td>{html.escape(e.text)}</td></tr>"
        for e in found.examples[:examples]
    )
    return (
        f"<section><h3>Training data behind {keys}</h3>"
        f"<p>{html.escape(found.training_set)}; {how}; held-out R² {found.faithfulness:.2f}. On "
        f"<i>{html.escape(found.exemplar)}</i> the head trained on all the data predicts "
        f"{html.escape(found.target_name)}, and {keys} moves its log-odds by {found.effect_all:+.3f} "
        "jointly. "
        "Banzhaf: how much a group's presence moves that joint effect, averaged over the other groups.</p>"
        + signed_bars([f"{g.group} ({len(g.tuple_rows)} of {g.rows} rows hold the tuple)" for g in top],
                      [g.banzhaf for g in top])  # fmt: skip
        + "<table><tr><th>banzhaf</th><th>label</th><th>group</th><th>training example</th></tr>"
        f"{rows or '<tr><td>rows not ranked</td></tr>'}</table></section>"
    )


def _strength_cell(value: float, ci: float, support: float) -> str:
    if support == 0:
        return "absent"
    return f"{value:.3f} ± {ci:.3f}" if support >= 2 else f"{value:.3f} (1 request)"


def contributor_table(contributors: Sequence[Any]) -> str:
    """The contributor table of ``Contributor`` messages (issue 19): mass per request, co-occurrence rate
    with its 95 % interval, strength when present ± 95 %, the behaviour and mix terms ± 95 %, and how
    to read the row (:func:`~.trace_text.reading`)."""
    head = (
        "<tr><th>interaction</th><th>mass / request<br>baseline → window</th>"
        "<th>co-occurrence<br>baseline</th><th>co-occurrence<br>window</th>"
        "<th>strength when present<br>baseline</th><th>strength when present<br>window</th>"
        "<th>behaviour Δ</th><th>mix Δ</th><th>reads as</th></tr>"
    )
    rows = []
    for c in contributors:
        cells = [" × ".join(c.keys), f"{c.baseline:.3f} → {c.window:.3f}"]
        if c.cooccurrence_measured:
            cells += [
                f"{c.baseline_cooccurrence:.0%} [{c.baseline_cooccurrence_low:.0%}, "
                f"{c.baseline_cooccurrence_high:.0%}]",
                f"{c.window_cooccurrence:.0%} [{c.window_cooccurrence_low:.0%}, "
                f"{c.window_cooccurrence_high:.0%}]",
                _strength_cell(
                    c.baseline_strength_present, c.baseline_strength_present_ci, c.baseline_present_requests
                ),
                _strength_cell(
                    c.window_strength_present, c.window_strength_present_ci, c.window_present_requests
                ),
                f"{c.behaviour_delta:+.3f} ± {c.behaviour_delta_ci:.3f}" if c.behaviour_delta_ci else "n/a",
                f"{c.mix_delta:+.3f} ± {c.mix_delta_ci:.3f}",
            ]
        else:
            cells += ["-"] * 6
        cells.append(reading(c))
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def exemplar_pair_html(contributor: Any, before: Any, after: Any) -> str:
    """One baseline request beside one window request of ``contributor`` (``StoredExplanation`` messages or
    None): id, redacted text when stored, the interaction's coefficient, R² and version."""
    keys = " × ".join(contributor.keys)

    def column(e: Any) -> list[str]:
        if e is None:
            return ["(none stored)", "-", "-", "-"]
        value = term_value(e, contributor.keys)
        return [
            e.request_id,
            e.text if e.text_stored else "(text not stored)",
            f"{value:+.3f}" if value is not None else "weaker than every stored term",
            f"R² {e.faithfulness:.2f}, {e.version}",
        ]

    rows = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(b)}</td><td>{html.escape(a)}</td></tr>"
        for label, b, a in zip(
            ("request", "text", keys, "explanation"), column(before), column(after), strict=True
        )
    )
    return (
        f"<section><h3>{html.escape(keys)}: one request on each side</h3><table>"
        f"<tr><th></th><th>baseline</th><th>window</th></tr>{rows}</table></section>"
    )
