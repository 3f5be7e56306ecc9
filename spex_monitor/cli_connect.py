"""How the CLI reaches a sidecar: TLS (``--tls-ca/--tls-cert/--tls-key``) and the bearer token of a role
(``--token-file`` or ``$SPEX_MONITOR_TOKEN``; the old ``--token`` shows the secret in ``ps``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

TOKEN_ENV = "SPEX_MONITOR_TOKEN"


def read_token(args: argparse.Namespace) -> str:
    """The bearer token: ``--token-file``, else ``$SPEX_MONITOR_TOKEN``, else the deprecated ``--token``
    (visible to every local user in ``ps``; kept working, with a warning)."""
    if getattr(args, "token_file", ""):
        return Path(args.token_file).read_text().strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if getattr(args, "token", ""):
        print(
            f"spex-monitor: --token shows the token in the process list; use --token-file or ${TOKEN_ENV}",
            file=sys.stderr,
        )
        return str(args.token)
    return ""


def stub(args: argparse.Namespace):  # noqa: ANN202
    """A MonitorService stub for ``--target``: TLS with ``--tls-ca`` (mutual with ``--tls-cert/--tls-key``),
    and the bearer token (if any) on every call."""
    import grpc

    from .protocol.v1 import monitor_pb2_grpc as pb_grpc

    target = args.target
    if args.tls_ca or args.tls_cert:
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        credentials = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    secret = read_token(args)
    return pb_grpc.MonitorServiceStub(_with_token(channel, secret) if secret else channel)


def _with_token(channel, token: str):  # noqa: ANN001, ANN202
    """``channel`` with ``authorization: Bearer <token>`` added to every unary call."""
    import collections

    import grpc

    fields = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    details_type = collections.namedtuple("CallDetails", fields)  # noqa: PYI024

    class BearerToken(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):  # noqa: ANN001, ANN202
            metadata = [*(details.metadata or []), ("authorization", f"Bearer {token}")]
            updated = details_type(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )
            return continuation(updated, request)

    return grpc.intercept_channel(channel, BearerToken())


def connection_options(parser: argparse.ArgumentParser) -> None:
    """Add the ``connection (TLS and authorization)`` options to a subcommand: ``--tls-ca``, ``--tls-cert``,
    ``--tls-key``, ``--token-file`` (and the hidden, deprecated ``--token``).
    """
    group = parser.add_argument_group("connection (TLS and authorization)")
    group.add_argument("--tls-ca", default="", metavar="CA.pem", help="verify the sidecar with this CA (TLS)")
    group.add_argument("--tls-cert", default="", metavar="CERT.pem", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", default="", metavar="KEY.pem", help="its private key")
    group.add_argument(
        "--token-file",
        default="",
        metavar="FILE",
        help=f"bearer token of your role (admin / readers / explain); or set ${TOKEN_ENV}",
    )
    group.add_argument("--token", default="", help=argparse.SUPPRESS)  # deprecated: visible in `ps`


def duration(text: str) -> float:
    """Seconds in a duration such as ``90``, ``30s``, ``15m``, ``1h`` or ``2d``.

    Raises:
        ValueError: not a number with an optional s/m/h/d unit.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)
