"""Background ticking: close due windows, export replica and store health, purge the store on schedule.

One daemon thread wakes every ``server.tick_s``; a failing tick is logged and the next one runs anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from grpc_health.v1 import health, health_pb2

from ..monitor.worker import Monitor
from .metrics import Metrics

log = logging.getLogger("spex_monitor.server.app")
# gRPC health service name of the store: NOT_SERVING while writes fail (Observe keeps serving)
STORE_HEALTH_SERVICE = "spex_monitor.v1.Store"


class Ticker:
    """Args:
    monitor: whose windows close (``Monitor.tick``) and whose store is purged.
    metrics: ``spex_monitor_backend_up`` and ``spex_monitor_store_degraded`` are set here.
    replica_health: replica name → accepts work, as last seen by the explanations.
    purge: the store's retention/TTL purge (run through ``Monitor.persist``).
    tick_s: seconds between ticks; purge_interval_s: seconds between purges.
    """

    def __init__(
        self,
        monitor: Monitor,
        metrics: Metrics,
        replica_health: Callable[[], Mapping[str, bool]],
        purge: Callable[[], object],
        tick_s: float,
        purge_interval_s: float,
    ) -> None:
        self.monitor = monitor
        self.metrics = metrics
        self.replica_health = replica_health
        self.purge = purge
        self.tick_s = tick_s
        self.purge_interval_s = purge_interval_s
        self.health_servicer: health.HealthServicer | None = None  # set once the gRPC server is up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start ticking on a daemon thread named ``spex-ticker``."""
        self._thread = threading.Thread(target=self._run, name="spex-ticker", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop after the tick in progress (waits up to ``grace_s`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace_s)

    def _run(self) -> None:
        last_purge = time.monotonic()
        while not self._stop.wait(self.tick_s):
            try:
                self.monitor.tick()
                self.update_backend_health()
                if time.monotonic() - last_purge >= self.purge_interval_s:
                    last_purge = time.monotonic()
                    self.monitor.persist(self.purge)
                self.update_store_health()
            except Exception:
                log.exception("tick failed")

    def update_backend_health(self) -> None:
        """``spex_monitor_backend_up{replica}`` from the replicas' last seen health."""
        for replica, up in list(self.replica_health().items()):
            self.metrics.backend_up.labels(replica).set(1.0 if up else 0.0)

    def update_store_health(self) -> None:
        """The store's state as a metric and as the ``spex_monitor.v1.Store`` health service."""
        degraded = self.monitor.store_error is not None
        self.metrics.store_degraded.set(1.0 if degraded else 0.0)
        if self.health_servicer is not None:
            status = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if degraded
                else health_pb2.HealthCheckResponse.SERVING
            )
            self.health_servicer.set(STORE_HEALTH_SERVICE, status)
