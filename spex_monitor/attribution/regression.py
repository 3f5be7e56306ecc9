"""Least-squares refits and greedy support selection on measured masks.

Fourier characters are orthogonal under uniformly random masks, so ``X^T X ≈ N I`` and a tiny ridge term
only guards against accidental collinearity. Support is chosen by orthogonal matching pursuit, stopped on a
validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular

from .metrics import r2_score

DEFAULT_RIDGE = 1e-6


def _solve(gram: np.ndarray, rhs: np.ndarray, ridge: float, free: np.ndarray | None = None) -> np.ndarray:
    k = gram.shape[0]
    scale = max(float(np.trace(gram)) / max(k, 1), 1.0)
    penalty = np.full(k, ridge * scale)
    if free is not None:
        penalty[free] = 0.0
    reg = gram + np.diag(penalty)
    try:
        return cho_solve(cho_factor(reg, check_finite=False), rhs, check_finite=False)
    except LinAlgError:
        return np.linalg.lstsq(reg, rhs, rcond=None)[0]


def _constant_columns(x: np.ndarray) -> np.ndarray:
    """Indices of non-zero columns whose entries are all equal: the intercept (the empty term's column)."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=int)
    first = x[:1]
    return np.nonzero(np.all(x == first, axis=0) & (first[0] != 0))[0]


def fit_ridge(x: np.ndarray, y: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Ridge-regularised least squares ``argmin |Xw - y|^2 + ridge * mean(diag(X^T X)) |w_S|^2``.

    ``S`` is every column except constant ones: the intercept is never penalised. Shrinking it would make
    the fit depend on a constant offset of the value function (a constant 3.0 would be "explained" as
    2.999997, and ``20 + small signal`` would lose its signal's R² to the shrunk offset).
    """
    return _solve(x.T @ x, x.T @ y, ridge, _constant_columns(x))


def refit_with_holdout(
    x_train: np.ndarray, y_train: np.ndarray, x_hold: np.ndarray, y_hold: np.ndarray
) -> tuple[np.ndarray, float]:
    """Fit on training rows, score R² on held-out rows, then refit on both.

    The returned R² is the honest faithfulness figure (those rows never informed the fit it scores);
    the returned coefficients use every measured mask, so they are at least as good as what was scored.
    """
    coef = fit_ridge(x_train, y_train)
    if len(y_hold) < 2:
        return coef, float("nan")
    faithfulness = r2_score(y_hold, x_hold @ coef)
    coef = fit_ridge(np.concatenate([x_train, x_hold]), np.concatenate([y_train, y_hold]))
    return coef, faithfulness


@dataclass(frozen=True)
class GreedySelection:
    """Columns chosen by orthogonal matching pursuit, in selection order, and the validation score."""

    columns: list[int]
    validation_r2: float
    path_r2: list[float]


def omp_select(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    max_steps: int,
    patience: float = 0.25,
) -> GreedySelection:
    """Greedy support selection (orthogonal matching pursuit) stopped on a validation split.

    Columns are standardised and the intercept handled by centring on the fit split. The active set's
    Cholesky factor grows one row per step, so a step costs ``O(K s)``; the walk stops once validation R²
    has not improved for ``max(10, patience * best_step)`` steps. The kept prefix is the shortest whose
    validation error is within 2 % of the best: shorter explanations that generalise as well.
    """
    mean_x = x_fit.mean(axis=0)
    mean_y = float(y_fit.mean())
    xc = x_fit - mean_x
    norms = np.linalg.norm(xc, axis=0)
    usable = np.nonzero(norms > 1e-9 * max(1.0, float(norms.max(initial=0.0))))[0]
    baseline = r2_score(y_val, np.full(len(y_val), mean_y))
    if usable.size == 0:
        return GreedySelection([], baseline, [])
    xs = xc[:, usable] / norms[usable]
    xv = (x_val[:, usable] - mean_x[usable]) / norms[usable]
    yc = y_fit - mean_y
    yv = y_val - mean_y
    gram = xs.T @ xs
    xy = xs.T @ yc
    steps = int(min(max_steps, usable.size, max(1, x_fit.shape[0] - 2)))
    chol = np.zeros((steps, steps))
    active: list[int] = []
    weights = np.zeros(0)
    ss_val = float(np.sum((y_val - y_val.mean()) ** 2)) or 1.0
    path_r2: list[float] = []
    best_step, best_r2 = -1, baseline
    correlation = xy.copy()
    for step in range(steps):
        scores = np.abs(correlation)
        if active:
            scores[active] = -1.0
        j = int(np.argmax(scores))
        if scores[j] <= 1e-12:
            break
        if step:
            v = solve_triangular(chol[:step, :step], gram[active, j], lower=True, check_finite=False)
            diag = gram[j, j] - float(v @ v)
            if diag <= 1e-10:  # (nearly) collinear with the active set: skip this column for good
                correlation[j] = 0.0
                continue
            chol[step, :step] = v
            chol[step, step] = np.sqrt(diag)
        else:
            chol[0, 0] = np.sqrt(gram[j, j])
        active.append(j)
        k = len(active)
        z = solve_triangular(chol[:k, :k], xy[active], lower=True, check_finite=False)
        weights = solve_triangular(chol[:k, :k].T, z, lower=False, check_finite=False)
        correlation = xy - gram[:, active] @ weights
        r2 = 1.0 - float(np.sum((yv - xv[:, active] @ weights) ** 2)) / ss_val
        path_r2.append(r2)
        if r2 > best_r2:
            best_r2, best_step = r2, k - 1
        if k - 1 - best_step > max(10, patience * max(best_step, 0)):
            break
    if best_step < 0:
        return GreedySelection([], baseline, path_r2)
    best_err = 1.0 - best_r2
    chosen = best_step
    for s, r2 in enumerate(path_r2[: best_step + 1]):
        if 1.0 - r2 <= best_err * 1.02 + 1e-12:
            chosen = s
            break
    return GreedySelection([int(usable[i]) for i in active[: chosen + 1]], path_r2[chosen], path_r2)
