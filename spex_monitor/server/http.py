"""The metrics port: ``/metrics`` (Prometheus), ``/api/top-interactions`` (JSON for Grafana tables, readers
role), ``/healthz`` (liveness) and ``/readyz`` (readiness), served by uvicorn on its own thread.

It used to be a single-threaded ``wsgiref`` server: one idle TCP connection blocked every scrape (and the
chart's probes) until it timed out. uvicorn serves connections concurrently on an event loop, so an idle or
slow-reading client costs one socket, not the port.

``/healthz`` answers 200 while the process and this HTTP server live — it never consults explain workers,
the store, replicas or the gRPC user-call pool (a liveness probe that fails on those restarts a healthy
process). ``/readyz`` answers 200 when what *serving* needs is up: the OIP proxy port when one is
configured, else the gRPC server; otherwise 503 with a one-line reason.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from .auth import Authorizer

Readiness = Callable[[], str | None]  # None: ready; else the reason it is not
# wildcard listen addresses and the loopback address a probe dials instead
_DIAL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ServingProbe:
    """Readiness of what serving needs: one port (the proxy's when traffic flows through the sidecar, else
    the gRPC port) accepting TCP connections, checked by a connect on loopback (no gRPC worker thread).

    Args:
        host: the configured listen host (a wildcard is dialled on loopback).
        name: what the port serves, for the reason text (``"gRPC"``, ``"OIP proxy"``).

    Call :meth:`listening` once the port is bound and :meth:`stopping` when shutdown begins.
    """

    def __init__(self, host: str, name: str) -> None:
        self.host = _DIAL.get(host, host)
        self.name = name
        self.port = 0
        self._stopping = False

    def listening(self, port: int) -> None:
        """The watched port is bound (and serving) at ``port``."""
        self.port = port

    def stopping(self) -> None:
        """From now on the probe answers "stopping"."""
        self._stopping = True

    def __call__(self) -> str | None:
        """``None`` when ready, else why not (one line)."""
        if self._stopping:
            return "stopping"
        if not self.port:
            return f"the {self.name} port is not listening yet"
        try:
            socket.create_connection((self.host, self.port), timeout=1.0).close()
        except OSError as exc:
            return f"the {self.name} port {self.port} refuses connections ({exc.strerror or exc})"
        return None


def create_metrics_app(
    registry: CollectorRegistry,
    top_interactions: Callable[[], list[dict[str, Any]]],
    readiness: Readiness,
    authorizer: Authorizer,
) -> Starlette:
    """The ASGI app of the metrics port. Everything is read-only: other methods get 405."""
    prometheus = make_asgi_app(registry)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def readyz(request: Request) -> Response:  # sync: Starlette runs it on a worker thread
        reason = readiness()
        if reason is None:
            return PlainTextResponse("ready\n")
        return PlainTextResponse(f"not ready: {reason}\n", status_code=503)

    async def top(request: Request) -> Response:
        client = request.client.host if request.client else None
        caller = authorizer.http_caller(request.headers, client)
        if not caller.holds("readers"):
            return Response(
                json.dumps({"error": "forbidden", "detail": authorizer.denial("readers")}),
                status_code=403,
                media_type="application/json",
            )
        body = json.dumps(top_interactions(), ensure_ascii=True)
        return Response(body, media_type="application/json")

    async def refuse(request: Request) -> Response:
        return PlainTextResponse("read-only endpoint\n", status_code=405, headers={"Allow": "GET, HEAD"})

    read = ["GET", "HEAD"]
    written = ["POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/healthz", healthz, methods=read),
        Route("/readyz", readyz, methods=read),
        Route("/api/top-interactions", top, methods=read),
        Route("/{path:path}", refuse, methods=written),
        Mount("/", app=prometheus),  # /metrics (and / for Prometheus' default path handling)
    ]
    return Starlette(routes=routes)
