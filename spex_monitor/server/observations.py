"""One way in: every attach mode (Observe RPC, OIP proxy, KServe logger events) becomes an Observation here.

Keeping the checks in one place means the same request is accepted or refused — with the same message
naming the same field — whichever way it reached the sidecar.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from ..lenses.generation import Generation, message_keys
from ..monitor.worker import Observation

MAX_ID = 256
MAX_TEXT = 200_000
MAX_LABEL = 128
MAX_FIELDS = 1024
MAX_VERSIONS_PER_MODEL = 16
# Longest word (no whitespace) an explanation takes: a key that long is no useful feature name, and the
# model's tokenizer would cut it into hundreds of pieces anyway.
MAX_EXPLAINED_WORD = 1000
_VERSION = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")


class InvalidObservation(ValueError):
    """A request the monitor cannot take; the message starts with the offending field."""


def unicode_problem(value: str) -> str | None:
    """Why ``value`` is not valid Unicode text (a lone surrogate, which JSON escapes like ``\\ud800``
    can carry and which no tokenizer, JSON encoder or database accepts), else ``None``. O(len(value))."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode (a lone surrogate at character {exc.start})"
    return None


def explainable(text: str | None) -> None:
    """Refuse text the lens cannot explain in linear time: a word over :data:`MAX_EXPLAINED_WORD` chars."""
    if text is None:
        return
    longest = max((len(word) for word in text.split()), default=0)
    if longest > MAX_EXPLAINED_WORD:
        raise InvalidObservation(
            f"text: a word of {longest} characters without whitespace; at most {MAX_EXPLAINED_WORD} are "
            "explained"
        )


def check_input(
    model: str,
    kind: str | None,
    text: str | None,
    fields: Mapping[str, float] | None,
    generation: object | None = None,
) -> None:
    """The input checks every entry path shares (Observe, the proxies, events, Explain).

    ``kind`` is the model's lens kind (``text``, ``fields`` or ``prompt``); ``None`` skips that check.
    ``generation`` is already validated (see :mod:`.generations`); only its kind is checked here.
    Raises :class:`InvalidObservation` naming the field.
    """
    given = [n for n, v in (("text", text), ("fields", fields), ("generation", generation)) if v is not None]
    if not given:
        raise InvalidObservation("input: give text, fields or a generation")
    wanted = {"text": "text", "fields": "fields", "prompt": "generation"}.get(kind or "")
    if wanted is not None and given[0] != wanted:
        raise InvalidObservation(f"{given[0]}: model {model!r} takes {wanted} (its lens.kind is {kind!r})")
    if text is not None:
        if len(text) > MAX_TEXT:
            raise InvalidObservation(f"text: longer than {MAX_TEXT} characters")
        problem = unicode_problem(text)
        if problem:
            raise InvalidObservation(f"text: {problem}")
        if not text.strip():
            raise InvalidObservation("text: empty or only whitespace (nothing to explain)")


def generation_view(generation: Generation) -> tuple[str, tuple[str, ...]]:
    """What the monitor sees of a generation: its prompt's text (a plain prompt, or the message contents one
    per line) and the words its lens may use as keys (segment names, message roles as ``role``/``role#2``).
    """
    if generation.messages is not None:
        text = "\n".join(m["content"] for m in generation.messages)
        roles = message_keys([m["role"] for m in generation.messages])
    else:
        text, roles = generation.prompt or "", []
    return text, tuple(dict.fromkeys([*generation.segments, *roles]))


