"""The attach modes that listen beside the gRPC API: the OIP-V2 proxy port and the KServe logger receiver.

Both follow ``server.tls`` unless their own ``proxy_tls`` / ``events_tls`` says otherwise; the proxy dials its
upstream with ``server.upstream_tls`` and forwards the caller's ``authorization`` header only over TLS or to
a loopback upstream (plaintext across the network would hand the caller's token to anyone on the path).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent import futures

import grpc

from ..config import Settings
from ..monitor.worker import Monitor
from .asgi_thread import ASGIThread
from .events import EventReceiver
from .events_app import create_app
from .metrics import Metrics
from .observations import Intake, InvalidObservation
from .proxy import OIPProxy, observations_from_infer
from .tls import bind, channel_credentials, upstream_is_loopback

log = logging.getLogger(__name__)

Labels = Mapping[str, Mapping[int, str] | None]  # model name -> class names by index (None: unknown)


def start_proxy(
    settings: Settings,
    intake: Intake,
    monitor: Monitor,
    metrics: Metrics,
    labels: Labels,
    options: list,
) -> tuple[OIPProxy, grpc.Server, int]:
    """Start the OIP-V2 proxy on ``server.host:server.proxy_port`` in front of ``server.upstream``;
    returns ``(proxy, grpc server, bound port)``. Each forwarded ModelInfer becomes observations through
    ``intake`` (the same checks and limits as Observe), off the data path.

    Raises:
        RuntimeError: the port could not be bound.
    """
    server_cfg = settings.server
    assert server_cfg.proxy_port is not None and server_cfg.upstream
    host, port, upstream = server_cfg.host, server_cfg.proxy_port, server_cfg.upstream
    versions = intake.versions

    def on_infer(request, response) -> None:  # noqa: ANN001
        model = request.model_name
        if model not in versions:
            metrics.drop(model, "unknown_model")  # label "": names come from callers
            return
        for item in observations_from_infer(request, response, model, versions[model], labels[model]):
            try:  # the same checks and limits as Observe (text size, Unicode, input kind)
                observation = intake.build(trace_id=None, **item)
            except InvalidObservation:
                metrics.drop(model, "invalid")
                continue
            monitor.observe(observation)

    upstream_tls = server_cfg.upstream_tls
    forward = upstream_tls is not None or upstream_is_loopback(upstream)
    if not forward:
        log.warning(
            "the proxy's upstream %s is plaintext and not on loopback: callers' authorization headers are "
            "not forwarded (set server.upstream_tls)",
            upstream,
        )
    proxy = OIPProxy(
        upstream,
        on_infer,
        credentials=channel_credentials(upstream_tls) if upstream_tls is not None else None,
        forward_authorization=forward,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    proxy.register(server)
    bound = bind(server, f"{host}:{port}", server_cfg.port_tls("proxy"))
    server.start()
    return proxy, server, bound


def start_events(
    settings: Settings, intake: Intake, monitor: Monitor, metrics: Metrics, labels: Labels
) -> tuple[EventReceiver, ASGIThread, int]:
    """Start the KServe inference-logger receiver on ``server.host:server.events_port``; returns
    ``(receiver, server, bound port)``.

    Raises:
        OSError: the port could not be bound.
    """
    server_cfg = settings.server
    assert server_cfg.events_port is not None
    receiver = EventReceiver(settings, monitor, metrics, labels, gate=intake.gate)
    tls = server_cfg.port_tls("events")
    server = ASGIThread(
        create_app(receiver), server_cfg.host, server_cfg.events_port, name="spex-events", tls=tls
    )
    return receiver, server, server.start()
