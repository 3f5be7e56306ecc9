"""The fleet aggregator loop, run by ``spex-monitor aggregate --config FILE`` (the standalone process, its
entry point and metrics port in :mod:`spex_monitor.server.aggregation`) and by sidecars with
``fleet.aggregate: true``.

Reads the sidecars' configuration (the same file: models, windows, baseline, store, fleet), opens the shared
PostgreSQL store and, every ``fleet.tick_s``, lets one :class:`~.fleet.FleetAggregator` per model try its
lock and merge what is due. Run two or more replicas: one leads per model, the others take over within a
tick of its death. SIGTERM/SIGINT stop it after the tick in flight, releasing its locks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .fleet import FleetAggregator, FleetResult
from .maps import InteractionMap
from .store import SQLStore

log = logging.getLogger("spex_monitor.aggregate")


def log_result(result: FleetResult) -> None:
    """Log one merged fleet window (pods, pod windows, requests, and score and p-value when compared)."""
    report = result.report
    log.info(
        "fleet window %s %s [%.0f, %.0f): %d pods, %d pod windows, %.0f explained requests%s",
        result.model, result.version, result.start_ts, result.end_ts, result.pods, result.pod_windows,
        result.requests,
        "" if report is None else f", score {report.score:.4f}, p {report.p_value:.4g}"
        + (", ALARM" if result.alarm else ""),
    )  # fmt: skip


def build_aggregators(
    settings: object, store: SQLStore, on_result: Callable[[FleetResult], None] | None = None
) -> list[FleetAggregator]:
    """One aggregator per configured model; ``fleet.baseline_file`` is pinned for ``models[0]``."""
    models = settings.models  # type: ignore[attr-defined]
    aggregators = [
        FleetAggregator.from_settings(store, settings, m.name, on_result=on_result) for m in models
    ]
    pinned = settings.fleet.baseline_file  # type: ignore[attr-defined]
    if pinned is not None:
        aggregators[0].pin_baseline(models[0].version, InteractionMap.from_bytes(pinned.read_bytes()), "file")
    return aggregators


def run_aggregator(
    settings: object,
    stop: threading.Event,
    store: SQLStore | None = None,
    on_result: Callable[[FleetResult], None] | None = log_result,
) -> None:
    """Tick every model's aggregator until ``stop`` is set. A failing tick (the store unreachable) is
    logged and retried on the next one; nothing is skipped, since each tick resumes from the store."""
    from .store_factory import make_store

    own = store is None
    store = store or make_store(settings.store)  # type: ignore[attr-defined]
    aggregators = build_aggregators(settings, store, on_result)
    failing: dict[str, str] = {}
    try:
        while not stop.is_set():
            for aggregator in aggregators:
                try:
                    aggregator.tick()
                    if failing.pop(aggregator.model, None):
                        log.warning("fleet aggregation of %s recovered", aggregator.model)
                except Exception as exc:  # the next tick retries; report a failure streak once
                    reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                    if aggregator.model not in failing:
                        log.error("fleet aggregation of %s failed (%s); retrying", aggregator.model, reason)
                    failing[aggregator.model] = reason
            stop.wait(settings.fleet.tick_s)  # type: ignore[attr-defined]
    finally:
        for aggregator in aggregators:
            aggregator.close()
        if own:
            store.close()
