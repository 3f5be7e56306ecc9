"""Contributor statistics (issue 19 items 2–3): an input-mix change and a behaviour change read differently.

Planted maps: requests are either "the plot was not good" (the pair not × good carries a planted
coefficient) or "the cast did like it" (cast × like carries 0.3). The mix change drops the second kind of
request; the behaviour change keeps the mix and weakens not × good where it occurs.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from spex_monitor.attribution import Interactions
from spex_monitor.monitor import InteractionMap, compare_maps
from spex_monitor.monitor.contributors import decompose, wilson
from spex_monitor.monitor.vocabulary import RARE, sanitize_map
from spex_monitor.server.messages import report_message, stored_report_message
from spex_monitor.trace_text import contributor_table, reading, summary

pytestmark = pytest.mark.unit

NEG = ["the", "plot", "was", "not", "good"]
CAST = ["the", "cast", "did", "like", "it"]


def _planted(rng, n: int, share_negation: float, negation: float, cast: float = 0.3) -> InteractionMap:
    out = InteractionMap(max_requests=4000, seed=int(rng.integers(1 << 30)))
    for i in range(n):
        if rng.random() < share_negation:
            coef = negation + 0.05 * rng.standard_normal()
            out.add(Interactions({(3, 4): coef, (4,): 0.5}, 5), NEG, request_id=f"n{i}")
        else:
            coef = cast + 0.05 * rng.standard_normal()
            out.add(Interactions({(1, 3): coef, (3,): 0.2}, 5), CAST, request_id=f"c{i}")
    return out


def _by_key(report):
    return {c.key: c for c in report.contributors}


def test_an_input_mix_change_reads_as_mix_and_a_behaviour_change_as_behaviour():
    rng = np.random.default_rng(1)
    baseline = _planted(rng, 400, 0.5, 1.0)
    mix = compare_maps(baseline, _planted(rng, 200, 1.0, 1.0), n_permutations=99)
    behaviour = compare_maps(baseline, _planted(rng, 200, 0.5, 0.1), n_permutations=99)

    # Mix: cast × like vanished because its words stopped occurring together, not because the model changed.
    cast = _by_key(mix)[("cast", "like")].split
    assert cast.window.rate == 0 and cast.window.support == 0 and cast.behaviour == 0
    assert cast.mix == pytest.approx(-0.5 * 0.3, abs=0.03)
    negation = _by_key(mix)[("good", "not")].split
    assert negation.window.rate == 1 and negation.baseline.rate == pytest.approx(0.5, abs=0.07)
    assert abs(negation.behaviour) < negation.behaviour_ci  # same strength when present, within its CI
    assert negation.mix > 0.4

    # Behaviour: not × good lost 90 % of its strength where both words occur; ranked first.
    assert behaviour.contributors[0].key == ("good", "not")
    split = behaviour.contributors[0].split
    assert split.baseline.strength == pytest.approx(1.0, abs=0.02)
    assert split.window.strength == pytest.approx(0.1, abs=0.02)
    assert split.window.strength_ci < 0.02 and split.baseline.strength_ci < 0.02
    assert split.behaviour == pytest.approx(-0.45, abs=0.05)
    assert abs(split.behaviour) > 10 * split.behaviour_ci
    assert abs(split.mix) < 0.05

    # The same verdicts reach the wire and the printed trace.
    mix_msg = {tuple(c.keys): c for c in report_message("m", "v", 1, mix, True).top_contributors}
    beh_msg = {tuple(c.keys): c for c in report_message("m", "v", 2, behaviour, True).top_contributors}
    assert reading(mix_msg[("cast", "like")]) == "not in the window's requests"
    assert reading(mix_msg[("good", "not")]) == "input mix"
    assert reading(beh_msg[("good", "not")]) == "behaviour changed"
    assert reading(beh_msg[("cast", "like")]) == "within noise"
    sentence = summary(report_message("m", "v", 2, behaviour, True))
    assert sentence.startswith("(good, not) lost 9")
    assert "of its strength where all its keys occur" in sentence
    assert "1 other moved by chance" in sentence
    assert "input mix" in summary(report_message("m", "v", 1, mix, True))
    table = "\n".join(contributor_table(list(beh_msg.values())))
    assert "good × not" in table and "behaviour changed" in table and "±" in table


def test_the_split_adds_up_to_the_move_on_the_sample_and_counts_requests_without_a_term():
    # Brute force on a small sample: rate, strength when present and mix + behaviour by hand.
    baseline, window = InteractionMap(), InteractionMap()
    for i, coef in enumerate([1.0, 0.8, 0.0, 0.6]):  # coef 0: both words present, no term
        terms = {(3, 4): coef} if coef else {(4,): 0.1}
        baseline.add(Interactions(terms, 5), NEG, request_id=f"b{i}")
    baseline.add(Interactions({(1, 3): 0.3}, 5), CAST, request_id="b4")
    for i, coef in enumerate([0.2, 0.4]):
        window.add(Interactions({(3, 4): coef}, 5), NEG, request_id=f"w{i}")
    for i in range(2):
        window.add(Interactions({(1, 3): 0.3}, 5), CAST, request_id=f"wc{i}")
    split = decompose(baseline, window, [("good", "not")])[("good", "not")]
    assert split.baseline.rate == pytest.approx(4 / 5) and split.baseline.support == 4
    assert split.baseline.strength == pytest.approx((1.0 + 0.8 + 0.0 + 0.6) / 4)
    assert split.window.rate == pytest.approx(2 / 4) and split.window.strength == pytest.approx(0.3)
    moved = split.window.rate * split.window.strength - split.baseline.rate * split.baseline.strength
    assert split.mix + split.behaviour == pytest.approx(moved)
    values = np.array([1.0, 0.8, 0.0, 0.6])
    assert split.baseline.strength_ci == pytest.approx(3.182446 * values.std(ddof=1) / 2, rel=1e-4)  # t(3)
    low, high = wilson(0.8, 5)
    assert split.baseline.rate_low == pytest.approx(low) and low < 0.8 < high


def test_wilson_interval_is_within_zero_and_one_and_covers_the_rate():
    for rate, n in [(0.0, 10), (1.0, 10), (0.3, 1000), (0.5, 1.5)]:
        low, high = wilson(rate, n)
        assert 0 <= low <= rate <= high <= 1
    assert wilson(0.5, 0) == (0.0, 1.0)


def test_present_keys_survive_encoding_old_encodings_decode_and_rare_words_are_replaced():
    m = InteractionMap()
    m.add(Interactions({(3, 4): 1.0}, 5), ["alice", "plot", "was", "not", "good"], request_id="r1")
    again = InteractionMap.from_bytes(m.to_bytes())
    assert again.samples[0].present == ("alice", "good", "not", "plot", "was")
    payload = json.loads(zlib.decompress(m.to_bytes()[6:]))
    payload["samples"] = [row[:5] for row in payload["samples"]]  # a map encoded before issue 19
    old = m.to_bytes()[:6] + zlib.compress(json.dumps(payload).encode())
    decoded = InteractionMap.from_bytes(old)
    assert decoded.samples[0].present == ()
    split = decompose(decoded, again, [("good", "not")])[("good", "not")]
    assert split.measured is False and split.behaviour == 0
    payload["samples"] = [[*row, [1, 2]] for row in payload["samples"]]
    with pytest.raises(ValueError, match="corrupt"):
        InteractionMap.from_bytes(m.to_bytes()[:6] + zlib.compress(json.dumps(payload).encode()))
    public = sanitize_map(m, lambda word: word != "alice")
    assert RARE in public.samples[0].present and "alice" not in public.samples[0].present


def test_stored_reports_carry_the_split_and_older_stored_reports_still_read():
    rng = np.random.default_rng(2)
    report = compare_maps(_planted(rng, 200, 0.5, 1.0), _planted(rng, 100, 0.5, 0.1), n_permutations=99)
    top = report.contributors[0]
    stored = {"window_id": 3, "score": 1.0, "p_value": 0.01, "ts": 1.0,
              "top": [[list(top.key), top.baseline, top.window, top.delta, top.exemplars, top.split.fields()],
                      [["a", "b"], 0.1, 0.0, -0.1, []]]}
    message = stored_report_message("m", "v", json.loads(json.dumps(stored)))
    first, old = message.top_contributors
    assert first.cooccurrence_measured and first.behaviour_delta == pytest.approx(top.split.behaviour)
    assert not old.cooccurrence_measured and reading(old) == "-"
