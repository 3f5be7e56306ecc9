"""The sidecar process: composition and lifecycle.

``Sidecar(settings)`` builds the parts — store, monitor, accounted explainer, metrics recorder, report
board — and ``start()`` brings them up in an order that keeps the chart's probes answering: the metrics
port first (``/healthz`` 200, ``/readyz`` 503 while models load), then the explain runner (worker processes
load their models), the gRPC server (MonitorService, health, reflection), the explain workers and the
ticker, and the attach modes (OIP proxy, KServe logger receiver). ``stop()`` drains and persists.

Each job lives in its own module: :mod:`.wiring` (configuration → monitor parts), :mod:`.explaining` (runs
and accounts explanations), :mod:`.recording` (typed monitor events → metrics), :mod:`.http` (metrics port
endpoints), :mod:`.grpc_serving`, :mod:`.ticker` and :mod:`.attach`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from ..config import Settings
from ..explain import ExplainRequest, ExplainResult
from ..explain.backends import class_labels
from ..explain.runner import ExplainRunner, make_runner
from ..monitor.worker import Monitor
from .admission import OverloadCounter
from .aggregation import FleetThread
from .asgi_thread import ASGIThread
from .attach import start_events, start_openai_proxy, start_proxy
from .auth import Authorizer
from .events import EventReceiver
from .explaining import AccountedExplainer
from .fleet_metrics import FleetMetrics
from .grpc_serving import GrpcServing, message_options, start_grpc
from .http import ServingProbe, create_metrics_app
from .metrics import Metrics
from .observations import Intake
from .openai_proxy import CallObserver
from .proxy import OIPProxy
from .recording import MetricsRecorder
from .reports import ReportBoard
from .service import MonitorServicer
from .ticker import STORE_HEALTH_SERVICE, Ticker
from .wiring import ablation_budget, build_monitor, open_store, pin_baselines, replica_names

log = logging.getLogger(__name__)

__all__ = ["STORE_HEALTH_SERVICE", "Sidecar"]


class Sidecar:
    """One spex-monitor sidecar process.

    Args:
        settings: the validated configuration.
        metrics: where metrics are registered (a fresh registry by default; tests pass their own).
        runner_factory: builds and starts the explain runner in ``start()`` (default:
            :func:`~spex_monitor.explain.runner.make_runner`, which follows ``server.explain_in``).

    Raises (from the constructor):
        ConfigError: ``store.redact_hook`` or ``baseline.file`` cannot be used.
        OSError: the store or the baseline file cannot be opened.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        runner_factory: Callable[[Settings], ExplainRunner] = make_runner,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.metrics.model_names = frozenset(m.name for m in settings.models)
        server_cfg = settings.server
        if server_cfg.explain_in == "thread" and any(
            m.backend.kind in ("local", "causal") for m in settings.models
        ):
            import torch

            torch.set_num_threads(server_cfg.torch_threads)
        self.store = open_store(settings)
        try:
            self._assemble(settings, runner_factory)
        except BaseException:  # a bad redact_hook or baseline file: close the store (a PostgreSQL pool) again
            self.store.close()
            raise

    def _assemble(self, settings: Settings, runner_factory: Callable[[Settings], ExplainRunner]) -> None:
        """Everything built on the open store (see ``__init__``); nothing is started here."""
        server_cfg = settings.server
        self.intake = Intake(
            {m.name: m.version for m in settings.models}, {m.name: m.lens.kind for m in settings.models}
        )
        self.labels = {m.name: class_labels(m.backend) for m in settings.models}
        self.authorizer = Authorizer(server_cfg)
        self.reports = ReportBoard()
        budget = ablation_budget(settings)
        contexts = {m.name: m.lens.context_prefixes for m in settings.models if m.lens.kind == "prompt"}
        self.explainer = AccountedExplainer(budget, self.metrics, replica_names(settings), contexts)
        self.monitor: Monitor = build_monitor(
            settings, self.store, budget, self.explainer.explain_observation
        )
        self.recorder = MetricsRecorder(
            self.metrics,
            self.intake.kinds,
            budget.utilization,
            self.monitor.public_key,
            self.reports,
            log_content=server_cfg.log_request_content,
        )
        self.monitor.on_event = self.recorder.on_event
        self.monitor.on_window = self.recorder.on_window
        pin_baselines(settings, self.monitor)
        self.ticker = Ticker(
            self.monitor,
            self.metrics,
            self.explainer.health,
            self.store.purge,
            server_cfg.tick_s,
            settings.store.purge_interval_s,
        )
        proxied = server_cfg.proxy_port is not None
        self.readiness = ServingProbe(server_cfg.host, "OIP proxy" if proxied else "gRPC")
        self._runner_factory = runner_factory
        self._http: ASGIThread | None = None
        self._grpc: GrpcServing | None = None
        self._servicer: MonitorServicer | None = None
        self._proxy_server: grpc.Server | None = None
        self._events_server: ASGIThread | None = None
        self.proxy: OIPProxy | None = None
        self.events: EventReceiver | None = None  # the KServe inference-logger receiver (server.events_port)
        self.grpc_port = self.metrics_port = self.proxy_port = self.events_port = 0
        # fleet.aggregate: this sidecar competes for each model's fleet aggregator lock (shared store only)
        self.fleet = (
            FleetThread(settings, self.store, FleetMetrics(self.metrics.registry))
            if settings.fleet.aggregate
            else None
        )
        self._openai_server: ASGIThread | None = None
        self.openai_observer: CallObserver | None = None  # the OpenAI proxy's observer (openai_proxy_port)
        self.openai_proxy_port = 0

    # ---------------------------------------------------------------------------------------- helpers
    @property
    def runner(self) -> ExplainRunner | None:
        """The explain runner (``None`` before ``start()``)."""
        return self.explainer.runner

    @property
    def overload(self) -> OverloadCounter | None:
        """The shed-call counter when ``server.max_concurrent_rpcs`` is set (after ``start()``)."""
        return self._grpc.overload if self._grpc is not None else None

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain one input on the runner, accounted (see :class:`.explaining.AccountedExplainer`)."""
        return self.explainer.explain(request)

    # -------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Sidecar:
        """Bring every port and thread up (see the module docstring for the order); returns ``self``.

        Raises:
            Exception: a port cannot be bound, or the runner cannot start (a missing model folder); what
                was started is stopped again and the store closed first.
        """
        cfg = self.settings.server
        self._http = ASGIThread(
            create_metrics_app(self.metrics.registry, self.reports.rows, self.readiness, self.authorizer),
            cfg.host,
            cfg.metrics_port,
            name="spex-metrics",
            tls=cfg.port_tls("metrics"),
            # client certificates are verified when offered, not required: kubelet probes /healthz
            client_cert="optional" if cfg.metrics_tls == "inherit" else "required",
        )
        self.metrics_port = self._http.start()  # probes answer from here on, while models load
        try:
            self._start_serving()
        except BaseException:
            self.stop(0.0)
            raise
        log.info(
            "spex-monitor serving gRPC on %s:%d, metrics on %s:%d",
            cfg.host,
            self.grpc_port,
            cfg.host,
            self.metrics_port,
        )
        return self

    def _start_serving(self) -> None:
        cfg = self.settings.server
        self.explainer.runner = self._runner_factory(self.settings)
        self.ticker.update_backend_health()  # spex_monitor_backend_up is exported before /readyz says 200
        self._servicer = MonitorServicer(
            self.settings, self.monitor, self.store, self.metrics, self.authorizer, self.intake, self.explain
        )
        self._grpc = start_grpc(cfg, self._servicer, self.metrics)
        self.grpc_port = self._grpc.port
        self.ticker.health_servicer = self._grpc.health
        if cfg.proxy_port is None:
            self.readiness.listening(self.grpc_port)
        self.monitor.start(workers=cfg.workers)
        self.ticker.start()
        if self.fleet is not None:
            self.fleet.start()
        if cfg.proxy_port is not None and cfg.upstream:
            options = message_options(cfg)
            self.proxy, self._proxy_server, self.proxy_port = start_proxy(
                self.settings, self.intake, self.monitor, self.metrics, self.labels, options
            )
            self.readiness.listening(self.proxy_port)
        if cfg.events_port is not None:
            self.events, self._events_server, self.events_port = start_events(
                self.settings, self.intake, self.monitor, self.metrics, self.labels
            )
            log.info("KServe inference-logger receiver on http://%s:%d/", cfg.host, self.events_port)
        if cfg.openai_proxy_port is not None:
            self.openai_observer, self._openai_server, self.openai_proxy_port = start_openai_proxy(
                self.settings, self.intake, self.monitor, self.metrics
            )
            log.info("OpenAI-compatible proxy on :%d -> %s", self.openai_proxy_port, cfg.openai_upstream)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking traffic, finish in-flight explanations, persist open windows, close the store."""
        self.readiness.stopping()
        self.ticker.stop(grace_s)
        if self.fleet is not None:
            self.fleet.stop(grace_s)
        if self._events_server is not None:
            self._events_server.stop(grace_s)
        if self._openai_server is not None:
            self._openai_server.stop(grace_s)
        if self.openai_observer is not None:
            self.openai_observer.close()
        if self._proxy_server is not None:
            self._proxy_server.stop(grace_s).wait(grace_s)
        if self.proxy is not None:
            self.proxy.close()
        if self._grpc is not None:
            self._grpc.server.stop(grace_s).wait(grace_s)
        if self._servicer is not None:
            self._servicer.close()
        self.monitor.shutdown()
        if self.runner is not None:
            self.runner.close()
        if self._http is not None:
            self._http.stop(grace_s)
        self.store.close()
