"""One OpenAI-compatible call (request body + answer bytes) → the generation it served, for the monitor.

Runs off the data path (the proxy hands finished calls to a worker thread). Reads ``/v1/completions`` and
``/v1/chat/completions`` requests and their answers, whole JSON or a server-sent-event stream
(``data: {...}`` lines up to ``data: [DONE]``); only the first choice (``index`` 0) is observed.

Segments (issue 18 §2), in this order:

1. the opt-in header ``X-Spex-Segments``: JSON ``{"name": [start, end]}`` (offsets into a plain prompt) or
   ``{"name": [message, start, end]}`` (into one chat message's content), Unicode code points;
2. chat messages: every message is a segment, named by its ``name`` field when that is a valid segment name
   (``doc:refund-policy`` — what a RAG stack sets on each retrieved-document message) and otherwise by its
   role (``system``, ``user``, ``assistant``, ``tool``; ``user#2`` for the second one);
3. a plain prompt without the header: one segment, ``prompt``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..lenses.generation import message_keys
from .generations import _SEGMENT_NAME, MAX_SEGMENT_NAME, SegmentInput

SEGMENTS_HEADER = "x-spex-segments"
COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"


class NotObservable(ValueError):
    """The call cannot become an observation (the message says why; nothing of the request in it)."""


@dataclass(frozen=True)
class ServedCall:
    """A finished call, as the proxy saw it: its path, request body, answer bytes and how they came."""

    path: str
    request: bytes
    answer: bytes
    status: int
    streamed: bool
    segments_header: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class ServedGeneration:
    """What :func:`read_call` found: the model name asked for, and the generation's parts."""

    model: str
    request_id: str | None
    prompt: str | None
    messages: list[tuple[str, str]] | None
    completion: str
    segments: list[SegmentInput]
    temperature: float
    top_p: float


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return default
    try:
        number = float(value)  # a JSON integer past float's range raises OverflowError
    except OverflowError:
        return default
    return number if math.isfinite(number) else default


def read_call(call: ServedCall) -> ServedGeneration:
    """The generation a successful call served.

    Raises:
        NotObservable: not a 2xx answer, not JSON, a prompt that is not one string (token ids, a batch), a
            message content that is not text, no completion text, or a malformed ``X-Spex-Segments``.
    """
    if not 200 <= call.status < 300:
        raise NotObservable("upstream_error")
    try:
        body = json.loads(call.request)
    except ValueError as exc:
        raise NotObservable("request body is not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise NotObservable("request has no model")
    chat = call.path.rstrip("/").endswith(CHAT)
    prompt, messages = None, None
    if chat:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise NotObservable("messages: not a list")
        messages = [(m.get("role"), _content(m.get("content"))) for m in raw if isinstance(m, dict)]
        if len(messages) != len(raw) or not all(isinstance(r, str) and c is not None for r, c in messages):
            raise NotObservable("messages: each needs a role and text content")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise NotObservable("prompt: only a single text prompt is observed")
    completion, answer_id = (_from_stream if call.streamed else _from_json)(call.answer, chat)
    if call.segments_header is not None:
        segments = _header_segments(call.segments_header)
    elif messages is not None:
        segments = _message_segments(body["messages"], messages)
    else:
        segments = [SegmentInput("prompt", None, 0, len(prompt or ""))] if prompt else []
    return ServedGeneration(
        model=body["model"],
        request_id=call.request_id or answer_id,
        prompt=prompt,
        messages=messages,  # type: ignore[arg-type]
        completion=completion,
        segments=segments,
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
    )


def _content(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a content list joined (other parts: not text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content) and all(isinstance(p, str) for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
    return None


def _first_choice(answer: Any) -> dict[str, Any] | None:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        return None
    return next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)


def _piece(choice: dict[str, Any], chat: bool, key: str) -> str:
    part = choice.get(key) if chat else None
    value = (part.get("content") if isinstance(part, dict) else None) if chat else choice.get("text")
    return value if isinstance(value, str) else ""


def _from_json(answer: bytes, chat: bool) -> tuple[str, str | None]:
    try:
        parsed = json.loads(answer)
    except ValueError as exc:
        raise NotObservable("answer is not JSON") from exc
    choice = _first_choice(parsed)
    text = _piece(choice, chat, "message") if choice else ""
    if not text:
        raise NotObservable("answer has no completion text")
    return text, parsed.get("id") if isinstance(parsed.get("id"), str) else None


def _from_stream(answer: bytes, chat: bool) -> tuple[str, str | None]:
    """Join the first choice's text over the ``data:`` events of a server-sent-event stream."""
    pieces: list[str] = []
    answer_id = None
    for line in answer.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if answer_id is None and isinstance(event, dict) and isinstance(event.get("id"), str):
            answer_id = event["id"]
        choice = _first_choice(event)
        if choice:
            pieces.append(_piece(choice, chat, "delta"))
    text = "".join(pieces)
    if not text:
        raise NotObservable("stream has no completion text")
    return text, answer_id


def _header_segments(header: str) -> list[SegmentInput]:
    try:
        spec = json.loads(header)
    except ValueError as exc:
        raise NotObservable(f"{SEGMENTS_HEADER}: not JSON") from exc
    if not isinstance(spec, dict):
        raise NotObservable(f"{SEGMENTS_HEADER}: a JSON object of name -> offsets")
    out = []
    for name, value in spec.items():
        ok = isinstance(value, list) and len(value) in (2, 3)
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise NotObservable(f"{SEGMENTS_HEADER}: [start, end] or [message, start, end] per name")
        message = value[0] if len(value) == 3 else None
        out.append(SegmentInput(str(name), message, value[-2], value[-1]))
    return out


def _message_segments(
    raw: list[dict[str, Any]], messages: list[tuple[str, str | None]]
) -> list[SegmentInput]:
    roles = message_keys([role for role, _ in messages])
    out, used = [], set()
    for index, (message, role_key, (_, content)) in enumerate(zip(raw, roles, messages, strict=True)):
        if not content:
            continue
        name = message.get("name")
        valid = isinstance(name, str) and len(name) <= MAX_SEGMENT_NAME and _SEGMENT_NAME.match(name)
        key = name if valid and name not in used else role_key
        used.add(key)
        out.append(SegmentInput(key, index, 0, len(content)))
    return out
