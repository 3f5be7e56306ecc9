"""LocalCausalLM: batched teacher forcing equals a one-row-at-a-time plain forward (1e-4), for left and
right padding, several batches, removed and replaced tokens; value functions built on it; its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from lm_tokenizers import byte_level_bpe

from spex_monitor.backends import LocalCausalLM
from spex_monitor.lenses import (
    Generation,
    completion_value_function,
    label_value_function,
    prompt_masker,
)

pytestmark = pytest.mark.unit

PARTS = [
    ("system", "Answer from the documents."),
    (None, "\n"),
    ("doc:refund", "The refund policy allows returns within 30 days of purchase."),
    (None, "\n"),
    ("doc:office", "The office of Acme is in Paris."),
    (None, "\nQuestion: "),
    ("question", "Where is the office of Acme?"),
    (None, "\nAnswer:"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_bpe()


def _llama(tokenizer):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


def _gpt2(tokenizer):
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256
    )
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def lm_dir(request, tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp(request.param)
    (_llama if request.param == "llama" else _gpt2)(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _reference(model, ids, attention, completion):
    """One row at a time, no padding: the plain forward the batched scores must equal."""
    out = []
    with torch.no_grad():
        for row_ids, row_att in zip(ids, attention, strict=True):
            on = np.nonzero(row_att)[0]
            first, last = on.min(), on.max() + 1
            seq = list(row_ids[first:last]) + list(completion)
            att = list(row_att[first:last]) + [1] * len(completion)
            logits = model(
                input_ids=torch.as_tensor([seq]), attention_mask=torch.as_tensor([att])
            ).logits[0]
            logprobs = torch.log_softmax(logits.double(), dim=-1)
            p = last - first
            out.append(sum(float(logprobs[p - 1 + t, tok]) for t, tok in enumerate(completion)))
    return np.asarray(out)


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("filler", ["unk", "remove"])
def test_batched_scores_equal_one_row_at_a_time(lm_dir, padding_side, filler):
    backend = LocalCausalLM.from_pretrained(lm_dir, device="cpu", token_budget=400, padding_side=padding_side)
    masker = prompt_masker(Generation.from_parts(PARTS, " Paris."), backend.tokenizer, filler=filler)
    masks = np.random.default_rng(0).random((24, masker.n_features)) < 0.5
    masks[0] = True
    ids, attention = masker.build(masks)
    got = backend.completion_logprob(ids, attention, masker.completion_ids)
    expected = _reference(backend.model, ids, attention, masker.completion_ids)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert len(backend.timings) > 1 and sum(t.rows for t in backend.timings) == 24  # several batches
    assert len({round(float(v), 3) for v in got}) > 4  # the masks do change the score


def test_left_padded_and_interior_masked_rows(lm_dir):
    backend = LocalCausalLM.from_pretrained(lm_dir, device="cpu")
    rng = np.random.default_rng(1)
    k, width, completion = 6, 20, [5, 9, 11]
    ids = rng.integers(10, 300, size=(k, width))
    attention = np.ones_like(ids)
    for row in range(k):
        attention[row, : row * 2] = 0  # left padding of different widths
    attention[3, 12] = 0  # a masked position inside a row stays in place
    got = backend.completion_logprob(ids, attention, completion)
    np.testing.assert_allclose(got, _reference(backend.model, ids, attention, completion), atol=1e-4)
    per_token = backend.token_logprobs(ids, attention, completion)
    assert per_token.shape == (k, 3) and np.allclose(per_token.sum(axis=1), got)


def test_value_functions_sum_mean_and_label(lm_dir):
    backend = LocalCausalLM.from_pretrained(lm_dir, device="cpu")
    tok = backend.tokenizer
    masker = prompt_masker(Generation.from_parts(PARTS, " Paris."), tok)
    masks = np.random.default_rng(2).random((8, masker.n_features)) < 0.5
    total = completion_value_function(masker, backend)(masks)
    mean = completion_value_function(masker, backend, reduce="mean")(masks)
    np.testing.assert_allclose(mean, total / len(masker.completion_ids))
    ids, attention = masker.build(masks)
    reference = _reference(backend.model, ids, attention, masker.completion_ids)
    np.testing.assert_allclose(total, reference, atol=1e-4)

    labels = [" Paris", " Berlin", " Rome"]
    value_fn, target = label_value_function(masker, backend, labels, tokenizer=tok)
    label_ids = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    table = np.stack([_reference(backend.model, ids, attention, t) for t in label_ids], axis=1)
    full = np.ones((1, masker.n_features), dtype=bool)
    full_ids, full_att = masker.build(full)
    full_scores = [_reference(backend.model, full_ids, full_att, t)[0] for t in label_ids]
    assert target == int(np.argmax(full_scores))
    expected = table[:, target] - np.delete(table, target, axis=1).max(axis=1)
    np.testing.assert_allclose(value_fn(masks), expected, atol=1e-4)
    with pytest.raises(ValueError, match="at least two labels"):
        label_value_function(masker, backend, [" Paris"], tokenizer=tok)
    with pytest.raises(ValueError, match="need tokenizer"):
        label_value_function(masker, backend, [" Paris", " Rome"])
    with pytest.raises(ValueError, match="reduce must be"):
        completion_value_function(masker, backend, reduce="max")  # type: ignore[arg-type]


def test_scoring_errors_name_the_argument(lm_dir):
    backend = LocalCausalLM.from_pretrained(lm_dir, device="cpu")
    ids = np.ones((2, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="one shape"):
        backend.completion_logprob(ids, np.ones((2, 3)), [1])
    with pytest.raises(ValueError, match="non-empty"):
        backend.completion_logprob(ids, np.ones_like(ids), [])
    with pytest.raises(ValueError, match="completion_ids holds ids outside"):
        backend.completion_logprob(ids, np.ones_like(ids), [10**6])
    with pytest.raises(ValueError, match="prompt_ids holds ids outside"):
        backend.completion_logprob(-ids, np.ones_like(ids), [1])
    with pytest.raises(ValueError, match="row 1 has no attended token"):
        backend.completion_logprob(ids, np.array([[1, 1, 1, 1], [0, 0, 0, 0]]), [1])
    with pytest.raises(ValueError, match="the model takes 256"):
        backend.completion_logprob(np.ones((1, 300), dtype=np.int64), np.ones((1, 300)), [1])
    with pytest.raises(FileNotFoundError, match="local paths only"):
        LocalCausalLM.from_pretrained(lm_dir / "missing")
    with pytest.raises(ValueError, match="padding_side"):
        LocalCausalLM(backend.model, padding_side="middle")  # type: ignore[arg-type]
