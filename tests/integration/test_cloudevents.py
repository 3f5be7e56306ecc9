"""KServe's inference logger → the sidecar's CloudEvents receiver, over real HTTP on loopback.

Events are built the way KServe's agent builds them (``cloudevents`` SDK, binary mode, the same ``ce-id`` on
request and response, ``inferenceservicename``/``namespace``/``component``/``endpoint``/``metadata``
extensions) and also in structured mode; bodies are V1 and OIP-V2 JSON. The model server is the embedded
tiny BERT behind OIP-V2 gRPC — the "predictor" whose answers the events carry and the backend the sidecar
explains with — so a silent swap to the broken-negation variant must surface as an interaction shift.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

import grpc
import numpy as np
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from prometheus_client.parser import text_string_to_metric_families

from spex_monitor.config import Settings
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.protocol.inference import grpc_service_pb2 as oip
from spex_monitor.protocol.oip import InferenceStub
from spex_monitor.server.app import Sidecar
from spex_monitor.server.asgi_thread import ASGIThread
from spex_monitor.server.events import EventReceiver
from spex_monitor.server.events_app import create_app
from spex_monitor.server.metrics import Metrics

pytestmark = pytest.mark.integration

WINDOW = 40
TTL_S = 1.5
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    upstream = SentimentServer().start()
    backend = {"kind": "oip", "endpoints": [f"127.0.0.1:{upstream.port}"], "model_name": "sentiment"}
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "sampling_rate": 1.0,
                    "backend": backend,
                    "events": {"inference_services": ["sentiment-isvc"], "labels": LABELS},
                },
                {"name": "probe", "sampling_rate": 1.0, "backend": backend, "events": {"labels": LABELS}},
            ],
            "engine": {"budget": 128, "max_order": 3},
            "budget": {"inferences_per_second": 1e6, "burst": 1e6},
            "windows": {"seconds": None, "requests": WINDOW},
            "baseline": {"windows": 1, "min_window_requests": 30, "n_permutations": 500},
            "store": {"path": str(tmp_path_factory.mktemp("events") / "spex.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "events_port": 0,
                "events_pair_ttl_s": TTL_S,
                "events_max_bytes": 64 * 1024,
                "workers": 2,
                "tick_s": 0.2,
                "queue_per_label": 1000,
                "explain_in": "thread",
            },
        }
    )
    sidecar = Sidecar(settings).start()
    yield upstream, sidecar
    sidecar.stop()
    upstream.stop()


class Agent:
    """Posts events like KServe's agent: one keep-alive connection, binary mode unless told otherwise."""

    def __init__(self, port: int, service: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.service = service

    def event(self, kind: str, event_id: str, data, **extra) -> CloudEvent:
        attributes = {
            "type": f"org.kubeflow.serving.inference.{kind}",
            "source": "http://localhost:9081/",
            "id": event_id,
            "inferenceservicename": self.service,
            "namespace": "default",
            "component": "predictor",
            "endpoint": "default",
            "metadata": "{}",
            "datacontenttype": "application/json",
            **extra,
        }
        return CloudEvent(attributes, data)

    def post_raw(self, headers: dict, body: bytes) -> tuple[int, dict]:
        self.connection.request("POST", "/", body=body, headers=headers)
        reply = self.connection.getresponse()
        payload = reply.read()
        if reply.getheader("connection", "").lower() == "close":
            self.connection.close()
        return reply.status, json.loads(payload)

    def post(self, event: CloudEvent, structured: bool = False) -> tuple[int, dict]:
        return self.post_raw(*(to_structured if structured else to_binary)(event))

    def close(self) -> None:
        self.connection.close()


def _metrics(sidecar: Sidecar) -> dict[tuple[str, tuple], float]:
    connection = http.client.HTTPConnection("127.0.0.1", sidecar.metrics_port, timeout=5)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def _v1(text: str, logits: np.ndarray) -> tuple[dict, dict]:
    return {"instances": [text]}, {"predictions": [logits.tolist()]}


def _v2(text: str, logits: np.ndarray) -> tuple[dict, dict]:
    request = {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [text]}]}
    response = {
        "model_name": "sentiment",
        "model_version": "1",
        "outputs": [{"name": "output", "shape": [1, 2], "datatype": "FP32", "data": logits.tolist()}],
    }
    return request, response


