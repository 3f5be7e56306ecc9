"""Null calibration of the decisive-interaction test and of the one alarm that combines it with the
interaction-shift test, and quiet on benign drift where negation is decisive in normal traffic.

Maps are drawn with replacement from pools of planted explanations (``decisive_traffic``): two maps drawn
from one pool are i.i.d. samples of one traffic, the null. Bounds are one-sided (false alarms may be fewer
than α, the tests are conservative) at three binomial standard deviations.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from decisive_traffic import drawn_map, planted_pool

from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.decisive_shift import decisive_test


@functools.cache
def _null_pairs() -> list[tuple[InteractionMap, InteractionMap]]:
    """250 (baseline of 200, window of 100) pairs drawn from one pool, shared by both levels."""
    pool = planted_pool(1, 2000)
    rng = np.random.default_rng(0)
    return [(drawn_map(pool, rng, 200), drawn_map(pool, rng, 100)) for _ in range(250)]


def _bound(alpha: float, trials: int) -> float:
    return alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials) + 0.005


@pytest.mark.slow
@pytest.mark.parametrize("level", [0.005, 1.0])  # the default screening, and none (every eligible tuple)
def test_decisive_test_is_calibrated_under_no_change(level):
    reports = [decisive_test(baseline, window, level=level) for baseline, window in _null_pairs()]
    assert all(r is not None for r in reports)
    p_values = np.array([r.p_value for r in reports if r is not None])
    family = np.mean([r.tested for r in reports if r is not None])
    assert family >= (3 if level == 1.0 else 0.3)  # a family, not one lone test
    for alpha in (0.01, 0.05, 0.2):
        assert np.mean(p_values <= alpha) <= _bound(alpha, len(p_values)), (alpha, np.sort(p_values)[:10])


@pytest.mark.slow
def test_combined_alarm_is_calibrated_under_no_change():
    # The one alarm: weighted Bonferroni over the permutation test (exact) and the decisive test.
    pool = planted_pool(2, 2000)
    rng = np.random.default_rng(1)
    reports = [
        compare_maps(drawn_map(pool, rng, 200), drawn_map(pool, rng, 60), 99, seed=s) for s in range(120)
    ]
    combined = np.array([r.p_value for r in reports])
    shift = np.array([r.shift_p_value for r in reports])
    decisive = np.array([r.decisive.p_value for r in reports if r.decisive is not None])
    assert len(decisive) == len(reports)
    assert np.allclose(combined, np.minimum(1.0, np.minimum(shift / 0.8, decisive / 0.2)))
    for alpha in (0.02, 0.05, 0.2):
        assert np.mean(combined <= alpha) <= _bound(alpha, len(combined)), alpha
    # the permutation part is still the exact test it was (not made conservative by the combination)
    assert np.mean(shift <= 0.2) == pytest.approx(0.2, abs=3 * np.sqrt(0.2 * 0.8 / len(shift)) + 0.005)


@pytest.mark.slow
def test_benign_drift_with_more_decisive_negation_stays_quiet():
    # Twice as many negated requests and a topic shift: negation pairs are decisive twice as often per
    # window request (a count-based test would fire), at the same rate per opportunity (ours does not).
    base_pool = planted_pool(3, 2000)
    drift_pool = planted_pool(4, 2000, negation_share=0.6, topic=1)
    rng = np.random.default_rng(2)
    p_values, per_request = [], []
    for _ in range(150):
        baseline, window = drawn_map(base_pool, rng, 200), drawn_map(drift_pool, rng, 100)
        report = decisive_test(baseline, window)
        assert report is not None
        p_values.append(report.p_value)
        negation = [
            sum(s.decisive for k, s in m.decisive.stats.items() if "not" in k) / m.decisive.requests
            for m in (baseline, window)
        ]
        per_request.append(negation[1] / negation[0])
    assert np.median(per_request) > 1.6
    p_values = np.array(p_values)
    for alpha in (0.01, 0.05):
        assert np.mean(p_values <= alpha) <= _bound(alpha, len(p_values)), alpha
