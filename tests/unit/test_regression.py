"""Support selection and refits recover planted sparse linear models."""

from __future__ import annotations

import numpy as np

from spex_monitor.attribution.regression import fit_ridge, omp_select


def _problem(rng, n_rows=600, n_cols=200, k=12, noise=0.01):
    x = rng.choice([-1.0, 1.0], size=(n_rows, n_cols))
    truth = np.zeros(n_cols)
    cols = rng.choice(n_cols, size=k, replace=False)
    truth[cols] = rng.choice([-1, 1], size=k) * rng.uniform(0.5, 2.0, size=k)
    y = 3.0 + x @ truth + rng.normal(0, noise, n_rows)
    return x, y, truth, set(cols.tolist())


def test_omp_finds_planted_columns(rng):
    x, y, truth, cols = _problem(rng)
    sel = omp_select(x[:450], y[:450], x[450:], y[450:], max_steps=100)
    assert set(sel.columns) == cols
    assert sel.validation_r2 > 0.999


def test_omp_stops_early_on_pure_noise(rng):
    x = rng.choice([-1.0, 1.0], size=(300, 100))
    y = rng.normal(size=300)
    sel = omp_select(x[:200], y[:200], x[200:], y[200:], max_steps=80)
    assert len(sel.path_r2) < 40  # patience stops the walk long before max_steps
    assert len(sel.columns) <= 10


def test_ridge_recovers_coefficients_and_intercept(rng):
    x, y, truth, cols = _problem(rng, noise=0.0)
    design = np.concatenate([np.ones((len(y), 1)), x[:, sorted(cols)]], axis=1)
    w = fit_ridge(design, y)
    np.testing.assert_allclose(w[0], 3.0, atol=1e-4)
    np.testing.assert_allclose(w[1:], truth[sorted(cols)], atol=1e-4)
