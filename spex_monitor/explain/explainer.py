"""One model's explainer: configuration → lens + backend + engine → :class:`~.request.ExplainResult`.

This is the single place where the pieces meet; the sidecar (through its runners) and the benchmarks
(``bench/pools.py``) both explain through it, so a benchmark measures exactly the sidecar's path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import EngineConfig, ModelConfig, Settings
from .backends import build_backend, label_name
from .engines import make_engine
from .problem import DECISION_BOUNDARY
from .request import ExplainDeadlineError, ExplainRequest, ExplainResult
from .values import value_problem


@dataclass
class ModelExplainer:
    """Explains one configured model's inputs.

    Args:
        config: the model's configuration (its ``lens`` picks the value builder).
        engine: the engine configuration (kind, default budget and order).
        backend: the built backend (see :func:`~.backends.build_backend`); it must offer what the lens's
            value builder calls (``logits`` + ``tokenizer``, ``infer_texts`` or ``infer_matrix``).
        seed: seeds the engine and reference draws: the same seed gives the same result.
    """

    config: ModelConfig
    engine: EngineConfig
    backend: Any
    seed: int = 0

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain ``request`` (its ``model`` is not checked here: the caller picked this explainer).

        Returns the interactions, feature keys, target class and its name; ``batches`` and ``health`` are
        left empty (the runner that owns the backend fills them).

        Raises:
            ValueError: no input the lens reads, or nothing to explain (no features).
            ExplainDeadlineError: ``request.deadline`` passed before or during the engine's run.
            BudgetTooSmallError: ``request.budget`` is below the engine's smallest design.
            ValueFunctionError: the model answered with the wrong shape or a non-finite value.
        """
        problem = value_problem(self.config.lens, self.backend, request, self.seed)
        if not problem.keys:
            raise ValueError("input: nothing to explain (no features)")
        if request.deadline is not None and time.time() > request.deadline:
            raise ExplainDeadlineError(0.0)
        n = len(problem.keys)
        engine = make_engine(self.engine, n, request.budget, request.max_order, self.seed, request.deadline)
        interactions = engine.explain(problem.value_fn, n)
        if problem.boundary is not None:  # read by the monitor's decisive-interaction test
            interactions.details[DECISION_BOUNDARY] = problem.boundary
        label = problem.label if problem.label is not None else label_name(self.backend, problem.target)
        return ExplainResult(interactions, problem.keys, problem.target, label)


def build_explainers(settings: Settings) -> dict[str, ModelExplainer]:
    """One explainer per configured model, each with its backend built (models load here).

    Raises:
        FileNotFoundError: a local model folder does not exist.
        OSError: a backend's TLS file cannot be read.
    """
    return {
        m.name: ModelExplainer(m, settings.engine, build_backend(m.backend), settings.seed)
        for m in settings.models
    }
