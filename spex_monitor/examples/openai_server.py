"""A small OpenAI-compatible server for the embedded grounded tiny LM (demo and tests), as
:mod:`.oip_server` is for OIP-V2: what vLLM would be in production, in-process and instant to start.

Routes: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` (a text, texts, token ids or lists
of token ids; greedy decoding; ``echo`` + ``logprobs`` and vLLM's ``prompt_logprobs``, so spex-monitor's
``openai`` backend can score masked prompts on it; ``max_tokens`` 0 scores the prompt only) and
``POST /v1/chat/completions`` (the tiny LM's chat template; ``stream: true`` answers as server-sent
events, one chunk per token, ``data: [DONE]`` last). Bad requests get OpenAI-style 4xx JSON naming the
field (:mod:`.openai_requests`); bodies over ``max_body_bytes`` get 413 before they are parsed.

:meth:`GroundedLMServer.swap` silently serves another variant under the same model name — the demo's
rollout incident (``swap("context-ignoring")``). Decoding is always greedy (``temperature`` and ``top_p``
are validated, not applied): the tiny LM answers one number, and a deterministic server makes tests exact.

    python -m spex_monitor.examples.openai_server --port 8000 [--variant context-ignoring]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..server.asgi_thread import ASGIThread
from .grounded import VARIANTS
from .openai_lm import (
    Scored,
    ServedLM,
    finish_reason,
    logprobs_object,
    prompt_logprob_entry,
    usage,
)
from .openai_requests import (
    ChatRequest,
    CompletionRequest,
    RequestError,
    Sampling,
    parse_chat,
    parse_completion,
)
from .tiny_lm import FOLDERS


class GroundedLMServer:
    """The embedded grounded tiny LMs behind an OpenAI-compatible HTTP server; :meth:`swap` changes which
    variant answers under the one model name ``name``.

    Args:
        variant: the variant served first (``base``, ``context-ignoring``, ``injection-following``, or the
            folder names ``grounded-lm-<variant>``).
        name: the served model name (vLLM's ``--served-model-name``).
        max_body_bytes: larger request bodies are answered 413 unread.
    """

    def __init__(
        self, variant: str = "base", name: str = "grounded-lm", max_body_bytes: int = 1 << 20
    ) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.name = name
        self.max_body_bytes = max_body_bytes
        self._models = {v: ServedLM(v) for v in VARIANTS}
        self._lock = threading.Lock()
        self.variant = self._variant(variant)
        self._http: ASGIThread | None = None
        self.port = 0

    @staticmethod
    def _variant(variant: str) -> str:
        by_folder = {folder: v for v, folder in FOLDERS.items()}
        if variant not in VARIANTS and variant not in by_folder:
            raise ValueError(f"unknown variant {variant!r}; shipped: {sorted(VARIANTS)}")
        return by_folder.get(variant, variant)

    def swap(self, variant: str) -> None:
        """Serve ``variant`` from the next request on, under the same model name (a silent rollout)."""
        chosen = self._variant(variant)
        with self._lock:
            self.variant = chosen

    def _current(self) -> ServedLM:
        with self._lock:
            return self._models[self.variant]

    # -------------------------------------------------------------------------------------- routes
    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        too_large = RequestError(f"request body over {self.max_body_bytes} bytes", None, 413)
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise too_large
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise RequestError("the request body is not valid JSON") from None

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        parsed = parse_completion(await self._body(request), self.name)
        lm = self._current()
        rows = [lm.encode(p, "prompt" if len(parsed.prompts) == 1 else f"prompt[{i}]")
                for i, p in enumerate(parsed.prompts)]  # fmt: skip
        top = max(parsed.logprobs or 0, parsed.prompt_logprobs or 0)
        if parsed.sampling.stream:
            scored = (await run_in_threadpool(lm.score, rows, top))[0]
            return self._stream(lm, scored, "text_completion", parsed.sampling)
        body = await run_in_threadpool(self._complete, lm, parsed, rows, top)
        return JSONResponse(body)

    def _complete(
        self, lm: ServedLM, parsed: CompletionRequest, rows: list[list[int]], top: int
    ) -> dict[str, Any]:
        choices, generated_total = [], 0
        for index, (prompt, scored) in enumerate(zip(parsed.prompts, lm.score(rows, top), strict=True)):
            steps = list(lm.greedy(scored, parsed.sampling.max_tokens))
            generated = [token for token, _, _ in steps]
            generated_total += len(generated)
            text = lm.text(generated)
            echoed = (
                (prompt if isinstance(prompt, str) else lm.tokenizer.decode(prompt)) if parsed.echo else ""
            )
            choice: dict[str, Any] = {
                "index": index, "text": echoed + text, "logprobs": None,
                "finish_reason": finish_reason(lm, generated),
            }  # fmt: skip
            if parsed.logprobs is not None:
                choice["logprobs"] = logprobs_object(
                    lm, scored, steps, parsed.echo, parsed.logprobs, echoed + text
                )
            if parsed.prompt_logprobs is not None:
                choice["prompt_logprobs"] = [
                    None if entry is None else prompt_logprob_entry(lm, token, *entry)
                    for token, entry in zip(scored.ids, scored.prompt, strict=True)
                ]
            choices.append(choice)
        prompt_tokens = sum(len(r) for r in rows)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": self.name, "choices": choices,
            "usage": usage(prompt_tokens, generated_total),
        }  # fmt: skip

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions`` (``stream: true``: server-sent events)."""
        parsed: ChatRequest = parse_chat(await self._body(request), self.name)
        lm = self._current()
        messages = [{"role": role, "content": content} for role, content in parsed.messages]
        text = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        row = lm.encode(text, "messages")
        scored = (await run_in_threadpool(lm.score, [row], 0))[0]
        if parsed.sampling.stream:
            return self._stream(lm, scored, "chat.completion.chunk", parsed.sampling)
        steps = await run_in_threadpool(lambda: list(lm.greedy(scored, parsed.sampling.max_tokens)))
        generated = [token for token, _, _ in steps]
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.name,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": lm.text(generated)},
                "logprobs": None, "finish_reason": finish_reason(lm, generated),
            }],
            "usage": usage(len(row), len(generated)),
        })  # fmt: skip

    def _stream(self, lm: ServedLM, scored: Scored, kind: str, sampling: Sampling) -> Response:
        """Server-sent events, one chunk per generated token as it is decoded (the text delta of the whole
        decode, so word spacing comes out right), a last chunk with ``finish_reason``, then ``[DONE]``."""
        chat = kind == "chat.completion.chunk"
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "object": kind,
                "created": int(time.time()), "model": self.name}  # fmt: skip

        def piece(text: str | None, finish: str | None) -> bytes:
            if chat:
                delta = {} if text is None else {"content": text}
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": finish,
                }
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n".encode()

        def events() -> Iterator[bytes]:
            if chat:
                yield f"data: {json.dumps({**head, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''}, 'logprobs': None, 'finish_reason': None}]})}\n\n".encode()  # noqa: E501
            generated: list[int] = []
            sent = ""
            for token, _, _ in lm.greedy(scored, sampling.max_tokens):
                generated.append(token)
                text = lm.text(generated)
                if text != sent:
                    yield piece(text[len(sent) :], None)
                    sent = text
            yield piece(None, finish_reason(lm, generated))
            if sampling.include_usage:
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage(len(scored.ids), len(generated))})}\n\n".encode()  # noqa: E501
            yield b"data: [DONE]\n\n"

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream")

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: the one served name."""
        lm = self._current()
        return JSONResponse({"object": "list", "data": [{
            "id": self.name, "object": "model", "created": 0, "owned_by": "spex-monitor",
            "max_model_len": lm.context,
        }]})  # fmt: skip

    async def health(self, request: Request) -> Response:
        """``GET /health``: 200 with an empty body, as vLLM answers."""
        return Response(b"", status_code=200)

    def app(self) -> Starlette:
        """The ASGI app; every error, routing ones included, in OpenAI's error shape."""

        async def request_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, RequestError)
            return JSONResponse(exc.body(), status_code=exc.status)

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
            error = RequestError(
                f"{request.method} {request.url.path}: {exc.detail}", None, exc.status_code, kind
            )
            return JSONResponse(error.body(), status_code=exc.status_code)

        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
            exception_handlers={RequestError: request_error, HTTPException: http_error},
        )

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> GroundedLMServer:
        """Serve on ``host:port`` (0: any free port; read :attr:`port`) on a background thread."""
        self._http = ASGIThread(self.app(), host, port, name="grounded-lm-openai")
        self.port = self._http.start()
        return self

    @property
    def endpoint(self) -> str:
        """``host:port`` of the running server (what ``backend.endpoints`` takes)."""
        host = self._http.host if self._http is not None else "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the running server (what ``server.openai_upstream`` takes)."""
        return f"http://{self.endpoint}"

    def stop(self) -> None:
        """Stop serving (in-flight requests get a short grace period). Safe to call twice."""
        if self._http is not None:
            self._http.stop(2.0)
            self._http = None


def main(argv: list[str] | None = None) -> int:
    """Serve the embedded grounded LM until Ctrl-C."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--variant", default="base", choices=VARIANTS)
    parser.add_argument("--name", default="grounded-lm", help="served model name")
    args = parser.parse_args(argv)
    server = GroundedLMServer(args.variant, args.name).start(args.host, args.port)
    print(f"serving {args.name} ({args.variant}) on {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
