"""Typed, validated request bodies for the example OpenAI-compatible server (:mod:`.openai_server`).

Each ``parse_*`` function turns a decoded JSON body into a frozen dataclass or raises :class:`RequestError`
naming the offending field (``param``), the way OpenAI and vLLM answer bad requests
(``{"error": {"message", "type", "param", "code"}}``). Only what the tiny LM can honour is accepted; a
field it cannot honour (``n`` > 1, ``stop``, chat ``logprobs``) is refused by name rather than ignored.
Unknown fields are ignored, as OpenAI-compatible servers do. Every check costs O(the body's size).

Sources: the OpenAI API reference (``/v1/completions``, ``/v1/chat/completions``) and vLLM's extra
``prompt_logprobs`` field (log-probabilities of the prompt tokens, keyed by token id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_PROMPTS = 256  # rows in one /v1/completions call
MAX_MESSAGES = 256
MAX_LOGPROBS = 20  # vLLM's default cap for logprobs / prompt_logprobs
DEFAULT_MAX_TOKENS = 16  # the OpenAI completions default
# prompts x max_tokens: greedy steps one request may ask for. The example server decodes row by row without
# a KV cache, so this bounds a small body's cost; scoring calls (64 rows, max_tokens 0/1) stay far below.
MAX_GENERATED_TOKENS = 4096
ROLES = ("system", "user", "assistant")  # the roles the tiny LM's chat template has special tokens for


class RequestError(ValueError):
    """A request the server refuses: HTTP ``status``, a message, and the field it names (``param``)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        """The OpenAI error shape: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}
        }


@dataclass(frozen=True)
class Sampling:
    """The fields both endpoints share. Decoding is greedy whatever ``temperature``/``top_p`` say (they are
    validated and echoed in nothing); ``max_tokens`` bounds the completion (0: score the prompt only)."""

    model: str
    max_tokens: int
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class CompletionRequest:
    """``POST /v1/completions``: ``prompts`` are texts or token-id lists (one row each)."""

    sampling: Sampling
    prompts: list[str | list[int]]
    echo: bool
    logprobs: int | None
    prompt_logprobs: int | None


@dataclass(frozen=True)
class ChatRequest:
    """``POST /v1/chat/completions``: ``messages`` as ``(role, text)`` pairs."""

    sampling: Sampling
    messages: list[tuple[str, str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer in [{low}, {high}] or null, got {value!r:.40}", name)
    return int(value)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise RequestError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r:.40}", name)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false, got {value!r:.40}", name)
    return value


def _sampling(body: Any, served: str, token_field: str = "max_tokens") -> Sampling:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: the served model name is required", "model")
    if model != served:
        message = f"the model {model[:100]!r} does not exist; this server serves {served!r}"
        raise RequestError(message, "model", 404, "model_not_found")
    max_tokens = _optional_int(body, token_field, 0, 1 << 20)
    if max_tokens is None and token_field != "max_tokens":
        max_tokens = _optional_int(body, "max_tokens", 0, 1 << 20)
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise RequestError(f"n: this server returns one choice per prompt (n = 1), got {n!r:.40}", "n")
    if body.get("stop") not in (None, [], ""):
        raise RequestError("stop: stop sequences are not supported by this server", "stop")
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise RequestError("stream_options: an object, only with stream: true", "stream_options")
    include_usage = _flag(options, "include_usage") if isinstance(options, dict) else False
    limit = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    return Sampling(model=model, max_tokens=limit, stream=stream, include_usage=include_usage)


def parse_completion(body: Any, served: str) -> CompletionRequest:
    """Validate a ``/v1/completions`` body (prompt: a text, texts, token ids, or lists of token ids).

    Raises:
        RequestError: a field is missing or invalid (``param`` names it); 404 for another model name.
    """
    sampling = _sampling(body, served)
    raw = body.get("prompt")
    prompts: list[str | list[int]]
    if isinstance(raw, str):
        prompts = [raw]
    elif isinstance(raw, list) and raw and all(_is_int(t) for t in raw):
        prompts = [list(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(p, str) for p in raw):
        prompts = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(p, list) and p for p in raw):
        if not all(_is_int(t) for p in raw for t in p):
            raise RequestError("prompt: token-id prompts must hold integers only", "prompt")
        prompts = [list(p) for p in raw]
    else:
        raise RequestError("prompt: a text, a list of texts, a list of token ids or a list of such lists "
                           "(none empty) is required", "prompt")  # fmt: skip
    if len(prompts) > MAX_PROMPTS:
        raise RequestError(f"prompt: at most {MAX_PROMPTS} prompts per request, got {len(prompts)}", "prompt")
    if len(prompts) * sampling.max_tokens > MAX_GENERATED_TOKENS:
        raise RequestError(
            f"max_tokens: at most {MAX_GENERATED_TOKENS} generated tokens per request "
            f"(prompts x max_tokens), got {len(prompts)} x {sampling.max_tokens}",
            "max_tokens",
        )
    if sampling.stream and len(prompts) != 1:
        raise RequestError("stream: only one prompt per streamed request", "stream")
    echo = _flag(body, "echo")
    logprobs = _optional_int(body, "logprobs", 0, MAX_LOGPROBS)
    prompt_logprobs = _optional_int(body, "prompt_logprobs", 0, MAX_LOGPROBS)
    if sampling.stream and (echo or prompt_logprobs is not None):
        raise RequestError("stream: echo and prompt_logprobs are only served unstreamed", "stream")
    return CompletionRequest(sampling, prompts, echo, logprobs, prompt_logprobs)


def parse_chat(body: Any, served: str) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body (messages with roles system / user / assistant; content a
    text or a list of ``{"type": "text", "text": ...}`` parts).

    Raises:
        RequestError: a field is missing or invalid (``param`` names it); 404 for another model name.
    """
    sampling = _sampling(body, served, token_field="max_completion_tokens")
    if body.get("logprobs") not in (None, False) or body.get("top_logprobs") is not None:
        raise RequestError("logprobs: chat log-probabilities are not supported; use /v1/completions",
                           "logprobs")  # fmt: skip
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages: a non-empty list of {role, content} is required", "messages")
    if len(raw) > MAX_MESSAGES:
        raise RequestError(f"messages: at most {MAX_MESSAGES} messages, got {len(raw)}", "messages")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{i}]: an object with role and content", f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{i}].role: one of {', '.join(ROLES)}, got {str(role)[:40]!r}",
                               f"messages[{i}].role")  # fmt: skip
        content = message.get("content")
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
                raise RequestError(f"messages[{i}].content: only text parts are supported",
                                   f"messages[{i}].content")  # fmt: skip
            content = "".join(texts)  # type: ignore[arg-type]
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content: a text is required", f"messages[{i}].content")
        messages.append((role, content))
    return ChatRequest(sampling, messages)
