"""The sidecar process: configuration → monitor, explainers, store, gRPC service, metrics endpoint.

``Sidecar(settings).start()`` binds the gRPC server (MonitorService + health + reflection) and the
read-only metrics port (``/metrics`` for Prometheus, ``/api/top-interactions`` JSON for Grafana tables),
starts explain workers and a ticker that closes windows. ``stop()`` drains and persists.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..backends.base import BatchTiming
from ..config import ConfigError, Settings
from ..explain import ExplainRequest, ExplainResult
from ..explain.backends import class_labels
from ..explain.runner import LOCAL_REPLICA, ExplainRunner, make_runner
from ..monitor.budget import Budget
from ..monitor.redaction import Redactor, load_hook
from ..monitor.sampling import StratifiedSampler
from ..monitor.store import SQLiteStore
from ..monitor.vocabulary import DocumentFrequency
from ..monitor.windows import TumblingWindows
from ..monitor.worker import Monitor, Observation, WindowResult
from ..protocol.v1 import monitor_pb2 as pb
from . import exporting
from .admission import OverloadCounter
from .asgi_thread import ASGIThread
from .auth import Authorizer
from .http import create_metrics_app
from .limits import PriorityExecutor
from .metrics import Metrics
from .observations import VersionGate, explainable
from .registration import add_monitor_service
from .service import MonitorServicer
from .tls import bind

log = logging.getLogger(__name__)
# gRPC health service name of the store: NOT_SERVING while writes fail (Observe keeps serving)
STORE_HEALTH_SERVICE = "spex_monitor.v1.Store"


def _redactor(settings: Settings) -> Redactor | None:
    store = settings.store
    try:
        hook = load_hook(store.redact_hook) if store.redact_hook else None
    except (ImportError, ValueError) as exc:
        raise ConfigError("store.redact_hook", [("store.redact_hook", str(exc))]) from exc
    redactor = Redactor(store.redact, store.redact_patterns, hook)
    return redactor if redactor.active else None


class Sidecar:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.metrics.model_names = frozenset(m.name for m in settings.models)
        if settings.server.explain_in == "thread" and any(m.backend.kind == "local" for m in settings.models):
            import torch

            torch.set_num_threads(settings.server.torch_threads)
        self.store = SQLiteStore(
            settings.store.path,
            store_text=settings.store.store_text,
            text_ttl_s=settings.store.text_ttl_s,
            retention_s=settings.store.retention_days * 86_400,
            max_bytes=settings.store.max_bytes,
        )
        self.model_versions = {m.name: m.version for m in settings.models}
        self.version_gate = VersionGate(self.model_versions)
        self.labels = {m.name: class_labels(m.backend) for m in settings.models}
        self.runner: ExplainRunner | None = None  # built by start(): worker processes take seconds to load
        self._running = 0  # explanations running against the backend (the budget's queue-depth signal)
        self._running_lock = threading.Lock()
        self._health: dict[str, bool] = {}
        for m in settings.models:
            replicas = [LOCAL_REPLICA] if m.backend.kind == "local" else m.backend.endpoints
            self._health.update(dict.fromkeys(replicas, True))
        self.lens = {m.name: m.lens.kind for m in settings.models}
        b = settings.budget
        self.monitor = Monitor(
            explainer=self._explain,
            sampler=StratifiedSampler(
                {m.name: m.sampling_rate for m in settings.models},
                settings.server.queue_per_label,
                settings.seed,
            ),
            budget=Budget(
                b.inferences_per_second,
                b.burst,
                b.backend_seconds_per_hour,
                b.max_latency_s,
                b.max_queue_depth,
            ),
            windows=TumblingWindows(settings.windows.seconds, settings.windows.requests),
            store=self.store,
            inferences_per_explanation=settings.engine.budget,
            budget_wait_s=b.wait_s,
            baseline_windows=settings.baseline.windows,
            rolling_decay=settings.baseline.rolling_decay,
            min_window_requests=settings.baseline.min_window_requests,
            n_permutations=settings.baseline.n_permutations,
            alarm_p_value=settings.baseline.alarm_p_value,
            on_window=self._on_window,
            on_event=self._on_event,
            redact=_redactor(settings),
            vocabulary=DocumentFrequency(settings.store.min_document_frequency),
            log_content=settings.server.log_request_content,
        )
        if settings.baseline.file is not None:
            from ..monitor import InteractionMap

            pinned = InteractionMap.from_bytes(settings.baseline.file.read_bytes())
            if pinned.requests < settings.baseline.min_window_requests:
                reason = (
                    f"the map holds {pinned.requests:g} explained requests; at least "
                    f"{settings.baseline.min_window_requests} (baseline.min_window_requests) are needed"
                )
                raise ConfigError("baseline.file", [("baseline.file", reason)])
            first = settings.models[0]
            self.monitor.set_baseline(first.name, first.version, pinned, source=str(settings.baseline.file))
        self.last_reports: dict[tuple[str, str], dict] = {}
        self._reports_lock = threading.Lock()  # the ticker writes last_reports, HTTP threads read it
        self.authorizer = Authorizer(settings.server)
        self._grpc: grpc.Server | None = None
        self._servicer: MonitorServicer | None = None
        self._proxy_server: grpc.Server | None = None
        self.proxy = None
        self.proxy_port = 0
        self._http: ASGIThread | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._health_servicer: health.HealthServicer | None = None
        self.grpc_port = 0
        self.metrics_port = 0
        self.events = None  # the KServe inference-logger receiver, when server.events_port is set
        self._events_server = None
        self.events_port = 0
        self.overload: OverloadCounter | None = None  # set by start() when server.max_concurrent_rpcs is on

    # ------------------------------------------------------------------------------------- monitor glue
    def _explain(self, observation: Observation):  # noqa: ANN202
        explainable(observation.text)  # a failed (counted) explanation, not minutes of a worker's CPU
        outcome = self.explain(ExplainRequest(observation.model, observation.text, observation.fields))
        return outcome.interactions, outcome.keys

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain one input on the runner; record its backend batches and replica health."""
        if self.runner is None:
            raise RuntimeError("the sidecar is not started")
        gate = self.monitor.budget
        with self._running_lock:
            self._running += 1
            gate.signal(queue_depth=self._running)
        try:
            outcome = self.runner.explain(request)
        except Exception as exc:
            self._health.update(getattr(exc, "health", {}))
            self._record_batches(getattr(exc, "batches", []))
            raise
        finally:
            with self._running_lock:
                self._running -= 1
                gate.signal(queue_depth=self._running)
        self._health.update(outcome.health)
        self._record_batches(outcome.batches)
        return outcome

    def _record_batches(self, batches: list[BatchTiming]) -> None:
        """Per batch: the replica's latency histogram; per explanation: the budget's latency signal (mean
        seconds per batch), which closes the gate past ``budget.max_latency_s``."""
        if batches:
            self.monitor.budget.signal(latency_s=sum(b.seconds for b in batches) / len(batches))
        for batch in batches:
            # local devices ("cpu", "cuda:0") are one replica; remote ones are named by their endpoint
            local = batch.device.split(":")[0] in ("cpu", "cuda", "mps")
            replica = LOCAL_REPLICA if local else batch.device
            self.metrics.backend_duration.labels(replica).observe(batch.seconds)

    def _on_event(self, kind: str, data: dict) -> None:
        exporting.on_event(self, kind, data)

    def _on_window(self, result: WindowResult) -> None:
        exporting.on_window(self, result)

    def top_interactions(self) -> list[dict]:
        """Rows of ``/api/top-interactions``: each model's last report's strongest moves."""
        return exporting.top_interactions(self)

    def _update_backend_health(self) -> None:
        for replica, up in list(self._health.items()):
            self.metrics.backend_up.labels(replica).set(1.0 if up else 0.0)

    def _ticker(self) -> None:
        last_purge = time.monotonic()
        while not self._stopping.wait(self.settings.server.tick_s):
            try:
                self.monitor.tick()
                self._update_backend_health()
                if time.monotonic() - last_purge >= self.settings.store.purge_interval_s:
                    last_purge = time.monotonic()
                    self.monitor.persist(self.store.purge)
                self._update_store_health()
            except Exception:
                log.exception("tick failed")

    def _update_store_health(self) -> None:
        """The store's state as a metric and as the ``spex_monitor.v1.Store`` health service."""
        degraded = self.monitor.store_error is not None
        self.metrics.store_degraded.set(1.0 if degraded else 0.0)
        if self._health_servicer is not None:
            status = (
                health_pb2.HealthCheckResponse.NOT_SERVING
                if degraded
                else health_pb2.HealthCheckResponse.SERVING
            )
            self._health_servicer.set(STORE_HEALTH_SERVICE, status)

    # -------------------------------------------------------------------------------------- endpoints
    def readiness(self) -> str | None:
        """``None`` when what serving needs accepts connections (the proxy port when configured, else the
        gRPC port), else why not. A TCP connect on loopback: it takes no gRPC worker thread."""
        if self._stopping.is_set():
            return "stopping"
        proxied = self.settings.server.proxy_port is not None
        name, port = ("OIP proxy", self.proxy_port) if proxied else ("gRPC", self.grpc_port)
        if not port:
            return f"the {name} port is not listening yet"
        host = self.settings.server.host
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        try:
            socket.create_connection((host, port), timeout=1.0).close()
        except OSError as exc:
            return f"the {name} port {port} refuses connections ({exc.strerror or exc})"
        return None

    def start(self) -> Sidecar:
        server_cfg = self.settings.server
        options = [
            ("grpc.max_receive_message_length", server_cfg.max_message_bytes),
            ("grpc.max_send_message_length", server_cfg.max_message_bytes),
        ]
        self.runner = make_runner(self.settings)
        interceptors = []
        if server_cfg.max_concurrent_rpcs is not None:
            overloaded = self.metrics.dropped.labels("", "overloaded")  # rejected before the model is read
            limit = server_cfg.max_concurrent_rpcs
            self.overload = OverloadCounter(limit, lambda _method: overloaded.inc())
            interceptors.append(self.overload)
        self._grpc = grpc.server(
            PriorityExecutor(server_cfg.grpc_threads),  # health checks never wait behind user calls
            options=options,
            interceptors=interceptors,
            maximum_concurrent_rpcs=server_cfg.max_concurrent_rpcs,
        )
        if self.overload is not None:
            self.overload.bind(self._grpc)
        self._servicer = MonitorServicer(self)
        add_monitor_service(self._servicer, self._grpc)  # undecodable requests: INVALID_ARGUMENT
        health_servicer = self._health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self._grpc)
        service_name = pb.DESCRIPTOR.services_by_name["MonitorService"].full_name
        reflection.enable_server_reflection(
            (service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc
        )
        address = f"{server_cfg.host}:{server_cfg.grpc_port}"
        self.grpc_port = bind(self._grpc, address, server_cfg.tls)
        self._grpc.start()
        for name in ("", service_name, STORE_HEALTH_SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._http = ASGIThread(
            create_metrics_app(self.metrics.registry, self.top_interactions, self.readiness, self.authorizer),
            server_cfg.host,
            server_cfg.metrics_port,
            name="spex-metrics",
            tls=server_cfg.port_tls("metrics"),
            # client certificates are verified when offered, not required: kubelet probes /healthz
            client_cert="optional" if server_cfg.metrics_tls == "inherit" else "required",
        )
        self.metrics_port = self._http.start()
        self.monitor.start(workers=server_cfg.workers)
        ticker = threading.Thread(target=self._ticker, name="spex-ticker", daemon=True)
        ticker.start()
        self._threads.append(ticker)
        if server_cfg.proxy_port is not None and server_cfg.upstream:
            self._start_proxy(server_cfg.host, server_cfg.proxy_port, server_cfg.upstream, options)
        if server_cfg.events_port is not None:
            self._start_events(server_cfg.host, server_cfg.events_port)
        self._update_backend_health()
        log.info(
            "spex-monitor serving gRPC on %s:%d, metrics on %s:%d",
            server_cfg.host,
            self.grpc_port,
            server_cfg.host,
            self.metrics_port,
        )
        return self

    def _start_proxy(self, host: str, port: int, upstream: str, options: list) -> None:
        from .attach import start_proxy

        self.proxy, self._proxy_server, self.proxy_port = start_proxy(self, host, port, upstream, options)

    def _start_events(self, host: str, port: int) -> None:
        from .attach import start_events

        self.events, self._events_server, self.events_port = start_events(self, host, port)
        log.info("KServe inference-logger receiver on http://%s:%d/", host, self.events_port)

    def stop(self, grace_s: float = 5.0) -> None:
        self._stopping.set()
        if self._events_server is not None:
            self._events_server.stop(grace_s)
        if self._proxy_server is not None:
            self._proxy_server.stop(grace_s).wait(grace_s)
            self.proxy.close()
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait(grace_s)
        if self._servicer is not None:
            self._servicer.close()
        self.monitor.shutdown()
        if self.runner is not None:
            self.runner.close()
        if self._http is not None:
            self._http.stop(grace_s)
        for thread in self._threads:
            thread.join(grace_s)
        self.store.close()
