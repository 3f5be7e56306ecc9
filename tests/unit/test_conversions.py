"""Basis conversions and interaction indices against brute-force definitions (n ≤ 12)."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import Interactions, planted_function
from spex_monitor.attribution import bruteforce as bf
from spex_monitor.attribution import fourier as F


def _dense(terms: dict, n: int) -> np.ndarray:
    out = np.zeros(2**n)
    for key, value in terms.items():
        out[sum(1 << i for i in key)] = value
    return out


@pytest.fixture(params=[(6, 8, 3, "fourier"), (8, 12, 4, "mobius"), (10, 20, 4, "fourier")])
def planted(request):
    n, terms, order, basis = request.param
    return planted_function(n, terms, order, seed=n, basis=basis, intercept=0.3)


def test_fourier_convention_matches_wht(planted):
    values = bf.table(planted, planted.n_features)
    exact = bf.fourier_transform(values)
    n = planted.n_features
    np.testing.assert_allclose(_dense(exact, n), _dense(planted.fourier, n), atol=1e-10)
    # F(()) is the mean over all masks and the all-kept value sums every coefficient.
    assert exact[()] == pytest.approx(values.mean())
    assert values[-1] == pytest.approx(sum(planted.fourier.values()))


def test_fourier_mobius_roundtrip_matches_bruteforce(planted):
    n = planted.n_features
    values = bf.table(planted, n)
    mobius = F.fourier_to_mobius(planted.fourier, n)
    np.testing.assert_allclose(_dense(mobius, n), _dense(bf.mobius_transform(values), n), atol=1e-10)
    back = F.mobius_to_fourier(mobius, n)
    np.testing.assert_allclose(_dense(back, n), _dense(planted.fourier, n), atol=1e-10)


def test_shapley_and_banzhaf_match_definitions(planted):
    n = planted.n_features
    values = bf.table(planted, n)
    result = Interactions(planted.fourier, n)
    np.testing.assert_allclose(result.shapley_values(), bf.shapley_values(values), atol=1e-10)
    np.testing.assert_allclose(result.banzhaf_values(), bf.banzhaf_values(values), atol=1e-10)
    # Efficiency: Shapley values sum to v(N) - v(∅); Banzhaf = 2 F({i}).
    assert result.shapley_values().sum() == pytest.approx(values[-1] - values[0])
    for i in range(n):
        assert result.banzhaf_values()[i] == pytest.approx(2 * planted.fourier.get((i,), 0.0))


@pytest.mark.parametrize("index", ["SII", "BII", "STII", "FSII"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_interaction_indices_match_definitions(index, order):
    n = 7
    f = planted_function(n, 10, 4, seed=order, basis="mobius", intercept=-0.2)
    values = bf.table(f, n)
    ours = Interactions(f.fourier, n).interaction_index(index, order=order)
    truth = bf.interaction_index(values, index, order)
    for subset, value in truth.items():
        assert ours.get(subset, 0.0) == pytest.approx(value, abs=1e-7), (index, order, subset)
    assert all(len(k) <= order for k in ours)


def test_stii_and_fsii_are_efficient():
    n = 8
    f = planted_function(n, 12, 4, seed=3, basis="mobius")
    values = bf.table(f, n)
    result = Interactions(f.fourier, n)
    for index in ("STII", "FSII"):
        total = sum(result.interaction_index(index, order=2).values())
        assert total == pytest.approx(values[-1]), index


def test_predict_matches_function_on_all_masks(planted):
    n = planted.n_features
    masks = bf.all_masks(n)
    np.testing.assert_allclose(Interactions(planted.fourier, n).predict(masks), planted(masks), atol=1e-10)


def test_top_orders_by_magnitude_and_skips_constant():
    result = Interactions({(): 5.0, (1,): -0.5, (0, 2): 2.0, (3,): 0.1}, 4)
    assert result.top(2) == [((0, 2), 2.0), ((1,), -0.5)]


def test_unknown_index_is_a_clear_error():
    with pytest.raises(ValueError, match="SII"):
        Interactions({(0,): 1.0}, 2).interaction_index("XYZ", order=1)


def test_aggregate_handles_wide_keys_without_overflow(rng):
    n = 1_000_000
    rows = np.sort(rng.integers(0, n, size=(50, 5)), axis=1)
    rows = np.concatenate([rows, rows])
    keys, sums = F.aggregate(rows, np.ones(100), n)
    assert keys.shape[0] == len({tuple(r) for r in rows.tolist()})
    assert sums.sum() == pytest.approx(100.0)


def test_value_at_matches_function(planted):
    n = planted.n_features
    result = Interactions(planted.fourier, n)
    none_kept = np.zeros((1, n), dtype=bool)
    assert result.value_at(()) == pytest.approx(planted(none_kept)[0])
    assert result.value_at() == pytest.approx(planted(~none_kept)[0])
    assert result.value_at((0, 2)) == pytest.approx(planted(np.isin(np.arange(n), [0, 2])[None])[0])
