"""TLS for every port the sidecar opens or dials (issue 23 §5): gRPC server and channel credentials from a
:class:`~spex_monitor.config.TLSConfig` (the HTTP ports get theirs in :class:`.asgi_thread.ASGIThread`)."""

from __future__ import annotations

import grpc

from ..config import TLSConfig
from .auth import is_loopback_host


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """Server certificate; with ``ca_file`` clients must present a certificate from that CA (mutual TLS)."""
    assert tls.cert_file is not None and tls.key_file is not None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        require_client_auth=tls.ca_file is not None,
    )


def bind(server: grpc.Server, address: str, tls: TLSConfig | None) -> int:
    """Add a port to ``server``: TLS when ``tls`` has a certificate, plaintext otherwise."""
    if tls is not None and tls.cert_file is not None:
        return server.add_secure_port(address, server_credentials(tls))
    return server.add_insecure_port(address)


def channel_credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    """Client side: ``ca_file`` verifies the server (system roots without it); cert/key: our certificate."""
    read = lambda path: path.read_bytes() if path else None  # noqa: E731
    return grpc.ssl_channel_credentials(read(tls.ca_file), read(tls.key_file), read(tls.cert_file))


def upstream_is_loopback(upstream: str) -> bool:
    """Whether ``host:port`` names this machine's loopback (plaintext there never leaves the pod)."""
    host = upstream.rpartition(":")[0].strip("[]")
    return is_loopback_host(host) or host == "localhost"
