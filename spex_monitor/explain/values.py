"""Lens + backend + input → the value function an engine explains (:class:`~.problem.ValueProblem`).

:data:`VALUE_BUILDERS` maps ``models[].lens.kind`` to a builder ``(lens config, backend, request, seed) ->
ValueProblem``. A new lens is a module in ``lenses/`` (what gets ablated), a builder module here (how its
masked inputs are scored on a backend) and one line in :data:`VALUE_BUILDERS` (plus its config class).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .field_values import fields_value_problem
from .generation_values import generation_value_problem
from .problem import ValueProblem
from .request import ExplainRequest
from .text_values import text_value_problem

ValueBuilder = Callable[[Any, Any, ExplainRequest, int], ValueProblem]

VALUE_BUILDERS: dict[str, ValueBuilder] = {
    "text": text_value_problem,
    "fields": fields_value_problem,
    "prompt": generation_value_problem,
}


def value_problem(lens: Any, backend: Any, request: ExplainRequest, seed: int = 0) -> ValueProblem:
    """The value problem of ``request`` under ``lens`` (a ``models[].lens`` config) on ``backend``.

    Raises:
        ValueError: the request has no input the lens reads (``input: give text, fields or a generation``).
        KeyError: ``lens.kind`` has no builder (the config's discriminated union prevents it).
    """
    return VALUE_BUILDERS[lens.kind](lens, backend, request, seed)
