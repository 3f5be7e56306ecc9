"""Component lens: hooked head/MLP ablations equal hand-made weight surgery on a tiny model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from spex_monitor.lenses.components import ComponentLens  # noqa: E402
from spex_monitor.lenses.value import log_odds  # noqa: E402


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config).eval()


def _score(out):
    return log_odds(out.logits.float().numpy(), 0)


def _surgery(model, components, masks_row):
    edited = copy.deepcopy(model)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    for comp, keep in zip(components, masks_row, strict=True):
        if keep:
            continue
        layer = edited.bert.encoder.layer[comp.layer]
        with torch.no_grad():
            if comp.head is None:
                layer.output.dense.weight.zero_()
                layer.output.dense.bias.zero_()
            else:
                layer.attention.output.dense.weight[:, comp.head * head_dim : (comp.head + 1) * head_dim] = 0
    return edited


def test_hooks_match_weight_surgery(bert):
    ids = torch.tensor([[2, 5, 7, 9, 11, 3]])
    attention = torch.ones_like(ids)
    lens = ComponentLens(bert, ids, attention, _score)
    assert [f.key for f in lens.features][:5] == ["L0.H0", "L0.H1", "L0.H2", "L0.H3", "L0.mlp"]
    assert lens.n_features == 10
    masks = np.random.default_rng(0).random((6, lens.n_features)) < 0.6
    masks[0] = True
    got = lens.value_function(masks)
    for row, mask in enumerate(masks):
        with torch.no_grad():
            expected = _score(_surgery(bert, lens.components, mask)(input_ids=ids, attention_mask=attention))
        assert got[row] == pytest.approx(expected[0], abs=1e-5)
    # Hooks are removed afterwards: the model itself is untouched.
    with torch.no_grad():
        assert _score(bert(input_ids=ids))[0] == pytest.approx(got[0], abs=1e-5)


def test_mean_ablation_and_selection(bert):
    ids = torch.tensor([[2, 5, 7, 9]])
    reference = torch.randint(0, 30, (8, 6))
    lens = ComponentLens(
        bert, ids, torch.ones_like(ids), _score, mlps=False, ablation="mean", reference_ids=reference
    )
    assert all(c.head is not None for c in lens.components) and lens.n_features == 8
    values = lens.value_function(np.array([[True] * 8, [False] * 8]))
    assert values[0] != pytest.approx(values[1])
    with pytest.raises(ValueError, match="reference_ids"):
        ComponentLens(bert, ids, torch.ones_like(ids), _score, ablation="mean")
    with pytest.raises(ValueError, match="no components"):
        ComponentLens(bert, ids, torch.ones_like(ids), _score, heads=False, mlps=False)


def test_gpt2_paths():
    torch.manual_seed(1)
    config = transformers.GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=4, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.tensor([[1, 4, 6, 8]])

    def score(out):
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)[:, 5].numpy()

    lens = ComponentLens(model, ids, torch.ones_like(ids), score)
    masks = np.ones((2, lens.n_features), dtype=bool)
    masks[1, 0] = False  # L0.H0
    values = lens.value_function(masks)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.transformer.h[0].attn.c_proj.weight[0:4, :] = 0  # Conv1D: (in, out); head 0 = rows 0..3
        expected = score(edited(input_ids=ids))[0]
    assert values[1] == pytest.approx(expected, abs=1e-5)
