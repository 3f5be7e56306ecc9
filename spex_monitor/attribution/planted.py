"""Planted sparse functions: ground truth for tests, benchmarks and the demo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fourier as _fourier


@dataclass
class PlantedFunction:
    """``f(x) = sum_S F(S) prod_{i in S} z_i`` (+ optional Gaussian noise), a batched value function."""

    n_features: int
    fourier: dict[tuple[int, ...], float]
    noise_std: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self._grouped = _fourier.group_by_order(self.fourier)
        self._rng = np.random.default_rng(self.seed + 1_000_003)
        self.calls = 0
        self.rows = 0

    def exact(self, masks: np.ndarray) -> np.ndarray:
        """Noise-free ``f`` on ``(k, n_features)`` bool masks, ``(k,)`` float64; not counted in
        ``calls``/``rows``."""
        return _fourier.evaluate(self._grouped, np.asarray(masks, dtype=bool))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows += len(masks)
        values = self.exact(masks)
        if self.noise_std > 0:
            values = values + self._rng.normal(0.0, self.noise_std, size=values.shape)
        return values


def planted_function(
    n_features: int,
    n_terms: int,
    max_order: int,
    seed: int = 0,
    noise_std: float = 0.0,
    min_order: int = 1,
    magnitude: tuple[float, float] = (0.5, 1.5),
    intercept: float = 0.0,
    basis: str = "fourier",
) -> PlantedFunction:
    """A random ``n_terms``-sparse function with term orders uniform in ``[min_order, max_order]``.

    Coefficients have random signs and magnitudes uniform in ``magnitude`` so that every term is
    recoverable (no vanishing terms).

    ``basis="fourier"`` plants parity terms ``prod z_i`` (sparse in the Fourier basis: the hardest case,
    with no lower-order footprint). ``basis="mobius"`` plants AND terms ``prod x_i`` (sparse in the Möbius
    basis, "hierarchical": every interaction also moves its sub-coalitions), which is how ablated
    language models behave and what ProxySPEX's tree proxy is designed for.
    """
    if basis not in ("fourier", "mobius"):
        raise ValueError(f"basis must be 'fourier' or 'mobius', got {basis!r}")
    if max_order > n_features:
        raise ValueError(f"max_order={max_order} exceeds n_features={n_features}")
    rng = np.random.default_rng(seed)
    terms: dict[tuple[int, ...], float] = {}
    while len(terms) < n_terms:
        order = int(rng.integers(min_order, max_order + 1))
        key = tuple(sorted(rng.choice(n_features, size=order, replace=False).tolist()))
        if key in terms:
            continue
        terms[key] = float(rng.choice([-1.0, 1.0]) * rng.uniform(*magnitude))
    if intercept:
        terms[()] = terms.get((), 0.0) + float(intercept)
    if basis == "mobius":
        terms = _fourier.mobius_to_fourier(terms, n_features)
    return PlantedFunction(n_features, terms, noise_std=noise_std, seed=seed)
