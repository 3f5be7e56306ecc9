"""SPEX: exact support recovery of planted Fourier-sparse functions, budgets, errors."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import SPEX, BudgetTooSmallError, planted_function
from spex_monitor.attribution.bch import PRIMITIVE_POLYNOMIALS, BCHSyndromeCode, GF2m
from spex_monitor.attribution.metrics import r2_score
from spex_monitor.attribution.spex import walsh_hadamard


@pytest.mark.parametrize("m", sorted(PRIMITIVE_POLYNOMIALS))
def test_polynomials_are_primitive(m):
    field = GF2m(m)
    powers = field.exp[: field.order]
    assert len(set(powers.tolist())) == field.order  # alpha generates the whole multiplicative group


@pytest.mark.parametrize(("n", "t"), [(20, 2), (300, 3), (1000, 4), (5000, 2)])
def test_bch_decodes_every_set_up_to_t(n, t, rng):
    code = BCHSyndromeCode(n, t)
    for _ in range(200):
        size = int(rng.integers(0, t + 1))
        support = tuple(sorted(rng.choice(n, size, replace=False).tolist()))
        assert code.decode(code.syndrome_bits(support)) == support


def test_walsh_hadamard_matches_matrix():
    b = 4
    ell = np.arange(2**b)
    parity = np.array([[bin(i & j).count("1") % 2 for j in ell] for i in ell])
    values = np.random.default_rng(0).normal(size=2**b)
    np.testing.assert_allclose(walsh_hadamard(values), ((-1.0) ** parity) @ values / 2**b)


@pytest.mark.parametrize(
    ("n", "terms", "order", "budget"),
    [(24, 5, 2, 900), (64, 10, 4, 3000), (256, 30, 3, 6000), (1000, 20, 3, 1500), (1000, 50, 2, 6000)],
)
def test_exact_support_recovery_noiseless(n, terms, order, budget):
    f = planted_function(n, terms, order, seed=n + terms, intercept=0.7)
    result = SPEX(budget=budget, max_order=order, seed=1).explain(f, n)
    assert result.inferences_used <= budget
    assert f.rows == result.inferences_used
    assert {k for k, v in result.fourier.items() if abs(v) > 1e-8} == set(f.fourier)
    for key, value in f.fourier.items():
        assert result.fourier[key] == pytest.approx(value, rel=1e-5, abs=1e-8)
    assert result.faithfulness == pytest.approx(1.0)


def test_noisy_recovery_keeps_support_and_fits():
    n = 500
    f = planted_function(n, 15, 3, seed=3, noise_std=0.05)
    result = SPEX(budget=6000, max_order=3, seed=0).explain(f, n)
    strong = {k for k, v in result.fourier.items() if k and abs(v) > 0.2}
    assert strong == {k for k in f.fourier if k}
    masks = np.random.default_rng(5).random((2000, n)) < 0.5
    assert r2_score(f.exact(masks), result.predict(masks)) > 0.99


def test_budget_too_small_names_minimum():
    with pytest.raises(BudgetTooSmallError, match=r"minimum is \d+"):
        SPEX(budget=100, max_order=3).explain(lambda m: np.zeros(len(m)), n_features=1000)


def test_design_uses_budget_and_never_exceeds_it():
    for budget in (800, 2000, 5000):
        spex = SPEX(budget=budget, max_order=3)
        design = spex.design(1000)
        assert design.queries + spex.holdout_size(design) <= budget
        bigger = type(design)(design.bucket_bits + 1, design.groups, design.t, design.n_delays, False)
        assert bigger.queries + 16 > budget  # the next b would not fit


def test_exhaustive_for_small_n():
    f = planted_function(6, 4, 3, seed=0)
    result = SPEX(budget=100, max_order=3).explain(f, 6)
    assert result.inferences_used == 64
    assert result.method == "SPEX(exhaustive)"
