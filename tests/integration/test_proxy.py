"""Pass-through proxy mode: unchanged forwarding, upstream errors as they are, fail-open, observations."""

from __future__ import annotations

import time

import grpc
import pytest

from spex_monitor.config import Settings
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.protocol.inference import grpc_service_pb2 as pb
from spex_monitor.protocol.oip import InferenceStub
from spex_monitor.server.app import Sidecar

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstream = SentimentServer().start()
    endpoint = f"127.0.0.1:{upstream.port}"
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 1.0,
                    "backend": {"kind": "oip", "endpoints": [endpoint], "model_name": "sentiment"},
                }
            ],
            "engine": {"budget": 64, "max_order": 2},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "windows": {"seconds": None, "requests": 1000},
            "store": {"path": str(tmp_path_factory.mktemp("proxy") / "spex.db")},
            "server": {
                "grpc_port": 0,
                "metrics_port": 0,
                "proxy_port": 0,
                "upstream": endpoint,
                "tick_s": 0.2,
            },
        }
    )
    sidecar = Sidecar(settings).start()
    yield upstream, sidecar
    sidecar.stop()
    upstream.stop()


def _infer(stub, texts, model="sentiment", request_id="q1"):
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add(name="input", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(t.encode() for t in texts)
    return stub.ModelInfer(request, timeout=10)


def test_forwarding_is_unchanged_and_observed(stack):
    upstream, sidecar = stack
    direct = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{upstream.port}"))
    proxied = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.proxy_port}"))
    texts = ["the plot was not good", "i did not hate the movie"]
    assert _infer(proxied, texts) == _infer(direct, texts)
    assert proxied.ModelReady(pb.ModelReadyRequest(name="sentiment"), timeout=5).ready
    before = sidecar.monitor.counters["observed"]
    _infer(proxied, ["the acting was great"], request_id="q2")
    deadline = time.monotonic() + 10
    while sidecar.monitor.counters["observed"] < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sidecar.monitor.counters["observed"] >= before + 1


def test_upstream_errors_pass_through_as_they_are(stack):
    upstream, sidecar = stack
    proxied = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.proxy_port}"))
    with pytest.raises(grpc.RpcError) as info:
        _infer(proxied, ["x"], model="nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in info.value.details()


def test_fails_open_when_the_monitor_side_breaks(stack):
    upstream, sidecar = stack
    proxied = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.proxy_port}"))
    original = sidecar.proxy.on_infer

    def broken(request, response):
        raise RuntimeError("monitor is down")

    sidecar.proxy.on_infer = broken
    try:
        for i in range(5):
            assert _infer(proxied, ["fine movie"], request_id=f"f{i}").outputs[0].name == "output"
        deadline = time.monotonic() + 5
        while sidecar.proxy.counters["observe_failed"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sidecar.proxy.counters["observe_failed"] == 5
    finally:
        sidecar.proxy.on_infer = original


def test_a_text_past_the_models_positions_is_answered_through_the_proxy(stack):
    """The example model server cut nothing and failed the call (UNKNOWN) on a text of more tokens than the
    model has positions; it truncates now, as serving runtimes do."""
    upstream, sidecar = stack
    proxied = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.proxy_port}"))
    long_text = " ".join(["the plot was good"] * 400)  # 1,600 words, the model has 256 positions
    reply = _infer(proxied, [long_text], request_id="long")
    assert list(reply.outputs[0].shape) == [1, 2]
    assert all(abs(v) < 1e3 for v in reply.outputs[0].contents.fp32_contents)
