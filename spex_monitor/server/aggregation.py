"""The fleet aggregator in a process: a sidecar's thread (``fleet.aggregate: true``, issue 20 §3) and the
standalone ``spex-monitor aggregate --config FILE`` (also ``python -m spex_monitor.server.aggregation``).

Both run the loop of :func:`~spex_monitor.monitor.aggregate.run_aggregator` over the shared PostgreSQL
store: every candidate tries each model's advisory lock, one holds it and merges, the others take over
within a ``fleet.tick_s`` of its death. Each stored fleet window is logged and exported as
``spex_monitor_fleet_*{model,version,scope="fleet"}`` — on the sidecar's own metrics port, or, standalone,
on ``server.host:server.metrics_port`` of the same configuration file (``/metrics`` and ``/healthz``; TLS
as the sidecar's metrics port, ``server.metrics_tls``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from ..config import Settings
from ..monitor.aggregate import log, log_result, run_aggregator
from ..monitor.fleet import FleetResult
from ..monitor.store import SQLStore
from .asgi_thread import ASGIThread
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


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """The standalone aggregator's HTTP app: ``/healthz`` (liveness) and Prometheus' ``/metrics``."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    routes = [Route("/healthz", healthz, methods=["GET", "HEAD"]), Mount("/", app=make_asgi_app(registry))]
    return Starlette(routes=routes)


def main(argv: Sequence[str] | None = None) -> int:
    """``spex-monitor aggregate``: exit 0 after SIGTERM/SIGINT, 2 for a configuration error, 1 when the
    store cannot be opened or the metrics port cannot be bound."""
    from ..config import ConfigError, load_settings
    from ..monitor.store_postgres import StoreUnavailableError

    parser = argparse.ArgumentParser(
        prog="spex-monitor aggregate",
        description="Merge every pod's windows of each configured model into fleet windows in the shared "
        "PostgreSQL store (store.url), compare them with the fleet baseline and store fleet reports. One "
        "replica leads per model (a PostgreSQL advisory lock); run two for failover. Fleet series "
        "(spex_monitor_fleet_*) are served on server.host:server.metrics_port of the same file.",
    )
    parser.add_argument("--config", required=True, help="the sidecars' YAML configuration file")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.store.url is None:
        print("store.url: the aggregator needs the shared PostgreSQL store of the sidecars", file=sys.stderr)
        return 2
    if settings.fleet.window_s is None and settings.windows.seconds is None:
        print("fleet.window_s: required when windows.seconds is unset", file=sys.stderr)
        return 2
    from ..monitor.store_factory import make_store

    try:
        store = make_store(settings.store)  # first: an unreachable store is the error worth naming
    except StoreUnavailableError as exc:
        print(exc, file=sys.stderr)
        return 1
    registry = CollectorRegistry()
    metrics = FleetMetrics(registry)
    cfg = settings.server
    http = ASGIThread(
        metrics_app(registry), cfg.host, cfg.metrics_port, name="spex-aggregator-metrics",
        tls=cfg.port_tls("metrics"),
        client_cert="optional" if cfg.metrics_tls == "inherit" else "required",  # probes carry no certificate
    )  # fmt: skip
    try:
        port = http.start()
    except OSError as exc:
        store.close()
        print(f"server.metrics_port: cannot listen on {cfg.host}:{cfg.metrics_port} ({exc})", file=sys.stderr)
        return 1
    log.info("fleet metrics on %s:%d/metrics", cfg.host, port)

    def on_result(result: FleetResult) -> None:
        log_result(result)
        metrics.record(result)

    stop = threading.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in signals}
    try:
        run_aggregator(settings, stop, store=store, on_result=on_result)
    except (StoreUnavailableError, ConfigError) as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        http.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
