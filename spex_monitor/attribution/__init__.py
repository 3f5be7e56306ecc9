"""Ablation-based interaction attribution (numpy, SciPy and LightGBM only; no torch, no grpc).

Mask convention: a mask is a boolean row, ``True`` = feature kept, ``False`` = feature ablated.
Fourier convention: ``f(x) = sum_S F(S) prod_{i in S} z_i`` with ``z_i = +1`` (kept) / ``-1`` (masked).

The engines — :class:`ProxySPEX` (arXiv 2505.17495) and :class:`SPEX` (arXiv 2502.13870) — load on first
use, so ``from spex_monitor.attribution import Interactions`` (what the monitor's maps need) costs neither
LightGBM nor SciPy's solvers. Both satisfy :class:`Engine`.

>>> from spex_monitor.attribution import ProxySPEX
>>> result = ProxySPEX(budget=2000, max_order=4, seed=0).explain(value_fn, n_features=n)  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .engine import Engine
from .errors import AttributionError, BudgetTooSmallError, ValueFunctionError
from .interactions import INDICES, Interactions
from .planted import PlantedFunction, planted_function

if TYPE_CHECKING:
    from .proxyspex import ProxySPEX
    from .spex import SPEX

_LAZY = {"ProxySPEX": ".proxyspex", "SPEX": ".spex"}

__all__ = [
    "INDICES",
    "AttributionError",
    "BudgetTooSmallError",
    "Engine",
    "Interactions",
    "PlantedFunction",
    "ProxySPEX",
    "SPEX",
    "ValueFunctionError",
    "planted_function",
]


def __getattr__(name: str) -> Any:
    """Load an engine class on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
