"""Sparse set functions over binary masks: evaluation and basis conversions.

Conventions used everywhere in :mod:`spex_monitor.attribution`:

* **Mask**: a boolean row ``x`` of length ``n``; ``x[i] is True`` means feature ``i`` is *kept*
  (present), ``False`` means it is ablated. A coalition ``T`` is the set of kept features.
* **Fourier basis** (±1 / Walsh–Hadamard): ``z_i = +1`` if feature ``i`` is kept and ``-1`` if it is
  masked, and ``f(x) = sum_S F(S) * prod_{i in S} z_i``. ``F(())`` is the mean of ``f`` over all masks;
  Banzhaf value of ``i`` equals ``2 * F((i,))``.
* **Möbius basis** (a.k.a. Harsanyi dividends): ``f(x) = sum_T a(T) * prod_{i in T} x_i``.

Because ``x_i = (1 + z_i) / 2``, every conversion here is a *projection onto subsets*: each term of order
``d`` spreads to its subsets of order ``j`` with a weight that depends only on ``(d, j)``. One vectorised
kernel (:func:`project_to_subsets`) does that for all conversions, grouped by order, without per-term
Python loops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import combinations
from math import comb

import numpy as np

Terms = dict[tuple[int, ...], float]
#: Terms grouped by order: order -> (indices (m, order) int64, coefficients (m,) float64).
Grouped = dict[int, tuple[np.ndarray, np.ndarray]]

_ROW_CHUNK_ELEMENTS = 1 << 23


def group_by_order(terms: Mapping[tuple[int, ...], float]) -> Grouped:
    """Split a term dict into per-order index/coefficient arrays (indices sorted within a row)."""
    buckets: dict[int, tuple[list[tuple[int, ...]], list[float]]] = {}
    for key, value in terms.items():
        keys, values = buckets.setdefault(len(key), ([], []))
        keys.append(tuple(sorted(key)))
        values.append(float(value))
    grouped: Grouped = {}
    for order, (keys, values) in buckets.items():
        idx = np.asarray(keys, dtype=np.int64).reshape(len(keys), order)
        grouped[order] = (idx, np.asarray(values, dtype=np.float64))
    return grouped


def _encode_rows(rows: np.ndarray, n: int) -> np.ndarray | None:
    """Pack sorted index rows into one int64 per row, or ``None`` if it could overflow."""
    order = rows.shape[1]
    base = max(n, 2)
    if order == 0:
        return np.zeros(rows.shape[0], dtype=np.int64)
    if order * np.log2(base) >= 62:
        return None
    weights = base ** np.arange(order - 1, -1, -1, dtype=np.int64)
    return rows @ weights


def aggregate(rows: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``values`` of identical index rows. ``rows`` is (m, order) with rows already sorted."""
    if rows.shape[0] == 0:
        return rows, values
    codes = _encode_rows(rows, n)
    if codes is None:
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    else:
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        uniq = rows[first]
    sums = np.bincount(inverse.ravel(), weights=values, minlength=uniq.shape[0])
    return uniq, sums


def project_to_subsets(
    grouped: Grouped,
    weight: Callable[[int, int], float],
    target_orders: Iterable[int],
    n: int,
    tol: float = 0.0,
) -> Terms:
    """``G(S) = sum_{T ⊇ S} weight(|T|, |S|) * c(T)`` for every ``S`` with ``|S|`` in ``target_orders``.

    ``grouped`` holds the input terms ``c``. Zero weights are skipped; results with ``|G| <= tol`` dropped.
    """
    out: Terms = {}
    for j in sorted(set(target_orders)):
        rows_parts: list[np.ndarray] = []
        value_parts: list[np.ndarray] = []
        for d, (idx, coef) in grouped.items():
            if d < j:
                continue
            w = weight(d, j)
            if w == 0.0:
                continue
            for cols in combinations(range(d), j):
                rows_parts.append(idx[:, list(cols)])
                value_parts.append(coef * w)
        if not rows_parts:
            continue
        rows, sums = aggregate(np.concatenate(rows_parts), np.concatenate(value_parts), n)
        keep = np.abs(sums) > tol
        for row, value in zip(rows[keep].tolist(), sums[keep].tolist(), strict=True):
            out[tuple(row)] = value
    return out


def max_order_of(terms: Mapping[tuple[int, ...], float]) -> int:
    """Largest ``|S|`` among the keys of ``terms`` (0 when empty or intercept-only)."""
    return max((len(k) for k in terms), default=0)


def fourier_to_mobius(fourier: Mapping[tuple[int, ...], float], n: int) -> Terms:
    """``a(T) = 2^|T| * sum_{S ⊇ T} (-1)^(|S|-|T|) F(S)`` (from ``z_i = 2 x_i - 1``)."""
    grouped = group_by_order(fourier)
    return project_to_subsets(
        grouped, lambda d, j: float(2**j * (-1) ** (d - j)), range(max_order_of(fourier) + 1), n
    )


def mobius_to_fourier(mobius: Mapping[tuple[int, ...], float], n: int) -> Terms:
    """``F(S) = sum_{T ⊇ S} 2^-|T| a(T)`` (from ``x_i = (1 + z_i) / 2``)."""
    grouped = group_by_order(mobius)
    return project_to_subsets(grouped, lambda d, j: 2.0**-d, range(max_order_of(mobius) + 1), n)


