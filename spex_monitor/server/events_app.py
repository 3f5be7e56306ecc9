"""The ASGI shell of the KServe inference-logger receiver: read the body within its bound, hand it to
:class:`.events.EventReceiver`, expire unpaired halves in the background, answer ``GET /healthz``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .events import EventReceiver

log = logging.getLogger("spex_monitor.server.events")


class _AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: a detail echoing a lone surrogate still encodes (Starlette's default
    UTF-8 rendering raised, which answered a plain-text 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def create_app(receiver: EventReceiver, sweep_s: float | None = None) -> Starlette:
    """The ASGI app: ``POST`` any path (KServe posts to the logger URL as given) and ``GET /healthz``.

    The body is read in chunks and abandoned as soon as it passes ``events_max_bytes``, so an oversized
    event costs at most that much memory. A background task expires unpaired halves every ``sweep_s``.
    """
    sweep_every = sweep_s if sweep_s is not None else min(1.0, receiver.pairing.ttl_s / 4)
    JSONResponse = _AsciiJSONResponse  # noqa: N806 - every reply encodable, whatever text it echoes

    async def receive(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > receiver.max_bytes:
            reply = receiver.too_large(int(declared))
            return JSONResponse(reply.body, status_code=reply.status, headers={"Connection": "close"})
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > receiver.max_bytes:
                reply = receiver.too_large(None)
                return JSONResponse(reply.body, status_code=reply.status, headers={"Connection": "close"})
        reply = receiver.handle(request.headers, bytes(body))
        return JSONResponse(reply.body, status_code=reply.status)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "pending": receiver.pairing.pending})

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(sweep_every)
            try:
                receiver.sweep()
            except Exception:  # keep sweeping; a failure here must not stop the receiver
                log.exception("expiring unpaired events failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/{path:path}", receive, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
