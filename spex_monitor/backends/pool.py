"""One replica pool under every remote backend (OIP-V2 gRPC, OpenAI-compatible HTTP).

Transport-agnostic: a backend hands the pool a ``connect(endpoint)`` factory for its client objects and,
per call, a ``send(client)`` function plus a predicate saying which errors are worth another replica. The
pool owns what both remotes need and must not write twice:

* least-outstanding-requests balancing, ties to the least recently picked replica (round robin when idle);
* a concurrency cap on in-flight calls over all replicas (ablation traffic never starves production);
* retries on another replica after an exponential backoff;
* a per-replica circuit breaker: open after ``failures`` consecutive retryable errors, one half-open probe
  after ``reset_s``;
* TLS material (:class:`TLSFiles`) that turns into gRPC channel credentials or an ``ssl.SSLContext``.

Nothing here imports torch, grpc or httpx: the transports live in the backends.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")
T = TypeVar("T")


class BackendUnavailableError(RuntimeError):
    """No replica could serve a batch (all breakers open or every retry failed)."""


class ReplicaResponseError(ValueError):
    """A replica answered, but not with what was asked (wrong tensor, shape, missing log-probs, NaN)."""


@dataclass
class CircuitBreaker:
    """Opens after ``failures`` consecutive errors; after ``reset_s`` lets one probe call through.

    :meth:`available` only looks; :meth:`allow` also claims the half-open probe, so call it for the
    replica actually chosen and for no other (a probe claimed by a replica that is then not used would
    leave it half-open forever).
    """

    failures: int = 3
    reset_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    def available(self) -> bool:
        """Would :meth:`allow` say yes now? (no state change)"""
        if self.opened_at is None:
            return True
        return not self.probing and self.clock() - self.opened_at >= self.reset_s

    def allow(self) -> bool:
        """Whether a call may go to this replica now: always while closed; once ``reset_s`` has passed since
        it opened, yes for exactly one half-open probe (which this claims); otherwise no.
        """
        if self.opened_at is None:
            return True
        if not self.probing and self.clock() - self.opened_at >= self.reset_s:
            self.probing = True  # half-open: exactly one probe
            return True
        return False

    def record(self, ok: bool) -> None:
        """Record a call's outcome: a success closes the breaker and clears the count; a failure opens it
        (again) after ``failures`` consecutive ones, or at once when it was the half-open probe.
        """
        if ok:
            self.consecutive, self.opened_at, self.probing = 0, None, False
            return
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures:
            self.opened_at, self.probing = self.clock(), False

    @property
    def closed(self) -> bool:
        """True while calls flow normally (never opened, or closed again by a success)."""
        return self.opened_at is None


@dataclass
class Replica(Generic[C]):
    """One endpoint, its transport client, its breaker and its load."""

    endpoint: str
    client: C
    breaker: CircuitBreaker
    outstanding: int = 0
    last_pick: int = 0


@dataclass(frozen=True)
class TLSFiles:
    """TLS material for remote replicas, as PEM files.

    Args:
        ca_file: CA bundle to verify the replicas' certificates (system roots when ``None``).
        cert_file, key_file: client certificate and key for mutual TLS (both or neither).
        server_name: name to verify the certificate against when it differs from the endpoint's host
            (gRPC's ``ssl_target_name_override``; HTTPS verifies the URL's host).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file must be given together (mutual TLS)")
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise FileNotFoundError(f"tls.{name}: {value} is not a file")

    def ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for HTTPS clients (httpx ``verify=``)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def grpc_credentials(self) -> Any:
        """``grpc.ChannelCredentials`` for a secure channel (imports grpc)."""
        import grpc

        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file),
            private_key=read(self.key_file),
            certificate_chain=read(self.cert_file),
        )


