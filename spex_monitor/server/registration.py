"""Register the MonitorService with deserializers that never fail: bytes that are not the method's message
(or not valid UTF-8 where protobuf wants a string) reach the handler as a :class:`BadMessage`, which is
answered INVALID_ARGUMENT naming the message — grpcio's own answer to a deserializer that raises is
INTERNAL ("Exception deserializing request!"), and no input may reach INTERNAL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ..protocol.v1 import monitor_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["MonitorService"]


@dataclass(frozen=True)
class BadMessage:
    """What a request that did not parse as ``expected`` becomes."""

    expected: str
    error: str

    @property
    def detail(self) -> str:
        """The INVALID_ARGUMENT detail: which message was expected and why parsing failed (≤ 300 chars)."""
        return f"request: not a valid {self.expected} message ({self.error})"[:300]


def _tolerant(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except Exception as exc:  # noqa: BLE001 - DecodeError, UnicodeDecodeError, whatever protobuf raises
            return BadMessage(message_type.DESCRIPTOR.name, f"{type(exc).__name__}: {exc}")

    return parse


def _unary(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, BadMessage):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
        return behavior(request, context)

    return handle


def add_monitor_service(servicer: Any, server: grpc.Server) -> None:
    """Like the generated ``add_MonitorServiceServicer_to_server``, with tolerant deserializers.

    Client-streaming methods receive :class:`BadMessage` items in their request iterator (ObserveStream
    counts them as rejected)."""
    handlers = {}
    for method in SERVICE.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        behavior = getattr(servicer, method.name)
        options = {
            "request_deserializer": _tolerant(request_type),
            "response_serializer": response_type.SerializeToString,
        }
        if method.client_streaming and not method.server_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(behavior, **options)
        elif not method.client_streaming and not method.server_streaming:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(_unary(behavior), **options)
        else:  # pragma: no cover - the service has no server-streaming methods
            raise NotImplementedError(method.full_name)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))


def valid_items(requests: Iterator[Any], on_bad: Callable[[BadMessage], None]) -> Iterator[Any]:
    """The parsed items of a client stream; each :class:`BadMessage` is passed to ``on_bad`` instead."""
    for request in requests:
        if isinstance(request, BadMessage):
            on_bad(request)
            continue
        yield request
