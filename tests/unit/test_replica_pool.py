"""The shared replica pool: balancing, retries, breakers (fake clock), concurrency cap, TLS files, imports."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from spex_monitor.backends.pool import BackendUnavailableError, CircuitBreaker, ReplicaPool, TLSFiles

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


class Flaky(Exception):
    """A retryable transport error."""


class Client:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.fail = False
        self.calls = 0
        self.closed = False

    def send(self) -> str:
        self.calls += 1
        if self.fail:
            raise Flaky(f"{self.endpoint} is down")
        return self.endpoint


def _pool(n: int = 2, now: list[float] | None = None, **kwargs) -> ReplicaPool[Client]:
    clock = (lambda: now[0]) if now is not None else None
    extra = {"clock": clock} if clock else {}
    return ReplicaPool(
        [f"r{i}" for i in range(n)],
        Client,
        lambda c: setattr(c, "closed", True),
        backoff_s=0.0,
        **extra,
        **kwargs,
    )


def _call(pool: ReplicaPool[Client]) -> str:
    result, endpoint, seconds = pool.call(lambda c: c.send(), lambda e: isinstance(e, Flaky))
    assert result == endpoint and seconds >= 0
    return result


def test_idle_calls_round_robin_and_close_disconnects():
    pool = _pool(3)
    assert [_call(pool) for _ in range(6)] == ["r0", "r1", "r2", "r0", "r1", "r2"]
    pool.close()
    assert all(r.client.closed for r in pool.replicas)


def test_two_replicas_failing_and_recovering_together_both_come_back():
    """Issue 15 item 7 at the pool level: only the chosen replica's breaker claims the half-open probe."""
    now = [0.0]
    pool = _pool(2, now, retries=1, breaker_failures=1, breaker_reset_s=5.0)
    for replica in pool.replicas:
        replica.client.fail = True
    with pytest.raises(BackendUnavailableError, match="r1 is down"):
        _call(pool)
    assert pool.health() == {"r0": False, "r1": False}
    with pytest.raises(BackendUnavailableError, match="circuit breaker is open"):
        _call(pool)  # both open, no call reaches a replica
    for replica in pool.replicas:
        replica.client.fail = False
    now[0] = 6.0  # both half-open at once
    assert {_call(pool), _call(pool)} == {"r0", "r1"}  # one probe each
    assert pool.health() == {"r0": True, "r1": True}
    assert not any(r.breaker.probing for r in pool.replicas)


def test_retry_moves_to_another_replica_and_breaker_counts_only_retryable_errors():
    pool = _pool(2, [0.0], retries=2, breaker_failures=2)
    pool.replicas[0].client.fail = True
    assert _call(pool) == "r1"  # r0 failed, the retry went to r1
    assert pool.replicas[0].breaker.consecutive == 1

    def bad_request(client: Client) -> str:
        raise ValueError("400: bad request")

    with pytest.raises(ValueError, match="bad request"):
        pool.call(bad_request, lambda e: isinstance(e, Flaky))
    assert pool.health() == {"r0": True, "r1": True}  # a replica that answers is alive
    assert sum(r.outstanding for r in pool.replicas) == 0


def test_failed_probe_reopens_and_an_interrupted_probe_is_released():
    now = [0.0]
    pool = _pool(1, now, retries=0, breaker_failures=1, breaker_reset_s=5.0)
    pool.replicas[0].client.fail = True
    with pytest.raises(BackendUnavailableError):
        _call(pool)
    now[0] = 6.0
    with pytest.raises(BackendUnavailableError, match="r0 is down"):
        _call(pool)  # the probe failed: open again from t=6
    now[0] = 10.0
    with pytest.raises(BackendUnavailableError, match="circuit breaker is open"):
        _call(pool)
    now[0] = 11.5

    def interrupted(client: Client) -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.call(interrupted, lambda e: False)
    assert pool.replicas[0].breaker.available()  # the interrupted probe did not keep the replica half-open
    pool.replicas[0].client.fail = False
    assert _call(pool) == "r0" and pool.health() == {"r0": True}


def test_concurrency_cap_bounds_in_flight_calls():
    pool = _pool(2, max_concurrency=3)
    in_flight, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def slow(client: Client) -> int:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        release.wait(5.0)
        with lock:
            in_flight[0] -= 1
        return 1

    def one(_: int) -> int:
        return pool.call(slow, lambda e: False)[0]

    timer = threading.Timer(0.3, release.set)
    timer.start()
    assert pool.map(list(range(8)), one) == [1] * 8
    timer.cancel()
    assert 1 <= peak[0] <= 3


def test_breaker_available_does_not_claim_the_probe():
    now = [0.0]
    breaker = CircuitBreaker(failures=1, reset_s=1.0, clock=lambda: now[0])
    breaker.record(False)
    now[0] = 2.0
    assert breaker.available() and breaker.available() and not breaker.probing
    assert breaker.allow() and not breaker.available()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"endpoints": []}, "endpoints"),
        ({"endpoints": "127.0.0.1:1"}, "endpoints"),
        ({"endpoints": ["a", "a"]}, "duplicates"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"retries": -1}, "retries"),
        ({"breaker_failures": 0}, "breaker_failures"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    args = {"endpoints": ["a"], **kwargs}
    endpoints = args.pop("endpoints")
    with pytest.raises(ValueError, match=field):
        ReplicaPool(endpoints, Client, **args)


def test_tls_files_are_checked(tmp_path):
    with pytest.raises(ValueError, match="together"):
        TLSFiles(cert_file=str(tmp_path / "c.pem"))
    with pytest.raises(FileNotFoundError, match="tls.ca_file"):
        TLSFiles(ca_file=str(tmp_path / "missing.pem"))


def test_tls_files_make_an_ssl_context_and_grpc_credentials(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls = TLSFiles(str(ca_file), str(cert_file), str(key_file))
    context = tls.ssl_context()
    assert context.verify_mode.name == "CERT_REQUIRED"
    assert tls.grpc_credentials() is not None


def test_importing_remote_backends_pulls_in_neither_torch_nor_lightgbm():
    code = (
        "import sys\n"
        "import spex_monitor.backends.oip, spex_monitor.backends.openai, spex_monitor.backends.pool\n"
        "from spex_monitor.backends import BatchTiming\n"
        "print(sorted(m for m in ('torch', 'lightgbm', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
