"""The one entry point every attribution engine offers, and the argument checks they share.

An engine turns a batched value function over masks into sparse interactions:
``engine.explain(value_fn, n_features) -> Interactions``. :class:`~.proxyspex.ProxySPEX` (arXiv 2505.17495)
and :class:`~.spex.SPEX` (arXiv 2502.13870) both satisfy :class:`Engine`; the rest of the package depends on
this protocol, never on a concrete engine, so a new engine is one new module here plus one registration line
in :mod:`spex_monitor.explain.engines` (in the spirit of shapiq's single ``approximate(budget, game)`` entry
point).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .interactions import Interactions
from .oracle import ValueFunction


@runtime_checkable
class Engine(Protocol):
    """Anything that explains a value function within its own inference budget.

    ``value_fn`` maps a ``(k, n_features)`` boolean mask batch (``True`` = feature kept) to ``(k,)`` float
    values; the engine calls it at most ``budget`` rows in total (its own configuration) and returns the
    Fourier coefficients of the interactions it found, with held-out faithfulness (R²).
    """

    def explain(self, value_fn: ValueFunction, n_features: int) -> Interactions:
        """Explain ``value_fn`` over ``n_features`` features.

        Raises:
            ValueError: ``n_features`` or the engine's budget/order is not a positive int.
            BudgetTooSmallError: the budget is below the engine's smallest design.
            ValueFunctionError: ``value_fn`` returned the wrong shape or a non-finite value.
        """
        ...


def check_engine_arguments(budget: int, max_order: int, n_features: int) -> None:
    """Refuse a non-positive or non-integer ``budget``, ``max_order`` or ``n_features``.

    Raises:
        ValueError: naming the argument and the value given.
    """
    if not isinstance(n_features, int | np.integer) or n_features < 1:
        raise ValueError(f"n_features must be a positive int, got {n_features!r}")
    if not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"budget must be a positive int, got {budget!r}")
    if not isinstance(max_order, int | np.integer) or max_order < 1:
        raise ValueError(f"max_order must be a positive int, got {max_order!r}")
