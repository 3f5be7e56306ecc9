"""The result type every engine returns: a sparse Fourier expansion plus its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import fourier as _fourier

INDICES = ("SII", "BII", "FSII", "STII")


@dataclass(frozen=True)
class Interactions:
    """Sparse interactions explaining a value function over ``n_features`` binary features.

    Mask convention: ``True`` = feature kept, ``False`` = ablated.
    Fourier convention: ``f(x) = sum_S fourier[S] * prod_{i in S} z_i`` with ``z_i = +1`` when feature ``i``
    is kept and ``-1`` when it is masked; ``fourier[()]`` is the mean of ``f`` over uniformly random masks.

    Attributes:
        fourier: ``{sorted feature tuple: coefficient}``, sparse.
        n_features: number of features ``n``.
        faithfulness: R² of :meth:`predict` on held-out masks that the fit never saw
            (``nan`` when the budget left none to hold out).
        inferences_used: exact number of ``value_fn`` rows evaluated (never above the budget).
        method: name of the engine that produced it.
        details: engine-specific diagnostics (timings, chosen parameters).
    """

    fourier: dict[tuple[int, ...], float]
    n_features: int
    faithfulness: float = float("nan")
    inferences_used: int = 0
    method: str = ""
    details: dict[str, object] = field(default_factory=dict, compare=False)

    @cached_property
    def _grouped(self) -> _fourier.Grouped:
        return _fourier.group_by_order(self.fourier)

    @cached_property
    def _mobius(self) -> dict[tuple[int, ...], float]:
        return _fourier.fourier_to_mobius(self.fourier, self.n_features)

    @property
    def max_order(self) -> int:
        """Highest order ``|S|`` among the Fourier terms (0 when only the intercept is left)."""
        return _fourier.max_order_of(self.fourier)

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """Evaluate the sparse surrogate on ``(k, n)`` boolean masks (True = kept)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 1:
            masks = masks[None, :]
        if masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have {self.n_features} columns, got shape {masks.shape}")
        return _fourier.evaluate(self._grouped, masks)

    def to_mobius(self) -> dict[tuple[int, ...], float]:
        """Möbius coefficients (Harsanyi dividends): ``f(x) = sum_T a(T) prod_{i in T} x_i``."""
        return dict(self._mobius)

    def shapley_values(self) -> np.ndarray:
        """Shapley value of every feature, shape ``(n_features,)``; sums to ``f(all kept) - f(none kept)``."""
        return _fourier.mobius_to_values(self._mobius, self.n_features, "shapley")

    def banzhaf_values(self) -> np.ndarray:
        """Banzhaf value of every feature (= ``2 * fourier[(i,)]``)."""
        return _fourier.mobius_to_values(self._mobius, self.n_features, "banzhaf")

    def interaction_index(self, index: str = "FSII", order: int = 2) -> dict[tuple[int, ...], float]:
        """Interaction index ``"SII" | "BII" | "FSII" | "STII"`` for every subset of size ``0..order``.

        Only non-zero entries are returned (the representation is sparse).
        """
        return _fourier.mobius_to_index(self._mobius, self.n_features, index, order)

    def top(self, k: int = 10) -> list[tuple[tuple[int, ...], float]]:
        """The ``k`` strongest Fourier terms of order ≥ 1, by ``|coefficient|`` (ties by feature tuple)."""
        terms = [(key, value) for key, value in self.fourier.items() if key]
        terms.sort(key=lambda kv: (-abs(kv[1]), kv[0]))
        return terms[:k]

    def value_at(self, kept: tuple[int, ...] | None = None) -> float:
        """Surrogate value with exactly the features in ``kept`` present (``None`` = all kept)."""
        mask = np.zeros(self.n_features, dtype=bool)
        if kept is None:
            mask[:] = True
        else:
            mask[list(kept)] = True
        return float(self.predict(mask[None, :])[0])
