"""The sidecar's share of the fleet view (``fleet.aggregate: true``, issue 20 §3): a thread that runs the
fleet aggregator loop (:func:`~spex_monitor.monitor.aggregate.run_aggregator`) over the sidecar's own shared
PostgreSQL store. Every such sidecar is a candidate; one holds each model's advisory lock and merges, the
others take over within a ``fleet.tick_s`` of its death.
"""

from __future__ import annotations

import threading

from ..config import Settings
from ..monitor.aggregate import log_result, run_aggregator
from ..monitor.fleet import FleetResult
from ..monitor.store import SQLStore
from .fleet_metrics import FleetMetrics


class FleetThread:
    """Runs the fleet aggregator loop for every configured model on a daemon thread until :meth:`stop`;
    each fleet window it stores is logged and, with ``metrics``, exported (``spex_monitor_fleet_*``)."""

    def __init__(self, settings: Settings, store: SQLStore, metrics: FleetMetrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop (its failures are logged and retried each tick; it never stops the sidecar)."""
        self._thread = threading.Thread(
            target=run_aggregator,
            args=(self.settings, self._stop),
            kwargs={"store": self.store, "on_result": self._on_result},
            name="spex-fleet",
            daemon=True,
        )
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Stop after the tick in flight (at most ``grace_s`` seconds' wait), releasing the locks it held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace_s)

    def _on_result(self, result: FleetResult) -> None:
        log_result(result)
        if self.metrics is not None:
            self.metrics.record(result)
