"""The CLI's HTML outputs: self-contained, escaped, and drawing what the data says."""

from __future__ import annotations

import math

from spex_monitor.html_report import TraceReport, line_chart, paired_bars, render_trace_report, signed_bars
from spex_monitor.protocol.v1 import monitor_pb2 as pb


def _report(window_id: int, p: float, alarm: bool, t: float) -> pb.ShiftReport:
    report = pb.ShiftReport(
        model="m", version="v1", window_id=window_id, score=1 - p, p_value=p, alarm=alarm, time_unix=t
    )
    report.input_drift_psi["words"] = 0.1 * window_id
    report.top_contributors.add(keys=["not", "<good>"], baseline=0.8, window=0.1, delta=-0.7)
    return report


def test_trace_report_escapes_keys_and_marks_alarms():
    history = [_report(i, 0.5 if i < 3 else 0.001, i >= 3, 1000.0 + 60 * i) for i in range(1, 5)]
    example = pb.ExplanationSummary(request_id="req<1>", trace_id="abc", version="v1", time_unix=1200.0)
    page = render_trace_report(
        TraceReport(
            model="m",
            latest=history[-1],
            history=history,
            baseline_top=[(("not", "<good>"), -0.8)],
            window_top=[(("great",), 0.2)],
            examples=[example],
        )
    )
    assert "<good>" not in page and "&lt;good&gt;" in page and "req&lt;1&gt;" in page
    assert "ALARM" in page and "<script" not in page
    # a red marker per alarmed window (3 and 4) on each chart that carries marks (-log10 p, score)
    assert page.count("<circle") == 2 * 2
    assert page.count("<polyline") == 3  # -log10 p, score, input PSI


def test_line_chart_skips_non_finite_points_and_handles_one_window():
    svg = line_chart([1.0, 2.0, 3.0], {"s": [0.1, math.nan, 0.3]})
    points = svg.split("points='")[1].split("'")[0].split()
    assert len(points) == 2
    assert "<polyline" in line_chart([5.0], {"s": [0.2]})
    assert "no closed windows" in line_chart([], {"s": []})


def test_bar_widths_are_proportional_to_magnitude():
    svg = signed_bars(["a", "b"], [-2.0, 1.0], width=100)
    assert "width='100'" in svg and "width='50'" in svg and "#c0392b" in svg
    rows = paired_bars(["x"], [1.0], [0.5], width=100)
    assert "width='100'" in rows and "width='50'" in rows and "-0.500" in rows


def test_time_axis_ends_never_read_the_same_and_name_the_zone():
    from spex_monitor.html_report import axis_labels

    start, end = axis_labels(1_700_000_000.0, 1_700_000_040.0)  # a 40-second demo history
    assert start != end and start.endswith("UTC") and start.count(":") == 2
    assert axis_labels(0.0, 3 * 86_400.0)[1].startswith("1970-01-04")


def test_trace_report_shows_the_summary_and_the_contributor_table():
    latest = _report(4, 0.001, True, 1240.0)
    c = latest.top_contributors[0]
    c.cooccurrence_measured = True
    c.baseline_cooccurrence, c.window_cooccurrence = 0.3, 0.31
    c.baseline_present_requests, c.window_present_requests = 30, 12
    c.baseline_strength_present, c.baseline_strength_present_ci = 1.0, 0.05
    c.window_strength_present, c.window_strength_present_ci = 0.05, 0.02
    c.behaviour_delta, c.behaviour_delta_ci, c.mix_delta, c.mix_delta_ci = -0.29, 0.02, 0.005, 0.05
    page = render_trace_report(
        TraceReport(model="m", latest=latest, history=[latest], baseline_top=[], window_top=[], examples=[])
    )
    assert "(not, &lt;good&gt;) lost 95% of its strength where all its keys occur" in page
    assert "behaviour changed" in page and "1.000 ± 0.050" in page and "-0.290 ± 0.020" in page


def test_trace_report_sets_a_baseline_request_beside_a_window_request():
    latest = _report(4, 0.001, True, 1240.0)
    after = pb.StoredExplanation(
        request_id="w<1>", version="v1", faithfulness=0.9, text="not <good>", text_stored=True
    )
    after.top.add(keys=["<good>", "not"], fourier=-0.05)
    page = render_trace_report(
        TraceReport(
            model="m", latest=latest, history=[latest], baseline_top=[], window_top=[], examples=[],
            pair=(None, after),
        )
    )
    assert "one request on each side" in page and "(none stored)" in page
    assert "w&lt;1&gt;" in page and "not &lt;good&gt;" in page and "-0.050" in page
