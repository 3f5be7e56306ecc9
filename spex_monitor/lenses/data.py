"""Data lens: features are training examples (or groups of them); the value of a mask is the model's
output on a query after retraining on the kept subset.

Only for models that are cheap to retrain (logistic regression, k-NN, LightGBM, a linear head on frozen
embeddings). Retrains run in a thread pool (scikit-learn and LightGBM release the GIL in their solvers)
and are cached by mask, so repeated masks — common at small n — cost nothing.
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
    """

    x_train: np.ndarray
    y_train: np.ndarray
    query: np.ndarray
    groups: Sequence[Any] | None = None
    model_factory: Callable[[], Any] = default_model
    output: Output = "log_odds"
    names: Sequence[str] | None = None
    n_jobs: int = 2
    _cache: dict[bytes, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.x_train = np.asarray(self.x_train)
        self.y_train = np.asarray(self.y_train)
        if len(self.x_train) != len(self.y_train):
            raise ValueError(f"x_train has {len(self.x_train)} rows but y_train has {len(self.y_train)}")
        if not set(np.unique(self.y_train).tolist()) <= {0, 1}:
            raise ValueError("y_train must hold binary labels 0/1")
        if self.groups is None:
            self._members = [np.array([i]) for i in range(len(self.y_train))]
            default_names = [f"row:{i}" for i in range(len(self.y_train))]
        else:
            labels = list(dict.fromkeys(self.groups))
            group_array = np.asarray(self.groups, dtype=object)
            self._members = [np.nonzero(group_array == g)[0] for g in labels]
            default_names = [f"group:{g}" for g in labels]
        names = list(self.names) if self.names is not None else default_names
        if len(names) != len(self._members):
            raise ValueError(f"{len(names)} names for {len(self._members)} features")
        self.features = [Feature(name) for name in names]
        self.query = np.asarray(self.query).reshape(1, -1)

    @property
    def n_features(self) -> int:
        """Number of features: training rows, or groups when ``groups`` is given."""
        return len(self._members)

    def _score_subset(self, mask: np.ndarray) -> float:
        rows = np.concatenate([self._members[i] for i in np.nonzero(mask)[0]] or [np.zeros(0, dtype=int)])
        labels = self.y_train[rows]
        positives, total = int(labels.sum()), int(labels.size)
        if positives in (0, total):
            # A one-class (or empty) subset cannot be fitted; the retrained "model" is the smoothed prior.
            p = (positives + 1) / (total + 2)
            if self.output == "label":
                return float(positives * 2 > total)
            if self.output == "proba":
                return p
            return float(np.log(p / (1 - p)))
        model = self.model_factory()
        model.fit(self.x_train[rows], labels)
        if self.output == "decision":
            return float(model.decision_function(self.query)[0])
        if self.output == "label":
            return float(model.predict(self.query)[0])
        p = float(np.clip(model.predict_proba(self.query)[0, 1], 1e-9, 1 - 1e-9))
        return p if self.output == "proba" else float(np.log(p / (1 - p)))

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
