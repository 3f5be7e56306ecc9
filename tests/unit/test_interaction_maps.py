"""Interaction maps and shift statistics on constructed explanations with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap, compare_maps, first_order_ndcg

VOCAB = [f"w{i}" for i in range(30)]


def _request(rng: np.random.Generator, negation: float = 2.0) -> tuple[Interactions, list[str]]:
    """8 words; first-order effects, two random pairs, and a ('good','not') pair of strength ``negation``."""
    words = [str(w) for w in rng.choice(VOCAB, size=6)] + ["not", "good"]
    terms: dict[tuple[int, ...], float] = {(): 0.1}
    for i in range(8):
        terms[(i,)] = float(rng.normal(0, 0.5))
    for _ in range(2):
        i, j = sorted(rng.choice(6, size=2, replace=False).tolist())
        terms[(i, j)] = float(rng.normal(0, 0.6))
    terms[(6, 7)] = float(negation + rng.normal(0, 0.3))
    return Interactions(terms, 8, faithfulness=0.95), words


def _map(seed: int, n: int, negation: float = 2.0, **kwargs) -> InteractionMap:
    rng = np.random.default_rng(seed)
    m = InteractionMap(seed=seed, **kwargs)
    for r in range(n):
        result, words = _request(rng, negation)
        m.add(result, words, request_id=f"s{seed}-r{r}")
    return m


def test_add_aggregates_repeated_keys_and_keeps_sums():
    m = InteractionMap()
    result = Interactions({(0,): 1.0, (1,): -0.5, (0, 2): 2.0, (1, 2): 1.0}, 3)
    m.add(result, ["good", "good", "not"], request_id="r1")
    assert m.stats[("good",)].sum_coef == pytest.approx(0.5)  # two "good"s aggregate within the request
    assert m.stats[("good", "not")].sum_coef == pytest.approx(3.0)
    assert m.stats[("good", "not")].count == 1 and m.stats[("good", "not")].exemplars == ["r1"]
    assert m.order_shares() == pytest.approx({1: 0.25 / 9.25, 2: 9.0 / 9.25, 3: 0.0})
    with pytest.raises(ValueError, match="2 keys"):
        m.add(result, ["a", "b"])


def test_merge_is_exact_addition():
    a, b = _map(1, 40), _map(2, 60)
    both = InteractionMap(seed=9)
    rng1, rng2 = np.random.default_rng(1), np.random.default_rng(2)
    for r in range(40):
        both.add(*_request(rng1), request_id=f"s1-r{r}")
    for r in range(60):
        both.add(*_request(rng2), request_id=f"s2-r{r}")
    merged = InteractionMap.merged([a, b])
    assert merged.requests == both.requests == 100
    assert set(merged.stats) == set(both.stats)
    for key, stats in both.stats.items():
        assert merged.stats[key].sum_abs == pytest.approx(stats.sum_abs)
        assert merged.stats[key].sum_sq == pytest.approx(stats.sum_sq)
    assert merged.energy == pytest.approx(both.energy)


def test_bytes_roundtrip_and_versioning():
    m = _map(3, 30)
    back = InteractionMap.from_bytes(m.to_bytes())
    assert back.requests == m.requests and set(back.stats) == set(m.stats)
    assert compare_maps(m, back, n_permutations=50).score == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="magic"):
        InteractionMap.from_bytes(b"nope" + m.to_bytes()[4:])
    future = m.to_bytes()[:4] + (99).to_bytes(2, "big") + m.to_bytes()[6:]
    with pytest.raises(ValueError, match="newer"):
        InteractionMap.from_bytes(future)


def test_memory_bound_evicts_weakest_into_other():
    m = _map(4, 200, max_keys=50)
    assert len(m) <= 50
    assert sum(s.count for s in m.other.values()) > 0
    assert ("good", "not") in m.stats  # the strongest key tuple survives
    full = _map(4, 200)
    assert m.energy == pytest.approx(full.energy)  # evicted mass still counts in the order shares


def test_planted_shift_is_detected_and_traced():
    baseline, window = _map(10, 400), _map(11, 120, negation=0.3)
    report = compare_maps(baseline, window, n_permutations=500, seed=0)
    assert report.p_value < 0.01
    top = report.top_contributors(3)
    assert top[0].key == ("good", "not")
    assert top[0].delta < -1.0 and top[0].exemplars and top[0].exemplars[0].startswith("s11-")
    assert report.order_shares[2][1] < report.order_shares[2][0]


@pytest.mark.slow
def test_p_value_is_calibrated_under_no_change():
    # Null pairs: baseline and window drawn from one process. Exchangeable, so P(p <= a) = a up to the
    # permutation grid; 300 pairs give a binomial sd of 1.3 % at a = 5 %.
    p_values = np.array(
        [
            compare_maps(_map(100 + s, 300), _map(1000 + s, 60), n_permutations=199, seed=s).p_value
            for s in range(300)
        ]
    )
    for alpha in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(p_values <= alpha) == pytest.approx(
            alpha, abs=3 * np.sqrt(alpha * (1 - alpha) / 300) + 0.005
        )


@pytest.mark.slow
def test_fixed_baseline_does_not_inflate_false_alarms():
    baseline = _map(7, 300)
    p_values = np.array(
        [compare_maps(baseline, _map(2000 + s, 60), n_permutations=199, seed=s).p_value for s in range(200)]
    )
    assert np.mean(p_values <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 200)


def test_first_order_ndcg_known_answers():
    def single(strengths: dict[str, float]) -> InteractionMap:
        m = InteractionMap()
        keys = list(strengths)
        m.add(Interactions({(i,): v for i, v in enumerate(strengths.values())}, len(keys)), keys)
        return m

    base = single({"a": 3.0, "b": 2.0, "c": 1.0})
    assert first_order_ndcg(base, single({"a": 3.0, "b": 2.0, "c": 1.0})) == pytest.approx(1.0)
    swapped = first_order_ndcg(base, single({"a": 1.0, "b": 2.0, "c": 3.0}), k=3)
    ideal = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert swapped == pytest.approx((1 / np.log2(2) + 2 / np.log2(3) + 3 / np.log2(4)) / ideal)


def _scored(faithfulness: float) -> Interactions:
    return Interactions({(): 0.0, (0,): 1.0, (0, 1): 0.5}, 2, faithfulness=faithfulness)


def test_faithfulness_sample_is_a_bounded_reservoir():
    m = InteractionMap(max_requests=100, seed=3)
    for i in range(5_000):  # value = arrival index, so the sample's mean shows whether it is uniform
        m.add(_scored(i / 5_000), ["a", "b"])
    assert len(m.faithfulness) == 100
    assert np.mean(m.faithfulness) == pytest.approx(0.5, abs=0.08)  # uniform over all 5,000, not the last
    assert m.requests == 5_000


def test_rolling_baseline_forgets_old_faithfulness_at_the_decay_rate():
    """A decayed baseline merged with every new window must not grow, and must favour recent windows."""
    from spex_monitor.monitor.windows import roll_baseline

    baseline = InteractionMap(max_requests=200, seed=1)
    for window in range(300):
        w = InteractionMap(max_requests=200, seed=window)
        for _ in range(50):
            w.add(_scored(float(window)), ["a", "b"])
        baseline = roll_baseline(baseline, w, decay=0.9)
    assert len(baseline.faithfulness) == 200
    ages = 299 - np.asarray(baseline.faithfulness)
    # weights decay by 0.9 per window: the mean age of a kept value is 0.9 / (1 - 0.9) = 9 windows
    assert np.mean(ages) == pytest.approx(9.0, abs=2.5)
    assert len(InteractionMap.from_bytes(baseline.to_bytes()).faithfulness) == 200



@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("requests", "40"),
        ("requests", True),
        ("requests", None),
        ("energy", "x"),
        ("stats", "1"),
        ("samples", []),
    ],
)
def test_a_decoded_map_with_a_non_number_is_refused_naming_the_field(field, bad):
    """Before: ``requests: "40"`` decoded, and SetBaseline's ``baseline.requests < minimum`` then raised
    TypeError (gRPC UNKNOWN) instead of INVALID_ARGUMENT."""
    import json
    import zlib

    good = InteractionMap()
    good.add(Interactions({(): 0.1, (0, 1): 0.5}, 2, faithfulness=0.9), ["a", "b"], request_id="r1")
    blob = good.to_bytes()
    header, payload = blob[:6], json.loads(zlib.decompress(blob[6:]))  # magic + format version, zlib JSON
    assert InteractionMap.from_bytes(header + zlib.compress(json.dumps(payload).encode())).requests == 1
    if field == "requests":
        payload["requests"] = bad
    elif field == "energy":
        payload["energy"] = {"2": bad}
    elif field == "stats":
        payload["stats"][0][1] = bad
    else:
        payload["samples"][0][1] = bad
    with pytest.raises(ValueError, match=field):
        InteractionMap.from_bytes(header + zlib.compress(json.dumps(payload).encode()))
