"""Errors raised by the attribution engines (all subclasses of ValueError, so callers can catch broadly).

Every error here must survive ``pickle``: explanations run in worker processes, and an exception that cannot
be rebuilt on the other side of the pipe breaks the whole process pool (``BrokenProcessPool``) instead of
failing one call. Errors whose ``__init__`` takes more than the message define ``__reduce__``.
"""

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
        self.detail = detail
        super().__init__(f"{engine}: budget is too small; the minimum is {minimum}, got {budget}{extra}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.engine, self.budget, self.minimum, self.detail), self.__dict__)


class ValueFunctionError(AttributionError):
    """The value function returned something other than a finite float array of the expected shape."""
