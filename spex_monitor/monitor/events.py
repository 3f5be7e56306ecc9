"""What the monitor reports while it works: one frozen dataclass per kind of event.

The monitor calls its ``on_event`` hook with these (never with string-keyed dicts), so a consumer — the
sidecar's metrics recorder — dispatches on the type and reads typed fields. A hook must be quick and must
not raise (a raising hook is logged and ignored). Names never carry request text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RequestObserved:
    """A request reached :meth:`~.worker.Monitor.observe` (before sampling)."""

    model: str
    version: str


@dataclass(frozen=True)
class RequestSampled:
    """An observed request became an explanation candidate."""

    model: str
    version: str


@dataclass(frozen=True)
class RequestDropped:
    """``count`` requests or candidates were dropped; ``reason`` is a small enum (``budget``,
    ``ingest_full``, ``reservoir_full``, ``reservoir_replaced``, ``shutdown``, ``internal_error``...).
    ``model`` is ``""`` when the drop concerns no single model (shutdown)."""

    model: str
    reason: str
    count: float = 1.0


@dataclass(frozen=True)
class StoreWriteFailed:
    """A store write failed (disk full, I/O error); ``error`` is ``"<ExceptionType>: <message>"``."""

    error: str


@dataclass(frozen=True)
class ExplanationFinished:
    """One background explanation ended.

    Attributes:
        status: ``"ok"`` or ``"failed"``.
        seconds: wall time of the explanation (s).
        faithfulness: held-out R² of the explanation (``None`` when it failed).
        inferences: model inferences it spent (0 when it failed).
        request_id, trace_id: the explained request's ids (``trace_id`` for metric exemplars).
    """

    model: str
    version: str
    status: Literal["ok", "failed"]
    seconds: float
    faithfulness: float | None
    inferences: int
    request_id: str
    trace_id: str | None = None


MonitorEvent = RequestObserved | RequestSampled | RequestDropped | StoreWriteFailed | ExplanationFinished
EventHook = Callable[[MonitorEvent], None]
