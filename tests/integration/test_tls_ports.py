"""Issue 23 §5: with mutual TLS configured, every port the sidecar opens speaks TLS — the proxy, events and
metrics ports used to accept plaintext — and the proxy can talk TLS to its upstream."""

from __future__ import annotations

import http.client
import json
import ssl

import grpc
import pytest

from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.protocol.inference import grpc_service_pb2 as oip
from spex_monitor.protocol.oip import InferenceStub
from spex_monitor.server.app import Sidecar
from spex_monitor.server.proxy import OIPProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(pki, tmp_path_factory):
    replica_credentials = grpc.ssl_server_credentials(
        [(pki["server.key"].read_bytes(), pki["server.crt"].read_bytes())]
    )
    upstream = SentimentServer().start(credentials=replica_credentials)  # the model server speaks TLS too
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 0.0,
                    "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                }
            ],
            "store": {"path": str(tmp_path_factory.mktemp("tls") / "spex.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "proxy_port": 0,
                "events_port": 0,
                "upstream": f"localhost:{upstream.port}",
                "upstream_tls": {"ca_file": pki["ca"]},
                "explain_in": "thread",
                "tls": {"cert_file": pki["server.crt"], "key_file": pki["server.key"], "ca_file": pki["ca"]},
            },
        }
    )
    app = Sidecar(settings).start()
    yield app
    app.stop()
    upstream.stop()


def _infer_request() -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="sentiment", id="t1")
    tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"the plot was not good")
    return request


def _client_context(pki, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if with_certificate:
        context.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
    return context


def test_the_proxy_port_refuses_plaintext_and_forwards_over_tls_to_a_tls_upstream(stack, pki):
    with grpc.insecure_channel(f"localhost:{stack.proxy_port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            InferenceStub(channel).ModelInfer(_infer_request(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    credentials = grpc.ssl_channel_credentials(
        pki["ca"].read_bytes(), pki["client.key"].read_bytes(), pki["client.crt"].read_bytes()
    )
    with grpc.secure_channel(f"localhost:{stack.proxy_port}", credentials) as channel:
        reply = InferenceStub(channel).ModelInfer(_infer_request(), timeout=30)
        assert reply.outputs and reply.model_name == "sentiment"


def test_the_events_and_metrics_ports_speak_tls(stack, pki):
    for port in (stack.events_port, stack.metrics_port):
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("GET", "/healthz")
            plain.getresponse().read()
        plain.close()
    # events: mutual TLS required (server.tls has a ca_file)
    without = http.client.HTTPSConnection("localhost", stack.events_port, context=_client_context(pki, False))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        without.request("GET", "/healthz")
        without.getresponse().read()
    events = http.client.HTTPSConnection("localhost", stack.events_port, context=_client_context(pki, True))
    events.request("GET", "/healthz")
    assert events.getresponse().status == 200
    # metrics: TLS; a client certificate is optional, so the kubelet's probes still reach /healthz
    probe = http.client.HTTPSConnection("localhost", stack.metrics_port, context=_client_context(pki, False))
    probe.request("GET", "/healthz")
    reply = probe.getresponse()
    assert reply.status == 200 and reply.read() == b"ok\n"
    probe.request("GET", "/api/top-interactions")  # no credentials configured: loopback holds the roles
    reply = probe.getresponse()
    assert reply.status == 200 and json.loads(reply.read()) == []
    for connection in (without, events, probe):
        connection.close()


def test_the_authorization_header_is_forwarded_only_over_tls_or_to_loopback():
    plain_remote = OIPProxy("10.255.255.1:8081", forward_authorization=False)
    assert "authorization" not in plain_remote.forwarded and "traceparent" in plain_remote.forwarded
    plain_remote.close()
    from spex_monitor.server.tls import upstream_is_loopback

    assert upstream_is_loopback("127.0.0.1:8081") and upstream_is_loopback("localhost:1")
    assert upstream_is_loopback("[::1]:8081") and not upstream_is_loopback("10.0.0.7:8081")
