"""Shed load on the monitor's gRPC server instead of queueing it without bound.

A sync gRPC server queues every call its thread pool cannot start yet; past its capacity, an Observe
caller waits seconds for its deadline and the queue grows the sidecar's memory. With
``server.max_concurrent_rpcs`` gRPC itself answers RESOURCE_EXHAUSTED at once, in its polling thread, for
calls beyond the limit (running plus queued). gRPC does not count those rejections anywhere we can read,
so this interceptor keeps the same count as gRPC and records every call it will turn away in
``spex_monitor_dropped_total{reason="overloaded"}``.

The interceptor runs under gRPC's server lock right after gRPC decided, so both counts agree except in
one race: a call that has returned but whose completion gRPC has not yet booked is already gone from our
count. A rejection in that instant is not recorded (an undercount, never an overcount).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc


class OverloadCounter(grpc.ServerInterceptor):
    """Mirror gRPC's concurrent-call count; call ``on_reject(method)`` for each call past ``limit``."""

    def __init__(self, limit: int, on_reject: Callable[[str], None]) -> None:
        self.limit = limit
        self.on_reject = on_reject
        self.active = 0
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # gRPC answers UNIMPLEMENTED; not a concurrent call
        with self._lock:
            if self.active >= self.limit:
                rejected = True
            else:
                rejected = False
                self.active += 1
        if rejected:
            self.on_reject(handler_call_details.method)
            return handler  # gRPC rejects it with RESOURCE_EXHAUSTED before it runs
        return _wrap(handler, self._release)

    def _release(self) -> None:
        with self._lock:
            self.active -= 1


def _wrap(handler: grpc.RpcMethodHandler, release: Callable[[], None]) -> grpc.RpcMethodHandler:
    """The same handler, calling ``release`` once its behaviour has finished (however it ends)."""

    def guarded(behavior: Callable) -> Callable:
        def run(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behavior(request_or_iterator, context)
            finally:
                release()

        return run

    def guarded_stream(behavior: Callable) -> Callable:
        def run(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from behavior(request_or_iterator, context)
            finally:
                release()

        return run

    kinds = {
        (False, False): (grpc.unary_unary_rpc_method_handler, handler.unary_unary, guarded),
        (True, False): (grpc.stream_unary_rpc_method_handler, handler.stream_unary, guarded),
        (False, True): (grpc.unary_stream_rpc_method_handler, handler.unary_stream, guarded_stream),
        (True, True): (grpc.stream_stream_rpc_method_handler, handler.stream_stream, guarded_stream),
    }
    make, behavior, guard = kinds[(handler.request_streaming, handler.response_streaming)]
    return make(
        guard(behavior),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
