"""The budgeted gateway between an engine and the user's value function.

Engines never call ``value_fn`` directly: they go through :class:`MaskOracle`, which batches rows,
de-duplicates masks already paid for, validates every answer (shape, dtype, finiteness) and enforces the
budget as a hard cap. ``inferences_used`` in a result is this object's count of rows actually sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .errors import AttributionError, ValueFunctionError

ValueFunction = Callable[[np.ndarray], np.ndarray]
ProgressCallback = Callable[[int, int], None]


class BudgetExhaustedError(AttributionError):
    """An engine asked for more rows than its budget has left (a bug in the engine, never the caller)."""


class MaskOracle:
    """Evaluates masks through ``value_fn`` with batching, caching and a hard budget.

    ``value_fn`` takes a ``(k, n)`` bool array (True = feature kept) and returns ``k`` finite floats.
    """

    def __init__(
        self,
        value_fn: ValueFunction,
        n_features: int,
        budget: int,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        if not callable(value_fn):
            raise TypeError(f"value_fn must be callable, got {type(value_fn).__name__}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self._value_fn = value_fn
        self.n_features = n_features
        self.budget = budget
        self.batch_size = batch_size
        self._progress = progress
        self._cache: dict[bytes, float] = {}
        self.used = 0
        self.value_fn_seconds = 0.0

    @property
    def remaining(self) -> int:
        """Rows the budget still pays for (``budget - used``)."""
        return self.budget - self.used

    def timings(self, started: float) -> dict[str, float]:
        """Wall time since ``started``, split into value-function time and the engine's own overhead."""
        total = time.perf_counter() - started
        return {
            "seconds_total": total,
            "seconds_value_fn": self.value_fn_seconds,
            "seconds_overhead": total - self.value_fn_seconds,
        }

    def count_new(self, masks: np.ndarray) -> int:
        """How many distinct rows of ``masks`` are not yet paid for."""
        keys = {row.tobytes() for row in np.packbits(masks, axis=1)}
        return sum(1 for key in keys if key not in self._cache)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.ascontiguousarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        packed = np.packbits(masks, axis=1)
        keys = [row.tobytes() for row in packed]
        new_rows: dict[bytes, int] = {}
        for row, key in enumerate(keys):
            if key not in self._cache and key not in new_rows:
                new_rows[key] = row
        if len(new_rows) > self.remaining:
            raise BudgetExhaustedError(
                f"engine requested {len(new_rows)} new rows with {self.remaining} of {self.budget} left"
            )
        if new_rows:
            todo = masks[list(new_rows.values())]
            values = self._evaluate(todo)
            for key, value in zip(new_rows, values.tolist(), strict=True):
                self._cache[key] = value
        return np.fromiter((self._cache[key] for key in keys), dtype=np.float64, count=len(keys))

    def _evaluate(self, masks: np.ndarray) -> np.ndarray:
        step = self.batch_size or masks.shape[0]
        parts = []
        for start in range(0, masks.shape[0], step):
            batch = masks[start : start + step]
            began = time.perf_counter()
            raw = self._value_fn(batch.copy())
            self.value_fn_seconds += time.perf_counter() - began
            parts.append(self._validate(raw, batch.shape[0]))
            self.used += batch.shape[0]
            if self._progress is not None:
                self._progress(self.used, self.budget)
        return np.concatenate(parts)

    @staticmethod
    def _validate(raw: object, rows: int) -> np.ndarray:
        expected = f"expected a float array of shape ({rows},)"
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueFunctionError(
                f"value_fn returned {type(raw).__name__} that is not numeric for {rows} masks; {expected}"
            ) from exc
        if values.shape == (rows, 1):
            values = values[:, 0]
        if values.shape != (rows,):
            raise ValueFunctionError(
                f"value_fn returned shape {values.shape} (dtype {np.asarray(raw).dtype}) "
                f"for {rows} masks; {expected}"
            )
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.argmax(bad))
            raise ValueFunctionError(
                f"value_fn returned {int(bad.sum())} non-finite value(s) (NaN/inf) for {rows} masks, "
                f"first at row {first} ({values[first]!r}); {expected} with finite entries"
            )
        return values
