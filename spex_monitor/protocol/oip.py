"""The OIP-V2 gRPC service, bound by method path to our own message classes.

``inference.GRPCInferenceService`` is the service name every KServe / Triton server registers; binding
its methods by path (instead of generating a stub from a proto that declares ``package inference``)
keeps our message types out of the ``inference.*`` namespace, so spex-monitor can run in one process
with KServe's or Triton's own generated code.
"""

from __future__ import annotations

from typing import Any

import grpc

from .inference import grpc_service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
METHODS: dict[str, tuple[Any, Any]] = {
    name: (getattr(pb, f"{name}Request"), getattr(pb, f"{name}Response"))
    for name in (
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    )
}


class InferenceStub:
    """Client stub: ``stub.ModelInfer(request, timeout=...)`` like a generated stub."""

    def __init__(self, channel: grpc.Channel) -> None:
        for name, (request, response) in METHODS.items():
            setattr(
                self,
                name,
                channel.unary_unary(
                    f"/{SERVICE}/{name}",
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                ),
            )


def add_inference_servicer(servicer: Any, server: grpc.Server) -> None:
    """Serve every method ``servicer`` implements (``def ModelInfer(self, request, context)``...)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in METHODS.items()
        if callable(getattr(servicer, name, None))
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
