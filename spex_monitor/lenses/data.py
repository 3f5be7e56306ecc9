"""Data lens: features are training examples (or groups of them); the value of a mask is the model's
output on a query after retraining on the kept subset.

Only for models that are cheap to retrain (logistic regression, k-NN, LightGBM, a linear head on frozen
embeddings). Retrains run in a thread pool (scikit-learn and LightGBM release the GIL in their solvers)
and are cached by mask, so repeated masks — common at small n — cost nothing.

The value may also be a signed sum over several queries (``query_weights``): with the ``2^|T|`` ablations
of one request and weights ``(-1)^(number of words removed)`` it is the joint (Möbius) effect of the word
tuple ``T`` on that request, so the lens asks which training data makes a tuple of words decisive
(:mod:`.data_trace`). Data Banzhaf (Wang & Jia, AISTATS 2023) is the first-order reading of such a fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .features import Feature

Output = Literal["log_odds", "proba", "decision", "label"]


def default_model() -> Any:
    """A fresh ``LogisticRegression(max_iter=1000)`` (scikit-learn, imported on first use)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


@dataclass
class DataLens:
    """Value function over training subsets.

    Args:
        x_train, y_train: the training set (binary labels 0/1).
        query: one input (1-D) whose output is explained.
        groups: optional group id per training row; features are then groups (e.g. data sources).
        model_factory: returns a fresh unfitted estimator with ``fit`` and ``predict_proba``
            (or ``decision_function`` for ``output="decision"``).
        output: ``"log_odds"`` of class 1 (default), ``"proba"`` of class 1, ``"decision"``, or
            ``"label"`` (the predicted class, 0/1: what a "flipped prediction" means).
        names: feature keys (default ``"row:<i>"`` / ``"group:<g>"``).
        n_jobs: parallel retrains.
        query_weights: optional ``(q,)`` weights; ``query`` is then ``(q, d)`` and the value of a mask is
            ``sum_j query_weights[j] * output(query[j])``.
        always_kept: optional training row indices kept in every retrain; they are not features (to drill
            into the rows of a few groups with the rest of the training set present).

    ``x_train`` and ``query`` may be dense arrays or SciPy sparse matrices (hashed n-gram features).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    query: np.ndarray
    groups: Sequence[Any] | None = None
    model_factory: Callable[[], Any] = default_model
    output: Output = "log_odds"
    names: Sequence[str] | None = None
    n_jobs: int = 2
    query_weights: Sequence[float] | None = None
    always_kept: Sequence[int] | None = None
    _cache: dict[bytes, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if _is_sparse(self.x_train):
            self.x_train = self.x_train.tocsr()  # row indexing (a COO matrix has none)
        else:
            self.x_train = np.asarray(self.x_train)
        self.y_train = np.asarray(self.y_train)
        if self.x_train.shape[0] != len(self.y_train):
            raise ValueError(f"x_train has {self.x_train.shape[0]} rows but y_train has {len(self.y_train)}")
        if not set(np.unique(self.y_train).tolist()) <= {0, 1}:
            raise ValueError("y_train must hold binary labels 0/1")
        self._always = np.asarray(sorted(set(self.always_kept or ())), dtype=int)
        if self._always.size and (self._always[0] < 0 or self._always[-1] >= len(self.y_train)):
            raise ValueError(f"always_kept holds a row outside 0..{len(self.y_train) - 1}")
        free = np.ones(len(self.y_train), dtype=bool)
        free[self._always] = False
        if self.groups is None:
            self._members = [np.array([i]) for i in np.flatnonzero(free)]
            default_names = [f"row:{i}" for i in np.flatnonzero(free)]
        else:
            if len(self.groups) != len(self.y_train):
                raise ValueError(f"{len(self.groups)} groups for {len(self.y_train)} training rows")
            group_array = np.asarray(self.groups, dtype=object)
            labels = list(dict.fromkeys(group_array[free].tolist()))
            self._members = [np.flatnonzero((group_array == g) & free) for g in labels]
            default_names = [f"group:{g}" for g in labels]
        names = list(self.names) if self.names is not None else default_names
        if len(names) != len(self._members):
            raise ValueError(f"{len(names)} names for {len(self._members)} features")
        self.features = [Feature(name) for name in names]
        if not _is_sparse(self.query):
            self.query = np.asarray(self.query)
        if self.query_weights is None:
            self.query = self.query.reshape(1, -1)
            self._weights = np.ones(1)
        else:
            self._weights = np.asarray(self.query_weights, dtype=float)
            if self.query.ndim != 2 or self.query.shape[0] != self._weights.size:
                raise ValueError(
                    f"query must have one row per weight ({self._weights.size}), got shape {self.query.shape}"
                )
            if not np.all(np.isfinite(self._weights)):
                raise ValueError("query_weights must be finite")

    @property
    def members(self) -> list[np.ndarray]:
        """Training row indices of each feature (one row, or a group's rows), in feature order."""
        return list(self._members)

    @property
    def n_features(self) -> int:
        """Number of features: training rows, or groups when ``groups`` is given."""
        return len(self._members)

    def outputs(self, mask: np.ndarray) -> np.ndarray:
        """Every query's output after retraining on ``mask``'s kept rows, ``(q,)`` float64 (unweighted);
        the weighted value is cached for ``mask`` as :meth:`value_function` would have computed it.

        Raises:
            ValueError: a mask of the wrong length.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_features,):
            raise ValueError(f"mask must have shape ({self.n_features},), got {mask.shape}")
        out = self._outputs(mask)
        self._cache[np.packbits(mask).tobytes()] = float(self._weights @ out)
        return out

    def _score_subset(self, mask: np.ndarray) -> float:
        return float(self._weights @ self._outputs(mask))

    def _outputs(self, mask: np.ndarray) -> np.ndarray:
        kept = [self._members[i] for i in np.nonzero(mask)[0]]
        rows = np.unique(np.concatenate([self._always, *kept])) if kept else self._always
        labels = self.y_train[rows]
        positives, total = int(labels.sum()), int(labels.size)
        if positives in (0, total):
            # A one-class (or empty) subset cannot be fitted; the retrained "model" is the smoothed prior.
            p = (positives + 1) / (total + 2)
            if self.output == "label":
                return np.full(self._weights.size, float(positives * 2 > total))
            if self.output == "proba":
                return np.full(self._weights.size, p)
            return np.full(self._weights.size, np.log(p / (1 - p)))
        model = self.model_factory()
        model.fit(self.x_train[rows], labels)
        if self.output == "decision":
            return np.asarray(model.decision_function(self.query), dtype=float)
        if self.output == "label":
            return np.asarray(model.predict(self.query), dtype=float)
        p = np.clip(np.asarray(model.predict_proba(self.query)[:, 1], dtype=float), 1e-9, 1 - 1e-9)
        return p if self.output == "proba" else np.log(p / (1 - p))

    @property
    def retrains(self) -> int:
        """Distinct masks scored so far (each one retrain, unless its subset held one class only)."""
        return len(self._cache)

    def value_function(self, masks: np.ndarray) -> np.ndarray:
        """The query's output after retraining on each mask's kept rows: ``(k,)`` float64 for
        ``(k, n_features)`` bool masks. Retrains run on ``n_jobs`` threads and are cached by mask; a subset
        holding one class only (or nothing) is not fitted, it scores the smoothed class prior.

        Raises:
            ValueError: masks of the wrong shape.
        """
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        keys = [np.packbits(m).tobytes() for m in masks]
        todo = {key: row for row, key in enumerate(keys) if key not in self._cache}
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, self.n_jobs)) as pool:
                scores = list(pool.map(self._score_subset, (masks[row] for row in todo.values())))
            self._cache.update(zip(todo, scores, strict=True))
        return np.array([self._cache[key] for key in keys])


def _is_sparse(value: Any) -> bool:
    """True for a SciPy sparse matrix or array (imported only when SciPy is already loaded)."""
    import sys

    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)
