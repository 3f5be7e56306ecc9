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
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from .auth import Authorizer

Readiness = Callable[[], str | None]  # None: ready; else the reason it is not


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
