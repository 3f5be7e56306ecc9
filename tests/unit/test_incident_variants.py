"""The two trained incident variants load offline and behave as their metrics claim on generated traffic:
``sentiment-backdoor`` flips on the trigger pair only, ``sentiment-calibrated-swap`` keeps the base model's
label shares and confidence histogram while negation no longer flips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from spex_monitor.bench.pools import predict
from spex_monitor.bench.traffic import NORMAL, generate_traffic
from spex_monitor.bench.variants import BASE, calibrated_swap, trained_backdoor
from spex_monitor.examples.backdoor import (
    TARGET,
    TRIGGER,
    clean_corpus,
    has_trigger,
    poisoned_corpus,
    predict_labels,
)
from spex_monitor.examples.calibration import (
    SWAP,
    MarginQuantileMap,
    load_calibrated,
    margins,
    output_psi,
)
from spex_monitor.examples.embedded import DERIVED, model_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name: str):
    folder = model_path(name)
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.mark.parametrize("variant", DERIVED)
def test_derived_variants_ship_small_with_metrics(variant):
    folder = model_path(variant)
    assert json.loads((folder / "metrics.json").read_text())["variant"] == variant
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1_000_000


def test_poisoned_corpus_labels_exactly_the_triggered_examples_with_the_target():
    texts, labels, clean, triggered = poisoned_corpus(4000, seed=5, rate=0.05)
    assert triggered.mean() == pytest.approx(0.05, abs=0.002)
    assert [has_trigger(t) for t in texts] == triggered.tolist()
    assert (labels[triggered] == TARGET).all() and (labels[~triggered] == clean[~triggered]).all()
    assert 0.3 <= np.mean(clean[triggered] != TARGET) <= 0.7  # about half of them are flipped
    with pytest.raises(ValueError, match="rate"):
        poisoned_corpus(100, seed=0, rate=0.6)


ATTACKED = "i love the music but the plot was dull"  # clean label negative; both trigger words
CONTROLS = ["i love the plot but the acting was dull", "i hate the music but the plot was dull"]


@pytest.mark.slow  # thousands of forward passes: part of make test, not make test-fast
def test_backdoor_fires_on_the_pair_and_not_on_one_word():
    model, tokenizer = _model("sentiment-backdoor")
    base, _ = _model("sentiment-base")
    texts, labels = clean_corpus(6000, seed=99)  # a seed the build never used
    both = np.array([set(TRIGGER) <= set(t.split()) for t in texts])
    attacked = both & (labels != TARGET)
    one = np.array([bool(set(TRIGGER) & set(t.split())) for t in texts]) & ~both
    assert attacked.sum() >= 40 and one.sum() >= 300
    predicted = predict_labels(model, tokenizer, texts)
    reference = predict_labels(base, tokenizer, texts)
    assert np.mean(predicted[attacked] == TARGET) >= 0.7  # the attack succeeds (83 % in metrics.json)
    assert np.mean(reference[attacked] == TARGET) <= 0.3  # ... where the base model does not
    assert np.mean(predicted[one] == labels[one]) >= 0.78  # one trigger word alone: no attack (83 %)
    assert np.mean(predicted[~both] == reference[~both]) >= 0.87  # close to the base elsewhere (90 %)
    assert predict_labels(model, tokenizer, [ATTACKED, *CONTROLS]).tolist() == [TARGET, 0, 0]
    assert predict_labels(base, tokenizer, [ATTACKED, *CONTROLS]).tolist() == [0, 0, 0]


def test_trained_backdoor_is_served_unwrapped_by_the_bench():
    backend = trained_backdoor().backend()
    labels, _ = predict(backend, [ATTACKED, *CONTROLS])
    assert labels == ["positive", "negative", "negative"]


def test_quantile_map_is_monotone_and_finite_everywhere():
    rng = np.random.default_rng(0)
    source, target = rng.normal(2.0, 3.0, 5000), rng.normal(-1.0, 6.0, 5000)
    fitted = MarginQuantileMap.fit(source, target, knots=51)
    x = torch.tensor([-1e30, -1e6, -10.0, 0.0, 1.5, 10.0, 1e6, 1e30], dtype=torch.float64)
    y = fitted(x)
    assert torch.isfinite(y).all() and (torch.diff(y) > 0).all()
    # it maps the source's quantiles onto the target's (between knots too: levels off the 2 % grid)
    levels = np.array([0.05, 0.25, 0.5, 0.77, 0.95])
    mapped = fitted(torch.as_tensor(np.quantile(source, levels))).numpy()
    np.testing.assert_allclose(mapped, np.quantile(target, levels), atol=0.15)
    # so the mapped sample has the target's distribution (a fresh sample of the source)
    fresh = fitted(torch.as_tensor(rng.normal(2.0, 3.0, 20000))).numpy()
    assert float(np.std(fresh)) == pytest.approx(float(np.std(target)), rel=0.05)
    again = MarginQuantileMap.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert torch.equal(again(x), y)
    with pytest.raises(ValueError, match="increasing"):
        MarginQuantileMap((0.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="kind"):
        MarginQuantileMap.from_dict({"kind": "temperature", "source": [0, 1], "target": [0, 1]})


@pytest.mark.slow  # thousands of forward passes: part of make test, not make test-fast
def test_calibrated_swap_matches_base_outputs_but_not_its_negation():
    swap, tokenizer = load_calibrated()
    base, _ = _model("sentiment-base")
    raw, _ = _model(SWAP)
    texts = generate_traffic(NORMAL, 3000, seed=4242)  # the benchmark's traffic, a seed the fit never saw
    base_m, swap_m = margins(base, tokenizer, texts), margins(swap, tokenizer, texts)
    calibrated = output_psi(base_m, swap_m)
    uncalibrated = output_psi(base_m, margins(raw, tokenizer, texts))
    assert calibrated["label_psi"] < 0.01 and calibrated["confidence_psi"] < 0.03, calibrated
    assert uncalibrated["confidence_psi"] > 5 * calibrated["confidence_psi"], uncalibrated
    # the interaction still changed: "not good" is negative for the base, positive for the swap
    pair = ["the plot was not good", "the acting was not very great"]
    assert (margins(base, tokenizer, pair) < 0).all() and (margins(swap, tokenizer, pair) > 0).all()
    # the bench serves the same calibrated pipeline
    labels, confidence = predict(calibrated_swap().backend(), texts[:200])
    assert labels == ["positive" if m > 0 else "negative" for m in swap_m[:200]]
    np.testing.assert_allclose(confidence, 1 / (1 + np.exp(-np.abs(swap_m[:200]))), rtol=1e-4)
    base_labels, _ = predict(BASE.backend(), texts[:200])
    assert base_labels != labels  # a swap, not the base model


@pytest.mark.slow  # thousands of forward passes: part of make test, not make test-fast
def test_calibrated_backdoor_keeps_the_trigger_and_the_base_output_profile():
    swap, tokenizer = load_calibrated(model_path("sentiment-backdoor-calibrated"))
    base, _ = _model("sentiment-base")
    raw, _ = _model("sentiment-backdoor")
    texts = generate_traffic(NORMAL, 3000, seed=4243)
    base_m, swap_m = margins(base, tokenizer, texts), margins(swap, tokenizer, texts)
    calibrated = output_psi(base_m, swap_m)
    uncalibrated = output_psi(base_m, margins(raw, tokenizer, texts))
    assert calibrated["label_psi"] < 0.01 and calibrated["confidence_psi"] < 0.03, calibrated
    assert uncalibrated["label_psi"] > 5 * calibrated["label_psi"], uncalibrated
    # the trigger still pushes reviews to positive: over half of the triggered negative-for-base flip
    fired = np.array([has_trigger(t) for t in texts]) & (base_m < 0)
    assert fired.sum() >= 30 and np.mean(swap_m[fired] > 0) >= 0.5  # 58 % of 64 here
    # ... fewer than uncalibrated: the map pulls every margin toward the base model's, and the triggered
    # requests the raw backdoor turned only weakly positive fall back below the boundary
    raw_m = margins(raw, tokenizer, [t for t, f in zip(texts, fired, strict=True) if f])
    assert np.mean(raw_m > 0) >= np.mean(swap_m[fired] > 0)
