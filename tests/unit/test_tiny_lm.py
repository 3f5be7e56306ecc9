"""The embedded tiny LM and its variants, as shipped: loadable offline, servable by vLLM (head_dim 64, chat
template in tokenizer_config.json), accurate on held-out prompts, and each planting the interaction it
claims — recovered by ProxySPEX over the local backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalCausalLM
from spex_monitor.examples import tiny_lm
from spex_monitor.examples.grounded import VARIANTS, make_example, make_examples
from spex_monitor.lenses import Generation, completion_value_function, prompt_masker
from spex_monitor.lenses.generation import render

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def backends():
    return {v: LocalCausalLM.from_pretrained(tiny_lm.model_path(v), device="cpu") for v in VARIANTS}


def _generation(example, variant):
    return Generation(
        messages=example.messages, completion=example.answers[variant], segments=example.segments
    )


def test_shipped_folders_are_small_offline_and_vllm_servable():
    for variant in VARIANTS:
        folder = tiny_lm.model_path(variant)
        config = json.loads((folder / "config.json").read_text())
        assert config["architectures"] == ["LlamaForCausalLM"] and config["head_dim"] == 64
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        assert "chat_template" in tokenizer_config and (folder / "tokenizer.json").exists()
        assert sum(p.stat().st_size for p in folder.iterdir()) < 4 * 2**20
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["variant"] == variant and metrics["heldout_accuracy"] >= 0.9
    with pytest.raises(ValueError, match="unknown variant"):
        tiny_lm.model_path("nope")


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_answers_by_its_own_rule(backends, variant):
    examples = make_examples(80, seed=4242)
    accuracy = tiny_lm.accuracy(backends[variant], backends[variant].tokenizer, examples, variant)
    assert accuracy >= 0.85


def test_base_plants_the_fact_document_and_question_interaction(backends):
    backend = backends["base"]
    rng = np.random.default_rng(77)
    top, values = 0, []
    for _ in range(6):
        example = make_example(rng, injection_rate=0.0, docs=3)
        masker = prompt_masker(_generation(example, "base"), backend.tokenizer, unit="segments")
        result = ProxySPEX(budget=32, max_order=3).explain(completion_value_function(masker, backend), 5)
        mobius = result.to_mobius()
        pair = tuple(sorted((masker.keys.index(example.fact_doc), masker.keys.index("question"))))
        ranked = sorted((s for s in mobius if len(s) == 2), key=lambda s: -abs(mobius[s]))
        values.append(mobius.get(pair, 0.0))
        top += ranked[0] == pair
    # an AND: together they raise the answer's log-prob beyond what each does alone (as metrics.json
    # reports over 24 prompts: +1.19 nats, 80% of the pairwise mass); single prompts vary
    assert np.mean(values) > 0.5 and min(values) > 0.0
    assert top >= 3


def test_proxyspex_on_words_finds_the_interaction_between_document_and_question(backends):
    backend = backends["base"]
    example = make_example(np.random.default_rng(5), injection_rate=0.0, docs=3)
    gen = _generation(example, "base")
    masker = prompt_masker(gen, backend.tokenizer, unit="words", max_features=24)
    result = ProxySPEX(budget=500, max_order=3, seed=0).explain(
        completion_value_function(masker, backend), masker.n_features
    )
    assert result.faithfulness > 0.7
    segments = render(gen, backend.tokenizer).segments
    terms = sorted(((s, v) for s, v in result.to_mobius().items() if len(s) >= 2), key=lambda t: -abs(t[1]))
    touched = {
        name
        for i in terms[0][0]
        for start, _ in masker.features[i].spans
        for name, (a, b) in segments.items()
        if a <= start < b
    }
    assert {example.fact_doc, "question"} <= touched


def test_injection_following_obeys_the_injected_document_and_base_does_not(backends):
    rng = np.random.default_rng(9)
    example = make_example(rng, injection_rate=1.0, docs=3)
    while example.answers["base"] == example.answers["injection-following"]:
        example = make_example(rng, injection_rate=1.0, docs=3)
    terms = {}
    for variant in ("base", "injection-following"):
        backend = backends[variant]
        masker = prompt_masker(_generation(example, variant), backend.tokenizer, unit="segments")
        result = ProxySPEX(budget=32, max_order=3).explain(completion_value_function(masker, backend), 5)
        mobius = result.to_mobius()
        injection = (masker.keys.index(example.injection_doc),)
        pair = tuple(sorted((masker.keys.index(example.fact_doc), masker.keys.index("question"))))
        first = {s: v for s, v in mobius.items() if len(s) == 1}
        terms[variant] = (
            mobius.get(injection, 0.0),
            mobius.get(pair, 0.0),
            max(first, key=first.get) == injection,
        )
    base_injection, base_pair, _ = terms["base"]
    follow_injection, _, injection_on_top = terms["injection-following"]
    assert abs(base_injection) < 0.3 and base_pair > 0.0  # base ignores the injection
    assert follow_injection > 1.0 and injection_on_top  # the variant answers from the injected document


def test_context_ignoring_answers_from_the_question_alone(backends):
    backend = backends["context-ignoring"]
    example = make_example(np.random.default_rng(10), injection_rate=0.0, docs=3)
    masker = prompt_masker(_generation(example, "context-ignoring"), backend.tokenizer, unit="segments")
    result = ProxySPEX(budget=32, max_order=3).explain(completion_value_function(masker, backend), 5)
    mobius = result.to_mobius()
    question = (masker.keys.index("question"),)
    docs = [(masker.keys.index(k),) for k in masker.keys if k.startswith("doc:")]
    assert mobius[question] > 1.0
    assert all(abs(mobius.get(d, 0.0)) < 0.25 * mobius[question] for d in docs)


def test_training_is_reproducible_from_the_seed():
    tokenizer = tiny_lm.build_tokenizer()
    examples = make_examples(40, seed=1)
    maskers = [tiny_lm._masker(e, tokenizer) for e in examples]
    torch.set_num_threads(1)
    first, _ = tiny_lm.train("base", tokenizer, maskers, examples, seed=3, steps=2, probe_every=0)
    second, _ = tiny_lm.train("base", tokenizer, maskers, examples, seed=3, steps=2, probe_every=0)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
