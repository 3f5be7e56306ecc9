"""OIP-V2 client against real gRPC servers on loopback: balancing, retries, breaker, decoding errors."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from spex_monitor.backends.oip import (
    BackendUnavailableError,
    CircuitBreaker,
    OIPBackend,
    ReplicaResponseError,
)
from spex_monitor.protocol.inference import grpc_service_pb2 as pb
from spex_monitor.protocol.oip import add_inference_servicer


class FakeReplica:
    """Scores each BYTES text by its word count (2 columns: -n, n); faults on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = 0
        self.fail_code = grpc.StatusCode.UNAVAILABLE
        self.delay_s = 0.0
        self.bad_shape = False
        self.lock = threading.Lock()

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == "m")

    def ModelInfer(self, request, context):
        with self.lock:
            self.calls += 1
            failing = self.fail_next > 0
            self.fail_next -= failing
        if self.delay_s:
            time.sleep(self.delay_s)
        if failing:
            context.abort(self.fail_code, "injected fault")
        tensor = request.inputs[0]
        if tensor.datatype == "BYTES":
            counts = np.array([len(b.split()) for b in tensor.contents.bytes_contents], dtype=np.float32)
        else:
            values = np.asarray(
                tensor.contents.fp32_contents or tensor.contents.int64_contents, dtype=np.float32
            )
            counts = values.reshape(list(tensor.shape)).sum(axis=1)
        scores = np.stack([-counts, counts], axis=1)
        out = pb.ModelInferResponse(model_name=request.model_name)
        shape = [len(counts) + (1 if self.bad_shape else 0), 2]
        output = out.outputs.add(name="output", datatype="FP32", shape=shape)
        output.contents.fp32_contents.extend(scores.ravel().tolist())
        return out


@pytest.fixture
def replicas():
    servers, fakes, endpoints = [], [], []
    for _ in range(2):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        fake = FakeReplica()
        add_inference_servicer(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        fakes.append(fake)
        endpoints.append(f"127.0.0.1:{port}")
    yield fakes, endpoints, servers
    for server in servers:
        server.stop(0)


def test_batches_are_balanced_and_decoded(replicas):
    fakes, endpoints, _ = replicas
    texts = [" ".join(["w"] * (i % 7 + 1)) for i in range(100)]
    with OIPBackend(endpoints, "m", batch_rows=10, max_concurrency=4) as backend:
        scores = backend.infer_texts(texts)
        assert backend.ready() == {e: True for e in endpoints}
        assert sum(t.rows for t in backend.timings) == 100
    np.testing.assert_allclose(scores[:, 1], [i % 7 + 1 for i in range(100)])
    assert fakes[0].calls > 0 and fakes[1].calls > 0 and fakes[0].calls + fakes[1].calls == 10


def test_retryable_failures_move_to_another_replica(replicas):
    fakes, endpoints, _ = replicas
    fakes[0].fail_next = fakes[1].fail_next = 1  # each replica fails once, the retry succeeds
    with OIPBackend(endpoints, "m", retries=3, backoff_s=0.001) as backend:
        scores = backend.infer_texts(["a b c"])
    assert scores[0, 1] == 3.0


def test_non_retryable_errors_surface_immediately(replicas):
    fakes, endpoints, _ = replicas
    fakes[0].fail_next = fakes[1].fail_next = 5
    fakes[0].fail_code = fakes[1].fail_code = grpc.StatusCode.INVALID_ARGUMENT
    with OIPBackend(endpoints, "m", retries=3) as backend, pytest.raises(grpc.RpcError) as info:
        backend.infer_texts(["x"])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fakes[0].calls + fakes[1].calls == 1


def test_breaker_opens_on_a_dead_replica_and_all_down_is_unavailable(replicas):
    fakes, endpoints, servers = replicas
    servers[1].stop(0)
    with OIPBackend(
        endpoints, "m", retries=2, backoff_s=0.001, breaker_failures=2, deadline_s=1.0
    ) as backend:
        for _ in range(4):
            backend.infer_texts(["ok"])
        assert backend.health() == {endpoints[0]: True, endpoints[1]: False}
        servers[0].stop(0)
        with pytest.raises(BackendUnavailableError, match="no replica served"):
            backend.infer_texts(["x"])


def test_deadline_on_a_hung_replica_falls_over(replicas):
    fakes, endpoints, _ = replicas
    fakes[0].delay_s = 2.0
    with OIPBackend([endpoints[0], endpoints[1]], "m", deadline_s=0.2, retries=1, backoff_s=0.001) as backend:
        began = time.perf_counter()
        assert backend.infer_texts(["a b"])[0, 1] == 2.0
        assert time.perf_counter() - began < 1.5


def test_wrong_shapes_from_a_replica_are_a_clear_error(replicas):
    fakes, endpoints, _ = replicas
    fakes[0].bad_shape = fakes[1].bad_shape = True
    with OIPBackend(endpoints, "m") as backend, pytest.raises(ReplicaResponseError, match="shape"):
        backend.infer_texts(["a"])


def test_int64_ids_and_fp32_matrix_requests(replicas):
    _, endpoints, _ = replicas
    with OIPBackend(endpoints[:1], "m", input_kind="int64") as backend:
        ids = np.array([[1, 2, 3], [4, 5, 0]])
        np.testing.assert_allclose(backend.logits(ids, np.ones_like(ids))[:, 1], [6, 9])
        np.testing.assert_allclose(backend.infer_matrix(np.array([[0.5, 0.25]]))[:, 1], [0.75])


def test_breaker_half_open_probe():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, reset_s=5.0, clock=lambda: now[0])
    breaker.record(False)
    assert breaker.allow()
    breaker.record(False)
    assert not breaker.allow() and not breaker.closed
    now[0] = 6.0
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.record(True)
    assert breaker.closed and breaker.allow()


def test_config_errors():
    with pytest.raises(ValueError, match="endpoints"):
        OIPBackend([], "m")


def _wait_for(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


def test_two_replicas_failing_and_recovering_together_both_come_back(replicas):
    """Issue 15 item 7: a half-open replica that is not the one picked must not stay 'probing' forever."""
    fakes, endpoints, _ = replicas
    with OIPBackend(
        endpoints, "m", retries=1, backoff_s=0.001, breaker_failures=1, breaker_reset_s=0.2
    ) as backend:
        fakes[0].fail_next = fakes[1].fail_next = 1  # both fail once: both breakers open
        with pytest.raises(BackendUnavailableError):
            backend.infer_texts(["a"])
        assert backend.health() == {endpoints[0]: False, endpoints[1]: False}
        began = time.monotonic()
        _wait_for(lambda: time.monotonic() - began > 0.25, what="the breakers' cool-down")
        before = [f.calls for f in fakes]
        for _ in range(6):  # both replicas recovered: sequential calls must reach both again
            assert backend.infer_texts(["a b"])[0, 1] == 2.0
        assert backend.health() == {endpoints[0]: True, endpoints[1]: True}
        assert all(f.calls - b >= 2 for f, b in zip(fakes, before, strict=True))
