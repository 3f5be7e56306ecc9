"""Prompt lens: segments, words, sentences and messages onto token boundaries (three real tokenizer kinds,
chat templates, unicode and whitespace edges), masked batches, and the API's errors."""

from __future__ import annotations

import numpy as np
import pytest
from lm_tokenizers import ALL, byte_level_bpe, metaspace_bpe, word_level

from spex_monitor.lenses import Generation, prompt_masker
from spex_monitor.lenses.prompt import feature_tokens

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=sorted(ALL))
def tokenizer(request):
    return ALL[request.param]()


@pytest.fixture(scope="module")
def bpe():
    return byte_level_bpe()


RAG_PARTS = [
    ("system", "Answer from the documents."),
    (None, "\n"),
    ("doc:refund-policy", "The refund policy allows returns within 30 days of purchase."),
    (None, "\n"),
    ("doc:office", "The office of Acme is in Paris."),
    (None, "\nQuestion: "),
    ("question", "Where is the office of Acme?"),
    (None, "\nAnswer:"),
]

EDGE_TEXTS = [
    "naïve café résumé — déjà vu",
    "東京 and 北京 are cities; emoji 🙂 👍🏽 too.",
    "Tabs\tand\nnewlines  and   runs of spaces.",
    "  leading and trailing whitespace  ",
    "e\u0301 combining, zero\u200bwidth, Ｆｕｌｌｗｉｄｔｈ",
]


def _owned_text(masker, feature: int) -> str:
    """The characters of the tokens a feature owns, edge whitespace dropped."""
    pieces = []
    for t in feature_tokens(masker)[feature]:
        a, b = masker.offsets[t]
        pieces.append(masker.text[a:b])
    return "".join(pieces)


def _chars(masker, feature: int) -> set[int]:
    """Non-space character positions covered by a feature's tokens."""
    out = set()
    for t in feature_tokens(masker)[feature]:
        a, b = masker.offsets[t]
        out |= {i for i in range(a, b) if not masker.text[i].isspace()}
    return out


def _span_chars(text: str, spans) -> set[int]:
    return {i for a, b in spans for i in range(a, b) if not text[i].isspace()}


def test_named_segments_own_exactly_their_tokens(tokenizer):
    gen = Generation.from_parts(RAG_PARTS, completion=" Paris")
    masker = prompt_masker(gen, tokenizer, unit="segments")
    assert masker.keys == ["system", "doc:refund-policy", "doc:office", "question"]
    for index, feature in enumerate(masker.features):
        # every non-space character of the segment is covered by its tokens, and nothing outside it
        assert _chars(masker, index) == _span_chars(masker.text, feature.spans)
    inside = set().union(*(_span_chars(masker.text, f.spans) for f in masker.features))
    for t in np.nonzero(masker.token_owner < 0)[0]:  # template text and separators stay, never a feature
        a, b = masker.offsets[t]
        assert not {i for i in range(a, b) if not masker.text[i].isspace()} & inside


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_words_map_onto_tokens_for_unicode_and_whitespace(tokenizer, text):
    gen = Generation(prompt=text, completion=" ok")
    masker = prompt_masker(gen, tokenizer, unit="words", max_features=None)
    covered = set()
    for index, feature in enumerate(masker.features):
        chars = _chars(masker, index)
        # a feature's tokens cover its words and nothing of another feature
        assert _span_chars(text, feature.spans) <= chars
        assert not (chars & covered)
        covered |= chars
    # every word of the text is in exactly one feature
    words = text.split()
    assert sum(len(f.spans) for f in masker.features) == len(words)


def test_keys_are_normalised_words(bpe):
    gen = Generation(prompt="Ｆｕｌｌ Stop! The  OFFICE, of acme…", completion=" x")
    masker = prompt_masker(gen, bpe, unit="words", max_features=None)
    assert masker.keys == ["full", "stop", "the", "office", "of", "acme"]


def test_sentences(bpe):
    gen = Generation(prompt="First one. Second one!\nThird line without a stop", completion=" x")
    masker = prompt_masker(gen, bpe, unit="sentences")
    assert masker.keys == ["first one", "second one", "third line without a stop"]


def test_segment_cutting_a_token_is_a_clear_error(bpe):
    text = "The office of Acme is in Paris."
    cut = text.index("ffice")  # inside the token " office"
    gen = Generation(prompt=text, completion=" x", segments={"part": (cut, len(text))})
    with pytest.raises(ValueError, match=r"segment 'part' cuts token ' office'"):
        prompt_masker(gen, bpe, unit="segments")


