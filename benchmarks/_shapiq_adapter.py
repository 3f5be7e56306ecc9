"""Run shapiq 1.4.1's ProxySPEX / SPEX and read back their sparse Fourier estimate in our convention.

shapiq reports interaction indices; to score it as a surrogate (held-out R²) we capture the Fourier dict it
computes internally (after its ridge refinement for ProxySPEX, after its sparse transform for SPEX).
Its characters are ``(-1)^{<x, k>}`` with ``x`` = kept, ours ``prod z_i`` with ``z = +1`` kept, so a
coefficient of order ``|S|`` changes sign by ``(-1)^{|S|}``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np


def run_shapiq(
    kind: str,
    value_fn: Callable[[np.ndarray], np.ndarray],
    n: int,
    budget: int,
    seed: int,
    max_order: int = 4,
) -> dict:
    warnings.filterwarnings("ignore")
    import shapiq.approximator.sparse.base as base
    from shapiq.approximator.sparse import SPEX, ProxySPEX

    captured: dict[str, dict] = {}
    original_refine = base.Sparse._refine
    original_transform = base.sparse_fourier_transform

    def refine(self, *args, **kwargs):
        out = original_refine(self, *args, **kwargs)
        captured["fourier"] = out
        return out

    def transform(*args, **kwargs):
        out = original_transform(*args, **kwargs)
        captured["fourier"] = {tuple(np.nonzero(k)[0].tolist()): float(np.real(v)) for k, v in out.items()}
        return out

    base.Sparse._refine = refine
    base.sparse_fourier_transform = transform
    game_seconds = [0.0]
    rows = [0]

    def game(coalitions: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        values = value_fn(np.asarray(coalitions, dtype=bool))
        game_seconds[0] += time.perf_counter() - began
        rows[0] += len(coalitions)
        return values

    try:
        approximator = (ProxySPEX if kind == "proxyspex" else SPEX)(
            n=n, max_order=min(2, n), random_state=seed
        )
        began = time.perf_counter()
        approximator.approximate(budget, game)
        total = time.perf_counter() - began
    finally:
        base.Sparse._refine = original_refine
        base.sparse_fourier_transform = original_transform
    fourier = {k: v * (-1) ** len(k) for k, v in captured.get("fourier", {}).items()}
    return {
        "fourier": fourier,
        "inferences": rows[0],
        "seconds_total": total,
        "seconds_overhead": total - game_seconds[0],
    }
