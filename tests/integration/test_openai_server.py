"""The example OpenAI-compatible server for the embedded grounded tiny LM, over real HTTP on loopback: its
answers equal a plain transformers forward pass (greedy generation, prompt log-probabilities), the
``openai`` scoring backend gets the same values from it in both log-prob modes as the local scorer,
streams are server-sent events that add up to the unstreamed answer, ``swap`` changes the answers under
the same name, and bad requests get OpenAI-style 4xx JSON naming the field while the server keeps serving.
"""

from __future__ import annotations

import json
import socket

import httpx
import numpy as np
import pytest
import torch

from spex_monitor.backends import LocalCausalLM
from spex_monitor.backends.openai import OpenAICompletionsBackend
from spex_monitor.examples.grounded import make_examples
from spex_monitor.examples.openai_server import GroundedLMServer
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.lenses import Generation, prompt_masker

pytestmark = pytest.mark.integration

NAME = "grounded-lm"


@pytest.fixture(scope="module")
def server():
    served = GroundedLMServer("base", name=NAME, max_body_bytes=64 * 1024).start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def local():
    return LocalCausalLM.from_pretrained(model_path("base"), device="cpu")


def _chat(server, messages, **extra):
    body = {"model": NAME, "messages": messages, **extra}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)


def _greedy(local, messages) -> str:
    """The plain transformers answer: the chat template, then greedy generation."""
    tokenizer = local.tokenizer
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = local.model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1] :]
    return tokenizer.decode(out, skip_special_tokens=True)


def test_models_and_health(server):
    models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [NAME] and models["data"][0]["max_model_len"] == 256
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_chat_answers_equal_greedy_transformers_and_the_task(server, local):
    for example in make_examples(6, seed=3):
        reply = _chat(server, example.messages, max_tokens=4)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        answer = body["choices"][0]["message"]["content"]
        assert answer == _greedy(local, example.messages)
        assert answer == example.answers["base"]  # held-out accuracy of the base variant is 1.0
        assert body["model"] == NAME and body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["completion_tokens"] == 2  # the number, then the end token
    cut = _chat(server, example.messages, max_tokens=1).json()["choices"][0]
    assert cut["message"]["content"] == example.answers["base"] and cut["finish_reason"] == "length"


def test_a_stream_is_server_sent_events_adding_up_to_the_answer(server):
    example = make_examples(1, seed=5)[0]
    whole = _chat(server, example.messages).json()["choices"][0]["message"]["content"]
    body = {
        "model": NAME,
        "messages": example.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == whole
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"
    assert events[-1]["usage"]["completion_tokens"] == 2


def test_a_streamed_text_completion_adds_up_to_the_unstreamed_one(server):
    example = make_examples(1, seed=6)[0]
    prompt = f"<s><|user|> {example.messages[1]['content']} <|end|> <|assistant|>"
    body = {"model": NAME, "prompt": prompt, "max_tokens": 3}
    whole = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).json()["choices"][0]["text"]
    with httpx.stream(
        "POST", f"{server.url}/v1/completions", json={**body, "stream": True}, timeout=30
    ) as reply:
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events) == whole and whole


def test_completions_prompt_logprobs_equal_a_forward_pass(server, local):
    ids = local.tokenizer("question : which floor is two floors above", add_special_tokens=False)["input_ids"]
    body = {"model": NAME, "prompt": [ids, ids[:4]], "max_tokens": 1, "prompt_logprobs": 1}
    reply = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30).json()
    with torch.inference_mode():
        expected = torch.log_softmax(local.model(input_ids=torch.as_tensor([ids])).logits[0].float(), -1)
    choice = reply["choices"][0]
    assert choice["prompt_logprobs"][0] is None and len(choice["prompt_logprobs"]) == len(ids)
    for t in range(1, len(ids)):
        entry = choice["prompt_logprobs"][t][str(ids[t])]
        assert entry["logprob"] == pytest.approx(float(expected[t - 1, ids[t]]), abs=1e-5)
        assert entry["rank"] == 1 + int((expected[t - 1] > expected[t - 1, ids[t]]).sum())
    assert choice["text"] == local.tokenizer.decode([int(expected[-1].argmax())], skip_special_tokens=True)
    assert len(reply["choices"][1]["prompt_logprobs"]) == 4  # rows are scored independently of padding
    echo = {"model": NAME, "prompt": "question : which floor", "max_tokens": 0, "echo": True, "logprobs": 1}
    logprobs = httpx.post(f"{server.url}/v1/completions", json=echo, timeout=30).json()["choices"][0]
    assert logprobs["text"] == "question : which floor" and logprobs["logprobs"]["token_logprobs"][0] is None
    assert logprobs["logprobs"]["tokens"] == ["question", ":", "which", "floor"]
    assert logprobs["logprobs"]["text_offset"] == [0, 9, 11, 17]


