"""One way in: every attach mode (Observe RPC, OIP proxy, KServe logger events) becomes an Observation here.

Keeping the checks in one place means the same request is accepted or refused — with the same message
naming the same field — whichever way it reached the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..monitor.worker import Observation

MAX_ID = 256
MAX_TEXT = 200_000


class InvalidObservation(ValueError):
    """A request the monitor cannot take; the message starts with the offending field."""


def build_observation(
    versions: Mapping[str, str],
    *,
    request_id: str,
    model: str,
    version: str = "",
    label: str = "",
    confidence: float | None = None,
    text: str | None = None,
    fields: dict[str, float] | None = None,
    trace_id: str | None = None,
) -> Observation:
    """Validate and build an observation; ``versions`` maps each configured model to its default version."""
    if not request_id or len(request_id) > MAX_ID:
        raise InvalidObservation(f"request_id: required, at most {MAX_ID} characters")
    if model not in versions:
        raise InvalidObservation(f"model: unknown model {model!r}")
    if text is None and fields is None:
        raise InvalidObservation("input: give text or fields")
    if text is not None and len(text) > MAX_TEXT:
        raise InvalidObservation(f"text: longer than {MAX_TEXT} characters")
    return Observation(
        request_id=request_id,
        model=model,
        version=version or versions[model],
        label=label or "",
        confidence=confidence or None,
        text=text,
        fields=fields,
        trace_id=trace_id or None,
    )


def label_from_logits(
    logits: Sequence[float] | np.ndarray, labels: Mapping[int, str] | None = None
) -> tuple[str, float]:
    """``(label, confidence)`` of one row of class scores read as logits (softmax, then the top class)."""
    row = np.asarray(logits, dtype=np.float64)
    probs = np.exp(row - row.max())
    probs /= probs.sum()
    return label_from_probabilities(probs, labels)


def label_from_probabilities(
    probs: Sequence[float] | np.ndarray, labels: Mapping[int, str] | None = None
) -> tuple[str, float]:
    """``(label, confidence)`` of one row of class probabilities: the top class and its probability."""
    row = np.asarray(probs, dtype=np.float64)
    top = int(np.argmax(row))
    return (labels or {}).get(top, str(top)), float(row[top])
