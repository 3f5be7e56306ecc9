"""The latest shift report of each (model, version), kept for ``/api/top-interactions``.

The ticker writes it when a window closes; HTTP threads read it. Keys in it are already public (rare words
replaced by ``<rare>``) when they arrive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MovedInteraction:
    """One of a report's strongest moves: a key tuple's attribution mass in baseline and window."""

    keys: tuple[str, ...]
    baseline: float
    window: float
    delta: float
    exemplars: list[str]


@dataclass(frozen=True)
class LatestReport:
    """What ``/api/top-interactions`` shows of one closed window's report."""

    model: str
    version: str
    window_id: int | None
    score: float
    p_value: float
    alarm: bool
    top: list[MovedInteraction]


class ReportBoard:
    """Thread-safe latest report per (model, version)."""

    def __init__(self) -> None:
        self._reports: dict[tuple[str, str], LatestReport] = {}
        self._lock = threading.Lock()

    def post(self, report: LatestReport) -> None:
        """Replace the (model, version)'s latest report."""
        with self._lock:
            self._reports[(report.model, report.version)] = report

    def latest(self) -> list[LatestReport]:
        """Every (model, version)'s latest report, in the order they first arrived."""
        with self._lock:
            return list(self._reports.values())

    def rows(self) -> list[dict[str, Any]]:
        """Rows of ``/api/top-interactions`` (JSON objects for Grafana tables): per latest report, its
        strongest moves with ``interaction`` as ``"a × b"`` and exemplar request ids joined by commas."""
        return [
            {
                "model": report.model,
                "version": report.version,
                "p_value": report.p_value,
                "alarm": report.alarm,
                "interaction": " × ".join(moved.keys),
                "baseline": moved.baseline,
                "window": moved.window,
                "delta": moved.delta,
                "exemplars": ", ".join(moved.exemplars),
            }
            for report in self.latest()
            for moved in report.top
        ]
