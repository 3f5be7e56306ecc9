"""CloudEvents receiver for KServe's inference logger: attach to an InferenceService with no code change.

An InferenceService with ``predictor.logger: {mode: all, url: http://<sidecar>:<events_port>/}`` makes
KServe's agent POST every request and every response as a CloudEvent (binary mode; structured mode is
accepted too) with the same ``ce-id`` for both halves and KServe's extension attributes
(``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint``, ``ce-metadata``). The
receiver parses each event with the ``cloudevents`` SDK, decodes the V1 or OIP-V2 body with the model's
mapping, pairs request and response by id (either order, bounded time and memory), and offers the joined
observation to the same sampler as ``Observe``. Handling is linear in the body and never waits on
explanation work; every refusal is a 4xx with ``{"error": <reason>, "detail": "<field>: ..."}`` and is
counted in ``spex_monitor_dropped_total{reason}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from ..config import ModelConfig, Settings
from ..monitor.pairing import Half, PairingBuffer, PendingHalf
from .observations import InvalidObservation, VersionGate, build_observation, unicode_problem
from .payloads import (
    DecodedRequest,
    DecodedResponse,
    PayloadError,
    decode_request,
    decode_response,
    model_name_of,
)

if TYPE_CHECKING:
    from ..monitor.worker import Monitor
    from .metrics import Metrics

log = logging.getLogger(__name__)

REQUEST_SUFFIX = ".inference.request"  # KServe: org.kubeflow.serving.inference.request
RESPONSE_SUFFIX = ".inference.response"  # KServe: org.kubeflow.serving.inference.response
MAX_EVENT_ID = 200  # leaves room for the "-<row>" suffix of batched requests within MAX_ID
_MAX_DETAIL = 300
_MAX_UNKNOWN_LOGGED = 100
_REQUIRED = ("id", "source", "specversion", "type")
# attributes the receiver reads (and may echo in a reply): each must be valid Unicode text
_READ_ATTRIBUTES = ("id", "type", "source", "inferenceservicename", "namespace", "endpoint")


def missing_attribute(headers: Mapping[str, str], body: bytes) -> str | None:
    """The detail for a CloudEvent without a required attribute (``ce-id: missing ...``), else ``None``.

    The SDK answers "Failed to find specversion" for any missing binary-mode header, even ``ce-id``;
    docs/kserve-logger.md promises a detail that names the field.
    """
    lowered = {str(k).lower(): v for k, v in headers.items()}
    content_type = str(lowered.get("content-type", "")).lower()
    if content_type.startswith("application/cloudevents"):
        try:
            event = json.loads(body)
        except ValueError:
            return None  # the SDK's own parse error names the body
        if not isinstance(event, dict):
            return "cloudevent: a structured-mode event is a JSON object"
        for name in _REQUIRED:
            if name not in event:
                return f"{name}: missing (structured-mode CloudEvents need {', '.join(_REQUIRED)})"
        return None
    for name in _REQUIRED:
        if f"ce-{name}" not in lowered:
            needed = ", ".join(f"ce-{n}" for n in _REQUIRED)
            return f"ce-{name}: missing header (binary-mode CloudEvents need {needed})"
    return None


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code and JSON body."""

    status: int
    body: dict


@dataclass(frozen=True)
class _Half:
    """What a pending half keeps: the model it resolved to and its decoded body (never the raw bytes)."""

    model: str
    decoded: DecodedRequest | DecodedResponse
    endpoint: str
    trace_id: str | None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def trace_id_from_metadata(raw: Any) -> str | None:
    """The W3C trace id from KServe's ``ce-metadata`` (JSON of allow-listed headers, e.g. traceparent)."""
    if not isinstance(raw, str) or "raceparent" not in raw:
        return None
    try:
        headers = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(headers, dict):
        return None
    for name, values in headers.items():
        if str(name).lower() == "traceparent":
            value = values[0] if isinstance(values, list) and values else values
            parts = str(value).split("-")
            if len(parts) >= 2 and len(parts[1]) == 32:
                return parts[1]
    return None


