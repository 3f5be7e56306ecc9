"""The OpenAI-compatible pass-through proxy (issue 18 §2): attach to vLLM (or any OpenAI-compatible server)
with no code change.

Every request is forwarded to ``server.openai_upstream`` unchanged (Starlette in, httpx out — no HTTP parsing
of our own) and the answer comes back unchanged: status, headers (hop-by-hop ones aside) and the raw body
bytes, streamed (SSE) answers chunk by chunk as the upstream sends them — each chunk is yielded to the
client before the next is read, so nothing is held back. Upstream errors pass through as they are; an
upstream that cannot be reached answers 502 in OpenAI's error shape.

``POST /v1/completions`` and ``/v1/chat/completions`` are also *observed*: the proxy keeps a copy of the
request body and of up to ``server.openai_max_observed_bytes`` of the answer, and when the answer has been
sent hands both to a worker thread (:class:`CallObserver`), which reads the served generation
(:mod:`.openai_calls`) and gives it to the monitor through the shared intake. That work never touches the
data path, and its failures are counted, never raised: the proxy fails open. Request bodies are bounded by
``server.openai_max_body_bytes`` (413). The caller's ``authorization`` header is forwarded (to a TLS or
loopback upstream only, as the OIP proxy does) and never stored or logged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .openai_calls import CHAT, COMPLETIONS, SEGMENTS_HEADER, ServedCall

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1 connection-specific fields: never forwarded by a proxy
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host")
)
OBSERVED = (COMPLETIONS, CHAT)


class CallObserver:
    """Hands finished calls to ``observe`` on one worker thread, off the event loop; never raises.

    ``observe`` may raise: the error is logged (type only: never the request) and counted by
    ``on_error``. At most ``max_pending`` calls holding at most ``max_pending_bytes`` (request + answer
    bytes) wait; beyond either a call is dropped (``overloaded``), so a burst of large bodies cannot grow
    memory without bound.
    """

    def __init__(
        self,
        observe: Callable[[ServedCall], None],
        on_error: Callable[[str], None],
        max_pending: int = 1024,
        max_pending_bytes: int = 64 << 20,
    ) -> None:
        self.observe = observe
        self.on_error = on_error
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending = 0
        self.pending_bytes = 0
        self._lock = threading.Lock()  # submit runs on the event loop, _run on the worker thread
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="spex-openai-observe")

    def submit(self, call: ServedCall) -> None:
        """Queue ``call`` (or count it dropped when too many calls or bytes wait)."""
        size = len(call.request) + len(call.answer)
        with self._lock:
            if self.pending >= self.max_pending or self.pending_bytes + size > self.max_pending_bytes:
                admitted = False
            else:
                admitted = True
                self.pending += 1
                self.pending_bytes += size
        if not admitted:
            self.on_error("overloaded")
            return
        self._executor.submit(self._run, call, size)

    def _run(self, call: ServedCall, size: int) -> None:
        try:
            self.observe(call)
        except Exception as exc:  # fail open: the call was answered already
            log.warning("observing an OpenAI call failed: %s", type(exc).__name__)
            self.on_error("internal_error")
        finally:
            with self._lock:
                self.pending -= 1
                self.pending_bytes -= size

    def close(self) -> None:
        """Finish the calls already queued, then stop."""
        self._executor.shutdown(wait=True)


def create_openai_app(
    upstream: str,
    observer: CallObserver,
    *,
    verify: object = True,
    cert: tuple[str, str] | None = None,
    forward_authorization: bool = True,
    max_body_bytes: int = 16 * 1024 * 1024,
    max_observed_bytes: int = 4 * 1024 * 1024,
    timeout_s: float = 600.0,
    on_too_large: Callable[[], None] = lambda: None,
) -> Starlette:
    """The proxy's ASGI app, forwarding every path and method to ``upstream`` (a base URL).

    Args:
        observer: receives each finished, observable call (see :class:`CallObserver`).
        verify, cert: httpx TLS settings for an https upstream (an ``ssl.SSLContext`` or a CA path).
        forward_authorization: whether the caller's ``authorization`` header goes upstream.
        max_body_bytes: larger request bodies get 413 and are not forwarded.
        max_observed_bytes: answers longer than this are forwarded whole but not observed.
        timeout_s: longest wait for the upstream's next bytes.
        on_too_large: called once per call whose answer was too long to observe.
    """
    timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
    client_box: dict[str, httpx.AsyncClient] = {}

    def client() -> httpx.AsyncClient:
        if "c" not in client_box:  # made on the server's own event loop
            client_box["c"] = httpx.AsyncClient(
                base_url=upstream.rstrip("/"), verify=verify, cert=cert, timeout=timeout,  # type: ignore[arg-type]
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            )  # fmt: skip
        return client_box["c"]

    async def forward(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, f"request body over {max_body_bytes} bytes (server.openai_max_body_bytes)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _error(413, f"request body over {max_body_bytes} bytes (server.openai_max_body_bytes)")
        skipped = HOP_BY_HOP | {"content-length"} | (set() if forward_authorization else {"authorization"})
        headers = [(k, v) for k, v in request.headers.items() if k not in skipped]
        path = request.url.path  # decoded: what the observed-path check compares
        raw_path = request.scope.get("raw_path") or path.encode()  # forwarded as the client sent it
        url = raw_path.decode("latin-1") + (f"?{request.url.query}" if request.url.query else "")
        upstream_request = client().build_request(request.method, url, headers=headers, content=bytes(body))
        try:
            answer = await client().send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return _error(502, f"upstream unreachable: {type(exc).__name__}")
        observed = request.method == "POST" and path.rstrip("/") in OBSERVED
        reply_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        streamed = answer.headers.get("content-type", "").startswith("text/event-stream")
        kept = bytearray()
        state = {"too_large": False, "complete": False}

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    if observed and not state["too_large"]:
                        if len(kept) + len(chunk) > max_observed_bytes:
                            state["too_large"] = True
                            kept.clear()
                        else:
                            kept.extend(chunk)
                    yield chunk  # to the client before the next chunk is read: nothing held back
                state["complete"] = True
            finally:  # also when the client goes away mid-stream
                await answer.aclose()

        async def finish() -> None:
            await answer.aclose()  # a no-op after relay(); frees the connection if relay never started
            if not observed or not state["complete"]:
                return
            if state["too_large"]:
                on_too_large()
                return
            if answer.headers.get("content-encoding", "identity") != "identity":
                return  # compressed: forwarded as is, not read back
            observer.submit(
                ServedCall(
                    path=path, request=bytes(body), answer=bytes(kept), status=answer.status_code,
                    streamed=streamed, segments_header=request.headers.get(SEGMENTS_HEADER),
                    request_id=request.headers.get("x-request-id"),
                )
            )  # fmt: skip

        return StreamingResponse(
            relay(), status_code=answer.status_code, headers=reply_headers, background=BackgroundTask(finish)
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if "c" in client_box:
                await client_box.pop("c").aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def _error(status: int, message: str) -> JSONResponse:
    """An error of the proxy itself, in the OpenAI error shape."""
    kind = "invalid_request_error" if status < 500 else "upstream_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)
