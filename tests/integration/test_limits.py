"""Callers cannot exhaust the monitor's gRPC server (issue 15 item 9, issue 23 §3 and §4, issue 24 item 2):
health checks never wait behind user calls, streams time out, Explain is capped, rate-limited, gated by
the ablation budget and stopped at its deadline."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spex_monitor.explain import ExplainRequest
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

from .harness import bearer, rpc_status, sentiment_settings, wait_until

pytestmark = pytest.mark.integration

LONG = " ".join(["the plot was not good but the music was great"] * 3)
EXPLAINER = "expl41n-token"
OK = grpc.StatusCode.OK


def _sidecar(folder, budget: dict | None = None, **server) -> Sidecar:
    server = {"explain_tokens": [EXPLAINER], "reader_tokens": ["r3ader-token"], **server}
    extra = {"budget": budget} if budget else {}
    return Sidecar(sentiment_settings(folder, server=server, **extra)).start()


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    app = _sidecar(
        tmp_path_factory.mktemp("busy"),
        explain_rate_per_minute=1e6,
        explain_burst=1000,
        stream_idle_timeout_s=1.0,
        max_streams=8,
        explain_max_budget=2000,
    )
    yield app
    app.stop()


def test_twenty_busy_explain_clients_never_delay_a_health_check(busy):
    """Before: 16 threads shared by everything; 20 Explain calls of seconds each held all of them and
    health checks queued past their deadline (6 of 6 timed out in the issue's run)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{busy.grpc_port}")
    stub = pb_grpc.MonitorServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    codes: list[grpc.StatusCode] = []
    request = pb.ExplainRequest(model="sentiment", text=LONG, budget=2000)

    def client() -> None:
        codes.append(rpc_status(stub.Explain, request, metadata=bearer(EXPLAINER), timeout=120)[0])

    threads = [threading.Thread(target=client) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: busy._servicer.explain_admission.slots.active == 2)
        for _ in range(6):
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            observed = stub.Observe(
                pb.ObserveRequest(request_id="h", model="sentiment", text="fine"), timeout=5
            )
            assert observed.sampled is False  # sampling rate 0: answered, not sampled
    finally:
        for thread in threads:
            thread.join(180)
    # explain_concurrency=2: the rest were refused at once instead of queueing on the shared pool
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 16
    assert codes.count(grpc.StatusCode.OK) >= 2 and len(codes) == 20
    channel.close()


def test_idle_streams_are_capped_and_cancelled(busy):
    """16 idle ObserveStream calls once made Observe and the health check time out."""
    channel = grpc.insecure_channel(f"127.0.0.1:{busy.grpc_port}")
    stub = pb_grpc.MonitorServiceStub(channel)
    gate = threading.Event()

    def idle():  # noqa: ANN202
        yield pb.ObserveRequest(request_id="s", model="sentiment", text="fine")
        gate.wait(30)  # then nothing

    calls = [stub.ObserveStream.future(idle(), timeout=60) for _ in range(16)]
    try:
        assert wait_until(lambda: sum(call.done() for call in calls) >= 8, 10)  # beyond max_streams: refused
        early = [call.exception().code() for call in calls if call.done()]
        assert early.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 8
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub.Observe(pb.ObserveRequest(request_id="o", model="sentiment", text="fine"), timeout=5)
        assert wait_until(lambda: all(call.done() for call in calls), 10)  # idle 1 s: cancelled
        assert busy._servicer.watchdog.cancelled >= 8 and busy._servicer.streams.active == 0
        assert {call.exception().code() for call in calls} <= {
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.CANCELLED,
        }
    finally:
        gate.set()
        channel.close()


def test_explain_budget_is_capped_and_the_role_is_required(busy):
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{busy.grpc_port}"))
    for budget in (60_000, 4_294_967_295):  # 117 s of worker CPU; a 2 TiB allocation
        code, details = rpc_status(
            stub.Explain,
            pb.ExplainRequest(model="sentiment", text="not good", budget=budget),
            metadata=bearer(EXPLAINER),
            timeout=10,
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("budget: at most 2000")
    code, details = rpc_status(
        stub.Explain,
        pb.ExplainRequest(model="sentiment", text="not good"),
        metadata=bearer("r3ader-token"),
        timeout=10,
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "explain role" in details
    code, _ = rpc_status(stub.Explain, pb.ExplainRequest(model="sentiment", text="not good"), timeout=10)
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_explain_is_rate_limited_per_caller_and_stopped_at_its_deadline(tmp_path):
    app = _sidecar(
        tmp_path,
        explain_rate_per_minute=2,
        explain_burst=2,
        explain_timeout_s=1.0,
        explain_max_budget=20_000,
        explain_tokens=[EXPLAINER, "other-caller"],
    )
    try:
        stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
        small = pb.ExplainRequest(model="sentiment", text="the plot was not good", budget=64)
        for _ in range(2):
            assert rpc_status(stub.Explain, small, metadata=bearer(EXPLAINER), timeout=60)[0] == OK
        code, details = rpc_status(stub.Explain, small, metadata=bearer(EXPLAINER), timeout=60)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in details
        assert rpc_status(stub.Explain, small, metadata=bearer("other-caller"), timeout=60)[0] == OK
        # a budget that takes many seconds: the server stops it at explain_timeout_s (the caller set none)
        slow = pb.ExplainRequest(model="sentiment", text=LONG, budget=20_000)
        began = time.monotonic()
        code, details = rpc_status(stub.Explain, slow, metadata=bearer("other-caller"))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and details.startswith("deadline:"), details
        assert time.monotonic() - began < 15
        assert wait_until(lambda: app._servicer.explain_admission.slots.active == 0)
    finally:
        app.stop()


def test_explain_spends_the_ablation_budget(tmp_path):
    app = _sidecar(tmp_path, budget={"inferences_per_second": 1.0, "burst": 300.0})
    try:
        stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
        request = pb.ExplainRequest(model="sentiment", text=LONG, budget=200)
        assert rpc_status(stub.Explain, request, metadata=bearer(EXPLAINER), timeout=60)[0] == OK
        code, details = rpc_status(stub.Explain, request, metadata=bearer(EXPLAINER), timeout=60)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(
            "budget: the ablation budget"
        )
        too_big = pb.ExplainRequest(model="sentiment", text=LONG, budget=400)
        code, details = rpc_status(stub.Explain, too_big, metadata=bearer(EXPLAINER), timeout=60)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "exceed budget.burst" in details
    finally:
        app.stop()


def test_real_batch_latency_and_running_explanations_feed_the_backpressure_gate(tmp_path):
    """Issue 15 item 11: max_latency_s / max_queue_depth were fed only by a unit test."""
    app = _sidecar(tmp_path, budget={"inferences_per_second": 1e7, "burst": 1e7, "max_latency_s": 1e-6})
    try:
        gate = app.monitor.budget
        assert gate.blocked_reason(10) is None
        app.explain(ExplainRequest("sentiment", text="the plot was not good"))  # real batches, local model
        assert gate._latency > 1e-6 and gate.blocked_reason(10) == "backpressure_latency"
        assert gate._queue_depth == 0  # nothing running any more
        started = threading.Event()
        finished = threading.Event()

        def long_one() -> None:
            started.set()
            app.explain(ExplainRequest("sentiment", text=LONG, budget=2000))
            finished.set()

        gate.max_latency_s = None  # now only the queue signal
        gate.max_queue_depth = 0
        thread = threading.Thread(target=long_one)
        thread.start()
        assert wait_until(lambda: gate._queue_depth == 1)
        assert gate.blocked_reason(10) == "backpressure_queue"  # one explanation runs against the backend
        thread.join(120)
        assert finished.is_set() and gate._queue_depth == 0 and gate.blocked_reason(10) is None
    finally:
        app.stop()
