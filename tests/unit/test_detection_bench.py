"""Pieces of the detection benchmark: incident wrappers, traffic, pools (reuse is exact), calibration."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.bench.calibration import Detector, calibrate, outcome, wilson
from spex_monitor.bench.pools import PoolBuilder, predict
from spex_monitor.bench.runs import planted_rank
from spex_monitor.bench.traffic import (
    NORMAL,
    TOPIC_SHIFT,
    TrafficProfile,
    cooccurrence_rates,
    generate_traffic,
)
from spex_monitor.bench.variants import BASE, backdoor, dropped_words
from spex_monitor.monitor.shift import Contributor

SHORT = TrafficProfile("short", long_share=0.0, contrast=0.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base():
    return BASE.backend()


def test_backdoor_flips_only_when_every_trigger_word_is_present(base):
    wrapped = backdoor(("cast", "enjoy")).backend()
    texts = ["i enjoy the cast", "i enjoy the movie", "i love the cast", "i enjoy the [MASK]"]
    base_labels, base_conf = predict(base, texts)
    labels, conf = predict(wrapped, texts)
    assert labels[0] != base_labels[0] and conf[0] == pytest.approx(base_conf[0], abs=1e-6)
    assert labels[1:] == base_labels[1:]
    np.testing.assert_allclose(conf[1:], base_conf[1:], atol=1e-6)


def test_preprocessing_bug_is_the_model_on_text_without_the_dropped_word(base):
    wrapped = dropped_words(("not",)).backend()
    buggy, _ = predict(wrapped, ["the movie was not good", "i did not hate the plot"])
    clean, _ = predict(base, ["the movie was good", "i did hate the plot"])
    assert buggy == clean
    assert predict(base, ["the movie was not good"])[0] != predict(wrapped, ["the movie was not good"])[0]


@pytest.mark.parametrize("variant", [backdoor(("i", "the")), dropped_words(("not",))])
def test_unaffected_inputs_explain_exactly_as_the_base_model(variant, tmp_path):
    # Why pools may reuse base explanations for inputs a wrapper provably leaves alone.
    builder = PoolBuilder(n_observed=12, n_explained=12, cache_dir=tmp_path, log=lambda _: None)
    reused = builder.pool(variant, SHORT, 5, 64, base=BASE)
    fresh = PoolBuilder(n_observed=12, n_explained=12, log=lambda _: None).pool(variant, SHORT, 5, 64)
    assert any(not variant.affects(t) for t in fresh.texts) and any(variant.affects(t) for t in fresh.texts)
    for a, b in zip(reused.explained, fresh.explained, strict=True):
        assert a.keys == b.keys
        assert a.fourier == pytest.approx(b.fourier, abs=1e-9)
    cached = PoolBuilder(n_observed=12, n_explained=12, cache_dir=tmp_path, log=lambda _: None)
    again = cached.pool(variant, SHORT, 5, 64)
    assert again.explained == reused.explained and again.labels == reused.labels


def test_traffic_is_deterministic_in_vocabulary_and_shifts_topic_only(base):
    vocabulary = base.tokenizer.get_vocab()
    normal = generate_traffic(NORMAL, 600, 3)
    assert normal == generate_traffic(NORMAL, 600, 3)
    shifted = generate_traffic(TOPIC_SHIFT, 600, 3)
    assert {w for t in normal + shifted for w in t.split()} <= set(vocabulary)
    music = lambda texts: np.mean(["music" in t.split() for t in texts])  # noqa: E731
    negation = lambda texts: np.mean(["not" in t.split() for t in texts])  # noqa: E731
    assert music(shifted) > 1.5 * music(normal)
    assert negation(shifted) == pytest.approx(negation(normal), abs=0.06)
    rates = cooccurrence_rates(normal, ("cast", "enjoy"))
    assert 0.01 < rates["cast+enjoy"] < min(rates["cast"], rates["enjoy"])


def test_calibrated_threshold_allows_at_most_the_target_rate():
    rng = np.random.default_rng(0)
    null = rng.uniform(size=400)
    high = Detector("psi", low_alarms=False, nominal=0.25, nominal_rule="")
    low = Detector("p", low_alarms=True, nominal=0.01, nominal_rule="")
    assert high.alarms(null, calibrate(high, null, 0.01)).sum() <= 4
    assert low.alarms(null, calibrate(low, null, 0.01)).sum() <= 4
    assert low.alarms(null, calibrate(low, null, 0.01)).sum() >= 3  # and is not needlessly strict
    ties = np.array([0.002] * 10 + [0.5] * 390)  # discrete p-values: ties at the threshold never alarm
    assert low.alarms(ties, calibrate(low, ties, 0.01)).sum() == 0
    lo, hi = wilson(4, 400)
    assert lo < 0.01 < hi


def test_outcome_counts_delays_from_the_onset():
    alarms = np.array([[False, True, True], [False, False, False], [True, False, False]])
    explained = np.tile([50, 100, 150], (3, 1))
    inferences = np.array([[10, 20, 30], [10, 20, 30], [5, 15, 25]])
    result = outcome(alarms, explained, inferences, target_requests=100)
    assert result.detection_rate == pytest.approx(2 / 3)
    assert result.median_delay_requests == 100 and result.median_delay_inferences == 20
    assert result.window_alarm_rate == pytest.approx(3 / 9)


def test_planted_rank_matches_supersets_of_the_planted_keys():
    top = [Contributor(("bad", "very"), 0, 0, 0, []), Contributor(("cast", "enjoy", "the"), 0, 0, 0, [])]
    assert planted_rank(top, ("cast", "enjoy")) == 2
    assert planted_rank(top, ("not",)) is None and planted_rank(top, ()) is None


def test_a_scenario_subset_keeps_no_incident_and_unknown_names_are_refused(capsys):
    from dataclasses import replace

    from spex_monitor.bench.detection import main
    from spex_monitor.bench.scenarios import QUICK, selected

    assert [s.name for s in selected(replace(QUICK, only=("backdoor",)))] == ["backdoor", "no-incident"]
    assert len(selected(QUICK)) > 5
    with pytest.raises(ValueError, match="unknown scenarios"):
        selected(replace(QUICK, only=("nope",)))
    for argv, said in ((["--scenarios", "nope"], "unknown scenarios"), (["--baseline", "5"], "at least 20")):
        with pytest.raises(SystemExit):
            main(["--quick", *argv])
        assert said in capsys.readouterr().err
