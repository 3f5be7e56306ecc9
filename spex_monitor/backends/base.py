"""What every backend reports, so the monitor's budget can account model time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchTiming:
    """One forward batch: rows sent, padded tokens computed, wall seconds, and where it ran."""

    rows: int
    tokens: int
    seconds: float
    device: str


def token_budget_batches(lengths: np.ndarray, token_budget: int, max_rows: int) -> list[np.ndarray]:
    """Row index groups, longest first, each within ``token_budget`` padded tokens and ``max_rows`` rows.

    Sorting by length keeps padding small; a row longer than the budget gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    groups, current, width = [], [], 0
    for row in order.tolist():
        new_width = max(width, int(lengths[row]))
        if current and (new_width * (len(current) + 1) > token_budget or len(current) >= max_rows):
            groups.append(np.asarray(current))
            current, new_width = [], int(lengths[row])
        current.append(row)
        width = new_width
    if current:
        groups.append(np.asarray(current))
    return groups
