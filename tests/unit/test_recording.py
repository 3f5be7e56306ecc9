"""Metrics recording driven by typed monitor events (issue 16 item 1): the monitor emits frozen dataclasses,
the recorder dispatches on their type, and a closed window's report reaches the report board and its
/api/top-interactions rows."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
from prometheus_client import generate_latest

from spex_monitor.attribution import Interactions
from spex_monitor.explain import ExplainResult
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.events import (
    ExplanationFinished,
    RequestDropped,
    RequestObserved,
    RequestSampled,
    StoreWriteFailed,
)
from spex_monitor.monitor.records import WindowResult
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.windows import ClosedWindow, TumblingWindows
from spex_monitor.monitor.worker import Monitor, Observation
from spex_monitor.server.metrics import Metrics
from spex_monitor.server.recording import MetricsRecorder
from spex_monitor.server.reports import ReportBoard


def _explainer(observation: Observation) -> ExplainResult:
    if "fail" in observation.text:
        raise RuntimeError("backend down")
    words = observation.text.split()
    rng = np.random.default_rng(zlib.crc32(observation.request_id.encode()))
    terms = {(i,): float(rng.normal()) for i in range(len(words))}
    return ExplainResult(Interactions(terms, len(words), faithfulness=0.75, inferences_used=12), words, 0, "")


def test_the_monitor_emits_one_typed_event_per_step():
    events: list[object] = []
    monitor = Monitor(
        explainer=_explainer,
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=10, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=None, window_requests=1000),
        on_event=events.append,
    )
    for i, text in enumerate(["not good at all", "please fail now"]):
        monitor.observe(Observation(f"r{i}", "m", "v1", "pos", text=text, trace_id=f"t{i}"))
    monitor.drain()
    assert all(dataclasses.is_dataclass(e) and type(e).__dataclass_params__.frozen for e in events)
    assert events.count(RequestObserved("m", "v1")) == 2 and events.count(RequestSampled("m", "v1")) == 2
    finished = {e.request_id: e for e in events if isinstance(e, ExplanationFinished)}
    assert finished["r0"].status == "ok" and finished["r0"].inferences == 12
    assert finished["r0"].faithfulness == 0.75 and finished["r0"].trace_id == "t0"
    assert finished["r1"].status == "failed" and finished["r1"].faithfulness is None


def _value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


@pytest.fixture
def recorder() -> MetricsRecorder:
    metrics = Metrics()
    metrics.model_names = frozenset({"m"})
    return MetricsRecorder(metrics, {"m": "text"}, lambda: 0.25, lambda key: key, ReportBoard())


def test_each_event_type_moves_its_own_metrics(recorder):
    m = recorder.metrics
    recorder.on_event(RequestObserved("m", "v1"))
    recorder.on_event(RequestSampled("m", "v1"))
    recorder.on_event(RequestDropped("m", "budget", 3))
    recorder.on_event(RequestDropped("caller-chosen", "invalid"))
    recorder.on_event(StoreWriteFailed("OSError: disk full"))
    recorder.on_event(ExplanationFinished("m", "v1", "ok", 0.5, 0.9, 40, "r1", "ab" * 16))
    recorder.on_event(ExplanationFinished("m", "v1", "ok", float("nan"), float("-inf"), 40, "r2"))
    recorder.on_event(ExplanationFinished("m", "v1", "failed", 0.1, None, 0, "r3"))
    mv = {"model": "m", "version": "v1"}
    assert _value(m, "spex_monitor_requests_observed_total", mv) == 1
    assert _value(m, "spex_monitor_sampled_total", mv) == 1
    assert _value(m, "spex_monitor_dropped_total", {"model": "m", "reason": "budget"}) == 3
    assert _value(m, "spex_monitor_dropped_total", {"model": "", "reason": "invalid"}) == 1
    assert _value(m, "spex_monitor_store_write_errors_total") == 1
    assert _value(m, "spex_monitor_store_degraded") == 1
    ok = {**mv, "lens": "text", "status": "ok"}
    assert _value(m, "spex_monitor_explanations_total", ok) == 2
    assert _value(m, "spex_monitor_explanations_total", {**ok, "status": "failed"}) == 1
    assert _value(m, "spex_monitor_ablation_inferences_total", {"model": "m", "lens": "text"}) == 80
    # the NaN duration and -inf faithfulness never reach a histogram
    ml = {"model": "m", "lens": "text"}
    assert _value(m, "spex_monitor_explanation_duration_seconds_count", ml) == 2
    assert _value(m, "spex_monitor_explanation_faithfulness_r2_count", ml) == 1
    assert _value(m, "spex_monitor_budget_utilization_ratio", {"model": "m"}) == 0.25


def _map(strength: float, n: int) -> InteractionMap:
    found = InteractionMap()
    for i in range(n):
        found.add(Interactions({(0, 1): strength, (0,): 0.1}, 2), ["not", "good"], f"r{i}")
    return found


def test_a_closed_window_posts_its_report_and_both_alarm_series(recorder):
    report = compare_maps(_map(2.0, 40), _map(0.1, 40), n_permutations=99, seed=0)
    window = ClosedWindow("m", "v1", 0.0, 60.0, _map(0.1, 40))
    recorder.on_window(WindowResult(window, 7, report, alarm=True))
    text = generate_latest(recorder.metrics.registry).decode()
    assert 'spex_monitor_windows_closed_total{alarm="false",model="m",version="v1"} 0.0' in text
    assert 'spex_monitor_windows_closed_total{alarm="true",model="m",version="v1"} 1.0' in text
    (latest,) = recorder.reports.latest()
    assert (latest.model, latest.window_id, latest.alarm, latest.p_value) == ("m", 7, True, report.p_value)
    rows = recorder.reports.rows()
    assert rows[0]["interaction"] == "good × not"  # key tuples are sorted
    assert rows[0]["delta"] == pytest.approx(report.top_contributors(1)[0].delta)
    recorder.on_window(WindowResult(window, 8, None, alarm=False))  # too small to compare: no report
    assert [r.window_id for r in recorder.reports.latest()] == [7]
