"""Faithfulness metrics for surrogate explanations."""

from __future__ import annotations

import numpy as np

# Held-out values whose spread is below this share of their magnitude are constant up to rounding.
_RELATIVE_TOLERANCE = 1e-9


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``: always finite (or ``nan`` for < 2 points).

    Held-out values without variance (a constant value function) leave R² undefined; like scikit-learn's
    ``r2_score(force_finite=True)`` it is then 1.0 when the prediction is exact and 0.0 otherwise. "Exact"
    and "constant" are judged up to rounding: within ``1e-9`` of the values' magnitude, so a constant 3.0
    predicted as 3.0000000000000004 is explained exactly. A fit worse than the mean can still score
    below 0, but never ``-inf``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.size < 2:
        return float("nan")
    n = y_true.size
    mean = float(y_true.mean())
    tolerance = n * (_RELATIVE_TOLERANCE * max(1.0, abs(mean))) ** 2
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - mean) ** 2))
    if not np.isfinite(ss_res):
        return float("nan") if not np.isfinite(y_pred).all() else 0.0
    if ss_tot <= tolerance:
        return 1.0 if ss_res <= tolerance else 0.0
    return 1.0 - ss_res / ss_tot
