"""EventReceiver.handle: CloudEvents exactly as KServe's agent sends them, without HTTP in the way."""

from __future__ import annotations

import json

import pytest
import yaml
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from spex_monitor.config import ConfigError, Settings, load_settings
from spex_monitor.server.events import EventReceiver, trace_id_from_metadata
from spex_monitor.server.metrics import Metrics


class RecordingMonitor:
    def __init__(self) -> None:
        self.observed = []

    def observe(self, observation) -> bool:
        self.observed.append(observation)
        return len(self.observed) % 2 == 1  # every other one "sampled"


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _settings(**server) -> Settings:
    backend = {"kind": "oip", "endpoints": ["127.0.0.1:1"], "model_name": "m"}
    return Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "version": "v7",
                    "backend": backend,
                    "events": {"inference_services": ["sentiment-isvc"], "labels": ["negative", "positive"]},
                },
                {
                    "name": "credit",
                    "lens": {"kind": "fields"},
                    "backend": backend,
                    "events": {"fields": {"age": 0, "income": 1}, "version_from": "endpoint"},
                },
            ],
            "server": {"events_port": 0, "events_pair_ttl_s": 5, **server},
        }
    )


def _event(kind: str, event_id: str, data, service: str = "sentiment-isvc", **extra) -> CloudEvent:
    attributes = {
        "type": f"org.kubeflow.serving.inference.{kind}",
        "source": "http://localhost:9081/",
        "id": event_id,
        "inferenceservicename": service,
        "namespace": "default",
        "component": "predictor",
        "endpoint": "default",
        "metadata": "{}",
        "datacontenttype": "application/json",
        **extra,
    }
    return CloudEvent(attributes, data)


@pytest.fixture
def setup():
    monitor, metrics, clock = RecordingMonitor(), Metrics(), FakeClock()
    receiver = EventReceiver(_settings(), monitor, metrics, clock=clock)
    return receiver, monitor, metrics, clock


def _send(receiver, event, structured=False):
    headers, body = (to_structured if structured else to_binary)(event)
    return receiver.handle(headers, body)


def _dropped(metrics, model, reason) -> float:
    labels = {"model": model, "reason": reason}
    return metrics.registry.get_sample_value("spex_monitor_dropped_total", labels) or 0


def test_pairs_v1_binary_with_v2_structured_in_either_order(setup):
    receiver, monitor, metrics, _ = setup
    assert _send(receiver, _event("request", "a", {"instances": ["not good"]})).status == 202
    reply = _send(receiver, _event("response", "a", {"predictions": [[2.0, 0.0]]}), structured=True)
    assert reply.status == 200
    assert reply.body == {"status": "observed", "id": "a", "observed": 1, "sampled": 1}
    v2_response = {
        "model_name": "sentiment",
        "outputs": [{"name": "output", "shape": [2, 2], "datatype": "FP32", "data": [0, 1, 1, 0]}],
    }
    assert _send(receiver, _event("response", "b", v2_response), structured=True).status == 202
    v2_request = {"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": ["fun", "dull"]}]}
    assert _send(receiver, _event("request", "b", v2_request)).body["observed"] == 2
    got = [(o.request_id, o.model, o.version, o.text, o.label) for o in monitor.observed]
    assert got == [
        ("a", "sentiment", "v7", "not good", "negative"),
        ("b-0", "sentiment", "v7", "fun", "positive"),
        ("b-1", "sentiment", "v7", "dull", "negative"),
    ]
    assert monitor.observed[0].confidence == pytest.approx(0.8808, abs=1e-4)
    received = metrics.registry.get_sample_value
    assert received("spex_monitor_events_received_total", {"type": "request"}) == 2
    assert received("spex_monitor_events_received_total", {"type": "response"}) == 2
    assert received("spex_monitor_events_pending") == 0


def test_duplicates_expiry_and_late_partners_are_counted(setup):
    receiver, monitor, metrics, clock = setup
    _send(receiver, _event("request", "a", {"instances": ["x"]}))
    assert _send(receiver, _event("request", "a", {"instances": ["x"]})).body["status"] == "duplicate"
    _send(receiver, _event("response", "a", {"predictions": [1]}))
    assert _send(receiver, _event("response", "a", {"predictions": [1]})).body["status"] == "duplicate"
    assert _dropped(metrics, "sentiment", "event_duplicate") == 2
    _send(receiver, _event("request", "lost", {"instances": ["y"]}))
    clock.now += 6
    assert receiver.sweep() == 1 and _dropped(metrics, "sentiment", "event_unpaired") == 1
    reply = _send(receiver, _event("response", "lost", {"predictions": [0]}))
    assert reply.status == 410 and reply.body["error"] == "event_unpaired"
    assert reply.body["detail"].startswith("id: the request of this response was dropped unpaired")
    assert _dropped(metrics, "sentiment", "event_unpaired") == 2
    assert len(monitor.observed) == 1


