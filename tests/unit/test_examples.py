"""The example models used by the demo and the benchmark are real, trained, and explainable."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.examples.sentiment import generate_long_reviews
from spex_monitor.examples.tiny_transformer import MASK, TinySentiment, train_tiny_transformer


def test_long_reviews_have_majority_labels():
    texts, labels = generate_long_reviews(50, seed=1, clauses=(3,))
    assert len(texts) == 50 and set(labels.tolist()) <= {0, 1}
    assert all(t.count(" and ") >= 2 for t in texts)


@pytest.mark.slow
def test_tiny_transformer_trains_saves_loads_and_masks_token_ids(tmp_path):
    model = train_tiny_transformer(seed=0, size=1500, epochs=2)
    assert 0.5 < model.accuracy <= 1.0
    model.save(tmp_path / "tiny")
    loaded = TinySentiment.load(tmp_path / "tiny")
    words = "the music was great but the ending was bad".split()
    masks = np.random.default_rng(0).random((32, len(words))) < 0.5
    masks[0] = True
    np.testing.assert_allclose(
        model.value_function(words)(masks), loaded.value_function(words)(masks), atol=1e-5
    )
    # The all-kept row scores the predicted class: its log-odds are positive by construction.
    assert model.value_function(words)(masks[:1])[0] > 0
    assert MASK == loaded.tokenizer.index["[MASK]"]
