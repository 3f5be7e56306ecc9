"""Exact transforms over all ``2^n`` masks, for small ``n`` (≤ 16).

These are the test oracles for the sparse algorithms and conversions, and a practical exact path when a
budget covers every mask. Coalitions are integers: bit ``i`` set means feature ``i`` is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import comb, factorial

import numpy as np

from .fourier import Terms

MAX_BRUTE_FORCE_FEATURES = 16


def _check_n(n: int) -> None:
    if not 0 <= n <= MAX_BRUTE_FORCE_FEATURES:
        raise ValueError(f"brute force needs 0 <= n <= {MAX_BRUTE_FORCE_FEATURES}, got n={n}")


def all_masks(n: int) -> np.ndarray:
    """All ``2^n`` masks as a (2^n, n) bool array; row ``c`` is coalition ``c`` (bit i = feature i kept)."""
    _check_n(n)
    codes = np.arange(2**n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def mask_codes(masks: np.ndarray) -> np.ndarray:
    """Coalition codes of ``(k, n)`` bool masks, ``(k,)`` int64 (bit ``i`` set = feature ``i`` kept).

    The inverse of :func:`all_masks`: ``mask_codes(all_masks(n))`` is ``arange(2^n)``.
    """
    masks = np.asarray(masks, dtype=bool)
    return masks.astype(np.int64) @ (1 << np.arange(masks.shape[1], dtype=np.int64))


def table(value_fn: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """Evaluate ``value_fn`` on every coalition (index = coalition code)."""
    return np.asarray(value_fn(all_masks(n)), dtype=np.float64)


def _bits(code: int) -> tuple[int, ...]:
    return tuple(i for i in range(code.bit_length()) if code >> i & 1)


def fourier_transform(values: np.ndarray, tol: float = 1e-12) -> Terms:
    """``F(S) = 2^-n sum_x f(x) prod_{i in S} z_i`` via an in-place fast Walsh–Hadamard transform."""
    f = np.array(values, dtype=np.float64)
    n = int(np.log2(f.size))
    _check_n(n)
    # Coalition bit = kept = z +1; WHT with (-1)^{popcount(code & S)} counts kept features, so flip:
    # prod z_i over S = (-1)^{|S| - |S ∩ kept|}.
    h = 1
    while h < f.size:
        f = f.reshape(-1, 2, h)
        f = np.stack((f[:, 0] + f[:, 1], f[:, 0] - f[:, 1]), axis=1)
        f = f.reshape(-1)
        h *= 2
    f /= f.size
    out: Terms = {}
    for code in np.nonzero(np.abs(f) > tol)[0].tolist():
        key = _bits(code)
        out[key] = float(f[code]) * (-1) ** len(key)
    return out


def mobius_transform(values: np.ndarray, tol: float = 1e-12) -> Terms:
    """``a(T) = sum_{L ⊆ T} (-1)^(|T|-|L|) v(L)`` via the fast subset (Möbius) transform."""
    a = np.array(values, dtype=np.float64)
    n = int(np.log2(a.size))
    _check_n(n)
    for i in range(n):
        a = a.reshape(-1, 2, 2**i)
        a[:, 1] -= a[:, 0]
        a = a.reshape(-1)
    return {_bits(code): float(a[code]) for code in np.nonzero(np.abs(a) > tol)[0].tolist()}


def _derivative(values: np.ndarray, subset: tuple[int, ...], coalition: int) -> float:
    """Discrete derivative ``Δ_S v(T) = sum_{L ⊆ S} (-1)^(|S|-|L|) v(T ∪ L)``."""
    total = 0.0
    s = len(subset)
    for r in range(s + 1):
        for chosen in combinations(subset, r):
            code = coalition
            for i in chosen:
                code |= 1 << i
            total += (-1) ** (s - r) * values[code]
    return total


def _complement_coalitions(n: int, subset: tuple[int, ...]) -> list[int]:
    members = 0
    for i in subset:
        members |= 1 << i
    return [c for c in range(2**n) if c & members == 0]


def shapley_values(values: np.ndarray) -> np.ndarray:
    """Shapley value of every feature by its definition, ``(n,)``, from a ``2^n`` value table.

    ``values[c]`` is the value of coalition code ``c`` (as :func:`table` builds it). Sums over all
    ``n 2^(n-1)`` marginal contributions: a slow oracle for the tests, not a production path.
    """
    n = int(np.log2(len(values)))
    out = np.zeros(n)
    for i in range(n):
        for c in _complement_coalitions(n, (i,)):
            t = bin(c).count("1")
            out[i] += factorial(t) * factorial(n - t - 1) / factorial(n) * (values[c | 1 << i] - values[c])
    return out


def banzhaf_values(values: np.ndarray) -> np.ndarray:
    """Banzhaf value of every feature by its definition, ``(n,)``: the mean marginal contribution over the
    ``2^(n-1)`` coalitions without it, from a ``2^n`` value table indexed by coalition code.
    """
    n = int(np.log2(len(values)))
    out = np.zeros(n)
    for i in range(n):
        for c in _complement_coalitions(n, (i,)):
            out[i] += (values[c | 1 << i] - values[c]) / 2 ** (n - 1)
    return out


def interaction_index(values: np.ndarray, index: str, order: int) -> Terms:
    """Definition-level SII / BII / STII / FSII for all subsets of size ``0..order`` (the slow oracle)."""
    n = int(np.log2(len(values)))
    _check_n(n)
    index = index.upper()
    if index == "FSII":
        return _faith_shapley(values, n, order)
    out: Terms = {}
    for s in range(order + 1):
        for subset in combinations(range(n), s):
            total = 0.0
            if index == "STII" and s < order:
                total = _derivative(values, subset, 0)
            else:
                for c in _complement_coalitions(n, subset):
                    t = bin(c).count("1")
                    if index == "SII":
                        w = factorial(n - t - s) * factorial(t) / factorial(n - s + 1)
                    elif index == "BII":
                        w = 2.0 ** -(n - s)
                    elif index == "STII":
                        w = order / n / comb(n - 1, t)
                    else:
                        raise ValueError(f"unknown index {index!r}")
                    total += w * _derivative(values, subset, c)
            out[subset] = total
    return out


def _faith_shapley(values: np.ndarray, n: int, order: int) -> Terms:
    """Weighted least squares under the Shapley kernel with ∅ and N as hard constraints."""
    subsets = [s for k in range(order + 1) for s in combinations(range(n), k)]
    coalitions = np.arange(2**n)
    sizes = np.array([bin(c).count("1") for c in coalitions])
    x = np.zeros((2**n, len(subsets)))
    for col, subset in enumerate(subsets):
        members = sum(1 << i for i in subset)
        x[:, col] = (coalitions & members) == members
    weights = np.empty(2**n)
    inner = (sizes > 0) & (sizes < n)
    weights[inner] = (n - 1) / (
        np.array([comb(n, int(s)) for s in sizes[inner]]) * sizes[inner] * (n - sizes[inner])
    )
    weights[~inner] = 1e9
    root = np.sqrt(weights)
    solution, *_ = np.linalg.lstsq(x * root[:, None], values * root, rcond=None)
    return {s: float(v) for s, v in zip(subsets, solution, strict=True)}
