"""The budgeted oracle: hard cap, caching, batching and clear errors for bad value functions."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import BudgetTooSmallError, ProxySPEX, ValueFunctionError, planted_function
from spex_monitor.attribution.oracle import BudgetExhaustedError, MaskOracle


def test_cache_and_count(rng):
    calls = []

    def fn(masks):
        calls.append(len(masks))
        return masks.sum(axis=1).astype(float)

    oracle = MaskOracle(fn, 10, budget=20, batch_size=4)
    masks = rng.random((10, 10)) < 0.5
    first = oracle(np.concatenate([masks, masks]))
    assert oracle.used == len({m.tobytes() for m in masks})
    np.testing.assert_allclose(first[:10], masks.sum(axis=1))
    oracle(masks)  # all cached
    assert sum(calls) == oracle.used and max(calls) <= 4


def test_budget_is_a_hard_cap(rng):
    oracle = MaskOracle(lambda m: np.zeros(len(m)), 30, budget=5)
    with pytest.raises(BudgetExhaustedError):
        oracle(rng.random((6, 30)) < 0.5)
    assert oracle.used == 0


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda m: np.zeros((len(m), 2)), r"shape \(\d+, 2\).*expected a float array of shape"),
        (lambda m: np.full(len(m), np.nan), "non-finite"),
        (lambda m: np.array([np.inf] + [0.0] * (len(m) - 1)), "first at row 0"),
        (lambda m: ["x"] * len(m), "not numeric"),
        (lambda m: np.zeros(len(m) + 1), "expected a float array of shape"),
    ],
)
def test_bad_value_functions_raise_clear_errors(fn, match):
    with pytest.raises(ValueFunctionError, match=match):
        ProxySPEX(budget=200, max_order=2, seed=0).explain(fn, n_features=30)


def test_column_vector_output_is_accepted():
    f = planted_function(30, 5, 2, seed=0, basis="mobius")
    result = ProxySPEX(budget=300, max_order=2, seed=0).explain(lambda m: f(m)[:, None], 30)
    assert result.inferences_used <= 300


def test_budget_too_small_names_the_minimum():
    with pytest.raises(BudgetTooSmallError, match="minimum is 40"):
        ProxySPEX(budget=10, max_order=2).explain(lambda m: np.zeros(len(m)), n_features=50)


@pytest.mark.parametrize("kwargs", [{"budget": 0}, {"max_order": 0}, {"budget": 2.5}])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        ProxySPEX(**kwargs).explain(lambda m: np.zeros(len(m)), n_features=20)


def test_invalid_n_features():
    with pytest.raises(ValueError, match="n_features"):
        ProxySPEX(budget=100).explain(lambda m: np.zeros(len(m)), n_features=0)