def test_a_binary_event_missing_a_required_header_is_refused_naming_it(setup):
    """Issue 15 item 5: the SDK said "Failed to find specversion" for a missing ce-id."""
    receiver, *_ = setup
    headers = {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request", "ce-source": "s"}
    reply = receiver.handle({**headers, "content-type": "application/json"}, b'{"instances": ["x"]}')
    assert reply.status == 400 and reply.body["detail"].startswith("ce-id: missing header")
    del headers["ce-specversion"]
    reply = receiver.handle({**headers, "ce-id": "1", "content-type": "application/json"}, b"{}")
    assert reply.body["detail"].startswith("ce-specversion: missing header")
    structured = json.dumps({"specversion": "1.0", "type": "x.inference.request", "source": "s"}).encode()
    reply = receiver.handle({"content-type": "application/cloudevents+json"}, structured)
    assert reply.status == 400 and reply.body["detail"].startswith("id: missing")


def test_lone_surrogates_are_refused_at_the_door_and_leave_nothing_pending(setup):
    """Issue 15 item 4: a structured event with id "x\\ud800" got a plain-text 500 and left its half
    pending; text with a lone surrogate was accepted and failed later inside the explanation."""
    receiver, monitor, metrics, _ = setup
    body = (
        b'{"specversion": "1.0", "type": "org.kubeflow.serving.inference.request", "source": "s",'
        b' "id": "x\\ud800", "inferenceservicename": "sentiment-isvc", "datacontenttype": "application/json",'
        b' "data": {"instances": ["fine"]}}'
    )
    reply = receiver.handle({"content-type": "application/cloudevents+json"}, body)
    assert reply.status == 400 and reply.body["detail"].startswith("id: not valid Unicode")
    assert receiver.pairing.pending == 0
    json.dumps(reply.body).encode("utf-8")  # the reply itself always encodes
    _send(receiver, _event("request", "s1", {"instances": ["bad \ud800 text"]}))
    reply = _send(receiver, _event("response", "s1", {"predictions": [1]}))
    assert reply.status == 400 and reply.body["detail"].startswith("instances[0].text: not valid Unicode")
    assert not monitor.observed


def test_refusals_name_what_was_wrong(setup):
    receiver, monitor, metrics, _ = setup
    reply = receiver.handle({"content-type": "text/plain"}, b"garbage")
    assert reply.status == 400 and reply.body["error"] == "event_malformed"
    assert reply.body["detail"].startswith("ce-id: missing header")
    reply = receiver.handle({"content-type": "application/cloudevents+json"}, b"garbage")
    assert reply.status == 400 and reply.body["detail"].startswith("cloudevent:")
    reply = _send(receiver, CloudEvent({"type": "com.example.other", "source": "s", "id": "1"}, {"a": 1}))
    assert reply.status == 400 and reply.body["detail"].startswith("type: 'com.example.other'")
    reply = _send(receiver, _event("request", "u", {"instances": ["x"]}, service="nope"))
    assert reply.status == 404 and reply.body["error"] == "unknown_model"
    assert "'nope'" in reply.body["detail"] and "sentiment-isvc" in reply.body["detail"]
    reply = _send(receiver, _event("request", "m", {"instances": [{"text": "x"}]}))
    assert reply.status == 400 and reply.body["detail"].startswith("instances[0].input: missing")
    reply = _send(receiver, _event("request", "t", {"instances": ["w " * 100_001]}))
    assert reply.status == 202  # the text limit applies once the pair is complete
    reply = _send(receiver, _event("response", "t", {"predictions": [1]}))
    assert reply.status == 400 and reply.body["detail"].startswith("instances[0].text: longer than")
    _send(receiver, _event("request", "n", {"instances": ["a", "b"]}))
    reply = _send(receiver, _event("response", "n", {"predictions": [1]}))
    assert reply.status == 400 and "1 predictions for 2 inputs" in reply.body["detail"]
    headers, body = to_binary(_event("request", "big", {"instances": ["x" * 2_000_000]}))
    reply = receiver.handle(headers, body)
    assert reply.status == 413 and reply.body["error"] == "event_too_large"
    assert _dropped(metrics, "", "event_malformed") == 3  # the three refused before a model was known
    assert _dropped(metrics, "sentiment", "event_malformed") == 3
    assert _dropped(metrics, "", "unknown_model") == 1
    assert _dropped(metrics, "", "event_too_large") == 1
    assert monitor.observed == []


def test_fields_model_version_from_endpoint_and_trace_id(setup):
    receiver, monitor, _, _ = setup
    metadata = json.dumps({"Traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]})
    extra = {"endpoint": "canary", "metadata": metadata}
    _send(receiver, _event("request", "c", {"instances": [[41, 2.5, "x"]]}, service="credit", **extra))
    _send(receiver, _event("response", "c", {"predictions": [0]}, service="credit", **extra))
    (observation,) = monitor.observed
    assert observation.fields == {"age": 41.0, "income": 2.5} and observation.text is None
    assert (observation.model, observation.version, observation.label) == ("credit", "canary", "0")
    assert observation.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from_metadata("{}") is None and trace_id_from_metadata("not json traceparent") is None


def test_request_mode_observes_requests_alone():
    monitor = RecordingMonitor()
    receiver = EventReceiver(_settings(events_mode="request"), monitor, Metrics())
    reply = _send(receiver, _event("request", "a", {"instances": ["fun"]}))
    assert reply.status == 200 and reply.body["observed"] == 1
    assert _send(receiver, _event("response", "a", {"predictions": [1]})).body["status"] == "ignored"
    assert [(o.text, o.label) for o in monitor.observed] == [("fun", "")]
    assert receiver.pairing.pending == 0


def test_a_failing_monitor_gets_a_500_and_the_receiver_keeps_answering():
    class Broken:
        def observe(self, observation) -> bool:
            raise RuntimeError("boom")

    metrics = Metrics()
    receiver = EventReceiver(_settings(), Broken(), metrics)
    _send(receiver, _event("request", "a", {"instances": ["x"]}))
    reply = _send(receiver, _event("response", "a", {"predictions": [1]}))
    assert (reply.status, reply.body["error"]) == (500, "internal_error")
    assert _dropped(metrics, "", "internal_error") == 1
    assert _send(receiver, _event("request", "b", {"instances": ["y"]})).status == 202


@pytest.mark.parametrize(
    ("models", "server", "path", "reason"),
    [
        ([{"name": "m", "lens": {"kind": "fields"}}], {}, "models.0.events.fields", "required"),
        ([{"name": "m", "events": {"text_input": None}}], {}, "models.0.events.text_input", "required"),
        ([{"name": "m", "events": {"output_kind": "score"}}], {}, "models.0.events.output_kind", "'label'"),
        ([{"name": "m", "events": {"surprise": 1}}], {}, "models.0.events.surprise", "Extra inputs"),
        (
            [{"name": "a"}, {"name": "b", "events": {"inference_services": ["a"]}}],
            {},
            "models.1.events.inference_services",
            "InferenceService 'a' is claimed by models 'a' and 'b'",
        ),
        ([{"name": "m"}], {"events_port": 70000}, "server.events_port", "less than or equal to 65535"),
        ([{"name": "m"}], {"events_mode": "response"}, "server.events_mode", "'all' or 'request'"),
        ([{"name": "m"}], {"events_pair_ttl_s": 0}, "server.events_pair_ttl_s", "greater than 0"),
        (
            [{"name": "m"}],
            {"events_max_bytes": 4096, "events_max_pending_bytes": 2048},
            "server.events_max_pending_bytes",
            "must be at least events_max_bytes",
        ),
    ],
)
def test_config_errors_name_the_field(tmp_path, models, server, path, reason):
    backend = {"kind": "oip", "endpoints": ["127.0.0.1:1"], "model_name": "m"}
    data = {"models": [{"backend": backend, **m} for m in models], "server": server}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert any(p == path and reason in r for p, r in info.value.errors), info.value.errors


def test_events_knobs_load_from_yaml_and_environment(tmp_path):
    config = tmp_path / "c.yaml"
    backend = {"kind": "oip", "endpoints": ["127.0.0.1:1"], "model_name": "m"}
    config.write_text(yaml.safe_dump({"models": [{"name": "m", "backend": backend}]}))
    settings = load_settings(config, environ={})
    assert settings.server.events_port is None  # off unless asked for
    assert settings.models[0].events.text_input == "input"
    settings = load_settings(
        config,
        environ={
            "SPEX_MONITOR_SERVER__EVENTS_PORT": "8080",
            "SPEX_MONITOR_MODELS__0__EVENTS__LABELS": '["neg", "pos"]',  # JSON for list fields
        },
    )
    assert settings.server.events_port == 8080 and settings.models[0].events.labels == ["neg", "pos"]
