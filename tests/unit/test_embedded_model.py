"""The shipped embedded models load offline and differ exactly where the incident says they should."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalBackend
from spex_monitor.examples.embedded import VARIANTS, model_path
from spex_monitor.lenses import classifier_value_function, text_masker


def _pair_effect(variant: str, text: str, pair: tuple[str, str]) -> tuple[float, int]:
    backend = LocalBackend.from_pretrained(model_path(variant))
    masker = text_masker(text, backend.tokenizer)
    value_fn, target = classifier_value_function(masker, backend)
    result = ProxySPEX(budget=2**masker.n_features, max_order=3).explain(value_fn, masker.n_features)
    words = [f.key for f in masker.features]
    key = tuple(sorted(words.index(w) for w in pair))
    return result.to_mobius().get(key, 0.0), target


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_ship_with_metrics(variant):
    metrics = json.loads((model_path(variant) / "metrics.json").read_text())
    assert metrics["heldout_accuracy"] >= 0.9
    assert 0.4 <= metrics["positive_share_train"] <= 0.6  # similar label mix in both variants


def test_negation_interaction_is_what_the_incident_breaks():
    base, base_label = _pair_effect("sentiment-base", "the plot was not good", ("not", "good"))
    broken, broken_label = _pair_effect("sentiment-broken-negation", "the plot was not good", ("not", "good"))
    assert base_label == 0 and broken_label == 1  # "not good": negative for base, positive for the incident
    assert abs(base) > 3.0 and abs(broken) < abs(base) / 3


def test_unknown_variant_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="sentiment-base"):
        model_path("nope")


def test_embedded_model_batches_match_single_rows():
    backend = LocalBackend.from_pretrained(model_path("sentiment-base"), token_budget=64)
    masker = text_masker("i did not hate the movie but the ending was dull", backend.tokenizer)
    masks = np.random.default_rng(0).random((12, masker.n_features)) < 0.5
    ids, attention = masker.build(masks)
    together = backend.logits(ids, attention)
    alone = np.concatenate([backend.logits(ids[i : i + 1], attention[i : i + 1]) for i in range(12)])
    np.testing.assert_allclose(together, alone, atol=1e-4)
