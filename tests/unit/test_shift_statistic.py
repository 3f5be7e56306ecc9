"""The permutation test behind the interaction-shift p-value: exactness of the Tippett combination, and
why the default statistic is the largest per-key move rather than the Euclidean sum over all keys.
(Calibration of the default statistic on seeded null windows: ``test_interaction_maps.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.shift import permutation_p_value

VOCAB = [f"w{i}" for i in range(200)]
ADJECTIVES = [f"adj{i}" for i in range(12)]


def test_single_statistic_p_value_is_the_usual_formula():
    permuted = np.array([0.1, 0.5, 0.9, 0.5, 0.2])
    assert permutation_p_value(0.5, permuted) == pytest.approx((1 + 3) / 6)
    assert permutation_p_value(1.0, permuted) == pytest.approx(1 / 6)
    assert permutation_p_value(0.0, permuted) == pytest.approx(1.0)


def test_tippett_combination_is_exact_when_relabellings_are_exchangeable():
    # Under "no change" the real labelling is one more draw from the permutation distribution: then
    # P(p <= a) <= a (equality up to the grid), for correlated components too.
    rng = np.random.default_rng(0)
    trials, perms = 2000, 99
    p_values = []
    for _ in range(trials):
        shared = rng.normal(size=(perms + 1, 1))
        stats = np.abs(
            np.hstack([shared + rng.normal(size=(perms + 1, 1)), rng.exponential(size=(perms + 1, 1))])
        )
        p_values.append(permutation_p_value(stats[0], stats[1:]))
    p_values = np.array(p_values)
    assert p_values.min() >= 1 / (perms + 1)
    for alpha in (0.02, 0.05, 0.1, 0.3):
        assert np.mean(p_values <= alpha) == pytest.approx(alpha, abs=3 * np.sqrt(alpha / trials) + 0.005)


def _request(rng: np.random.Generator, negation: float) -> tuple[Interactions, list[str]]:
    """20 words: many heavy, noisy pairs among 200 content words, and in half the requests a negation
    pair ('not', adjective) spread over 12 adjectives — the shape of the embedded model's explanations."""
    words = [str(w) for w in rng.choice(VOCAB, size=18)] + ["not", str(rng.choice(ADJECTIVES))]
    terms: dict[tuple[int, ...], float] = {(): 0.1}
    for i in range(20):
        terms[(i,)] = float(rng.normal(0, 0.5))
    for _ in range(12):
        i, j = sorted(rng.choice(18, size=2, replace=False).tolist())
        terms[(i, j)] = float(rng.lognormal(-1.5, 1.0) * rng.choice([-1, 1]))
    if rng.random() < 0.5:
        terms[(18, 19)] = negation
    return Interactions(terms, 20), words


def _map(seed: int, n: int, negation: float) -> InteractionMap:
    rng = np.random.default_rng(seed)
    m = InteractionMap(seed=seed)
    for r in range(n):
        result, words = _request(rng, negation)
        m.add(result, words, request_id=f"s{seed}-r{r}")
    return m


@pytest.mark.slow
def test_max_statistic_catches_a_sparse_move_that_the_euclidean_sum_dilutes():
    # The negation interaction collapses (the broken-negation incident), spread over 12 tuples but
    # concentrated on the member key 'not'. The Euclidean sum adds the sampling noise of hundreds of
    # heavy tuples to that one move; the largest per-key move does not.
    p_max, p_euclidean = [], []
    for s in range(8):
        baseline, window = _map(100 + s, 300, 1.2), _map(500 + s, 60, 0.05)
        p_max.append(compare_maps(baseline, window, 500, seed=s).p_value)
        p_euclidean.append(compare_maps(baseline, window, 500, seed=s, statistic="euclidean").p_value)
        if s == 0:
            report = compare_maps(baseline, window, 200, seed=s)
            assert any("not" in c.key for c in report.top_contributors(3))
    assert max(p_max) < 0.01, p_max
    assert np.median(p_euclidean) > 0.01, p_euclidean


def test_unknown_statistic_is_rejected():
    with pytest.raises(ValueError, match="statistic"):
        compare_maps(_map(1, 5, 1.0), _map(2, 5, 1.0), 10, statistic="l1")  # type: ignore[arg-type]
