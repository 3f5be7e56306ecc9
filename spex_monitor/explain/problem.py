"""The value problem one input poses to an engine: its value function, feature keys and target class."""

from __future__ import annotations

from dataclasses import dataclass

from ..attribution.oracle import ValueFunction
from .request import ExplainRequest

DECISION_BOUNDARY = "decision_boundary"  # the Interactions.details key the boundary travels under


@dataclass(frozen=True)
class ValueProblem:
    """What an engine needs for one input.

    Attributes:
        value_fn: ``(k, n) bool`` masks (``True`` = feature kept) → ``(k,)`` float64 values, e.g. the
            log-odds of ``target``.
        keys: the monitor key of each of the ``n`` features.
        target: index of the class the value function scores (predicted on the unmasked input).
        label: the target's name when the lens knows it (a generation's completion or label), else
            ``None`` (the backend's ``id2label`` names it).
        boundary: the value's decision boundary (0 for the log-odds of the predicted class: its
            probability crosses one half), or ``None`` when the value has none (a completion
            log-probability, a score). The monitor's decisive-interaction test reads it.
    """

    value_fn: ValueFunction
    keys: list[str]
    target: int
    label: str | None = None
    boundary: float | None = None


def missing_input(request: ExplainRequest, wanted: str, lens_kind: str) -> ValueError:
    """The error for a request without the input its model's lens reads (entry points refuse it first)."""
    if request.text is None and request.fields is None and request.generation is None:
        return ValueError("input: give text, fields or a generation")
    return ValueError(f"{wanted}: model {request.model!r} takes {wanted} (its lens.kind is {lens_kind!r})")
