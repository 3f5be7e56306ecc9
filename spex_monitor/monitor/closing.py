"""Closing one window: persist it, compare it with its baseline, store the report, roll the baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .records import WindowResult
from .shift import compare_maps
from .windows import ClosedWindow, baseline_from_windows, roll_baseline

if TYPE_CHECKING:
    from .worker import Monitor

AUTOMATIC_SOURCE = "first "  # the source of a baseline built from the first windows ("first 2 windows")


def close_window(monitor: Monitor, closed: ClosedWindow) -> WindowResult:
    """Store a closed window, compare it with its baseline (building one from the first windows), store
    the report, and roll the baseline unless an operator pinned it."""
    window_id = None
    if monitor.store is not None:
        window_id = monitor.persist(
            monitor.store.save_window,
            closed.model,
            closed.version,
            closed.start_ts,
            closed.end_ts,
            monitor.public_map(closed.map),
        )
    key = (closed.model, closed.version)
    baseline = monitor.baseline(*key)
    report = None
    alarm = False
    if baseline is None:
        warm = monitor._warmup.setdefault(key, [])
        warm.append(closed.map)
        if len(warm) >= monitor.baseline_windows:
            monitor.set_baseline(
                *key,
                baseline_from_windows(warm),
                source=f"{AUTOMATIC_SOURCE}{len(warm)} windows",
                pinned=False,
            )
            del monitor._warmup[key]
    elif closed.map.requests >= monitor.min_window_requests:
        report = compare_maps(
            baseline,
            closed.map,
            n_permutations=monitor.n_permutations,
            seed=window_id or monitor.counters["windows:closed"],
        )
        alarm = report.p_value < monitor.alarm_p_value
        if monitor.store is not None:
            monitor.persist(
                monitor.store.save_report,
                closed.model,
                closed.version,
                window_id,
                report.score,
                report.p_value,
                {
                    "top": [
                        [list(monitor.public_key(c.key)), c.baseline, c.window, c.delta, c.exemplars]
                        for c in report.top_contributors(10)
                    ],
                    "order_shares": {str(k): list(v) for k, v in report.order_shares.items()},
                    "first_order_ndcg": report.first_order_ndcg,
                    "input_drift": report.input_drift,
                    "output_drift": report.output_drift,
                    "alarm": alarm,
                    "window_requests": closed.map.requests,
                },
            )
        if monitor.rolling_decay is not None and not alarm and key not in monitor._pinned:
            monitor._baselines[key] = roll_baseline(baseline, closed.map, monitor.rolling_decay)
    else:
        monitor.counters.add("windows:too_small")
    result = WindowResult(closed, window_id, report, alarm)
    monitor.results.append(result)
    monitor.counters.add("windows:closed")
    return result
