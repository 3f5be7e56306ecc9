"""Data lens: retraining on kept training subsets; a planted poisoned pair shows up as an interaction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from spex_monitor.attribution import ProxySPEX
from spex_monitor.lenses.data import DataLens


def _poisoned_problem(seed: int = 0):
    """3-NN around a query at the origin: clean class-0 points (two at distance 1, the rest farther) and
    two poisoned class-1 points at distance 0.1. One poison alone is outvoted by clean neighbours; both
    together flip the predicted label, whatever else is kept."""
    rng = np.random.default_rng(seed)
    far = rng.normal(0, 1, size=(36, 2)) + np.array([8.0, 8.0])
    far_labels = np.zeros(36, dtype=int)
    x = np.concatenate([far, [[1.0, 0.0], [0.0, 1.0], [0.1, 0.0], [0.0, -0.1]]])
    y = np.concatenate([far_labels, [0, 0, 1, 1]])
    return x, y, np.zeros(2), (38, 39)


def test_lens_finds_the_poisoned_pair():
    x, y, query, pair = _poisoned_problem()
    lens = DataLens(x, y, query, model_factory=lambda: KNeighborsClassifier(n_neighbors=3), output="label")
    full = lens.value_function(np.ones((1, lens.n_features), dtype=bool))[0]
    assert full == 1.0  # both poisons present: flipped to class 1
    result = ProxySPEX(budget=600, max_order=2, seed=0).explain(lens.value_function, lens.n_features)
    mobius = result.to_mobius()
    pairs = sorted(((k, v) for k, v in mobius.items() if len(k) == 2), key=lambda kv: -abs(kv[1]))
    assert pairs[0][0] == pair
    assert pairs[0][1] == pytest.approx(1.0, abs=0.05)  # the flip needs both: a pure pair interaction
    assert result.faithfulness > 0.95


def test_cache_and_one_class_subsets():
    x, y, query, _ = _poisoned_problem()
    calls = []

    def factory():
        calls.append(1)
        return KNeighborsClassifier(n_neighbors=1)

    lens = DataLens(x, y, query, model_factory=factory, n_jobs=1)
    masks = np.zeros((3, lens.n_features), dtype=bool)
    masks[1, :] = True
    values = lens.value_function(np.concatenate([masks, masks]))
    assert values[0] == pytest.approx(0.0)  # empty subset: smoothed prior log-odds of 1/2
    assert len(calls) == 1  # the full subset fitted once, the repeat came from the cache


def test_groups_and_validation():
    x, y, query, _ = _poisoned_problem()
    groups = ["far"] * 36 + ["clean", "clean", "poison", "poison"]
    lens = DataLens(x, y, query, groups=groups, model_factory=lambda: KNeighborsClassifier(n_neighbors=3))
    assert [f.key for f in lens.features] == ["group:far", "group:clean", "group:poison"]
    with pytest.raises(ValueError, match="binary"):
        DataLens(x, y + 2, query)
    with pytest.raises(ValueError, match="rows"):
        DataLens(x[:-1], y, query)
    with pytest.raises(ValueError, match=r"shape \(k, 3\)"):
        lens.value_function(np.ones((2, 5), dtype=bool))


def test_weighted_queries_give_the_mixed_difference_of_a_linear_pair_model():
    """Ground truth: for a logistic regression on word and word-pair counts, the signed sum over the
    ``2^|T|`` ablations of a request is exactly the pair feature's weight (every other term cancels)."""
    from sklearn.linear_model import LogisticRegression

    from spex_monitor.examples.poisoned import pair_features, planted_corpus
    from spex_monitor.lenses.training import tuple_contrast

    corpus = planted_corpus(shards=40, planted=3)
    texts, weights = tuple_contrast("i did not love the music", ["music", "love"])
    assert texts == [
        "i did not love the music", "i did not love the", "i did not the music", "i did not the"
    ]  # fmt: skip
    assert weights.tolist() == [1.0, -1.0, -1.0, 1.0]
    x = pair_features(corpus.texts)
    lens = DataLens(
        x, corpus.labels, pair_features(texts), query_weights=weights,
        model_factory=lambda: LogisticRegression(C=2.0, solver="liblinear"),
    )  # fmt: skip
    value = lens.value_function(np.ones((1, lens.n_features), dtype=bool))[0]
    model = LogisticRegression(C=2.0, solver="liblinear").fit(x, corpus.labels)
    pair_column = pair_features(["love&music"]).indices  # the hashed column of the word pair
    assert value == pytest.approx(float(model.coef_[0, pair_column].sum()), abs=1e-9)
    assert value > 0.5  # the planted reviews taught the pair to push towards "positive"


def test_rows_always_kept_are_not_features_and_bad_shapes_are_named():
    x, y, query, _ = _poisoned_problem()
    lens = DataLens(x, y, query, always_kept=range(36), model_factory=lambda: KNeighborsClassifier(3))
    assert [f.key for f in lens.features] == ["row:36", "row:37", "row:38", "row:39"]
    assert lens.value_function(np.zeros((1, 4), dtype=bool))[0] == pytest.approx(np.log(1 / 37))  # 1/38
    with pytest.raises(ValueError, match="one row per weight"):
        DataLens(x, y, np.zeros((3, 2)), query_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="always_kept"):
        DataLens(x, y, query, always_kept=[40])
    with pytest.raises(ValueError, match="groups for 40"):
        DataLens(x, y, query, groups=["a"] * 39)
