"""Request validation of the example OpenAI-compatible server: every accepted shape parses to what it says,
and every bad field is refused with a 4xx naming it (``param``) in OpenAI's error shape."""

from __future__ import annotations

import pytest

from spex_monitor.examples.openai_requests import (
    DEFAULT_MAX_TOKENS,
    MAX_PROMPTS,
    RequestError,
    parse_chat,
    parse_completion,
)

pytestmark = pytest.mark.unit

NAME = "grounded-lm"


def test_completion_prompt_shapes():
    assert parse_completion({"model": NAME, "prompt": "a b"}, NAME).prompts == ["a b"]
    assert parse_completion({"model": NAME, "prompt": ["a", "b"]}, NAME).prompts == ["a", "b"]
    assert parse_completion({"model": NAME, "prompt": [1, 2, 3]}, NAME).prompts == [[1, 2, 3]]
    parsed = parse_completion(
        {"model": NAME, "prompt": [[1, 2], [3]], "max_tokens": 0, "echo": True, "logprobs": 0,
         "prompt_logprobs": 2, "temperature": 0.7},
        NAME,
    )  # fmt: skip
    assert parsed.prompts == [[1, 2], [3]] and parsed.sampling.max_tokens == 0
    assert parsed.echo and parsed.logprobs == 0 and parsed.prompt_logprobs == 2
    defaults = parse_completion({"model": NAME, "prompt": "x"}, NAME)
    assert defaults.sampling.max_tokens == DEFAULT_MAX_TOKENS and defaults.logprobs is None
    assert not defaults.echo and not defaults.sampling.stream


def test_chat_messages_and_text_parts():
    parsed = parse_chat(
        {
            "model": NAME,
            "messages": [
                {"role": "system", "content": "be brief ."},
                {"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]},
            ],
            "max_completion_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        NAME,
    )
    assert parsed.messages == [("system", "be brief ."), ("user", "a b")]
    assert parsed.sampling.max_tokens == 3 and parsed.sampling.stream and parsed.sampling.include_usage


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"prompt": "x"}, "model", 400),
        ({"model": "other", "prompt": "x"}, "model", 404),
        ({"model": NAME}, "prompt", 400),
        ({"model": NAME, "prompt": []}, "prompt", 400),
        ({"model": NAME, "prompt": [[1], []]}, "prompt", 400),
        ({"model": NAME, "prompt": [[1, "a"]]}, "prompt", 400),
        ({"model": NAME, "prompt": [True, 2]}, "prompt", 400),
        ({"model": NAME, "prompt": ["x"] * (MAX_PROMPTS + 1)}, "prompt", 400),
        ({"model": NAME, "prompt": "x", "max_tokens": -1}, "max_tokens", 400),
        ({"model": NAME, "prompt": "x", "max_tokens": 1.5}, "max_tokens", 400),
        ({"model": NAME, "prompt": "x", "logprobs": 21}, "logprobs", 400),
        ({"model": NAME, "prompt": "x", "prompt_logprobs": True}, "prompt_logprobs", 400),
        ({"model": NAME, "prompt": "x", "temperature": 1e400}, "temperature", 400),
        ({"model": NAME, "prompt": "x", "temperature": -0.1}, "temperature", 400),
        ({"model": NAME, "prompt": "x", "top_p": 2}, "top_p", 400),
        ({"model": NAME, "prompt": "x", "n": 2}, "n", 400),
        ({"model": NAME, "prompt": [[1]] * 256, "max_tokens": 17}, "max_tokens", 400),
        ({"model": NAME, "prompt": "x", "stop": ["\n"]}, "stop", 400),
        ({"model": NAME, "prompt": "x", "echo": "yes"}, "echo", 400),
        ({"model": NAME, "prompt": ["a", "b"], "stream": True}, "stream", 400),
        ({"model": NAME, "prompt": "x", "stream": True, "echo": True}, "stream", 400),
        ({"model": NAME, "prompt": "x", "stream_options": {}}, "stream_options", 400),
    ],
)
def test_bad_completion_fields_are_named(body, param, status):
    with pytest.raises(RequestError) as caught:
        parse_completion(body, NAME)
    assert caught.value.param == param and caught.value.status == status
    error = caught.value.body()["error"]
    assert error["param"] == param and error["code"] == status and param in error["message"]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (None, "messages"),
        ([], "messages"),
        (["hi"], "messages[0]"),
        ([{"role": "tool", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "x"}, {"role": "user"}], "messages[1].content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "messages[0].content"),
    ],
)
def test_bad_chat_messages_are_named(messages, param):
    with pytest.raises(RequestError) as caught:
        parse_chat({"model": NAME, "messages": messages}, NAME)
    assert caught.value.param == param and caught.value.status == 400


def test_chat_logprobs_and_non_objects_are_refused():
    with pytest.raises(RequestError) as caught:
        parse_chat({"model": NAME, "messages": [{"role": "user", "content": "x"}], "logprobs": True}, NAME)
    assert caught.value.param == "logprobs"
    with pytest.raises(RequestError) as caught:
        parse_chat([1, 2], NAME)
    assert caught.value.status == 400 and "JSON object" in caught.value.message
