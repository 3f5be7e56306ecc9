"""Local transformers backend and text value functions, on tiny models saved to and loaded from disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from spex_monitor.attribution import ProxySPEX  # noqa: E402
from spex_monitor.backends import LocalBackend  # noqa: E402
from spex_monitor.examples.embedded import build_tokenizer  # noqa: E402
from spex_monitor.lenses import (  # noqa: E402
    classifier_value_function,
    completion_value_function,
    log_odds,
    text_masker,
)

WORDS = "the movie plot was not good bad great but i liked it and".split()


def _tokenizer(with_cls: bool):
    return build_tokenizer(WORDS, with_cls=with_cls)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    _tokenizer(with_cls=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("gpt2")
    config = transformers.GPT2Config(
        vocab_size=len(WORDS) + 5, n_embd=32, n_layer=2, n_head=4, n_positions=64
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    _tokenizer(with_cls=False).save_pretrained(folder)
    return folder


def _direct_logits(model, ids, attention):
    rows = []
    with torch.no_grad():
        for r_ids, r_att in zip(ids, attention, strict=True):
            length = int(np.nonzero(r_att)[0].max()) + 1
            out = model(
                input_ids=torch.as_tensor(r_ids[None, :length]),
                attention_mask=torch.as_tensor(r_att[None, :length]),
            )
            rows.append(out.logits[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("strategy", ["mask", "remove", "attention"])
def test_batched_logits_match_row_by_row(classifier_dir, strategy):
    backend = LocalBackend.from_pretrained(classifier_dir, token_budget=40)
    masker = text_masker("the plot was not good but i liked it", backend.tokenizer, strategy=strategy)
    masks = np.random.default_rng(0).random((25, masker.n_features)) < 0.5
    ids, attention = masker.build(masks)
    got = backend.logits(ids, attention)
    np.testing.assert_allclose(got, _direct_logits(backend.model, ids, attention), atol=1e-5)
    assert sum(t.rows for t in backend.timings) == 25
    assert len(backend.timings) > 1  # the token budget forced several batches
    assert all(t.tokens <= 40 or t.rows == 1 for t in backend.timings)


def test_classifier_value_is_log_odds_of_predicted_class(classifier_dir):
    backend = LocalBackend.from_pretrained(classifier_dir)
    masker = text_masker("the movie was great", backend.tokenizer)
    value_fn, target = classifier_value_function(masker, backend)
    full = np.ones((1, masker.n_features), dtype=bool)
    logits = backend.logits(*masker.build(full))
    assert target == int(np.argmax(logits[0]))
    # The predicted class has the highest log-odds of all classes (with 3 classes it may be < 0).
    assert value_fn(full)[0] == pytest.approx(max(log_odds(logits, c)[0] for c in range(3)))
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert value_fn(full)[0] == pytest.approx(np.log(p[target] / (1 - p[target])), rel=1e-5)
    result = ProxySPEX(budget=16, max_order=2).explain(value_fn, masker.n_features)  # 2^4 masks: exact
    assert result.faithfulness == pytest.approx(1.0, abs=0.05)


def test_log_odds_two_classes_is_logit_difference():
    logits = np.array([[2.0, -1.0], [0.5, 0.5]])
    np.testing.assert_allclose(log_odds(logits, 0), [3.0, 0.0])


def test_completion_logprob_matches_teacher_forcing(lm_dir):
    backend = LocalBackend.from_pretrained(lm_dir, task="causal-lm", token_budget=30)
    tokenizer = backend.tokenizer
    masker = text_masker("the plot was not good", tokenizer, strategy="remove")
    completion = (
        tokenizer("bad", add_special_tokens=False)["input_ids"]
        + tokenizer("movie", add_special_tokens=False)["input_ids"]
    )
    value_fn = completion_value_function(masker, backend, completion)
    masks = np.random.default_rng(3).random((9, masker.n_features)) < 0.5
    masks[0] = True
    got = value_fn(masks)
    ids, attention = masker.build(masks)
    for row in range(len(masks)):
        prompt = ids[row][attention[row] > 0].tolist()
        seq = torch.as_tensor([prompt + completion])
        with torch.no_grad():
            logprobs = torch.log_softmax(backend.model(input_ids=seq).logits[0], dim=-1)
        expected = sum(float(logprobs[len(prompt) - 1 + i, tok]) for i, tok in enumerate(completion))
        assert got[row] == pytest.approx(expected, abs=1e-4)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="local paths only"):
        LocalBackend.from_pretrained(tmp_path / "nope")


def test_only_safetensors_weights_load(tmp_path):
    """A folder with pickled weights (pytorch_model.bin) is refused before anything is unpickled."""
    import shutil

    from spex_monitor.backends import LocalCausalLM
    from spex_monitor.examples.embedded import model_path

    folder = tmp_path / "pickled"
    shutil.copytree(model_path("sentiment-base"), folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    for loader in (LocalBackend.from_pretrained, LocalCausalLM.from_pretrained):
        with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors weights"):
            loader(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LocalBackend.from_pretrained(tmp_path / "missing")
    assert LocalBackend.from_pretrained(model_path("sentiment-base")).device_name == "cpu"