class ReplicaPool(Generic[C]):
    """Balances calls over replicas with retries, deadlines left to the transport, and breakers.

    Args:
        endpoints: one entry per replica (``host:port`` or a URL; the pool only uses it as a name).
        connect: builds the transport client for an endpoint; ``disconnect`` closes it.
        max_concurrency: most in-flight calls over all replicas (also the worker count of :meth:`map`).
        retries: extra attempts after the first; ``backoff_s`` is the first pause (it doubles).
        breaker_failures, breaker_reset_s: circuit breaker settings per replica.
        clock: monotonic seconds, for the breakers (tests pass a fake one).

    Raises:
        ValueError: no endpoints, or a count below its minimum (the message names the field).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        connect: Callable[[str], C],
        disconnect: Callable[[C], None] | None = None,
        *,
        max_concurrency: int = 4,
        retries: int = 2,
        backoff_s: float = 0.05,
        breaker_failures: int = 3,
        breaker_reset_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(endpoints, str) or not endpoints:
            raise ValueError("endpoints: at least one replica host:port is required (a list)")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"endpoints: duplicates in {list(endpoints)}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if breaker_failures < 1 or breaker_reset_s < 0 or backoff_s < 0:
            raise ValueError("breaker_failures must be >= 1; breaker_reset_s and backoff_s >= 0")
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        self._disconnect = disconnect
        self._lock = threading.Lock()
        self._picks = 0
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.replicas: list[Replica[C]] = [
            Replica(endpoint, connect(endpoint), CircuitBreaker(breaker_failures, breaker_reset_s, clock))
            for endpoint in endpoints
        ]

    def close(self) -> None:
        """Close every replica's transport client with ``disconnect`` (nothing to do without one)."""
        if self._disconnect is not None:
            for replica in self.replicas:
                self._disconnect(replica.client)

    def health(self) -> dict[str, bool]:
        """Replica endpoint → breaker closed (what ``spex_monitor_backend_up{replica}`` reports)."""
        with self._lock:
            return {r.endpoint: r.breaker.closed for r in self.replicas}

    @property
    def outstanding(self) -> int:
        """Calls in flight over all replicas (queue depth seen by the budget)."""
        with self._lock:
            return sum(r.outstanding for r in self.replicas)

    def pick(self, exclude: set[str]) -> Replica[C] | None:
        """The least loaded replica whose breaker lets a call through, counted as outstanding.

        Only the chosen replica's breaker is asked to :meth:`CircuitBreaker.allow` (which claims a
        half-open probe); the others are only looked at.
        """
        with self._lock:
            candidates = [r for r in self.replicas if r.endpoint not in exclude and r.breaker.available()]
            if not candidates:
                return None
            replica = min(candidates, key=lambda r: (r.outstanding, r.last_pick))
            replica.breaker.allow()
            self._picks += 1
            replica.last_pick = self._picks
            replica.outstanding += 1
            return replica

    def call(
        self,
        send: Callable[[C], R],
        retryable: Callable[[BaseException], bool],
        describe: Callable[[BaseException], str] = str,
        what: str = "the batch",
    ) -> tuple[R, str, float]:
        """Run ``send(client)`` on a replica; returns ``(result, endpoint, seconds)``.

        A retryable error counts against that replica's breaker and moves the call to another replica
        (any replica once all were tried) after a backoff; any other exception is re-raised at once and
        counts as the replica being alive (it answered).

        Raises:
            BackendUnavailableError: every attempt failed or every breaker is open.
        """
        tried: set[str] = set()
        delay = self.backoff_s
        last_error: BaseException | None = None
        for attempt in range(self.retries + 1):
            replica = self.pick(tried) or self.pick(set())
            if replica is None:
                break
            began = time.perf_counter()
            ok = recorded = False
            try:
                with self._slots:
                    result = send(replica.client)
                ok = True
            except Exception as error:
                is_retryable = retryable(error)
                with self._lock:
                    replica.breaker.record(not is_retryable)
                    recorded = True
                if not is_retryable:
                    raise
                last_error = error
                tried.add(replica.endpoint)
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                continue
            finally:
                with self._lock:
                    replica.outstanding -= 1
                    if ok:
                        replica.breaker.record(True)
                    elif not recorded and replica.breaker.probing:
                        replica.breaker.probing = False  # interrupted probe: let another one through
            return result, replica.endpoint, time.perf_counter() - began
        detail = describe(last_error) if last_error is not None else "every replica's circuit breaker is open"
        raise BackendUnavailableError(
            f"no replica served {what} (health {self.health()}; last error: {detail})"
        )

    def map(self, items: Sequence[T], fn: Callable[[T], R]) -> list[R]:
        """``[fn(item) for item in items]`` with up to ``max_concurrency`` in flight, order kept."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as workers:
            return list(workers.map(fn, items))
