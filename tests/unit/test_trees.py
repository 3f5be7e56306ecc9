"""Tree → Fourier extraction is exact: the sparse expansion reproduces the booster's predictions."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from spex_monitor.attribution import fourier as F
from spex_monitor.attribution.trees import ensemble_fourier


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_extraction_reproduces_booster(depth, rng):
    n = 40
    x = rng.random((1500, n)) < 0.5
    y = 2.0 * (x[:, 0] & x[:, 3]) - x[:, 5] + 1.5 * (x[:, 7] ^ x[:, 9]) + rng.normal(0, 0.1, 1500)
    params = {
        "objective": "regression",
        "max_depth": depth,
        "num_leaves": 2**depth,
        "verbose": -1,
        "learning_rate": 0.2,
        "min_data_in_leaf": 3,
        "deterministic": True,
        "seed": 0,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x.astype(np.float32), y), num_boost_round=60)
    grouped = ensemble_fourier(booster.model_to_string(), n, max_order=depth)
    test = rng.random((400, n)) < 0.5
    np.testing.assert_allclose(F.evaluate(grouped, test), booster.predict(test.astype(np.float32)), atol=1e-9)
    assert max(grouped) <= depth


def test_truncation_drops_only_higher_orders(rng):
    n = 12
    x = rng.random((800, n)) < 0.5
    y = (x[:, 0] & x[:, 1] & x[:, 2]).astype(float)
    params = {
        "objective": "regression",
        "max_depth": 3,
        "num_leaves": 8,
        "verbose": -1,
        "seed": 0,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x.astype(np.float32), y), num_boost_round=30)
    full = ensemble_fourier(booster.model_to_string(), n, max_order=3)
    cut = ensemble_fourier(booster.model_to_string(), n, max_order=2)
    assert 3 in full and 3 not in cut
    for order in (0, 1, 2):
        np.testing.assert_allclose(full[order][1], cut[order][1])