@pytest.mark.parametrize("mode", ["prompt_logprobs", "echo"])
def test_the_openai_backend_scores_masked_prompts_as_the_local_scorer(server, local, mode):
    example = make_examples(1, seed=11)[0]
    generation = Generation(
        messages=example.messages, completion=example.answers["base"], segments=example.segments
    )
    masker = prompt_masker(generation, local.tokenizer, unit="segments")
    masks = np.random.default_rng(0).random((20, masker.n_features)) < 0.5
    masks[0] = True
    ids, attention = masker.build(masks)
    completion = local.tokenizer(example.answers["base"], add_special_tokens=False)["input_ids"]
    with OpenAICompletionsBackend([server.endpoint], model=NAME, tokenizer=local.tokenizer,
                                  logprobs_mode=mode, batch_rows=8) as remote:  # fmt: skip
        got = remote.completion_logprob(ids, attention, completion)
    np.testing.assert_allclose(got, local.completion_logprob(ids, attention, completion), atol=1e-4)
    assert got[0] > np.log(0.5)  # the full prompt makes the served answer likely


def test_swap_changes_the_answers_under_the_same_name(server):
    example = next(e for e in make_examples(40, seed=7) if e.answers["base"] != e.answers["context-ignoring"])
    try:
        server.swap("grounded-lm-context-ignoring")
        reply = _chat(server, example.messages).json()
        assert (
            reply["model"] == NAME
            and reply["choices"][0]["message"]["content"] == example.answers["context-ignoring"]
        )
        assert [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"]] == [NAME]
    finally:
        server.swap("base")
    assert (
        _chat(server, example.messages).json()["choices"][0]["message"]["content"] == example.answers["base"]
    )
    with pytest.raises(ValueError, match="unknown variant"):
        server.swap("nope")


@pytest.mark.parametrize(
    ("path", "content", "status", "param"),
    [
        ("/v1/completions", b"{not json", 400, None),
        ("/v1/completions", json.dumps({"model": "gpt-4", "prompt": "x"}).encode(), 404, "model"),
        ("/v1/completions", json.dumps({"model": NAME, "prompt": [[5, 9999]]}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"model": NAME, "prompt": [[5] * 300]}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"model": NAME, "prompt": ["x", [1]]}).encode(), 400, "prompt"),
        ("/v1/completions", json.dumps({"model": NAME, "prompt": "x", "n": 3}).encode(), 400, "n"),
        ("/v1/chat/completions", json.dumps({"model": NAME, "messages": "hi"}).encode(), 400, "messages"),
        ("/v1/chat/completions", json.dumps({"model": NAME, "messages": [{"role": "x"}]}).encode(), 400,
         "messages[0].role"),
        ("/v1/chat/completions", b'{"model": "grounded-lm", "messages": ' + b"[" * 30000, 400, None),
        ("/v1/completions", json.dumps({"model": NAME, "prompt": "x " * 40000}).encode(), 413, None),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_errors_naming_the_field(server, path, content, status, param):
    reply = httpx.post(
        f"{server.url}{path}", content=content, headers={"content-type": "application/json"}, timeout=30
    )
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["param"] == param and error["code"] == status and error["message"]
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200  # still serving


def test_unknown_routes_and_methods_answer_json(server):
    missing = httpx.get(f"{server.url}/v1/embeddings", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = httpx.get(f"{server.url}/v1/completions", timeout=10)
    assert wrong.status_code == 405 and "GET /v1/completions" in wrong.json()["error"]["message"]


def test_stop_frees_the_port():
    served = GroundedLMServer(name="other").start()
    port = served.port
    assert httpx.get(f"{served.url}/health", timeout=10).status_code == 200
    served.stop()
    served.stop()  # twice is fine
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the port is free again
