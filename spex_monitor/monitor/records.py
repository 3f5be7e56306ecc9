"""The monitor's records: an observed request, what an explainer returns, a closed window's result, and
thread-safe counters."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..attribution import Interactions
from .shift import ShiftReport
from .windows import ClosedWindow


class LockedCounter(Counter):
    """A ``Counter`` whose increments are atomic across threads (``c[k] += 1`` is a read and a write)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def add(self, key: str, amount: float = 1) -> None:
        """Add ``amount`` to ``key`` atomically."""
        with self._lock:
            self[key] += amount

    def __reduce__(self) -> tuple:
        return (type(self), (dict(self),))


@dataclass
class Observation:
    """One served request as the monitor sees it (text, fields or a generation in; label and confidence out).

    For an LLM generation, ``generation`` is the explain layer's input (opaque here: the monitor never reads
    it), ``text`` is its prompt's text (what drift counts, redaction judges and ``store_text`` keeps) and
    ``key_words`` the segment names and message roles its lens may use as keys (counted as vocabulary, so
    a segment name seen in enough requests is not reported as ``<rare>``).
    """

    request_id: str
    model: str
    version: str
    label: str
    confidence: float | None = None
    text: str | None = None
    fields: dict | None = None
    trace_id: str | None = None
    generation: object | None = None
    key_words: tuple[str, ...] = ()

    def tokens(self) -> list[str] | None:
        """The text's lower-cased whitespace tokens and any ``key_words`` (what drift counts), or ``None``
        for fields."""
        if self.text is None:
            return None
        return self.text.lower().split() + list(self.key_words)


class Explained(Protocol):
    """What the monitor folds from one explanation (the explain layer's ``ExplainResult`` is one).

    ``interactions`` speaks of feature indices ``0..n-1``; ``keys[i]`` is feature ``i``'s monitor key.
    """

    @property
    def interactions(self) -> Interactions:
        """The sparse Fourier coefficients of the explanation."""
        ...

    @property
    def keys(self) -> list[str]:
        """One monitor key per feature (``len(keys) == interactions.n_features``)."""
        ...


Explainer = Callable[[Observation], Explained]


@dataclass
class WindowResult:
    """A closed window and what came of it: its store id (``None`` without a store or when the write failed),
    its shift report (``None`` while there is no baseline or the window was too small) and the alarm.
    """

    window: ClosedWindow
    window_id: int | None
    report: ShiftReport | None
    alarm: bool


