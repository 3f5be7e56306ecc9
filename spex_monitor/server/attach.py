"""The attach modes that listen beside the gRPC API: the OIP-V2 proxy port and the KServe logger receiver.

Both follow ``server.tls`` unless their own ``proxy_tls`` / ``events_tls`` says otherwise; the proxy dials its
upstream with ``server.upstream_tls`` and forwards the caller's ``authorization`` header only over TLS or to
a loopback upstream (plaintext across the network would hand the caller's token to anyone on the path).
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc

from .asgi_thread import ASGIThread
from .observations import InvalidObservation, build_observation
from .tls import bind, channel_credentials, upstream_is_loopback

if TYPE_CHECKING:
    from .app import Sidecar

log = logging.getLogger(__name__)


def start_proxy(sidecar: Sidecar, host: str, port: int, upstream: str, options: list) -> tuple[Any, Any, int]:
    """Start the OIP proxy; returns ``(proxy, grpc server, bound port)``."""
    from .proxy import OIPProxy, observations_from_infer

    server_cfg = sidecar.settings.server
    versions = {m.name: m.version for m in sidecar.settings.models}

    def on_infer(request, response) -> None:  # noqa: ANN001
        model = request.model_name
        if model not in versions:
            sidecar.metrics.drop(model, "unknown_model")  # label "": names come from callers
            return
        labels = sidecar.labels[model]
        for item in observations_from_infer(request, response, model, versions[model], labels):
            try:  # the same checks and limits as Observe (text size, Unicode, input kind)
                observation = build_observation(
                    versions, gate=sidecar.version_gate, kinds=sidecar.lens, trace_id=None, **item
                )
            except InvalidObservation:
                sidecar.metrics.drop(model, "invalid")
                continue
            sidecar.monitor.observe(observation)

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


def start_events(sidecar: Sidecar, host: str, port: int) -> tuple[Any, ASGIThread, int]:
    """Start the KServe inference-logger receiver; returns ``(receiver, server, bound port)``."""
    from .events import EventReceiver
    from .events_app import create_app

    receiver = EventReceiver.from_sidecar(sidecar)
    tls = sidecar.settings.server.port_tls("events")
    server = ASGIThread(create_app(receiver), host, port, name="spex-events", tls=tls)
    return receiver, server, server.start()
