"""Errors raised by the attribution engines (all subclasses of ValueError, so callers can catch broadly)."""

from __future__ import annotations


class AttributionError(ValueError):
    """Base class for attribution errors."""


class BudgetTooSmallError(AttributionError):
    """The budget cannot pay for the engine's minimum design; the message names the minimum."""

    def __init__(self, engine: str, budget: int, minimum: int, detail: str = "") -> None:
        self.engine = engine
        self.budget = budget
        self.minimum = minimum
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{engine}: budget={budget} is too small; the minimum is {minimum}{extra}")


class ValueFunctionError(AttributionError):
    """The value function returned something other than a finite float array of the expected shape."""