def test_words_sharing_a_token_are_merged():
    tok = word_level()
    tok.add_tokens(["new york"])  # one token over two words
    gen = Generation(prompt="the office is in new york today", completion=" yes")
    masker = prompt_masker(gen, tok, unit="words", max_features=None)
    assert masker.keys == ["the", "office", "is", "in", "new york", "today"]
    assert len(masker.features[4].spans) == 2


def test_chat_messages_segments_and_roles(tokenizer):
    messages = [
        {"role": "system", "content": "system"},  # content equal to a word of the template's own text
        {"role": "user", "content": "Doc: The office of Acme is in Paris. Question: Where is Acme?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "user"},
    ]
    doc = messages[1]["content"].index("The")
    question = messages[1]["content"].index("Where")
    gen = Generation(
        messages=messages,
        completion=" Paris",
        segments={
            "doc:office": (1, doc, messages[1]["content"].index(" Question")),
            "question": (1, question, len(messages[1]["content"])),
        },
    )
    masker = prompt_masker(gen, tokenizer, unit="segments")
    assert masker.text == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert [masker.text[a:b] for f in masker.features for a, b in f.spans] == [
        "The office of Acme is in Paris.",
        "Where is Acme?",
    ]
    for index, feature in enumerate(masker.features):
        assert _chars(masker, index) == _span_chars(masker.text, feature.spans)
    by_message = prompt_masker(gen, tokenizer, unit="messages")
    assert by_message.keys == ["system", "user", "assistant", "user#2"]
    assert _owned_text(by_message, 0).strip() == "system"  # the content, not "<|system|>"
    assert _owned_text(by_message, 3).strip() == "user"
    # chat prompts are tokenized without extra special tokens: the template wrote them
    assert masker.input_ids.tolist() == tokenizer(masker.text, add_special_tokens=False)["input_ids"]


def test_template_that_rewrites_content_falls_back_to_search(bpe):
    tok = byte_level_bpe()
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | trim }}\n{% endfor %}"
    gen = Generation(messages=[{"role": "user", "content": "hello"}], completion=" x")
    assert prompt_masker(gen, tok, unit="messages").keys == ["user"]
    bad = Generation(messages=[{"role": "user", "content": "  padded  "}], completion=" x")
    with pytest.raises(ValueError, match="does not appear verbatim"):
        prompt_masker(bad, tok, unit="messages")


def test_build_fillers_and_remove(bpe):
    gen = Generation.from_parts(RAG_PARTS, completion=" Paris")
    full = prompt_masker(gen, bpe, filler="unk")
    n = full.n_features
    ids, attention = full.build(np.ones((1, n), dtype=bool))
    assert ids[0].tolist() == full.input_ids.tolist() and attention.min() == 1
    mask = np.array([[True, False, True, False]])
    ids, attention = full.build(mask)
    dropped = np.isin(full.token_owner, [1, 3])
    assert (ids[0][dropped] == bpe.unk_token_id).all()
    assert (ids[0][~dropped] == full.input_ids[~dropped]).all()
    space = prompt_masker(gen, bpe, filler="space").build(mask)[0]
    assert (space[0][dropped] == bpe(" ", add_special_tokens=False)["input_ids"][0]).all()
    pad = prompt_masker(gen, bpe, filler="pad").build(mask)[0]
    assert (pad[0][dropped] == bpe.pad_token_id).all()
    removed = prompt_masker(gen, bpe, filler="remove")
    masks = np.array([[True, False, True, False], [True, True, True, True], [False, False, False, False]])
    ids, attention = removed.build(masks)
    for row, m in enumerate(masks):
        keep = (removed.token_owner < 0) | m[np.maximum(removed.token_owner, 0)]
        expected = removed.input_ids[keep].tolist()
        assert ids[row][attention[row] > 0].tolist() == expected
        assert attention[row].tolist() == sorted(attention[row].tolist(), reverse=True)  # right padding
        assert (ids[row][attention[row] == 0] == bpe.pad_token_id).all()
    assert ids.shape[1] == len(removed.input_ids)


def test_remove_leaves_one_token_in_an_otherwise_empty_row():
    tok = word_level()
    gen = Generation(prompt="where is acme", completion=" paris")
    masker = prompt_masker(gen, tok, unit="words", filler="remove", add_special_tokens=False)
    ids, attention = masker.build(np.zeros((2, masker.n_features), dtype=bool))
    assert attention.sum(axis=1).tolist() == [1, 1] and ids[:, 0].tolist() == [tok.unk_token_id] * 2