class VersionGate:
    """Bounds the versions a model may report: each one opens windows, maps and metric series.

    Versions come from callers (canary ``v2``, a build hash); a buggy or hostile client sending a new one per
    request would otherwise grow memory and Prometheus cardinality without bound.
    """

    def __init__(self, configured: Mapping[str, str], max_per_model: int = MAX_VERSIONS_PER_MODEL) -> None:
        self.max_per_model = max_per_model
        self._seen: dict[str, set[str]] = {model: {version} for model, version in configured.items()}
        self._lock = threading.Lock()

    def admit(self, model: str, version: str) -> bool:
        """Whether ``model`` may report ``version``: yes for one already seen, and for a new one while the
        model has fewer than ``max_per_model`` versions (it is then remembered).
        """
        with self._lock:
            seen = self._seen.setdefault(model, set())
            if version in seen:
                return True
            if len(seen) >= self.max_per_model:
                return False
            seen.add(version)
            return True


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
    gate: VersionGate | None = None,
    kinds: Mapping[str, str] | None = None,
    generation: Generation | None = None,
) -> Observation:
    """Validate and build an observation; ``versions`` maps each configured model to its default version,
    ``kinds`` (optional) each model to its lens kind (``text`` / ``fields`` / ``prompt``). A
    ``generation`` must already be validated (:func:`.generations.build_generation`)."""
    if not request_id or len(request_id) > MAX_ID:
        raise InvalidObservation(f"request_id: required, at most {MAX_ID} characters")
    for name, value in (("request_id", request_id), ("label", label), ("trace_id", trace_id)):
        problem = unicode_problem(value or "")
        if problem:
            raise InvalidObservation(f"{name}: {problem}")
    if model not in versions:
        raise InvalidObservation(f"model: unknown model {model[:100]!r}")
    check_input(model, (kinds or {}).get(model), text, fields, generation)
    if version and not _VERSION.match(version):
        raise InvalidObservation("version: 1 to 64 of the characters A-Z a-z 0-9 _ . : + -")
    if len(label or "") > MAX_LABEL:
        raise InvalidObservation(f"label: longer than {MAX_LABEL} characters")
    if confidence and not 0.0 < confidence <= 1.0:  # also refuses NaN; 0 means unknown
        raise InvalidObservation("confidence: a probability in (0, 1], or 0 when unknown")
    if trace_id and len(trace_id) > MAX_ID:
        raise InvalidObservation(f"trace_id: longer than {MAX_ID} characters")
    if fields is not None:
        if not fields or len(fields) > MAX_FIELDS:
            raise InvalidObservation(f"fields: 1 to {MAX_FIELDS} fields")
        for name, value in fields.items():
            if not name or len(name) > MAX_LABEL or unicode_problem(name):
                shown = name[:40].encode("utf-8", "backslashreplace").decode()
                raise InvalidObservation(f"fields: names of 1 to {MAX_LABEL} valid characters ({shown!r})")
            if not math.isfinite(value):
                raise InvalidObservation(f"fields.{name}: not a finite number ({value!r})")
    if gate is not None and version and not gate.admit(model, version):
        raise InvalidObservation(
            f"version: {model!r} already reports {gate.max_per_model} versions; refusing {version!r}"
        )
    key_words: tuple[str, ...] = ()
    if generation is not None:
        text, key_words = generation_view(generation)
    return Observation(
        request_id=request_id,
        model=model,
        version=version or versions[model],
        label=label or "",
        confidence=confidence or None,
        text=text,
        fields=fields,
        trace_id=trace_id or None,
        generation=generation,
        key_words=key_words,
    )


class Intake:
    """The configured models as every entry path sees them: default versions, lens kinds and the shared
    :class:`VersionGate`. :meth:`build` is :func:`build_observation` with those filled in.

    Args:
        versions: model name → configured (default) version.
        kinds: model name → lens kind (``text`` / ``fields``).
    """

    def __init__(self, versions: Mapping[str, str], kinds: Mapping[str, str]) -> None:
        self.versions = dict(versions)
        self.kinds = dict(kinds)
        self.gate = VersionGate(self.versions)

    def build(
        self,
        *,
        request_id: str,
        model: str,
        version: str = "",
        label: str = "",
        confidence: float | None = None,
        text: str | None = None,
        fields: dict[str, float] | None = None,
        trace_id: str | None = None,
        generation: Generation | None = None,
    ) -> Observation:
        """A validated observation; raises :class:`InvalidObservation` naming the field."""
        return build_observation(
            self.versions,
            request_id=request_id,
            model=model,
            version=version,
            label=label,
            confidence=confidence,
            text=text,
            fields=fields,
            trace_id=trace_id,
            gate=self.gate,
            kinds=self.kinds,
            generation=generation,
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