def test_both_modes_both_protocols_out_of_order_and_duplicates(stack):
    _, sidecar = stack
    before = _metrics(sidecar)
    agent = Agent(sidecar.events_port, "probe")
    logits = np.array([0.5, -0.5])
    request, response = _v1("the plot was dull", logits)
    assert agent.post(agent.event("request", "p1", request)) == (202, {"status": "pending", "id": "p1"})
    status, body = agent.post(agent.event("response", "p1", response), structured=True)
    assert (status, body["status"], body["observed"], body["sampled"]) == (200, "observed", 1, 1)
    request, response = _v2("i did not like the cast", logits)
    assert agent.post(agent.event("response", "p2", response), structured=True)[0] == 202  # response first
    assert agent.post(agent.event("request", "p2", request))[1]["status"] == "observed"
    assert agent.post(agent.event("request", "p2", request)) == (200, {"status": "duplicate", "id": "p2"})
    assert agent.post(agent.event("response", "p1", response))[1]["status"] == "duplicate"
    batch = {"instances": ["fun", "weak", "great"]}
    assert agent.post(agent.event("request", "p3", batch))[0] == 202
    status, body = agent.post(agent.event("response", "p3", {"predictions": [1, 0, 1]}))
    assert (status, body["observed"]) == (200, 3)
    agent.close()
    after = _metrics(sidecar)

    def delta(name: str, **labels) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("spex_monitor_events_received_total", type="request") == 4
    assert delta("spex_monitor_events_received_total", type="response") == 4
    assert delta("spex_monitor_requests_observed_total", model="probe", version="v1") == 5
    assert delta("spex_monitor_sampled_total", model="probe", version="v1") == 5
    assert delta("spex_monitor_dropped_total", model="probe", reason="event_duplicate") == 2
    assert _value(after, "spex_monitor_events_pending") == 0


def test_garbage_oversized_unknown_and_unpaired_get_4xx_and_are_counted(stack):
    _, sidecar = stack
    before = _metrics(sidecar)
    agent = Agent(sidecar.events_port, "probe")
    status, body = agent.post_raw({"content-type": "application/json"}, b"{not json")
    assert status == 400 and body["error"] == "event_malformed"
    assert body["detail"].startswith("ce-id: missing header")
    status, body = agent.post(agent.event("request", "g1", {"instances": [{"review": "x"}]}))
    assert (status, body["error"]) == (400, "event_malformed")
    assert body["detail"].startswith("instances[0].input: missing")
    status, body = agent.post(agent.event("request", "big", {"instances": ["word " * 20_000]}))
    assert (status, body["error"]) == (413, "event_too_large") and "events_max_bytes=65536" in body["detail"]
    status, body = agent.post(Agent(0, "fraud-detector").event("request", "u1", {"instances": ["x"]}))
    assert (status, body["error"]) == (404, "unknown_model") and "'fraud-detector'" in body["detail"]
    assert agent.post(agent.event("request", "lonely", {"instances": ["the music was weak"]}))[0] == 202
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sidecar.events.pairing.pending:
        time.sleep(0.1)  # the receiver's sweeper expires it after the TTL
    status, body = agent.post(agent.event("response", "lonely", {"predictions": [0]}))
    assert (status, body["error"]) == (410, "event_unpaired")
    request, response = _v1("the ending was great", np.array([-1.0, 1.0]))  # still serving
    agent.post(agent.event("request", "ok", request))
    assert agent.post(agent.event("response", "ok", response))[1]["status"] == "observed"
    agent.close()
    after = _metrics(sidecar)

    def delta(model: str, reason: str) -> float:
        labels = {"model": model, "reason": reason}
        return _value(after, "spex_monitor_dropped_total", **labels) - _value(
            before, "spex_monitor_dropped_total", **labels
        )

    assert delta("", "event_malformed") == 1
    assert delta("probe", "event_malformed") == 1
    assert delta("", "event_too_large") == 1
    assert delta("", "unknown_model") == 1
    assert delta("probe", "event_unpaired") == 2  # the expired request and its late response
    assert _value(after, "spex_monitor_events_received_total", type="unknown") >= 2


