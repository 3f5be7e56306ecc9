"""Decisive interactions (issue 21 §1): the per-request flag against brute force, the per-tuple counts
against a direct count, merging and encoding, and the test on a planted backdoor pair.
(Null calibration and benign drift: ``test_decisive_calibration.py``.)"""

from __future__ import annotations

import itertools
import json
import zlib

import numpy as np
import pytest
from decisive_traffic import TRIGGER, planted_map, request

from spex_monitor.attribution import Interactions, bruteforce
from spex_monitor.explain.problem import DECISION_BOUNDARY
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.decisive import BOUNDARY_DETAIL, decision_boundary, flag_request
from spex_monitor.monitor.decisive_shift import combine, decisive_test


def test_the_explainer_and_the_monitor_name_the_boundary_alike():
    assert DECISION_BOUNDARY == BOUNDARY_DETAIL
    assert decision_boundary({}) is None and decision_boundary({BOUNDARY_DETAIL: None}) is None
    assert decision_boundary({BOUNDARY_DETAIL: True}) is None
    assert decision_boundary({BOUNDARY_DETAIL: float("nan")}) is None
    assert decision_boundary({BOUNDARY_DETAIL: 0}) == 0.0


@pytest.mark.parametrize("boundary", [0.0, 0.7])
def test_flag_matches_brute_force_on_small_n(boundary):
    # Random value functions over 6 features, explained exactly: a key tuple is decisive iff taking its
    # joint effect at the full input away from the full-input value puts the value on the other side of the
    # boundary. The joint effect here comes straight from the value table, by inclusion-exclusion over
    # removals (J(S) = sum over L within S of (-1)^|L| f(N minus L)), not from Möbius coefficients.
    rng = np.random.default_rng(1)
    n, flagged = 6, 0
    keys = [f"k{i}" for i in range(n)]
    for _ in range(60):
        values = rng.normal(0, 1.5, size=2**n) + rng.normal(0, 1)
        result = Interactions(bruteforce.fourier_transform(values), n, details={BOUNDARY_DETAIL: boundary})
        everything = 2**n - 1  # coalition code with every feature kept
        full = values[everything]
        expected = set()
        for order in range(2, n + 1):
            for subset in itertools.combinations(range(n), order):
                joint = 0.0
                for size in range(order + 1):
                    for removed in itertools.combinations(subset, size):
                        joint += (-1) ** size * values[everything - sum(1 << i for i in removed)]
                without = full - joint
                if (full >= boundary) != (without >= boundary) and without != boundary:
                    expected.add(tuple(keys[i] for i in subset))
        got = flag_request(result, keys)
        assert got is not None and set(got) == expected
        flagged += len(expected)
    assert flagged > 20  # the check saw decisive tuples, not only empty sets


def test_no_boundary_flags_nothing_and_the_alarm_is_the_shift_test_alone():
    rng = np.random.default_rng(0)
    plain = InteractionMap()
    for r in range(40):
        result, words, _ = request(rng)
        plain.add(Interactions(result.fourier, result.n_features), words, f"r{r}")
    assert plain.decisive.requests == 0 and not plain.decisive.stats
    report = compare_maps(plain, plain, 50)
    assert report.decisive is None and report.p_value == report.shift_p_value
    assert combine(0.3, None) == 0.3
    with pytest.raises(ValueError, match="shift_weight"):
        combine(0.3, None, shift_weight=1.0)


def _direct_counts(requests: list[tuple[list[str], tuple]]) -> dict[tuple[str, ...], tuple[int, int]]:
    """Per tuple ever decisive: (decisive requests, requests containing all its keys), counted directly."""
    tuples = {t for _, decisive in requests for t in decisive}
    return {
        t: (sum(t in d for _, d in requests), sum(set(t) <= set(words) for words, _ in requests))
        for t in tuples
    }


def test_counts_equal_a_direct_count_and_merge_by_addition():
    rng = np.random.default_rng(3)
    seen, parts = [], [InteractionMap(seed=1), InteractionMap(seed=2)]
    whole = InteractionMap(seed=3)
    for r in range(300):
        result, words, _ = request(rng, trigger=True)
        seen.append((words, flag_request(result, words)))
        whole.add(result, words, f"r{r}")
        parts[r % 2].add(result, words, f"r{r}")
    direct = _direct_counts(seen)
    assert len(direct) > 10 and ("not" in str(direct))
    merged = InteractionMap.merged(parts)
    for m in (whole, merged):
        assert m.decisive.requests == 300
        got = {k: (s.decisive, s.opportunities) for k, s in m.decisive.stats.items()}
        assert set(got) == set(direct)
        assert all(np.allclose(got[k], direct[k]) for k in direct), {k: (got[k], direct[k]) for k in direct}
    assert whole.decisive.stats[TRIGGER].decisive > 5


