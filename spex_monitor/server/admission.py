"""Count the calls the monitor's gRPC server sheds once ``server.max_concurrent_rpcs`` is reached.

A sync gRPC server queues every call its thread pool cannot start yet; past its capacity, an Observe
caller waits seconds for its deadline and the queue grows the sidecar's memory. With
``maximum_concurrent_rpcs`` gRPC itself answers RESOURCE_EXHAUSTED at once, in its polling thread, for
calls beyond the limit (running plus queued) — but it counts them nowhere we can read.

Interceptors run inside that same decision: gRPC computes ``active_rpc_count >= limit`` under its server
lock and calls the interceptor before releasing it, so reading the count there gives exactly gRPC's
answer. That count is private to ``grpc._server`` (present in every grpcio this package supports); if
a future grpcio drops it, shedding still works and only the counting stops, with one warning.
(Mirroring the count in the interceptor instead leaks: a call admitted by our count but refused by gRPC
in the same instant never runs, so its slot is never given back.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger(__name__)


class OverloadCounter(grpc.ServerInterceptor):
    """Call ``on_reject(method)`` for each call gRPC refuses because ``limit`` calls are active."""

    def __init__(self, limit: int, on_reject: Callable[[str], None]) -> None:
        self.limit = limit
        self.on_reject = on_reject
        self._state: Any = None

    def bind(self, server: grpc.Server) -> None:
        """Read the active-call count of ``server`` (the one this interceptor was installed on)."""
        state = getattr(server, "_state", None)
        if state is None or not hasattr(state, "active_rpc_count"):
            log.warning("this grpcio does not expose its active call count; overloaded calls go uncounted")
            return
        self._state = state

    @property
    def active(self) -> int:
        """Calls the server runs or has queued now (0 when unknown)."""
        return int(self._state.active_rpc_count) if self._state is not None else 0

    def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        """Pass the call on unchanged; report it to ``on_reject`` when gRPC is about to refuse it (the
        active-call count is at the limit).
        """
        handler = continuation(handler_call_details)
        if handler is not None and self._state is not None and self._state.active_rpc_count >= self.limit:
            self.on_reject(handler_call_details.method)  # gRPC refuses it right after we return
        return handler