def mobius_to_values(mobius: Mapping[tuple[int, ...], float], n: int, kind: str) -> np.ndarray:
    """Per-feature Shapley (``a(T)/|T|``) or Banzhaf (``a(T)/2^(|T|-1)``) values from Möbius terms."""
    if kind == "shapley":
        weight: Callable[[int, int], float] = lambda d, j: 1.0 / d  # noqa: E731
    elif kind == "banzhaf":
        weight = lambda d, j: 2.0 ** (1 - d)  # noqa: E731
    else:
        raise ValueError(f"kind must be 'shapley' or 'banzhaf', got {kind!r}")
    grouped = {d: g for d, g in group_by_order(mobius).items() if d >= 1}
    values = np.zeros(n, dtype=np.float64)
    for key, value in project_to_subsets(grouped, weight, [1], n).items():
        values[key[0]] = value
    return values


def _fsii_weight(order: int) -> Callable[[int, int], float]:
    """Faith-Shapley weights (Tsai, Yeh & Ravikumar 2023, Thm. 19) as a projection weight."""

    def weight(d: int, j: int) -> float:
        w = 1.0 if d == j else 0.0
        if d > order and j > 0:
            w += (
                (-1) ** (order - j)
                * j
                / (order + j)
                * comb(order, j)
                * comb(d - 1, order)
                / comb(d + order - 1, order + j)
            )
        return w

    return weight


def mobius_to_index(mobius: Mapping[tuple[int, ...], float], n: int, index: str, order: int) -> Terms:
    """Interaction index of every subset of size ``0..order`` from Möbius terms (sparse).

    * ``SII``  (Grabisch 1999): ``sum_{T ⊇ S} a(T) / (|T| - |S| + 1)``
    * ``BII``  (Banzhaf interaction): ``sum_{T ⊇ S} a(T) / 2^(|T| - |S|)``
    * ``STII`` (Shapley–Taylor, Sundararajan et al. 2020): ``a(S)`` below ``order``;
      ``sum_{T ⊇ S} a(T) / C(|T|, order)`` at ``order``
    * ``FSII`` (Faith-Shap, Tsai et al. 2023): the best order-``order`` least-squares fit under the
      Shapley kernel.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    grouped = group_by_order(mobius)
    index_upper = index.upper()
    if index_upper == "SII":
        weight: Callable[[int, int], float] = lambda d, j: 1.0 / (d - j + 1)  # noqa: E731
    elif index_upper == "BII":
        weight = lambda d, j: 2.0 ** -(d - j)  # noqa: E731
    elif index_upper == "STII":

        def weight(d: int, j: int) -> float:
            if j < order:
                return 1.0 if d == j else 0.0
            return 1.0 / comb(d, order)

    elif index_upper == "FSII":
        weight = _fsii_weight(order)
    else:
        raise ValueError(f"index must be one of 'SII', 'BII', 'STII', 'FSII'; got {index!r}")
    return project_to_subsets(grouped, weight, range(order + 1), n, tol=1e-15)


def evaluate(grouped: Grouped, masks: np.ndarray) -> np.ndarray:
    """Evaluate a Fourier expansion on boolean masks (True = kept), chunked to bound memory."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 1:
        masks = masks[None, :]
    k = masks.shape[0]
    out = np.zeros(k, dtype=np.float64)
    masked = ~masks
    for d, (idx, coef) in grouped.items():
        if d == 0:
            out += coef.sum()
            continue
        rows_per_chunk = max(1, _ROW_CHUNK_ELEMENTS // max(1, idx.shape[0] * d))
        for start in range(0, k, rows_per_chunk):
            block = masked[start : start + rows_per_chunk]
            parity = np.bitwise_xor.reduce(block[:, idx], axis=2)
            signs = 1.0 - 2.0 * parity
            out[start : start + rows_per_chunk] += signs @ coef
    return out


def _columns(supports: list[tuple[int, ...]], masks: np.ndarray, basis: str) -> np.ndarray:
    masks = np.asarray(masks, dtype=bool)
    x = np.empty((masks.shape[0], len(supports)), dtype=np.float64)
    by_order: dict[int, list[int]] = {}
    for col, key in enumerate(supports):
        by_order.setdefault(len(key), []).append(col)
    for d, cols in by_order.items():
        if d == 0:
            x[:, cols] = 1.0
            continue
        gathered = masks[:, np.asarray([supports[c] for c in cols], dtype=np.int64)]  # (k, m, d)
        if basis == "fourier":
            # prod z_i = (-1)^{number of masked features in S}
            x[:, cols] = 1.0 - 2.0 * np.bitwise_xor.reduce(~gathered, axis=2)
        else:
            x[:, cols] = np.logical_and.reduce(gathered, axis=2)
    return x


def design_matrix(supports: list[tuple[int, ...]], masks: np.ndarray) -> np.ndarray:
    """Columns ``prod_{i in S} z_i`` for each support ``S`` (float64, shape (k, len(supports)))."""
    return _columns(supports, masks, "fourier")


def and_design_matrix(supports: list[tuple[int, ...]], masks: np.ndarray) -> np.ndarray:
    """Columns ``prod_{i in T} x_i`` (1 when every feature of ``T`` is kept): the Möbius basis."""
    return _columns(supports, masks, "mobius")