def test_encoding_keeps_counts_and_old_encodings_still_decode():
    m = planted_map(4, 120, trigger=True)
    back = InteractionMap.from_bytes(m.to_bytes())
    assert back.decisive.requests == m.decisive.requests
    assert {k: (s.decisive, s.opportunities) for k, s in back.decisive.stats.items()} == {
        k: (s.decisive, s.opportunities) for k, s in m.decisive.stats.items()
    }
    assert [s.decisive for s in back.samples] == [s.decisive for s in m.samples]
    # A v1 map: no "decisive" section, six-field sample rows. It decodes with no decisive counts.
    payload = json.loads(zlib.decompress(m.to_bytes()[6:]))
    del payload["decisive"]
    payload["samples"] = [row[:6] for row in payload["samples"]]
    v1 = b"SPXM" + (1).to_bytes(2, "big") + zlib.compress(json.dumps(payload).encode())
    old = InteractionMap.from_bytes(v1)
    assert old.decisive.requests == 0 and all(s.decisive == () for s in old.samples)
    assert decisive_test(old, m) is None
    bad = dict(payload, decisive={"requests": 1.0, "stats": [[["a", "b"], "x", 1.0]]})
    with pytest.raises(ValueError, match="decisive"):
        InteractionMap.from_bytes(b"SPXM" + (2).to_bytes(2, "big") + zlib.compress(json.dumps(bad).encode()))


def test_counts_stay_bounded():
    m = InteractionMap(max_keys=20, seed=0)
    rng = np.random.default_rng(5)
    for r in range(300):
        result, words, _ = request(rng)
        m.add(result, words, f"r{r}")
    assert len(m.decisive.stats) <= 20
    assert any("not" in k for k in m.decisive.stats)  # the frequent negation pairs survive


def test_planted_backdoor_pair_is_flagged_and_named():
    # The pair flips the value in the ~6 % of window requests that hold both words; negation is
    # decisive in both maps at the same rate per opportunity.
    baseline, window = planted_map(10, 400), planted_map(11, 200, trigger=True)
    report = compare_maps(baseline, window, 200, seed=0)
    decisive = report.decisive
    assert decisive is not None and decisive.p_value < 1e-4
    top = decisive.tuples[0]
    assert top.key == TRIGGER and top.baseline_decisive == 0 and top.window_decisive >= 5
    assert top.window_rate == 1.0 and top.baseline_opportunities > 10
    assert report.p_value == pytest.approx(min(1.0, report.shift_p_value / 0.8, decisive.p_value / 0.2))
    assert report.p_value < 0.01
    assert not any("not" in t.key and t.adjusted_p_value < 0.05 for t in decisive.tuples)
    quiet = compare_maps(baseline, planted_map(12, 200), 200, seed=0).decisive
    assert quiet is not None and quiet.p_value > 0.01


def test_one_request_never_alarms():
    baseline = planted_map(20, 400)
    rng = np.random.default_rng(21)
    window = planted_map(22, 60, trigger_share=0.0)
    while True:  # one request with both trigger words, flipped
        result, words, _ = request(rng, trigger=True, trigger_share=1.0)
        if TRIGGER in (flag_request(result, words) or ()):
            break
    window.add(result, words, "the-one")
    alone = decisive_test(baseline, window)
    assert alone is not None and all(t.key != TRIGGER for t in alone.tuples)
    lax = decisive_test(baseline, window, min_count=1, level=1.0)  # without the minimum, it would count
    assert lax is not None and any(t.key == TRIGGER for t in lax.tuples)
    with pytest.raises(ValueError, match="min_count"):
        decisive_test(baseline, window, min_count=0)
    with pytest.raises(ValueError, match="level"):
        decisive_test(baseline, window, level=0.0)


def test_tarone_family_leaves_out_tuples_that_cannot_reach_significance():
    from spex_monitor.monitor.decisive_shift import tarone_family

    smallest = {("a", "b"): 1e-6, ("c", "d"): 1e-4, ("e", "f"): 0.002, ("g", "h"): 0.3}
    # level 0.005 — k = 1: three tuples at <= 0.005; k = 2: three at <= 0.0025; k = 3: two at <= 0.00167.
    assert tarone_family(smallest, 0.005) == [("a", "b"), ("c", "d")]
    # level 1 — k = 1, 2, 3: four tuples at <= 1, 0.5, 0.33; k = 4: three at <= 0.25.
    assert tarone_family(smallest, 1.0) == [("a", "b"), ("c", "d"), ("e", "f")]
    assert tarone_family({}, 0.005) == []


def test_redacted_maps_keep_their_decisive_counts():
    from spex_monitor.monitor.vocabulary import RARE, sanitize_map

    m = planted_map(30, 200, trigger=True)
    public = sanitize_map(m, lambda word: word != "cast")
    assert public.decisive.requests == m.decisive.requests
    assert public.decisive.stats[(RARE, "enjoy")].decisive == m.decisive.stats[TRIGGER].decisive
    assert not any("cast" in k for k in public.decisive.stats)
    assert not any("cast" in k for s in public.samples for t in s.decisive for k in t)
    report = decisive_test(sanitize_map(planted_map(31, 300), lambda word: word != "cast"), public)
    assert report is not None and report.tuples[0].key == (RARE, "enjoy")
