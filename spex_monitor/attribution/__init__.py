"""Ablation-based interaction attribution (numpy + LightGBM only; no torch, no grpc).

Mask convention: a mask is a boolean row, ``True`` = feature kept, ``False`` = feature ablated.
Fourier convention: ``f(x) = sum_S F(S) prod_{i in S} z_i`` with ``z_i = +1`` (kept) / ``-1`` (masked).

>>> from spex_monitor.attribution import ProxySPEX
>>> result = ProxySPEX(budget=2000, max_order=4, seed=0).explain(value_fn, n_features=n)  # doctest: +SKIP
"""

from .errors import AttributionError, BudgetTooSmallError, ValueFunctionError
from .interactions import INDICES, Interactions
from .planted import PlantedFunction, planted_function
from .proxyspex import ProxySPEX
from .spex import SPEX

__all__ = [
    "INDICES",
    "AttributionError",
    "BudgetTooSmallError",
    "Interactions",
    "PlantedFunction",
    "ProxySPEX",
    "SPEX",
    "ValueFunctionError",
    "planted_function",
]
