"""Least-squares refits of a sparse Fourier support on measured masks.

Fourier characters are orthogonal under uniformly random masks, so ``X^T X ≈ N I`` and a tiny ridge term
only guards against accidental collinearity. Support size is chosen on a validation split by solving every
candidate prefix from one Gram matrix (one ``O(N K^2)`` product, then ``O(k^3)`` per prefix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from .metrics import r2_score

DEFAULT_RIDGE = 1e-6


def _solve(gram: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    k = gram.shape[0]
    scale = max(float(np.trace(gram)) / max(k, 1), 1.0)
    reg = gram + ridge * scale * np.eye(k)
    try:
        return cho_solve(cho_factor(reg, check_finite=False), rhs, check_finite=False)
    except LinAlgError:
        return np.linalg.lstsq(reg, rhs, rcond=None)[0]


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Ridge-regularised least squares ``argmin |Xw - y|^2 + ridge * mean(diag(X^T X)) |w|^2``."""
    return _solve(x.T @ x, x.T @ y, ridge)


@dataclass(frozen=True)
class PrefixSelection:
    size: int
    validation_r2: dict[int, float]


def prefix_grid(max_size: int, min_size: int = 1, growth: float = 1.35) -> list[int]:
    """Geometric grid of support sizes from ``min_size`` to ``max_size`` (inclusive)."""
    sizes = {max_size}
    size = float(max(min_size, 1))
    while size < max_size:
        sizes.add(int(size))
        size = max(size * growth, size + 1)
    return sorted(s for s in sizes if min_size <= s <= max_size)


def select_prefix(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    sizes: list[int],
    ridge: float = DEFAULT_RIDGE,
) -> PrefixSelection:
    """Pick how many leading columns to keep by validation R², preferring the smallest size within noise."""
    gram = x_fit.T @ x_fit
    rhs = x_fit.T @ y_fit
    scores: dict[int, float] = {}
    for k in sizes:
        w = _solve(gram[:k, :k], rhs[:k], ridge)
        scores[k] = r2_score(y_val, x_val[:, :k] @ w)
    best = max(scores, key=lambda k: scores[k])
    # One-standard-error style rule: the smallest support whose validation error is within 2 % of the best
    # (in unexplained variance) generalises as well and keeps explanations short.
    best_err = 1.0 - scores[best]
    for k in sorted(scores):
        if 1.0 - scores[k] <= best_err * 1.02 + 1e-12:
            return PrefixSelection(k, scores)
    return PrefixSelection(best, scores)