def _predict(stub: InferenceStub, text: str) -> np.ndarray:
    request = oip.ModelInferRequest(model_name="sentiment")
    tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(text.encode())
    reply = stub.ModelInfer(request, timeout=10)
    return np.asarray(reply.outputs[0].contents.fp32_contents, dtype=np.float64)


def test_interaction_shift_is_detected_through_logger_events(stack):
    upstream, sidecar = stack
    channel = grpc.insecure_channel(f"127.0.0.1:{upstream.port}")
    predictor = InferenceStub(channel)
    agent = Agent(sidecar.events_port, "sentiment-isvc")
    texts, _ = generate_corpus(2000, seed=11)
    texts = [t for t in texts if len(t.split()) <= 7]
    results = []
    cursor = 0
    for variant in ("sentiment-base", "sentiment-base", "sentiment-broken-negation"):
        upstream.swap(variant)  # the model server changes silently: same name, same version
        seen = len([r for r in sidecar.monitor.results if r.window.model == "sentiment"])
        for text in texts[cursor : cursor + WINDOW]:
            request, response = (_v1 if cursor % 2 else _v2)(text, _predict(predictor, text))
            halves = [("request", request), ("response", response)]
            for kind, data in halves if cursor % 3 else halves[::-1]:
                status, _ = agent.post(agent.event(kind, f"req-{cursor}", data), structured=cursor % 5 == 0)
                assert status in (200, 202)
            cursor += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [r for r in sidecar.monitor.results if r.window.model == "sentiment"]
            if len(done) > seen:
                break
            time.sleep(0.1)
        assert len(done) > seen, f"window {len(results)} did not close within 60 s"
        results.append(done[-1])
    agent.close()
    channel.close()

    assert [r.report is None for r in results] == [True, False, False]
    steady, incident = results[1], results[2]
    assert not steady.alarm, steady.report.p_value
    assert incident.alarm, incident.report.p_value
    top = incident.report.top_contributors(3)
    assert any("not" in c.key for c in top), top
    metrics = _metrics(sidecar)
    labels = {"model": "sentiment", "version": "v1"}
    assert _value(metrics, "spex_monitor_requests_observed_total", **labels) == 3 * WINDOW
    assert _value(metrics, "spex_monitor_sampled_total", **labels) == 3 * WINDOW
    assert _value(metrics, "spex_monitor_dropped_total", model="sentiment", reason="event_unpaired") == 0


def test_receiver_thread_starts_and_stops_cleanly():
    settings = Settings.model_validate(
        {
            "models": [
                {"name": "m", "backend": {"kind": "oip", "endpoints": ["127.0.0.1:1"], "model_name": "m"}}
            ],
            "server": {"events_port": 0},
        }
    )

    class Monitor:
        def observe(self, observation) -> bool:
            return False

    app = create_app(EventReceiver(settings, Monitor(), Metrics()))
    server = ASGIThread(app, "127.0.0.1", 0, name="spex-test")
    port = server.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/healthz")
    assert json.loads(connection.getresponse().read()) == {"status": "ok", "pending": 0}
    connection.close()
    server.stop(1.0)
    assert "spex-test" not in {t.name for t in threading.enumerate()}
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/healthz")
