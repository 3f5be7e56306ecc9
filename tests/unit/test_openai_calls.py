"""Reading the generation an OpenAI-compatible call served (the proxy's observation side, issue 18 §2):
whole JSON and SSE answers for completions and chat completions, the segment conventions (message ``name``,
roles, the ``X-Spex-Segments`` header), and what is refused (never raised into the data path)."""

from __future__ import annotations

import json

import pytest

from spex_monitor.server.generations import SegmentInput, build_generation
from spex_monitor.server.openai_calls import NotObservable, ServedCall, read_call

pytestmark = pytest.mark.unit

MESSAGES = [
    {"role": "system", "content": "answer briefly"},
    {"role": "user", "name": "doc:refund-policy", "content": "refunds take 5 days"},
    {"role": "user", "name": "bad name!", "content": "how long do refunds take?"},
    {"role": "assistant", "content": ""},
]


def _call(path: str, request: dict, answer: bytes, streamed: bool = False, **kw) -> ServedCall:
    return ServedCall(path, json.dumps(request).encode(), answer, kw.pop("status", 200), streamed, **kw)


def test_a_chat_answer_gives_message_segments_named_by_name_or_role():
    answer = json.dumps({"id": "c1", "choices": [{"index": 0, "message": {"content": "5 days"}}]}).encode()
    served = read_call(
        _call("/v1/chat/completions", {"model": "m", "messages": MESSAGES, "top_p": 0.5}, answer)
    )
    assert (served.model, served.request_id, served.completion) == ("m", "c1", "5 days")
    assert [s.name for s in served.segments] == ["system", "doc:refund-policy", "user#2"]  # empty one skipped
    assert served.segments[1] == SegmentInput("doc:refund-policy", 1, 0, len(MESSAGES[1]["content"]))
    assert (served.temperature, served.top_p) == (1.0, 0.5)  # OpenAI's default temperature is 1
    generation = build_generation(
        prompt=served.prompt, messages=served.messages, completion=served.completion, segments=served.segments
    )
    assert generation.segments["user#2"] == (2, 0, len(MESSAGES[2]["content"]))


def test_a_streamed_chat_answer_is_joined_from_the_first_choice_deltas():
    events = [
        {"id": "s1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {
            "id": "s1",
            "choices": [{"index": 0, "delta": {"content": "5"}}, {"index": 1, "delta": {"content": "x"}}],
        },
        {"id": "s1", "choices": [{"index": 0, "delta": {"content": " days"}}]},
    ]
    stream = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    served = read_call(
        _call(
            "/v1/chat/completions", {"model": "m", "messages": MESSAGES[:2]}, stream.encode(), streamed=True
        )
    )
    assert served.completion == "5 days" and served.request_id == "s1"


def test_a_completion_prompt_is_one_segment_unless_the_header_names_them():
    answer = json.dumps({"choices": [{"index": 0, "text": " 7"}]}).encode()
    body = {"model": "m", "prompt": ["doc : a . q : b ?"], "temperature": 0}
    served = read_call(_call("/v1/completions", body, answer, request_id="x-req"))
    assert served.prompt == "doc : a . q : b ?" and served.segments == [SegmentInput("prompt", None, 0, 17)]
    assert served.request_id == "x-req" and served.temperature == 0.0
    header = json.dumps({"doc": [0, 7], "q": [8, 17]})
    served = read_call(_call("/v1/completions", body, answer, segments_header=header))
    assert [(s.name, s.start, s.end) for s in served.segments] == [("doc", 0, 7), ("q", 8, 17)]


@pytest.mark.parametrize(
    ("path", "body", "answer", "kw", "reason"),
    [
        ("/v1/completions", {"model": "m", "prompt": "p"}, b"{}", {"status": 500}, "upstream_error"),
        ("/v1/completions", {"model": "m", "prompt": [1, 2, 3]}, b"{}", {}, "prompt: only a single text"),
        ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, b"{}", {}, "prompt: only a single text"),
        ("/v1/completions", {"prompt": "p"}, b"{}", {}, "request has no model"),
        ("/v1/completions", {"model": "m", "prompt": "p"}, b"not json", {}, "answer is not JSON"),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p"},
            b'{"choices": []}',
            {},
            "answer has no completion",
        ),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p"},
            b"data: [DONE]\n\n",
            {"streamed": True},
            "stream has",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            b"{}",
            {},
            "messages: each needs",
        ),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p"},
            b'{"choices": [{"text": "x"}]}',
            {"segments_header": "{bad"},
            "x-spex-segments: not JSON",
        ),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p"},
            b'{"choices": [{"text": "x"}]}',
            {"segments_header": '{"a": [0]}'},
            "x-spex-segments: [start, end]",
        ),
    ],
)
def test_calls_that_cannot_be_observed_say_why(path, body, answer, kw, reason):
    streamed = kw.pop("streamed", False)
    with pytest.raises(NotObservable) as info:
        read_call(_call(path, body, answer, streamed, **kw))
    assert str(info.value).startswith(reason)


def test_content_parts_that_are_all_text_are_joined():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ],
    }
    answer = json.dumps({"choices": [{"message": {"content": "ok"}}]}).encode()
    assert read_call(_call("/v1/chat/completions", body, answer)).messages == [("user", "ab")]


def test_odd_numbers_and_shapes_in_a_call_read_as_defaults_or_not_observable_never_as_crashes():
    """A JSON integer past float's range and a non-object ``message`` raised OverflowError/AttributeError,
    which the observer counted as internal errors and logged per call."""
    huge = json.dumps({"model": "m", "prompt": "hi", "temperature": 10**400}).encode()
    answer = json.dumps({"choices": [{"index": 0, "text": " ok"}]}).encode()
    read = read_call(ServedCall("/v1/completions", huge, answer, 200, False, None, None))
    assert read.temperature == 1.0 and read.completion == " ok"
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    odd = json.dumps({"choices": [{"index": 0, "message": "not an object"}]}).encode()
    with pytest.raises(NotObservable):
        read_call(_call("/v1/chat/completions", chat, odd))


def test_the_observer_bounds_waiting_calls_by_count_and_bytes_and_counts_exactly_across_threads():
    import threading

    from spex_monitor.server.openai_proxy import CallObserver

    gate = threading.Event()
    errors: list[str] = []
    observer = CallObserver(lambda c: gate.wait(30), errors.append, max_pending=1000, max_pending_bytes=3000)
    big = ServedCall("/v1/completions", b"x" * 1000, b"", 200, False, None, None)
    for _ in range(4):
        observer.submit(big)  # the first holds the worker; bytes cap the queue at 3 calls
    assert errors == ["overloaded"] and observer.pending == 3 and observer.pending_bytes == 3000
    gate.set()
    observer.close()
    assert observer.pending == 0 and observer.pending_bytes == 0
