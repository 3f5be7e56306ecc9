"""Fleet aggregation on the SQLite store (one process, lock always held): exact merges, epoch-aligned fleet
windows, grace, gaps, the learned or pinned fleet baseline, and resuming from the store without
re-reporting (what a failover relies on; the PostgreSQL lock itself is tested in tests/integration)."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap
from spex_monitor.monitor.fleet import FleetAggregator
from spex_monitor.monitor.store import FLEET
from spex_monitor.monitor.store_sqlite import SQLiteStore

W = 60.0


def _map(n: int, seed: int, incident: bool = False) -> InteractionMap:
    rng = np.random.default_rng(seed)
    m = InteractionMap()
    for i in range(n):
        terms = {(0,): 0.2, (0, 1): float(rng.normal(0.3 if incident else 2.0, 0.4))}
        if incident:
            terms[(2, 3)] = float(rng.normal(1.5, 0.4))
        m.add(Interactions(terms, 4), ["not", "good", "at", "all"], f"s{seed}-{i}")
        m.observe(["not", "good", "at", "all"], "pos", 0.9)
    return m


@pytest.fixture
def stores(tmp_path):
    names = ("pod-0", "pod-1", "pod-2")
    opened = {name: SQLiteStore(tmp_path / "shared.db", instance=name) for name in names}
    yield opened
    for store in opened.values():
        store.close()


def _write_slot(stores, slot: int, n: int, incident: bool = False, version: str = "v1") -> list:
    maps = []
    for p, store in enumerate(stores.values()):
        m = _map(n, seed=slot * 10 + p, incident=incident)
        # pods' windows are not aligned: each ends somewhere inside the fleet window
        store.save_window("m", version, slot * W - 40 + p, slot * W + 10 + 7 * p, m)
        maps.append(m)
    return maps


def test_a_fleet_window_is_the_exact_merge_of_the_pods_windows(stores):
    maps = _write_slot(stores, 1, n=12)
    aggregator = FleetAggregator(stores["pod-0"], "m", W, grace_s=5, baseline_windows=1)
    (result,) = aggregator.tick(now=2 * W + 6)
    assert (result.start_ts, result.end_ts, result.pods, result.requests) == (W, 2 * W, 3, 36)
    (_, _, _, fleet), = stores["pod-0"].windows("m", "v1", scope=FLEET)
    expected = InteractionMap.merged(maps)
    for key, stats in expected.stats.items():
        assert fleet.stats[key].sum_abs == pytest.approx(stats.sum_abs, rel=1e-12)
        assert fleet.stats[key].count == stats.count
    assert fleet.drift.observed == 36
    assert stores["pod-0"].baseline("m", "v1", scope=FLEET) is not None  # 1 window: learned at once


def test_windows_wait_for_the_grace_and_gaps_are_skipped(stores):
    _write_slot(stores, 1, n=5)
    _write_slot(stores, 50, n=5)  # nothing in between
    aggregator = FleetAggregator(stores["pod-0"], "m", W, grace_s=30, backfill_windows=100)
    assert aggregator.tick(now=2 * W + 29) == []  # slot 1 ended 29 s ago: pods may still write
    assert [r.start_ts for r in aggregator.tick(now=2 * W + 31)] == [W]
    assert [r.start_ts for r in aggregator.tick(now=51 * W + 31)] == [50 * W]
    assert aggregator.tick(now=60 * W) == []


def test_baseline_from_the_first_fleet_windows_then_reports_and_an_alarm(stores):
    for slot in range(4):
        _write_slot(stores, slot + 1, n=12, incident=slot == 3)
    aggregator = FleetAggregator(
        stores["pod-0"], "m", W, grace_s=5, baseline_windows=2, min_window_requests=30, n_permutations=999
    )
    results = aggregator.tick(now=5 * W + 6)
    assert [r.report is not None for r in results] == [False, False, True, True]
    assert [r.alarm for r in results] == [False, False, False, True]
    assert stores["pod-1"].baseline_with_source("m", "v1", scope=FLEET)[1] == "first 2 fleet windows"
    reports = stores["pod-2"].reports("m", scope=FLEET)
    assert [r["pods"] for r in reports] == [3, 3] and reports[-1]["alarm"] is True
    assert ["all", "at"] in [c[0] for c in reports[-1]["top"][:2]]
    assert stores["pod-0"].reports("m") == []  # pod scope untouched


def test_a_new_aggregator_resumes_from_the_store_without_reporting_twice(stores):
    for slot in range(1, 4):
        _write_slot(stores, slot, n=12)
    first = FleetAggregator(stores["pod-0"], "m", W, grace_s=5, baseline_windows=1, min_window_requests=10)
    assert len(first.tick(now=3 * W + 6)) == 2  # slots 1, 2
    second = FleetAggregator(stores["pod-1"], "m", W, grace_s=5, baseline_windows=1, min_window_requests=10)
    assert [r.start_ts for r in second.tick(now=4 * W + 6)] == [3 * W]  # only what is new
    assert len(stores["pod-0"].reports("m", scope=FLEET)) == 2  # slots 2 and 3 (slot 1 made the baseline)
    assert len(stores["pod-0"].windows("m", "v1", scope=FLEET)) == 3


def test_a_duplicated_pod_window_counts_once_and_versions_stay_apart(stores):
    _write_slot(stores, 1, n=10)
    _write_slot(stores, 1, n=10)  # the same three windows stored again (a retried write)
    _write_slot(stores, 1, n=4, version="v2")
    aggregator = FleetAggregator(stores["pod-0"], "m", W, grace_s=5)
    results = {r.version: r for r in aggregator.tick(now=2 * W + 6)}
    assert (results["v1"].requests, results["v1"].pod_windows) == (30, 3)
    assert results["v2"].requests == 12


def test_a_pinned_fleet_baseline_is_used_from_the_first_window(stores):
    _write_slot(stores, 1, n=12, incident=True)
    aggregator = FleetAggregator(
        stores["pod-0"], "m", W, grace_s=5, min_window_requests=30, n_permutations=999
    )
    aggregator.pin_baseline("v1", _map(40, seed=99), source="file")
    (result,) = aggregator.tick(now=2 * W + 6)
    assert result.alarm and result.report_id is not None


def test_without_backfill_the_first_start_merges_the_windows_that_come_due_after_it(stores):
    _write_slot(stores, 1, n=12)  # due at the first tick: left out (backfill_windows=0)
    aggregator = FleetAggregator(stores["pod-0"], "m", W, grace_s=5, baseline_windows=1, backfill_windows=0)
    assert aggregator.tick(now=2 * W + 6) == []
    _write_slot(stores, 2, n=12)
    assert aggregator.tick(now=3 * W + 1) == []  # not due before the grace
    (result,) = aggregator.tick(now=3 * W + 6)
    assert (result.start_ts, result.end_ts, result.pods) == (2 * W, 3 * W, 3)
    _write_slot(stores, 3, n=12)
    (result,) = aggregator.tick(now=4 * W + 6)
    assert result.start_ts == 3 * W and result.report is not None


def test_the_standalone_entry_point_refuses_what_it_cannot_run(tmp_path, capsys):
    import socket

    import yaml

    from spex_monitor.server.aggregation import main

    model = {"name": "m", "backend": {"kind": "local", "path": "/nonexistent"}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"models": [model]}))
    assert main(["--config", str(config)]) == 2
    assert "store.url" in capsys.readouterr().err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://spex@127.0.0.1:{port}/spex"
    config.write_text(yaml.safe_dump({"models": [model], "store": {"url": url, "timeout_s": 2}}))
    assert main(["--config", str(config)]) == 1
    assert f"store.url: cannot open {url}" in capsys.readouterr().err


def test_the_cli_runs_the_aggregator_and_trace_takes_a_scope(tmp_path, capsys):
    import yaml

    from spex_monitor.cli import main as cli_main

    with pytest.raises(SystemExit) as exited:
        cli_main(["aggregate", "--help"])
    assert exited.value.code == 0
    helped = capsys.readouterr().out
    assert "store.url" in helped and "advisory lock" in helped and "--config" in helped
    config = tmp_path / "c.yaml"
    model = {"name": "m", "backend": {"kind": "local", "path": "/nonexistent"}}
    config.write_text(yaml.safe_dump({"models": [model]}))
    assert cli_main(["aggregate", "--config", str(config)]) == 2  # through server.aggregation.main
    assert "store.url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["trace", "--model", "m", "--scope", "galaxy"])
    assert "invalid choice" in capsys.readouterr().err
    assert cli_main(["trace", "--model", "m", "--scope", "fleet", "--report", str(tmp_path / "r.html")]) == 2
    assert "--report" in capsys.readouterr().err


def test_serve_names_store_url_when_the_shared_store_refuses(tmp_path, capsys):
    import socket

    import yaml

    from spex_monitor.cli import main as cli_main

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # the model folder exists: serve checks paths before it opens the store
    model = {"name": "m", "backend": {"kind": "local", "path": str(tmp_path)}}
    store = {"url": f"postgresql://spex@127.0.0.1:{port}/spex", "timeout_s": 2}
    config = tmp_path / "c.yaml"
    server = {"explain_in": "process"}
    config.write_text(yaml.safe_dump({"models": [model], "store": store, "server": server}))
    assert cli_main(["serve", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "store.url" in err and "Traceback" not in err


def test_fleet_windows_are_exported_as_their_own_family_with_scope_fleet():
    """Issue 20 §3: the aggregator's fleet windows become ``spex_monitor_fleet_*`` series (label
    ``scope="fleet"``); the pod family is untouched, so no pod query ever mixes in a fleet value."""
    from prometheus_client import generate_latest

    from spex_monitor.monitor.fleet import FleetResult
    from spex_monitor.monitor.shift import ShiftReport
    from spex_monitor.server.fleet_metrics import FleetMetrics
    from spex_monitor.server.metrics import Metrics

    metrics = Metrics()
    fleet = FleetMetrics(metrics.registry)
    first = FleetResult("sentiment", "v1", 0.0, 60.0, 3, 3, 36.0, 1, None, None, False)
    fleet.record(first)  # the window that became the fleet baseline: not compared
    report = ShiftReport(0.8, 0.002, {}, 1.0, 40.0, 36.0, 200)
    fleet.record(FleetResult("sentiment", "v1", 60.0, 120.0, 3, 3, 36.0, 2, 7, report, True))
    text = generate_latest(metrics.registry).decode()
    labels = '{model="sentiment",scope="fleet",version="v1"}'
    assert f"spex_monitor_fleet_windows_total{labels} 2.0" in text
    assert f"spex_monitor_fleet_window_pods{labels} 3.0" in text
    assert f"spex_monitor_fleet_interaction_shift_pvalue{labels} 0.002" in text
    assert f"spex_monitor_fleet_shift_alarm{labels} 1.0" in text
    assert 'spex_monitor_interaction_shift_score{' not in text  # no pod series invented


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_epoch_period_places_every_boundary_product_in_its_own_period():
    from spex_monitor.monitor.windows import epoch_period

    for w in (3.0, 0.1, 0.7, 60.0, 299.9):
        for k in range(599_000_000, 599_000_000 + 2_000, 7):
            assert epoch_period(k * w, w) == k  # k·W opens period k, even where k·W / W rounds below k
            assert epoch_period(k * w + w / 2, w) == k


def test_aligned_windows_end_on_the_boundary_whatever_the_closing_tick():
    from spex_monitor.monitor.windows import TumblingWindows

    w = 3.0
    clock = _Clock(599_000_001.0 * w + 1.3)  # mid-period, at a real epoch scale
    windows = TumblingWindows(window_s=w, clock=clock, align=True)
    windows.observe("m", "v1", ["good"], "pos", 0.9)  # opens the rest of the current period
    clock.t = 599_000_002.0 * w - 0.01
    assert windows.close_due() == []  # the period is not over
    clock.t = 599_000_002.0 * w + 0.4  # the closing tick comes late
    (first,) = windows.close_due()
    assert (first.start_ts, first.end_ts) == (599_000_001 * w, 599_000_002 * w)
    windows.observe("m", "v1", ["good"], "pos", 0.9)
    clock.t = 599_000_003.0 * w
    (second,) = windows.close_due()
    assert (second.start_ts, second.end_ts) == (599_000_002 * w, 599_000_003 * w)
    # count-closed windows inside one period chain: the next starts where the previous ended
    counted = TumblingWindows(window_s=w, window_requests=1, clock=clock, align=True)
    counted.add("m", "v1", Interactions({(0,): 1.0}, 1), ["good"], "r1")
    clock.t += 1.0
    (cut,) = counted.close_due()
    counted.add("m", "v1", Interactions({(0,): 1.0}, 1), ["good"], "r2")
    clock.t += 2.5
    (rest,) = counted.close_due()
    assert (cut.end_ts, rest.start_ts) == (clock.t - 2.5, clock.t - 2.5)
    assert rest.end_ts == 599_000_004 * w


def test_aligned_pod_windows_give_each_fleet_window_exactly_one_window_per_pod(stores):
    """Pods that start at different instants and close on ticks that come late still put exactly one
    window each into every fleet window (the end on the boundary belongs to the window it closes)."""
    from spex_monitor.monitor.windows import TumblingWindows

    rng = np.random.default_rng(3)
    w = 3.0
    t0 = 599_000_000 * w
    pods = []
    for p, store in enumerate(stores.values()):
        clock = _Clock(t0 + 0.37 * p)
        pods.append((store, clock, TumblingWindows(window_s=w, clock=clock, align=True)))
    for step in range(1, 1 + 10 * 15):  # 10 periods, a request and a late-ish tick every 0.2 s per pod
        for store, clock, windows in pods:
            clock.t = t0 + step * 0.2 + float(rng.uniform(0.0, 0.15))
            windows.observe("m", "v1", ["good"], "pos", 0.9)
            for closed in windows.close_due():
                store.save_window("m", "v1", closed.start_ts, closed.end_ts, closed.map)
    aggregator = FleetAggregator(stores["pod-0"], "m", w, grace_s=0.5, backfill_windows=20)
    results = aggregator.tick(now=t0 + 10 * w + 0.6)
    assert len(results) == 10
    assert [r.start_ts for r in results] == [(599_000_000 + k) * w for k in range(10)]
    assert all((r.pods, r.pod_windows) == (3, 3) for r in results)


def test_a_fresh_aligned_window_starts_exactly_on_its_period_for_any_window_length():
    """(k+1)·W − W can round one ulp below k·W (e.g. W = 59.9 s at epoch scale): a window opened there would
    close at once at k·W and put its requests into the previous, already merged, fleet window."""
    from spex_monitor.monitor.windows import TumblingWindows, epoch_period

    rng = np.random.default_rng(11)
    for w in (59.9, 0.7, 0.1, 300.0, 2.5):
        for t in rng.uniform(1.7e9, 1.9e9, size=300):
            clock = _Clock(float(t))
            windows = TumblingWindows(window_s=w, clock=clock, align=True)
            windows.observe("m", "v1", ["good"], "pos", 0.9)
            assert windows.close_due() == [] or epoch_period(t, w) * w + w <= t  # not closed at once
            clock.t = (epoch_period(t, w) + 1) * w
            (closed,) = windows.close_due()
            assert closed.start_ts == epoch_period(t, w) * w <= t < closed.end_ts


def test_a_fleet_report_keeps_both_tests_and_the_decisive_tuples(stores):
    """A backdoor split over three pods: the merged window's decisive test names the trigger, and the fleet
    report stores both p-values and the tuples as a pod's does (trace --scope fleet prints them)."""
    from decisive_traffic import TRIGGER, planted_map

    from spex_monitor.server.messages import stored_report_message

    for slot in range(1, 4):
        for p, store in enumerate(stores.values()):
            backdoor = slot == 3
            share = 0.5 if backdoor else 0.25
            m = planted_map(seed=100 * slot + p, n=80, trigger=backdoor, trigger_share=share)
            store.save_window("m", "v1", slot * W - 40 + p, slot * W + 10 + 7 * p, m)
    aggregator = FleetAggregator(stores["pod-0"], "m", W, grace_s=5, baseline_windows=2, n_permutations=199)
    results = aggregator.tick(now=4 * W + 6)
    assert [r.report is not None for r in results] == [False, False, True]
    stored = stores["pod-1"].reports("m", scope=FLEET)[-1]
    assert stored["decisive"]["tuples"][0]["keys"] == sorted(TRIGGER)
    assert stored["shift_p_value"] >= stored["p_value"] and stored["decisive"]["p_value"] < 0.002
    message = stored_report_message("m", "v1", stored)
    assert list(message.decisive_tuples[0].keys) == sorted(TRIGGER) and message.alarm
