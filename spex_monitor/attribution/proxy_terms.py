"""The proxy's own Fourier terms as an explanation: the boosted trees' exact transform, truncated.

ProxySPEX (arXiv 2505.17495) reads the interactions off a gradient-boosted proxy of the value function. Our
default path then re-selects a sparse support and refits it by least squares, which is exact on sparse planted
functions. On dense, noisy value functions (a language model's completion log-probability over ~50 word
features) that refit on a few hundred masks generalises worse than the proxy itself: measured on the embedded
tiny LM, held-out R² 0.21 for the refit against 0.63 for the proxy's top terms at 500 masks (RESULTS.md,
"LLM generations"). :func:`proxy_terms` builds the second candidate — a few booster shapes, each truncated
to ``max_order`` and to its ``K`` strongest terms, chosen on the validation split — and
:class:`~.proxyspex.ProxySPEX` keeps whichever of the two validates better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fourier as _fourier
from .metrics import r2_score
from .trees import ensemble_fourier

# Booster shapes tried (on top of the default one): deeper trees with a smaller step capture the AND-like
# interactions of language-model value functions (depth 5 beat depth 3 by 0.1-0.2 R² at 500-1000 masks).
SHAPES: tuple[dict[str, Any], ...] = (
    {},
    {"max_depth": 5, "num_leaves": 32, "learning_rate": 0.05},
)
TERM_COUNTS = (5, 10, 20, 50, 100, 200, 400, 800)


def with_shape(
    params: dict[str, Any], shape: dict[str, Any] | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Booster ``params`` with a candidate ``shape`` applied, then the caller's ``overrides`` again (an
    operator's ``lgbm_params`` wins over a shape)."""
    return {**params, **(shape or {}), **(overrides or {})}


@dataclass(frozen=True)
class ProxyTerms:
    """The chosen truncation: Fourier ``terms`` (with the intercept ``()``), their validation R², the booster
    shape (index into :data:`SHAPES`) and the number of non-intercept terms kept."""

    terms: dict[tuple[int, ...], float]
    validation_r2: float
    shape: int
    kept: int


Term = tuple[tuple[int, ...], float]


def _ranked(model_text: str, n_features: int, max_order: int) -> tuple[float, list[Term]]:
    """The ensemble's intercept and its other terms up to ``max_order``, strongest first."""
    grouped = ensemble_fourier(model_text, n_features, max_order)
    intercept = 0.0
    items: list[Term] = []
    for order, (idx, coef) in grouped.items():
        if order == 0:
            intercept = float(coef.sum())
            continue
        items.extend(zip(map(tuple, idx.tolist()), (float(c) for c in coef), strict=True))
    items.sort(key=lambda kc: -abs(kc[1]))
    return intercept, items


def _truncate(intercept: float, items: list[Term], k: int) -> dict[tuple[int, ...], float]:
    terms = {(): intercept}
    terms.update(items[:k])
    return terms


def proxy_terms(
    fit: Callable[[np.ndarray, np.ndarray, dict[str, Any]], tuple[Any, int]],
    refit: Callable[[np.ndarray, np.ndarray, int, dict[str, Any]], Any],
    fit_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray],
    train_xy: tuple[np.ndarray, np.ndarray],
    n_features: int,
    max_order: int,
    default: tuple[Any, Any] | None = None,
) -> ProxyTerms:
    """Choose a booster shape and a term count on the validation split, then refit that shape on all
    training masks and keep that many of its strongest terms.

    Args:
        fit: ``fit(x, y, shape) -> (booster, best_iteration)``, early-stopped on the validation split.
        refit: ``refit(x, y, iterations, shape) -> booster`` without early stopping.
        fit_xy, val_xy, train_xy: ``(masks (k, n) bool, values (k,))`` of the fit split, the validation split,
            and both together.
        n_features: ``n``; max_order: highest order kept.
        default: ``(fit booster, refit booster)`` of the default shape when the caller has them already
            (ProxySPEX's first round fits exactly these); they are not fitted again.

    Returns:
        The chosen :class:`ProxyTerms`; its ``validation_r2`` is of the fit-split booster's truncation.
    """
    val_x, val_y = val_xy
    best: tuple[float, int, int, int] | None = None  # (r2, shape, k, iterations)
    for shape_index, shape in enumerate(SHAPES):
        if shape_index == 0 and default is not None and default[0] is not None:
            booster = default[0]
            iterations = booster.best_iteration or booster.num_trees()
        else:
            booster, iterations = fit(fit_xy[0], fit_xy[1], shape)
        intercept, items = _ranked(booster.model_to_string(), n_features, max_order)
        for k in (*[c for c in TERM_COUNTS if c < len(items)], len(items)):
            terms = _truncate(intercept, items, k)
            score = r2_score(val_y, _fourier.evaluate(_fourier.group_by_order(terms), val_x))
            # a shorter truncation or the default shape wins ties within 0.005 R²
            if best is None or score > best[0] + 0.005:
                best = (score, shape_index, k, iterations)
    assert best is not None
    score, shape_index, k, iterations = best
    if shape_index == 0 and default is not None and default[1] is not None:
        booster = default[1]
    else:
        booster = refit(train_xy[0], train_xy[1], iterations, SHAPES[shape_index])
    intercept, items = _ranked(booster.model_to_string(), n_features, max_order)
    return ProxyTerms(_truncate(intercept, items, k), float(score), shape_index, min(k, len(items)))
