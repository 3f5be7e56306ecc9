"""Contributor statistics: telling an input-mix change from a behaviour change, per key tuple.

A key tuple's mean mass per explained request (what :func:`~.shift.compare_maps` ranks by) is a product:
``mass = rate × strength``, where the **co-occurrence rate** is the share of requests containing all of its
keys and the **strength when present** is the mean |Fourier coefficient| over those requests (0 where the
explanation holds no term for it). A tuple can lose its mass because its words stopped occurring together
(the inputs changed: *mix*) or because the model stopped using them together (*behaviour*). Between baseline
(b) and window (w) the change splits exactly (the midpoint decomposition of a product)::

    Δ(r·s) = (r_w − r_b)·(s_b + s_w)/2  +  (s_w − s_b)·(r_b + r_w)/2  =  mix + behaviour

Both sides are estimated on the maps' bounded uniform request samples (rolling-decay weights honoured,
Kish effective sample size n_eff = (Σw)²/Σw²). Uncertainty, all at 95 %: Wilson intervals for the rates;
mean ± t₀.₉₇₅(n_eff − 1)·se for the strength when present (se from the weighted variance over n_eff); for
the behaviour term √(ci_b² + ci_w²)·(r_b + r_w)/2; for the mix term 1.96·√(se_rb² + se_rw²)·(s_b + s_w)/2.
Where the tuple never occurs on one side its strength there is unknown: the behaviour term is then 0 (not
measured) and the whole move is mix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from .maps import InteractionMap, KeyTuple, RequestSample

Z95 = 1.959963984540054


@dataclass(frozen=True)
class SideStats:
    """One side's (baseline or window) co-occurrence and strength of one key tuple.

    Attributes:
        rate, rate_low, rate_high: share of sampled requests containing all its keys, and its Wilson 95 %
            interval (0–1).
        strength, strength_ci: mean |coef| over those requests and the 95 % half-width (0 below 2 requests).
        support: sampled requests (unweighted) containing all its keys.
    """

    rate: float = 0.0
    rate_low: float = 0.0
    rate_high: float = 0.0
    strength: float = 0.0
    strength_ci: float = 0.0
    support: int = 0


@dataclass(frozen=True)
class Decomposition:
    """A key tuple's move split into input mix and behaviour (see the module docstring).

    Attributes:
        baseline, window: each side's :class:`SideStats`.
        mix, behaviour: the two terms of the move of mean mass per request (their sum is the move).
        mix_ci: 95 % half-width of ``mix`` (normal approximation of the two rates' difference).
        behaviour_ci: 95 % half-width of ``behaviour`` (0 when not measured).
        measured: both maps kept which keys each sampled request held (maps from older versions did not).
        behaviour_measured: the tuple occurs in at least 2 sampled requests on each side.
    """

    baseline: SideStats
    window: SideStats
    mix: float
    mix_ci: float
    behaviour: float
    behaviour_ci: float
    measured: bool
    behaviour_measured: bool

    def fields(self) -> dict[str, float | bool]:
        """The flat fields of the ``Contributor`` message (protos/spex_monitor/v1/monitor.proto, 6–21), the
        same names in stored reports."""
        out: dict[str, float | bool] = {}
        for side, stats in (("baseline", self.baseline), ("window", self.window)):
            out[f"{side}_cooccurrence"] = stats.rate
            out[f"{side}_cooccurrence_low"] = stats.rate_low
            out[f"{side}_cooccurrence_high"] = stats.rate_high
            out[f"{side}_strength_present"] = stats.strength
            out[f"{side}_strength_present_ci"] = stats.strength_ci
            out[f"{side}_present_requests"] = float(stats.support)
        out.update(
            behaviour_delta=self.behaviour,
            behaviour_delta_ci=self.behaviour_ci,
            mix_delta=self.mix,
            mix_delta_ci=self.mix_ci,
            cooccurrence_measured=self.measured,
        )
        return out


FIELD_NAMES = tuple(Decomposition(SideStats(), SideStats(), 0.0, 0.0, 0.0, 0.0, False, False).fields())
# what a stored report's sixth contributor item may hold: the split's fields and the baseline's exemplars
STORED_FIELDS = frozenset({*FIELD_NAMES, "baseline_exemplar_request_ids"})


def wilson(rate: float, n: float) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion ``rate`` seen over (effective) ``n`` trials; (0, 1) for n ≤ 0."""
    if n <= 0:
        return 0.0, 1.0
    z2 = Z95 * Z95
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(max(rate * (1 - rate), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return min(max(0.0, centre - half), rate), max(min(1.0, centre + half), rate)


def _side(samples: Sequence[RequestSample], keys: Iterable[KeyTuple]) -> dict[KeyTuple, SideStats]:
    """Per key tuple, co-occurrence and strength when present over ``samples``."""
    keys = list(keys)
    n = len(samples)
    if n == 0:
        return {k: SideStats() for k in keys}
    weights = np.array([s.weight for s in samples], dtype=np.float64)
    members = {m for k in keys for m in k}
    holds = {m: np.zeros(n, dtype=bool) for m in members}
    wanted = set(keys)
    mass = {k: np.zeros(n) for k in keys}
    for i, sample in enumerate(samples):
        for member in members.intersection(sample.present):
            holds[member][i] = True
        for key, value in zip(sample.keys, sample.mass, strict=True):
            if key in wanted:
                mass[key][i] += value
    total = weights.sum()
    n_eff = total * total / float(np.square(weights).sum()) if total > 0 else 0.0
    rows = []  # key, rate, strength, support, variance, degrees of freedom (0: no interval)
    for key in keys:
        present = np.logical_and.reduce([holds[m] for m in key]) if key else np.ones(n, dtype=bool)
        support = int(present.sum())
        w = weights[present]
        rate = float(w.sum() / total) if total > 0 else 0.0
        strength = variance = df = 0.0
        if support and w.sum() > 0:
            values = mass[key][present]
            strength = float(np.average(values, weights=w))
            if support >= 2:
                variance = float(np.average(np.square(values - strength), weights=w))
                df = max(w.sum() ** 2 / float(np.square(w).sum()) - 1.0, 1.0)
        rows.append((key, rate, strength, support, variance, df))
    # Student t (df = n_eff - 1): with a handful of requests a normal interval is far too narrow. One
    # vectorised quantile call: per-key calls dominated the cost of a comparison.
    dfs = np.array([r[5] for r in rows])
    quantiles = np.zeros(len(rows))
    if (dfs > 0).any():
        quantiles[dfs > 0] = student_t.ppf(0.975, dfs[dfs > 0])
    out = {}
    for (key, rate, strength, support, variance, df), q in zip(rows, quantiles, strict=True):
        low, high = wilson(rate, n_eff)
        ci = float(q) * math.sqrt(variance / df) if df > 0 else 0.0  # √(unbiased variance / n)
        out[key] = SideStats(rate, low, high, strength, ci, support)
    return out


def _n_eff(samples: Sequence[RequestSample]) -> float:
    """Kish effective sample size (Σw)²/Σw² of weighted samples (0 when empty)."""
    weights = np.array([s.weight for s in samples], dtype=np.float64)
    square = float(np.square(weights).sum())
    return float(weights.sum()) ** 2 / square if square > 0 else 0.0


def _rate_se(rate: float, n: float) -> float:
    """Standard error of a proportion's estimate; a pseudo-count keeps it above 0 at rates of 0 and 1."""
    if n <= 0:
        return 0.5
    shrunk = (rate * n + 0.5) / (n + 1.0)
    return math.sqrt(shrunk * (1 - shrunk) / n)


def _measured(m: InteractionMap) -> bool:
    return bool(m.samples) and any(s.present for s in m.samples)


def decompose(
    baseline: InteractionMap, window: InteractionMap, keys: Iterable[KeyTuple]
) -> dict[KeyTuple, Decomposition]:
    """Split each key tuple's move of mean mass per request into mix and behaviour (module docstring).

    Cost: O(sampled requests × (their keys + len(keys))). Maps without per-request keys (encoded before
    they were kept) give ``measured=False`` decompositions of zeros.
    """
    keys = list(keys)
    measured = _measured(baseline) and _measured(window)
    if not measured:
        empty = SideStats()
        return {k: Decomposition(empty, empty, 0.0, 0.0, 0.0, 0.0, False, False) for k in keys}
    base, win = _side(baseline.samples, keys), _side(window.samples, keys)
    n_b, n_w = _n_eff(baseline.samples), _n_eff(window.samples)
    out = {}
    for key in keys:
        b, w = base[key], win[key]
        s_b = b.strength if b.support else w.strength
        s_w = w.strength if w.support else b.strength
        r_mid = (b.rate + w.rate) / 2
        behaviour_measured = b.support >= 2 and w.support >= 2
        out[key] = Decomposition(
            baseline=b,
            window=w,
            mix=(w.rate - b.rate) * (s_b + s_w) / 2,
            mix_ci=Z95 * math.hypot(_rate_se(b.rate, n_b), _rate_se(w.rate, n_w)) * (s_b + s_w) / 2,
            behaviour=(s_w - s_b) * r_mid,
            behaviour_ci=math.hypot(b.strength_ci, w.strength_ci) * r_mid if behaviour_measured else 0.0,
            measured=True,
            behaviour_measured=behaviour_measured,
        )
    return out

