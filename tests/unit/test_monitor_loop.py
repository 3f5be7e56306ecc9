"""The monitor loop with a fake explainer: never raises into observe, counts every drop, threads shut down."""

from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.explain import ExplainResult
from spex_monitor.monitor.budget import Budget
from spex_monitor.monitor.sampling import StratifiedSampler
from spex_monitor.monitor.store_sqlite import SQLiteStore
from spex_monitor.monitor.windows import TumblingWindows, compare_versions, roll_baseline
from spex_monitor.monitor.worker import Monitor, Observation


def fake_explainer(strength: float = 2.0, fail_every: int = 0):
    calls = {"n": 0}

    def explain(observation: Observation):
        calls["n"] += 1
        if fail_every and calls["n"] % fail_every == 0:
            raise RuntimeError("backend down")
        words = observation.text.split()
        rng = np.random.default_rng(zlib.crc32(observation.request_id.encode()))  # hash() is salted
        terms = {(i,): float(rng.normal(0, 0.3)) for i in range(len(words))}
        terms[(0, 1)] = strength + float(rng.normal(0, 0.1))
        return ExplainResult(
            Interactions(terms, len(words), faithfulness=0.9, inferences_used=100), words, 0, ""
        )

    return explain


def _monitor(tmp_path, **kwargs) -> Monitor:
    defaults = dict(
        explainer=fake_explainer(),
        sampler=StratifiedSampler(rate=1.0, reservoir_per_label=50, seed=0),
        budget=Budget(inferences_per_second=1e9, burst=1e9),
        windows=TumblingWindows(window_s=None, window_requests=10_000),
        store=SQLiteStore(tmp_path / "m.db"),
        inferences_per_explanation=100,
        min_window_requests=20,
        n_permutations=200,
    )
    defaults.update(kwargs)
    return Monitor(**defaults)


def _traffic(monitor: Monitor, window: int, n: int = 60, version: str = "v1") -> None:
    for i in range(n):
        monitor.observe(
            Observation(
                f"{version}-w{window}-{i}",
                "m",
                version,
                "pos" if i % 3 else "neg",
                0.9,
                text="not good at all today",
            )
        )


def test_observe_never_raises_and_counts_internal_errors(tmp_path):
    monitor = _monitor(tmp_path)
    bad = Observation("x", "m", "v1", "pos", text=None)
    bad.tokens = lambda: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    monitor.observe(bad)  # tokens are read off the caller's thread, by the ingest step
    assert monitor.counters["dropped:internal_error"] == 0
    assert monitor.process_ingest() == 1
    assert monitor.counters["dropped:internal_error"] == 1
    monitor.sampler.offer_reason = lambda candidate: 1 / 0  # type: ignore[method-assign]
    assert monitor.observe(Observation("y", "m", "v1", "pos", text="fine")) is False
    assert monitor.counters["dropped:internal_error"] == 2


def test_budget_and_explainer_failures_are_counted(tmp_path):
    monitor = _monitor(
        tmp_path,
        explainer=fake_explainer(fail_every=4),
        budget=Budget(inferences_per_second=1e-6, burst=1000),
    )
    _traffic(monitor, 0, n=30)
    monitor.drain()
    assert monitor.counters["explanations:ok"] + monitor.counters["explanations:failed"] == 10
    assert monitor.counters["dropped:budget"] == 20  # the bucket held 10 explanations' worth
    assert monitor.counters["explanations:failed"] == 2


def test_threads_explain_and_shutdown_persists_the_open_window(tmp_path):
    monitor = _monitor(tmp_path)
    monitor.start(workers=2, idle_sleep_s=0.01)
    _traffic(monitor, 0, n=40)
    for _ in range(200):
        if monitor.counters["explanations:ok"] >= 40:
            break
        threading.Event().wait(0.02)
    monitor.shutdown()
    assert monitor.counters["explanations:ok"] == 40
    assert all(not t.is_alive() for t in monitor._threads)
    assert len(monitor.store.windows("m", "v1")) == 1  # the open window was persisted
    assert monitor.observe(Observation("late", "m", "v1", "pos", text="a b")) is False
    assert monitor.counters["dropped:shutdown"] >= 1


def test_version_change_starts_its_own_comparison_and_versions_compare(tmp_path):
    monitor = _monitor(tmp_path, baseline_windows=1)
    for window in range(2):
        _traffic(monitor, window)
        monitor.drain()
        monitor.tick(force=True)
    monitor.explainer = fake_explainer(strength=0.2)
    _traffic(monitor, 0, version="v2")
    monitor.drain()
    results = monitor.tick(force=True)
    assert results[0].report is None  # v2 has no baseline yet: it builds one, no false alarm
    report = compare_versions(monitor.store, "m", "v1", "v2", n_permutations=200)
    assert report.p_value < 0.01 and report.top_contributors(1)[0].key == ("good", "not")
    with pytest.raises(LookupError):
        compare_versions(monitor.store, "m", "v1", "v9")


def test_rolling_baseline_decays():
    from spex_monitor.monitor import InteractionMap

    base, window = InteractionMap(), InteractionMap()
    base.add(Interactions({(0, 1): 2.0}, 2), ["a", "b"])
    window.add(Interactions({(0, 1): 1.0}, 2), ["a", "b"])
    rolled = roll_baseline(base, window, decay=0.5)
    assert rolled.requests == pytest.approx(1.5)
    assert rolled.stats[("a", "b")].sum_abs == pytest.approx(2.0)


def test_drain_waits_for_explanations_other_workers_have_in_flight(tmp_path):
    """A started worker may hold the last candidate when drain() finds the queue empty: drain must still
    return only once that explanation is folded and stored (tests and shutdown rely on it)."""
    started, release = threading.Event(), threading.Event()
    inner = fake_explainer()

    def slow(observation: Observation):
        started.set()
        release.wait(10)
        return inner(observation)

    monitor = _monitor(tmp_path, explainer=slow)
    monitor.start(workers=1, idle_sleep_s=0.01)
    try:
        _traffic(monitor, 0, n=1)
        assert started.wait(10)  # the worker thread has taken the only candidate
        threading.Timer(0.3, release.set).start()
        assert monitor.drain() == 0  # nothing left for this thread to take...
        assert monitor.counters["explanations:ok"] == 1  # ...yet the worker's result is in
        assert len(monitor.store.explanations("m", limit=10)) == 1
    finally:
        release.set()
        monitor.shutdown()


def test_a_failed_explanation_logs_its_reason_not_only_its_type(tmp_path, caplog):
    """Issue 15 item 12: the log said only 'ValueError'."""

    def explainer(observation: Observation):
        raise ValueError("text: a word of 20001 characters without whitespace")

    monitor = _monitor(tmp_path, explainer=explainer)
    monitor.observe(Observation("r1", "m", "v1", "pos", 0.9, text="not good"))
    with caplog.at_level("WARNING"):
        monitor.drain()
    assert monitor.counters["explanations:failed"] == 1
    messages = [record.getMessage() for record in caplog.records]
    assert any("r1" in m and "a word of 20001 characters" in m for m in messages)
