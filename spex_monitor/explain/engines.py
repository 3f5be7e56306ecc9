"""``engine`` configuration → an :class:`~spex_monitor.attribution.Engine` for one input.

:data:`ENGINES` maps ``engine.kind`` to the engine class; every class takes ``budget``, ``max_order``,
``seed``, ``batch_size`` and ``progress`` keywords and offers ``explain(value_fn, n_features)``. A new engine
is a module in ``attribution/`` plus one line here (and its name in ``EngineConfig.kind``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..attribution import Engine
from ..attribution.proxyspex import ProxySPEX
from ..attribution.spex import SPEX
from ..config import EngineConfig
from .request import ExplainDeadlineError

ENGINES: dict[str, Callable[..., Engine]] = {
    "proxyspex": ProxySPEX,  # arXiv 2505.17495 (the default)
    "spex": SPEX,  # arXiv 2502.13870
}

# rows per value-function call when a deadline is set: small enough to stop soon after the deadline,
# large enough to keep a remote backend's concurrent batches full (4 x 64 rows by default)
DEADLINE_BATCH_ROWS = 256
# inputs with at most this many features are measured on every mask when 2^n fits the budget
EXACT_FEATURES = 16


def _deadline_check(deadline: float) -> Callable[[int, int], None]:
    started = time.time()

    def progress(used: int, budget: int) -> None:
        if time.time() > deadline:
            raise ExplainDeadlineError(time.time() - started)

    return progress


def make_engine(
    engine: EngineConfig,
    n_features: int,
    budget: int | None = None,
    max_order: int | None = None,
    seed: int = 0,
    deadline: float | None = None,
) -> Engine:
    """The configured engine for one input of ``n_features`` features.

    ``budget`` / ``max_order`` override ``engine.budget`` / ``engine.max_order``; an input of at most
    :data:`EXACT_FEATURES` features never gets more than its ``2^n`` masks. ``deadline`` (``time.time()``
    seconds) makes the engine check the clock after every batch of :data:`DEADLINE_BATCH_ROWS` rows and
    raise :class:`ExplainDeadlineError` past it.

    Raises:
        KeyError: ``engine.kind`` is not in :data:`ENGINES` (the config's ``Literal`` prevents it).
    """
    budget = budget or engine.budget
    if n_features <= EXACT_FEATURES:
        budget = min(budget, 2**n_features)  # small inputs: every mask, exactly
    order = max_order or engine.max_order
    limits: dict[str, Any] = {}
    if deadline is not None:
        limits = {"batch_size": DEADLINE_BATCH_ROWS, "progress": _deadline_check(deadline)}
    return ENGINES[engine.kind](budget=budget, max_order=order, seed=seed, **limits)
