"""Fields lens → value function: the score of the class predicted on the unmasked record.

A masked field takes its baseline value (``lens.defaults``) or values drawn from reference records
(``lens.reference_path``, averaged over ``lens.draws`` draws); the backend scores the ``(rows, fields)``
matrix through ``infer_matrix``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..config import FieldsLens
from ..lenses import FieldMasker
from .problem import ValueProblem, missing_input
from .request import ExplainRequest


def fields_value_problem(
    lens: FieldsLens, backend: Any, request: ExplainRequest, seed: int = 0
) -> ValueProblem:
    """The value problem of ``request.fields`` under a fields lens.

    Shapes: ``n`` = the number of fields; the value function maps ``(k, n)`` masks to ``(k,)`` scores of
    the target class (the single output for a one-column model), averaged over reference draws.

    Raises:
        ValueError: the request carries no fields.
        OSError: ``lens.reference_path`` cannot be read.
    """
    if request.fields is None:
        raise missing_input(request, "fields", lens.kind)
    reference = None
    if lens.reference_path is not None:
        lines = lens.reference_path.read_text().splitlines()
        reference = [json.loads(line) for line in lines if line.strip()]
    masker = FieldMasker(
        request.fields, defaults=lens.defaults or None, reference=reference, draws=lens.draws, seed=seed
    )
    names = masker.fields

    def scores(rows: list[dict[str, float]]) -> np.ndarray:
        matrix = np.array([[row[f] for f in names] for row in rows], dtype=np.float32)
        return backend.infer_matrix(matrix)

    full = scores(masker.build(np.ones((1, len(names)), dtype=bool)))
    target = int(np.argmax(full.reshape(full.shape[0], -1)[0]))

    def value_fn(masks: np.ndarray) -> np.ndarray:
        out = scores(masker.build(masks))
        return masker.mean_over_draws(out[:, target] if out.shape[1] > 1 else out[:, 0])

    return ValueProblem(value_fn, names, target)