def test_max_features_merges_neighbours_and_keeps_token_ownership(bpe):
    text = " ".join(f"w{i}" for i in range(50))
    masker = prompt_masker(Generation(prompt=text, completion=" x"), bpe, unit="words", max_features=8)
    assert masker.n_features == 8
    assert masker.keys[0].startswith("w0 w1")
    owners = masker.token_owner[masker.token_owner >= 0]
    assert owners.tolist() == sorted(owners.tolist())  # contiguous groups, in order
    segments = prompt_masker(Generation.from_parts(RAG_PARTS, " Paris"), bpe, max_features=2)
    assert segments.keys == ["system + doc:refund-policy", "doc:office + question"]
    # merging never hands the text between two merged segments to the group
    between = segments.text.index("\nQuestion: ")
    for t in np.nonzero(segments.token_owner >= 0)[0]:
        a, b = segments.offsets[t]
        assert not (a <= between < b and segments.text[a:b].strip())


def test_completion_ids_tokenized_or_given(bpe):
    gen = Generation(prompt="Where is Acme?", completion=" Paris")
    masker = prompt_masker(gen, bpe, unit="words")
    assert masker.completion_ids == bpe(" Paris", add_special_tokens=False)["input_ids"]
    given = Generation(prompt="Where is Acme?", completion=" Paris", completion_ids=[5, 6])
    assert prompt_masker(given, bpe, unit="words").completion_ids == [5, 6]


def test_masked_texts_show_what_was_ablated(bpe):
    masker = prompt_masker(Generation.from_parts(RAG_PARTS, " Paris"), bpe)
    text = masker.masked_texts(np.array([[True, False, False, True]]), "…")[0]
    assert "refund" not in text and "Paris" not in text and "Where is the office" in text


@pytest.mark.parametrize(
    ("kwargs", "unit", "message"),
    [
        ({"prompt": "a b"}, "segments", "needs named segments"),
        ({"prompt": "a b"}, "messages", "needs a chat prompt"),
        ({"prompt": "   "}, "words", "no words"),
        ({"prompt": "a b"}, "tokens", "unit must be"),
    ],
)
def test_unit_errors(bpe, kwargs, unit, message):
    with pytest.raises(ValueError, match=message):
        prompt_masker(Generation(completion=" x", **kwargs), bpe, unit=unit)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of prompt= or messages="),
        ({"prompt": "a", "messages": [{"role": "user", "content": "a"}]}, "exactly one"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user"}]}, r"messages\[0\] needs string"),
        ({"prompt": "abc", "segments": {"s": (2, 1)}}, "empty or outside"),
        ({"prompt": "abc", "segments": {"s": (0, 9)}}, "outside the prompt of length 3"),
        ({"prompt": "abc", "segments": {"s": (0, 2), "t": (1, 3)}}, "overlap"),
        ({"prompt": "abc", "segments": {"s": (0, 1, 2)}}, "needs messages="),
        ({"prompt": "abc", "segments": {"s": (0.0, 1)}}, "must be ints"),
        ({"messages": [{"role": "user", "content": "ab"}], "segments": {"s": (1, 0, 1)}}, "out of range"),
    ],
)
def test_generation_errors_name_the_problem(bpe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prompt_masker(Generation(completion=" x", **kwargs), bpe)


def test_filler_errors(bpe):
    gen = Generation(prompt="a b", completion=" x")
    with pytest.raises(ValueError, match="filler='space'"):
        prompt_masker(gen, word_level(), unit="words", filler="space")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        prompt_masker(gen, bpe, unit="words", filler=10**6)
    with pytest.raises(ValueError, match="filler must be"):
        prompt_masker(gen, bpe, unit="words", filler="blank")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="completion is empty"):
        prompt_masker(Generation(prompt="a b", completion=""), bpe, unit="words")
    with pytest.raises(ValueError, match="masks must have shape"):
        prompt_masker(gen, bpe, unit="words").build(np.ones((1, 5), dtype=bool))


def test_metaspace_tokens_with_leading_marker_go_with_their_word():
    tok = metaspace_bpe()
    gen = Generation.from_parts([("a", "The office"), (None, " "), ("b", "of Acme")], completion=" x")
    masker = prompt_masker(gen, tok, add_special_tokens=False)
    assert _owned_text(masker, 1).strip() == "of Acme"
    assert _owned_text(masker, 0).strip() == "The office"
