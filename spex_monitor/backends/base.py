"""What every backend reports, so the monitor's budget can account model time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchTiming:
    """One forward batch: rows sent, padded tokens computed, wall seconds, and where it ran."""

    rows: int
    tokens: int
    seconds: float
    device: str
