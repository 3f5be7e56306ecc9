"""Who may call what: roles from bearer tokens or client-certificate names, and the loopback rule.

Roles (docs/security.md):

* ``admin``: SetBaseline; an admin also holds every other role.
* ``readers``: GetInteractionMap, ListExplanations, GetShiftReport, ListShiftReports and the JSON
  ``/api/top-interactions`` (request words and ids leave the process only through these).
* ``explain``: the Explain RPC (it spends ablation budget on the replicas), rate-limited per caller.

Observe, ObserveStream, health, ``/metrics``, ``/healthz`` and ``/readyz`` need no role.

When any token or identity is configured, every role is default-deny: a caller holds exactly the roles its
credentials name. With none configured, callers from the loopback addresses ``127.0.0.1`` and ``::1`` (and
Unix sockets) hold every role and all others hold none — only an operator inside the pod. Other ``127.x``
addresses do not count: a service mesh (Istio) hands remote callers to the pod from ``127.0.0.6``. Where a
mesh may proxy remote callers from loopback, set ``server.trust_loopback: false`` and configure tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from ..config import ServerConfig

Role = Literal["admin", "readers", "explain"]
ROLES: tuple[Role, ...] = ("admin", "readers", "explain")
_RPC_ROLE: dict[str, Role] = {
    "SetBaseline": "admin",
    "GetInteractionMap": "readers",
    "ListExplanations": "readers",
    "GetShiftReport": "readers",
    "ListShiftReports": "readers",
    "Explain": "explain",
}


def role_of(method: str) -> Role | None:
    """The role a MonitorService method needs (``None``: open, like Observe)."""
    return _RPC_ROLE.get(method.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class Caller:
    """What a call proved: its roles and a stable, non-secret identity (for per-caller rate limits)."""

    roles: frozenset[str]
    identity: str

    def holds(self, role: Role) -> bool:
        """Whether the caller holds ``role`` (an admin holds every role)."""
        return role in self.roles or "admin" in self.roles


def peer_host(peer: str) -> str | None:
    """The address in a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000`` as grpcio
    reports IPv6, ``ipv6:[::1]:5000``), or ``None`` for other kinds (``unix:``)."""
    kind, _, rest = peer.partition(":")
    rest = unquote(rest)
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        if rest.startswith("["):
            return rest[1 : rest.find("]")] if "]" in rest else None
        return rest.rpartition(":")[0] or rest
    return None


def is_loopback_host(host: str | None) -> bool:
    """Exactly ``127.0.0.1`` or ``::1`` (an IPv4-mapped ``::ffff:127.0.0.1`` too); not the rest of 127/8."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def is_loopback_peer(peer: str) -> bool:
    """A gRPC peer on the loopback interface (or a Unix socket)."""
    return peer.startswith("unix:") or is_loopback_host(peer_host(peer))


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Authorizer:
    """Maps credentials to roles for the gRPC API and the HTTP JSON endpoint."""

    def __init__(self, server: ServerConfig) -> None:
        self.configured = server.auth_configured
        self.trust_loopback = server.trust_loopback
        self._tokens: list[tuple[str, Role]] = []
        if server.admin_token:
            self._tokens.append((server.admin_token, "admin"))
        self._tokens += [(t, "readers") for t in server.reader_tokens]
        self._tokens += [(t, "explain") for t in server.explain_tokens]
        self._identities: dict[str, set[Role]] = {}
        for role, names in (
            ("admin", server.admin_identities),
            ("readers", server.reader_identities),
            ("explain", server.explain_identities),
        ):
            for name in names:
                self._identities.setdefault(name, set()).add(role)  # type: ignore[arg-type]

    def _from_token(self, header: str) -> tuple[set[str], str | None]:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return set(), None
        roles = set()
        for candidate, role in self._tokens:  # compare with every token: no early exit on a match
            if hmac.compare_digest(token.encode(), candidate.encode()):
                roles.add(role)
        return roles, (f"token:{_fingerprint(token)}" if roles else None)

    def resolve(self, authorization: str, names: Iterable[str], host: str | None, loopback: bool) -> Caller:
        """Roles from an ``authorization`` header value, certificate names and the peer's address."""
        roles, identity = self._from_token(authorization) if authorization else (set(), None)
        for name in names:
            found = self._identities.get(name)
            if found:
                roles |= found
                identity = identity or f"cert:{name}"
        if not self.configured and self.trust_loopback and loopback:
            roles |= set(ROLES)
        return Caller(frozenset(roles), identity or f"peer:{host or 'unknown'}")

    def grpc_caller(self, context: Any) -> Caller:
        """The caller of a gRPC call: roles from its ``authorization`` metadata, its client certificate's
        names and (without configured credentials) its loopback peer address.
        """
        metadata = dict(context.invocation_metadata() or ())
        auth = context.auth_context() or {}
        names = {
            value.decode(errors="replace")
            for key in ("x509_common_name", "x509_subject_alternative_name")
            for value in auth.get(key, ())
        }
        peer = context.peer() or ""
        return self.resolve(
            str(metadata.get("authorization", "")), names, peer_host(peer), is_loopback_peer(peer)
        )

    def http_caller(self, headers: Mapping[str, str], client_host: str | None) -> Caller:
        """The caller of an HTTP request: roles from its ``authorization`` header and (without configured
        credentials) a loopback ``client_host``.
        """
        return self.resolve(
            str(headers.get("authorization", "")), (), client_host, is_loopback_host(client_host)
        )

    def denial(self, role: Role) -> str:
        """The PERMISSION_DENIED / 403 detail for a caller without ``role``."""
        if not self.configured:
            if not self.trust_loopback:
                return (
                    f"authorization: the {role} role needs a configured token or certificate identity "
                    "(server.trust_loopback is off and none is configured)"
                )
            return f"authorization: without configured credentials only loopback callers hold the {role} role"
        return f"authorization: a bearer token or client certificate of the {role} role is required"


class RateLimiter:
    """Per-caller token buckets (``rate_per_minute``, ``burst``), for at most ``max_callers`` callers
    (least recently seen forgotten first, so memory stays bounded whatever identities arrive)."""

    def __init__(
        self, rate_per_minute: float, burst: int, max_callers: int = 4096, clock: Any = None
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_callers = max_callers
        self.clock = clock or time.monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0.0 when ``caller`` may go now (one token taken), else the seconds until it may."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[caller] = (tokens, now)
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            return wait
