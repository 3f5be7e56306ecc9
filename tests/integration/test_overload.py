"""Past ``server.max_concurrent_rpcs`` the monitor's gRPC server refuses calls at once and counts them,
instead of queueing them until their deadlines pass (and growing memory meanwhile)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overload")
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 0.0,
                    "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                }
            ],
            "store": {"path": str(folder / "spex.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "explain_in": "thread",
                "max_concurrent_rpcs": 2,
            },
        }
    )
    sidecar = Sidecar(settings).start()
    yield sidecar
    sidecar.stop()


def _overloaded(app: Sidecar) -> float:
    value = app.metrics.registry.get_sample_value(
        "spex_monitor_dropped_total", {"model": "", "reason": "overloaded"}
    )
    return value or 0.0


def _settles_to_zero(app: Sidecar, timeout_s: float = 10.0) -> bool:
    """gRPC frees a call's slot in its own bookkeeping shortly *after* the caller has the reply: asserting
    ``active == 0`` right after a reply raced it (9 failures in 17 runs). Wait for it, with a deadline."""
    deadline = time.monotonic() + timeout_s
    while app.overload.active and time.monotonic() < deadline:
        time.sleep(0.01)
    return app.overload.active == 0


def _observation(i: int) -> pb.ObserveRequest:
    return pb.ObserveRequest(request_id=f"r{i}", model="sentiment", label="positive", text="not bad at all")


def test_calls_past_the_limit_are_refused_at_once_counted_and_the_server_recovers(app):
    channel = grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}")
    stub = pb_grpc.MonitorServiceStub(channel)
    gate = threading.Event()

    def held(i: int):  # a client stream that stays open until the gate opens: one call held running
        yield _observation(i)
        gate.wait(30)

    held_calls = [stub.ObserveStream.future(held(i), timeout=60) for i in range(2)]
    deadline = time.monotonic() + 10
    while app.overload.active < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.overload.active == 2
    before = _overloaded(app)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Observe(_observation(10), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as refused_too:  # every method shares the limit
        health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert refused_too.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _overloaded(app) == before + 2

    gate.set()
    assert [call.result(timeout=30).observed for call in held_calls] == [1, 1]
    assert _settles_to_zero(app)
    assert stub.Observe(_observation(11), timeout=10).sampled is False  # sampling rate 0: observed only
    assert _overloaded(app) == before + 2
    channel.close()


def test_a_handler_that_fails_still_frees_its_slot(app):
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
    for _ in range(5):  # each aborts with INVALID_ARGUMENT inside the handler
        with pytest.raises(grpc.RpcError) as invalid:
            stub.Observe(pb.ObserveRequest(model="sentiment"), timeout=10)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _settles_to_zero(app)
    assert stub.Observe(_observation(12), timeout=10).sampled is False


def test_every_refusal_is_counted_exactly_while_calls_come_and_go(app):
    """Arrivals racing completions: the count must match what callers saw, and no slot may leak."""
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
    before = _overloaded(app)
    refused: list[int] = []

    def caller(k: int) -> None:
        for i in range(150):
            try:
                stub.Observe(_observation(1000 * k + i), timeout=10)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused.append(1)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert refused, "6 callers on a limit of 2 must see refusals"
    assert _overloaded(app) - before == len(refused)
    assert _settles_to_zero(app)
    assert stub.Observe(_observation(99), timeout=10).sampled is False
