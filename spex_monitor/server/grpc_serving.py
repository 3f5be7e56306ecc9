"""The gRPC server of the sidecar: MonitorService, health and reflection on one bounded pool.

Health checks get threads of their own (:class:`~.limits.PriorityExecutor`); with
``server.max_concurrent_rpcs`` gRPC sheds calls past the limit and :class:`~.admission.OverloadCounter`
counts them as ``spex_monitor_dropped_total{model="", reason="overloaded"}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..config_server import ServerConfig
from ..protocol.v1 import monitor_pb2 as pb
from .admission import OverloadCounter
from .limits import PriorityExecutor
from .metrics import Metrics
from .registration import add_monitor_service
from .service import MonitorServicer
from .ticker import STORE_HEALTH_SERVICE
from .tls import bind

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MonitorService"].full_name


@dataclass
class GrpcServing:
    """The started gRPC server and what the sidecar keeps of it."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    overload: OverloadCounter | None


def message_options(server_cfg: ServerConfig) -> list[tuple[str, int]]:
    """Channel options bounding messages both ways (``server.max_message_bytes``)."""
    return [
        ("grpc.max_receive_message_length", server_cfg.max_message_bytes),
        ("grpc.max_send_message_length", server_cfg.max_message_bytes),
    ]


def start_grpc(server_cfg: ServerConfig, servicer: MonitorServicer, metrics: Metrics) -> GrpcServing:
    """Bind ``server.host:server.grpc_port`` (TLS per ``server.tls``), start, and mark every service
    SERVING.

    Raises:
        RuntimeError: the port could not be bound.
    """
    interceptors = []
    overload = None
    if server_cfg.max_concurrent_rpcs is not None:
        overloaded = metrics.dropped.labels("", "overloaded")  # rejected before the model is read
        overload = OverloadCounter(server_cfg.max_concurrent_rpcs, lambda _method: overloaded.inc())
        interceptors.append(overload)
    server = grpc.server(
        PriorityExecutor(server_cfg.grpc_threads),  # health checks never wait behind user calls
        options=message_options(server_cfg),
        interceptors=interceptors,
        maximum_concurrent_rpcs=server_cfg.max_concurrent_rpcs,
    )
    if overload is not None:
        overload.bind(server)
    add_monitor_service(servicer, server)  # undecodable requests: INVALID_ARGUMENT
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = bind(server, f"{server_cfg.host}:{server_cfg.grpc_port}", server_cfg.tls)
    server.start()
    for name in ("", SERVICE_NAME, STORE_HEALTH_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServing(server, port, health_servicer, overload)
