"""PSI-based input/output drift counters: known values, bounded vocabulary, merging, report wiring."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.drift import OTHER, DriftCounters, label_psi, psi, token_psi


def test_psi_known_value_and_symmetry_of_zero():
    expected = (0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5)
    assert psi(np.array([50, 50]), np.array([90, 10])) == pytest.approx(expected, rel=1e-3)
    assert psi(np.array([3, 7]), np.array([30, 70])) == pytest.approx(0.0, abs=1e-12)
    assert psi(np.array([0, 0]), np.array([1, 2])) == 0.0


def _counters(seed: int, n: int, topic: list[str], positive_rate: float = 0.5) -> DriftCounters:
    rng = np.random.default_rng(seed)
    counters = DriftCounters(max_tokens=50)
    for _ in range(n):
        tokens = [str(t) for t in rng.choice(topic, size=int(rng.integers(5, 15)))]
        label = "positive" if rng.random() < positive_rate else "negative"
        counters.observe(tokens, label, float(rng.uniform(0.5, 1.0)))
    return counters


def test_topic_shift_moves_token_psi_not_label_psi():
    movies = [f"m{i}" for i in range(40)]
    food = [f"f{i}" for i in range(40)]
    base = _counters(0, 500, movies)
    same = _counters(1, 200, movies)
    shifted = _counters(2, 200, food)
    assert token_psi(base, same) < 0.1
    assert token_psi(base, shifted) > 1.0
    assert label_psi(base, shifted) < 0.1
    assert label_psi(base, _counters(3, 200, movies, positive_rate=0.9)) > 0.25


def test_vocabulary_is_bounded_and_merge_adds():
    words = [f"w{i}" for i in range(500)]
    a, b = _counters(0, 300, words), _counters(1, 300, words)
    assert len(a.tokens) <= 2 * a.max_tokens + 1 and OTHER in a.tokens
    total = sum(a.tokens.values()) + sum(b.tokens.values())
    merged = DriftCounters(max_tokens=50).merge(a).merge(b)
    assert sum(merged.tokens.values()) == pytest.approx(total)
    assert merged.observed == 600
    np.testing.assert_allclose(merged.lengths, a.lengths + b.lengths)


def test_open_vocabulary_trims_rarely_and_keeps_the_frequent_tokens_exact(monkeypatch):
    """A new token on every request (ids, names) must not cost a sort per request on the serving path."""
    import spex_monitor.monitor.drift as drift

    trims = []
    real = drift.heapq.nlargest
    monkeypatch.setattr(drift.heapq, "nlargest", lambda *a, **k: trims.append(1) or real(*a, **k))
    counters = DriftCounters(max_tokens=50)
    for i in range(500):
        unique = [f"id{i}-{j}" for j in range(20)]
        counters.observe(["good", "movie"] + unique if i % 2 else ["good"] + unique, "positive", 0.9)
    new_tokens = 500 * 20 + 2
    assert 0 < len(trims) <= new_tokens // counters.max_tokens + 1
    assert len(counters.tokens) <= 2 * counters.max_tokens + 1
    assert counters.tokens["good"] == 500 and counters.tokens["movie"] == 250
    assert sum(counters.tokens.values()) == pytest.approx(new_tokens - 2 + 500 + 250)


def test_report_carries_drift_and_survives_bytes():
    base, window = InteractionMap(), InteractionMap()
    for i in range(100):
        base.observe(["the", "movie", "was", "good"], "positive", 0.9)
        window.observe(["the", "soup", "was", "cold", "and", "salty"] * (1 + i % 3), "negative", 0.6)
    report = compare_maps(InteractionMap.from_bytes(base.to_bytes()), window, n_permutations=10)
    assert report.input_drift["tokens"] > 1.0 and report.input_drift["length"] > 0.25
    assert report.output_drift["label"] > 1.0 and report.output_drift["confidence"] > 1.0
