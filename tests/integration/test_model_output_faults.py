"""A replica that answers with NaN/inf or tensors of the wrong shape: the caller gets a clear status that
says it was the model's answer, background explanations are counted as failed, the sidecar keeps serving."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spex_monitor.config import Settings
from spex_monitor.protocol.inference import grpc_service_pb2 as oip
from spex_monitor.protocol.oip import add_inference_servicer
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration


class BrokenReplica:
    """Scores texts by word count, except when ``mode`` breaks the answer."""

    mode = "ok"

    def ModelReady(self, request, context):  # noqa: ANN001, ANN201, N802 - gRPC servicer signature
        return oip.ModelReadyResponse(ready=True)

    def ModelInfer(self, request, context):  # noqa: ANN001, ANN201, N802
        counts = np.array([len(b.split()) for b in request.inputs[0].contents.bytes_contents], np.float32)
        scores = np.stack([-counts, counts], axis=1)
        rows = len(counts)
        if self.mode == "nan":
            scores[rows // 2 :] = np.nan
        elif self.mode == "inf":
            scores[:, 1] = np.inf
        elif self.mode == "shape":
            rows += 1
        reply = oip.ModelInferResponse(model_name=request.model_name)
        output = reply.outputs.add(name="output", datatype="FP32", shape=[rows, 2])
        output.contents.fp32_contents.extend(scores.ravel().tolist())
        if self.mode == "shape":
            output.contents.fp32_contents.extend([0.0, 0.0])
        return reply


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    replica = BrokenReplica()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_inference_servicer(replica, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "lens": {"kind": "text", "max_features": 5},  # 2^5 masks: exact within budget 32
                    "sampling_rate": 1.0,
                    "backend": {"kind": "oip", "endpoints": [f"127.0.0.1:{port}"], "model_name": "m"},
                }
            ],
            "engine": {"budget": 32, "max_order": 2},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "store": {"path": str(tmp_path_factory.mktemp("faults") / "spex.db")},
            "server": {
                "grpc_port": 0,
                "metrics_port": 0,
                "tick_s": 0.1,
                "explain_in": "process",
                "explain_rate_per_minute": 1e6,  # the rate limit has its own test (test_limits)
                "explain_burst": 1000,
            },
        }
    )
    sidecar = Sidecar(settings).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}")
    yield replica, sidecar, pb_grpc.MonitorServiceStub(channel), health_pb2_grpc.HealthStub(channel)
    channel.close()
    sidecar.stop()
    server.stop(0)


@pytest.mark.parametrize(
    ("mode", "message"), [("nan", "non-finite"), ("inf", "non-finite"), ("shape", "shape")]
)
def test_explain_says_the_model_answered_badly(stack, mode, message):
    replica, _, stub, health = stack
    replica.mode = mode
    with pytest.raises(grpc.RpcError) as error:
        stub.Explain(pb.ExplainRequest(model="sentiment", text="the plot was not good"), timeout=60)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.value.details().startswith("model output:") and message in error.value.details()
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    replica.mode = "ok"
    reply = stub.Explain(pb.ExplainRequest(model="sentiment", text="the plot was not good"), timeout=60)
    assert list(reply.feature_keys) == ["the", "plot", "was", "not", "good"]


def test_background_explanations_of_bad_answers_are_counted_failed(stack):
    replica, sidecar, stub, _ = stack
    failed = sidecar.monitor.counters["explanations:failed"]
    replica.mode = "nan"
    for i in range(3):
        stub.Observe(
            pb.ObserveRequest(request_id=f"n{i}", model="sentiment", label="x", text="not bad at all")
        )
    deadline = time.monotonic() + 60
    while sidecar.monitor.counters["explanations:failed"] < failed + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sidecar.monitor.counters["explanations:failed"] >= failed + 3
    replica.mode = "ok"
    ok = sidecar.monitor.counters["explanations:ok"]
    stub.Observe(pb.ObserveRequest(request_id="fine", model="sentiment", label="x", text="not bad at all"))
    deadline = time.monotonic() + 60
    while sidecar.monitor.counters["explanations:ok"] <= ok and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sidecar.monitor.counters["explanations:ok"] > ok
