"""Feature lens: segmentation, keys, caps, token-id masking strategies and structured fields."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.lenses import Feature, FieldMasker, TextMasker, cap_features, normalize_key, segment_text


def test_words_keep_spans_and_normalized_keys():
    text = "The  movie, was NOT good!"
    features = segment_text(text)
    assert [f.key for f in features] == ["the", "movie", "was", "not", "good"]
    assert [text[a:b] for a, b in (f.span for f in features)] == ["The", "movie,", "was", "NOT", "good!"]


def test_normalize_key_keeps_pure_punctuation_and_folds_unicode():
    assert normalize_key("!") == "!"
    assert normalize_key("Ｇｏｏｄ…") == "good"
    assert normalize_key("  Hello   World ") == "hello world"


def test_sentences_and_spans():
    text = "Great cast. Awful plot! Would not watch again"
    sentences = segment_text(text, unit="sentences")
    assert [text[a:b] for a, b in (f.span for f in sentences)] == [
        "Great cast.",
        "Awful plot!",
        "Would not watch again",
    ]
    custom = segment_text(text, unit="spans", spans=[(0, 5), (12, 17)])
    assert [f.key for f in custom] == ["great", "awful"]
    with pytest.raises(ValueError, match="outside the text"):
        segment_text(text, unit="spans", spans=[(0, 500)])
    with pytest.raises(ValueError, match="needs spans"):
        segment_text(text, unit="spans")
    with pytest.raises(ValueError, match="unit must be"):
        segment_text(text, unit="paragraphs")  # type: ignore[arg-type]


def test_tokens_use_tokenizer_offsets_and_skip_specials():
    text = "not good"
    features = segment_text(text, unit="tokens", token_offsets=[(0, 0), (0, 3), (4, 6), (6, 8), (0, 0)])
    assert [f.key for f in features] == ["not", "go", "od"]


def test_cap_merges_a_5000_word_input_into_contiguous_groups():
    text = " ".join(f"w{i}" for i in range(5000))
    features = segment_text(text, max_features=64)
    assert len(features) == 64
    assert features[0].span[0] == 0 and features[-1].span[1] == len(text)
    for left, right in zip(features, features[1:], strict=False):
        assert left.span[1] < right.span[0]  # contiguous, ordered, non-overlapping
    sizes = [len(f.key.split()) for f in features]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 5000
    with pytest.raises(ValueError, match="max_features"):
        cap_features(features, 0)


@pytest.fixture
def subword_masker_args():
    # "not good!" as [CLS] not go ##od ! [SEP]; word features: "not" (0,3) and "good!" (4,9)
    ids = [101, 11, 21, 22, 23, 102]
    offsets = [(0, 0), (0, 3), (4, 6), (6, 8), (8, 9), (0, 0)]
    features = segment_text("not good!")
    return ids, offsets, features


def test_mask_strategy_replaces_every_subword_of_masked_words(subword_masker_args):
    ids, offsets, features = subword_masker_args
    masker = TextMasker(ids, offsets, features, mask_token_id=103)
    out, attention = masker.build(np.array([[True, True], [False, True], [True, False]]))
    assert out.tolist() == [ids, [101, 103, 21, 22, 23, 102], [101, 11, 103, 103, 103, 102]]
    assert attention.min() == 1


def test_remove_and_attention_strategies(subword_masker_args):
    ids, offsets, features = subword_masker_args
    removed, attention = TextMasker(ids, offsets, features, 103, pad_token_id=0, strategy="remove").build(
        np.array([[True, False], [False, False]])
    )
    assert removed.tolist() == [[101, 11, 102, 0, 0, 0], [101, 102, 0, 0, 0, 0]]
    assert attention.tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    same, attention = TextMasker(ids, offsets, features, 103, strategy="attention").build(
        np.array([[False, True]])
    )
    assert same.tolist() == [ids] and attention.tolist() == [[1, 0, 1, 1, 1, 1]]


def test_masker_rejects_bad_shapes_and_overlapping_spans(subword_masker_args):
    ids, offsets, features = subword_masker_args
    masker = TextMasker(ids, offsets, features, 103)
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        masker.build(np.ones((3, 5), dtype=bool))
    with pytest.raises(ValueError, match="overlap"):
        TextMasker(ids, offsets, [Feature("a", (0, 5)), Feature("b", (3, 9))], 103)
    with pytest.raises(ValueError, match="strategy"):
        TextMasker(ids, offsets, features, 103, strategy="blank")  # type: ignore[arg-type]


def test_long_input_builds_quickly_at_token_level():
    text = " ".join(f"w{i}" for i in range(5000))
    features = segment_text(text, max_features=50)
    offsets = [(0, 0)] + [(a, b) for a, b in (f.span for f in segment_text(text))]
    masker = TextMasker(list(range(len(offsets))), offsets, features, mask_token_id=-1)
    ids, _ = masker.build(np.random.default_rng(0).random((20, 50)) < 0.5)
    assert ids.shape == (20, 5001)
    assert (masker.token_owner[1:] >= 0).all() and masker.token_owner[0] == -1


def test_tiny_transformer_tokenizer_offsets_drive_the_masker():
    from spex_monitor.examples.tiny_transformer import MASK, WordTokenizer

    tokenizer = WordTokenizer.fit(["the plot was not good"])
    text = "the plot was not good"
    ids, offsets = tokenizer.encode_with_offsets(text)
    masker = TextMasker(ids, offsets, segment_text(text), mask_token_id=MASK)
    out, _ = masker.build(np.array([[True, True, True, False, True]]))
    expected = list(ids)
    expected[4] = MASK
    assert out.tolist() == [expected]


def test_field_masker_defaults_and_reference_draws():
    record = {"age": 40, "income": 90_000, "city": "Oslo"}
    reference = [{"age": 25, "income": 30_000, "city": "Rome"}, {"age": 60, "income": 50_000, "city": "Lima"}]
    masker = FieldMasker(record, defaults={"age": 0}, reference=reference, draws=3, seed=3)
    assert [f.key for f in masker.features] == ["age", "income", "city"]
    masks = np.array([[True, True, True], [False, True, True], [True, False, False]])
    rows = masker.build(masks)
    assert len(rows) == 9 and rows[:3] == [record] * 3
    assert rows[3:6] == [{**record, "age": 0}] * 3
    for row, donor in zip(rows[6:], masker.donors, strict=True):
        assert row == {**record, "income": donor["income"], "city": donor["city"]}  # one donor per row
    # Donors are fixed at construction: the same masks always give the same rows.
    assert masker.build(masks) == rows
    np.testing.assert_allclose(masker.mean_over_draws(np.arange(9.0)), [1.0, 4.0, 7.0])


def test_field_masker_errors_name_the_fields():
    with pytest.raises(ValueError, match=r"\['b'\]"):
        FieldMasker({"a": 1, "b": 2}, defaults={"a": 0})
    with pytest.raises(ValueError, match=r"reference\[0\] lacks fields \['b'\]"):
        FieldMasker({"a": 1, "b": 2}, reference=[{"a": 3}])
    with pytest.raises(ValueError, match="no fields"):
        FieldMasker({})
    with pytest.raises(ValueError, match="draws"):
        FieldMasker({"a": 1}, defaults={"a": 0}, draws=0)
