"""Mask designs (True = feature kept)."""

from __future__ import annotations

import numpy as np

_ENUMERABLE_BITS = 20


def uniform_masks(n_features: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct masks, each feature kept with probability 1/2.

    Drawn without replacement when ``2^n`` is small enough to enumerate (repeats would waste budget);
    otherwise i.i.d. rows, where a repeat has probability below ``count^2 / 2^(n+1)``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if n_features <= _ENUMERABLE_BITS:
        total = 2**n_features
        if count > total:
            raise ValueError(f"cannot draw {count} distinct masks over {n_features} features ({total} exist)")
        codes = rng.choice(total, size=count, replace=False)
        return ((codes[:, None] >> np.arange(n_features)) & 1).astype(bool)
    return rng.random((count, n_features)) < 0.5


def all_masks(n_features: int) -> np.ndarray:
    """Every mask; row ``c`` keeps the features whose bit is set in ``c``."""
    codes = np.arange(2**n_features, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_features)) & 1).astype(bool)
