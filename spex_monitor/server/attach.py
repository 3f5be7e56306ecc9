"""The attach modes that listen beside the gRPC API: the OIP-V2 proxy port, the KServe logger receiver and
the OpenAI-compatible pass-through proxy (LLM generations; see :mod:`.openai_proxy`).

Both follow ``server.tls`` unless their own ``proxy_tls`` / ``events_tls`` says otherwise; the proxy dials its
upstream with ``server.upstream_tls`` and forwards the caller's ``authorization`` header only over TLS or to
a loopback upstream (plaintext across the network would hand the caller's token to anyone on the path).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from concurrent import futures

import grpc
import httpx

from ..backends.pool import TLSFiles
from ..config import Settings
from ..monitor.worker import Monitor
from .asgi_thread import ASGIThread
from .events import EventReceiver
from .events_app import create_app
from .generations import build_generation
from .metrics import Metrics
from .observations import Intake, InvalidObservation
from .openai_calls import NotObservable, ServedCall, read_call
from .openai_proxy import CallObserver, create_openai_app
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


def start_openai_proxy(
    settings: Settings, intake: Intake, monitor: Monitor, metrics: Metrics
) -> tuple[CallObserver, ASGIThread, int]:
    """Start the OpenAI-compatible pass-through proxy on ``server.host:server.openai_proxy_port`` in front of
    ``server.openai_upstream``; returns ``(observer, server, bound port)``. Observed calls become
    observations through ``intake`` (the same checks and limits as Observe), on the observer's thread.

    A call belongs to the configured model named like its ``model`` field, or whose openai backend serves
    that name (``backend.served_model``); any other is counted as dropped (``unknown_model``, model ``""``).

    Raises:
        OSError: the port could not be bound, or an upstream TLS file cannot be read.
    """
    cfg = settings.server
    assert cfg.openai_proxy_port is not None and cfg.openai_upstream
    names = {m.name: m.name for m in settings.models}
    for m in settings.models:
        names.setdefault(getattr(m.backend, "served_model", m.name), m.name)

    def observe(call: ServedCall) -> None:
        try:
            served = read_call(call)
        except NotObservable as exc:
            if str(exc) != "upstream_error":
                metrics.drop("", "invalid")
            return
        model = names.get(served.model)
        if model is None:
            metrics.drop(served.model, "unknown_model")  # label "": names come from callers
            return
        try:
            generation = build_generation(
                prompt=served.prompt, messages=served.messages, completion=served.completion,
                segments=served.segments, temperature=served.temperature, top_p=min(served.top_p, 1.0),
            )  # fmt: skip
            observation = intake.build(
                request_id=(served.request_id or uuid.uuid4().hex)[:256], model=model, generation=generation
            )
        except InvalidObservation:
            metrics.drop(model, "invalid")
            return
        monitor.observe(observation)

    upstream = cfg.openai_upstream
    tls = cfg.openai_upstream_tls
    host = httpx.URL(upstream).host
    forward = upstream.startswith("https://") or upstream_is_loopback(f"{host}:0")
    if not forward:
        log.warning(
            "the OpenAI proxy's upstream %s is plaintext and not on loopback: callers' authorization headers "
            "are not forwarded (use an https:// upstream)",
            upstream,
        )
    verify: object = True
    cert = None
    if tls is not None:
        verify = TLSFiles(str(tls.ca_file) if tls.ca_file else None).ssl_context()
        if tls.cert_file is not None and tls.key_file is not None:
            cert = (str(tls.cert_file), str(tls.key_file))
    observer = CallObserver(observe, lambda reason: metrics.drop("", reason))
    app = create_openai_app(
        upstream, observer, verify=verify, cert=cert, forward_authorization=forward,
        max_body_bytes=cfg.openai_max_body_bytes, max_observed_bytes=cfg.openai_max_observed_bytes,
        timeout_s=cfg.openai_upstream_timeout_s, on_too_large=lambda: metrics.drop("", "too_large"),
    )  # fmt: skip
    tls_port = cfg.port_tls("openai_proxy")
    server = ASGIThread(app, cfg.host, cfg.openai_proxy_port, name="spex-openai-proxy", tls=tls_port)
    return observer, server, server.start()