class EventReceiver:
    """The protocol-independent core: ``handle(headers, body) -> Reply``; the ASGI app is a thin shell.

    Args:
        settings: models (names, versions, lens kinds, ``events`` mappings) and ``server.events_*`` bounds.
        monitor: where observations go (``Monitor.observe`` is O(1) and never raises).
        metrics: counters for received, pending and dropped events.
        labels: per model, class names by index for index- or score-shaped predictions.
        clock: monotonic seconds for pairing (tests pass a fake one).
    """

    def __init__(
        self,
        settings: Settings,
        monitor: Monitor,
        metrics: Metrics,
        labels: Mapping[str, Mapping[int, str] | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: VersionGate | None = None,
    ) -> None:
        server = settings.server
        self.gate = gate  # shared with Observe: versions from ce-endpoint or V2 bodies stay bounded
        self.monitor = monitor
        self.metrics = metrics
        self.mode = server.events_mode
        self.max_bytes = server.events_max_bytes
        self.models: dict[str, ModelConfig] = {m.name: m for m in settings.models}
        self.versions = {m.name: m.version for m in settings.models}
        self.services: dict[str, ModelConfig] = {}
        for model in settings.models:
            for service in model.events.inference_services or [model.name]:
                self.services[service] = model
        self.labels: dict[str, Mapping[int, str] | None] = {}
        for model in settings.models:
            configured = model.events.labels
            given = (labels or {}).get(model.name)
            self.labels[model.name] = dict(enumerate(configured)) if configured else given
        self.pairing = PairingBuffer(
            ttl_s=server.events_pair_ttl_s,
            max_pending=server.events_max_pending,
            max_bytes=server.events_max_pending_bytes,
            clock=clock,
        )
        self._unknown_logged: set[str] = set()

    # ------------------------------------------------------------------------------------------ outcomes
    def _reject(self, status: int, reason: str, detail: str, model: str = "", event_id: str = "") -> Reply:
        self.metrics.dropped.labels(model, reason).inc()
        body = {"error": reason, "detail": _short(detail)}
        if event_id:
            body["id"] = event_id
        return Reply(status, body)

    def too_large(self, size: int | None) -> Reply:
        """The answer for a body over ``server.events_max_bytes`` (the HTTP layer stops reading early)."""
        self.metrics.events_received.labels("unknown").inc()
        seen = f"{size} bytes" if size is not None else "the body"
        return self._reject(
            413, "event_too_large", f"body: {seen} exceed server.events_max_bytes={self.max_bytes}"
        )

    def _count_unpaired(self, dropped: list[PendingHalf]) -> None:
        for half in dropped:
            self.metrics.dropped.labels(half.item.model, "event_unpaired").inc()

    def sweep(self) -> int:
        """Expire halves that waited past the pairing TTL; returns how many were dropped."""
        dropped = self.pairing.expire()
        self._count_unpaired(dropped)
        self.metrics.events_pending.set(self.pairing.pending)
        return len(dropped)

    # -------------------------------------------------------------------------------------------- handle
    def handle(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Parse, decode, pair and observe one event. Never raises; O(body) work, no waiting."""
        try:
            return self._handle(headers, body)
        except Exception:  # the receiver must answer, whatever the event held
            log.exception("inference-logger event failed")
            return self._reject(500, "internal_error", "receiver: the event could not be processed (logged)")

    def _handle(self, headers: Mapping[str, str], body: bytes) -> Reply:
        if len(body) > self.max_bytes:
            return self.too_large(len(body))
        missing = missing_attribute(headers, body)
        if missing is not None:
            self.metrics.events_received.labels("unknown").inc()
            return self._reject(400, "event_malformed", missing)
        try:
            event = from_http(headers, body)
        except (GenericException, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.metrics.events_received.labels("unknown").inc()
            return self._reject(400, "event_malformed", f"cloudevent: {exc}")
        for name in _READ_ATTRIBUTES:  # before anything is kept: a bad id must not leave a half pending
            value = event.get(name)
            problem = unicode_problem(value) if isinstance(value, str) else None
            if problem:
                self.metrics.events_received.labels("unknown").inc()
                return self._reject(400, "event_malformed", f"{name}: {problem}")
        event_type = str(event.get("type") or "")
        half: Half
        if event_type.endswith(REQUEST_SUFFIX):
            half = "request"
        elif event_type.endswith(RESPONSE_SUFFIX):
            half = "response"
        else:
            self.metrics.events_received.labels("unknown").inc()
            return self._reject(
                400,
                "event_malformed",
                f"type: {event_type!r} is neither org.kubeflow.serving.inference.request nor .response",
            )
        self.metrics.events_received.labels(half).inc()
        event_id = str(event.get("id") or "")
        if not event_id or len(event_id) > MAX_EVENT_ID:
            return self._reject(400, "event_malformed", f"id: required, at most {MAX_EVENT_ID} characters")
        data = event.get_data()
        if isinstance(data, bytes | bytearray | str):
            try:
                data = json.loads(data)
            except ValueError:
                return self._reject(
                    400, "event_malformed", "data: not JSON (V1 or OIP-V2 JSON bodies only)", "", event_id
                )
        service = str(event.get("inferenceservicename") or "") or model_name_of(data) or ""
        model = self.services.get(service)
        if model is None:
            if service not in self._unknown_logged and len(self._unknown_logged) < _MAX_UNKNOWN_LOGGED:
                self._unknown_logged.add(service)
                log.warning(
                    "inference-logger events for unmapped InferenceService %r are dropped", service[:100]
                )
            return self._reject(
                404,
                "unknown_model",
                f"inferenceservicename: {service!r} is not a configured model or listed in "
                f"models[].events.inference_services; configured: {sorted(self.services)}",
                "",
                event_id,
            )
        try:
            if half == "request":
                decoded: DecodedRequest | DecodedResponse = decode_request(
                    data, model.events, "fields" if model.lens.kind == "fields" else "text"
                )
            else:
                decoded = decode_response(data, model.events, self.labels.get(model.name))
        except PayloadError as exc:
            return self._reject(400, "event_malformed", str(exc), model.name, event_id)
        item = _Half(
            model.name,
            decoded,
            str(event.get("endpoint") or ""),
            trace_id_from_metadata(event.get("metadata")),
        )
        if self.mode == "request":
            if half == "response":
                return Reply(
                    202, {"status": "ignored", "id": event_id, "detail": "server.events_mode is request"}
                )
            return self._observe(event_id, item, None)
        key = (str(event.get("namespace") or ""), model.name, event_id)
        offer = self.pairing.offer(key, half, item, size=len(body))
        self._count_unpaired(offer.dropped)
        self.metrics.events_pending.set(self.pairing.pending)
        if offer.status == "pending":
            return Reply(202, {"status": "pending", "id": event_id})
        if offer.status == "duplicate":
            self.metrics.dropped.labels(model.name, "event_duplicate").inc()
            return Reply(200, {"status": "duplicate", "id": event_id})
        if offer.status == "late":
            partner = "response" if half == "request" else "request"
            return self._reject(
                410,
                "event_unpaired",
                f"id: the {partner} of this {half} was dropped unpaired "
                f"(older than server.events_pair_ttl_s={self.pairing.ttl_s:g}s or evicted)",
                model.name,
                event_id,
            )
        return self._observe(event_id, offer.request, offer.response)

    def _observe(self, event_id: str, request: _Half, response: _Half | None) -> Reply:
        inputs = request.decoded
        assert isinstance(inputs, DecodedRequest)
        outputs = response.decoded if response is not None else None
        assert outputs is None or isinstance(outputs, DecodedResponse)
        model = self.models[request.model]
        if outputs is not None and len(outputs.rows) != len(inputs.rows):
            return self._reject(
                400,
                "event_malformed",
                f"data: the response has {len(outputs.rows)} predictions for {len(inputs.rows)} inputs",
                model.name,
                event_id,
            )
        version = ""
        if model.events.version_from == "model_version" and outputs is not None:
            version = outputs.model_version or ""
        elif model.events.version_from == "endpoint":
            version = request.endpoint
        observations = []
        for row, values in enumerate(inputs.rows):
            label, confidence = "", None
            if outputs is not None:
                label, confidence = outputs.rows[row].label, outputs.rows[row].confidence
            try:
                observations.append(
                    build_observation(
                        self.versions,
                        request_id=event_id if len(inputs.rows) == 1 else f"{event_id}-{row}",
                        model=model.name,
                        version=version,
                        label=label,
                        confidence=confidence,
                        text=values.text,
                        fields=values.fields,
                        trace_id=request.trace_id,
                        gate=self.gate,
                        kinds={model.name: model.lens.kind},
                    )
                )
            except InvalidObservation as exc:
                return self._reject(400, "event_malformed", f"instances[{row}].{exc}", model.name, event_id)
        sampled = sum(int(self.monitor.observe(o)) for o in observations)
        return Reply(
            200, {"status": "observed", "id": event_id, "observed": len(observations), "sampled": sampled}
        )
