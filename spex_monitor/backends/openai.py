"""OpenAI-compatible completions replicas (vLLM, SGLang, KServe huggingfaceserver, llama.cpp server) as a
scoring backend: log-probabilities of a fixed completion after many masked prompts.

Each masked prompt goes out as **token ids** (``prompt: [[ids...], ...]``, no re-tokenisation drift) with the
completion's ids appended, in batches of ``batch_rows`` prompts per ``POST /v1/completions``. The server is
asked to score the prompt, not to sample: ``max_tokens`` 0 (or 1 where refused) and either

* ``echo: true, logprobs: 0`` — the OpenAI legacy API; the log-probs of the echoed prompt tokens come back
  in ``choices[i].logprobs.token_logprobs`` (the first is null), or
* ``prompt_logprobs: 0`` — vLLM's own field, cheaper (no detokenisation of the echo); the log-prob of each
  prompt token comes back keyed by its id in ``choices[i].prompt_logprobs``.

``logprobs_mode="auto"`` tries vLLM's field first and falls back to echo for a server that ignores it.
Balancing, retries, circuit breakers, the concurrency cap and TLS come from the shared
:class:`~spex_monitor.backends.pool.ReplicaPool` (as the OIP-V2 backend's). Importing this module does not
import torch. Note: vLLM skips its prefix cache when prompt log-probs are asked for, so masked variants of
one prompt cost a full prefill each.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import numpy as np

from .base import BatchTiming, check_completion_inputs, row_bounds
from .pool import BackendUnavailableError, ReplicaPool, ReplicaResponseError, TLSFiles

__all__ = [
    "BackendUnavailableError",
    "OpenAICompletionsBackend",
    "ReplicaRequestError",
    "ReplicaResponseError",
]

RETRYABLE_STATUS = {408, 429, 502, 503, 504}
LogprobsMode = Literal["auto", "prompt_logprobs", "echo"]


class ReplicaRequestError(ValueError):
    """The server refused a scoring request (HTTP 4xx/500): its message, the status and the endpoint."""


class _Retryable(Exception):
    """An HTTP status worth another replica (overload, gateway errors)."""


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, _Retryable | httpx.TransportError)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _base_url(endpoint: str, tls: bool) -> str:
    if "://" in endpoint:
        return endpoint.rstrip("/")
    return f"{'https' if tls else 'http'}://{endpoint}"


@dataclass
class OpenAICompletionsBackend:
    """Scores completions on OpenAI-compatible ``/v1/completions`` replicas.

    Args:
        endpoints: each replica as ``host:port`` (http, or https with ``tls``) or a base URL
            (``https://llm.internal:8443``); ``/v1/completions`` is appended.
        model: the served model name (``--served-model-name`` in vLLM).
        tokenizer: the model's tokenizer (the prompt lens uses it; ``len(tokenizer)`` bounds ids).
        api_key: sent as ``Authorization: Bearer ...`` when given.
        deadline_s: per-request timeout; retries, backoff_s: extra attempts on another replica and the
            first pause (doubles); breaker_failures, breaker_reset_s: per-replica circuit breaker.
        max_concurrency: most requests in flight over all replicas; batch_rows: prompts per request.
        logprobs_mode: ``"auto"``, ``"prompt_logprobs"`` (vLLM) or ``"echo"`` (any OpenAI-compatible server).
        tls: CA / client certificate files (shared with the OIP backend).
        on_batch: called with a :class:`BatchTiming` after each answered request.

    Raises:
        ValueError: bad settings (the message names the field).
    """

    endpoints: Sequence[str]
    model: str
    tokenizer: Any = None
    api_key: str | None = None
    deadline_s: float = 30.0
    max_concurrency: int = 4
    batch_rows: int = 64
    retries: int = 2
    backoff_s: float = 0.05
    breaker_failures: int = 3
    breaker_reset_s: float = 10.0
    logprobs_mode: LogprobsMode = "auto"
    tls: TLSFiles | None = None
    on_batch: Callable[[BatchTiming], None] | None = None
    timings: deque[BatchTiming] = field(default_factory=lambda: deque(maxlen=1024))

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError("model: the served model name is required")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {self.batch_rows}")
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")
        if self.logprobs_mode not in ("auto", "prompt_logprobs", "echo"):
            raise ValueError(
                f"logprobs_mode must be 'auto', 'prompt_logprobs' or 'echo', got {self.logprobs_mode!r}"
            )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        verify: Any = self.tls.ssl_context() if self.tls is not None else True
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )

        def connect(endpoint: str) -> httpx.Client:
            return httpx.Client(
                base_url=_base_url(endpoint, self.tls is not None), headers=headers, verify=verify,
                timeout=self.deadline_s, limits=limits,
            )  # fmt: skip

        self.pool: ReplicaPool[httpx.Client] = ReplicaPool(
            self.endpoints, connect, lambda client: client.close(),
            max_concurrency=self.max_concurrency, retries=self.retries, backoff_s=self.backoff_s,
            breaker_failures=self.breaker_failures, breaker_reset_s=self.breaker_reset_s,
        )  # fmt: skip
        self._mode: Literal["prompt_logprobs", "echo"] | None = (
            None if self.logprobs_mode == "auto" else self.logprobs_mode
        )
        self._max_tokens = 0  # 1 for servers that refuse 0 (the generated token is ignored)
        self._vocab = len(self.tokenizer) if self.tokenizer is not None else None

    # ------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close every replica's HTTP client (also on leaving a ``with`` block)."""
        self.pool.close()

    def __enter__(self) -> OpenAICompletionsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, bool]:
        """Replica endpoint → breaker closed."""
        return self.pool.health()

    def ready(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """Per replica: does ``GET /v1/models`` list ``model``?"""
        out = {}
        for replica in self.pool.replicas:
            try:
                reply = replica.client.get("/v1/models", timeout=timeout_s)
                names = (
                    {m.get("id") for m in reply.json().get("data", [])} if reply.status_code == 200 else set()
                )
                out[replica.endpoint] = self.model in names
            except (httpx.HTTPError, ValueError, AttributeError):
                out[replica.endpoint] = False
        return out

    @property
    def max_length(self) -> int | None:
        """Longest sequence in tokens, from the tokenizer's ``model_max_length`` when it is a plausible number
        (the API does not say); ``None`` without a tokenizer or limit.
        """
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, int) and 0 < limit < 10_000_000 else None

    # --------------------------------------------------------------------------------------- scoring
    def completion_logprob(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: Sequence[int]
    ) -> np.ndarray:
        """Summed log-probability (nats) of ``completion_ids`` after each prompt row, ``(k,)`` float64.

        Rows may be left- or right-padded; the API has no attention mask, so a row with a masked position
        *inside* it is refused (use a filler or ``"remove"``).

        Raises:
            ValueError: bad shapes or ids, an interior masked position.
            ReplicaRequestError: the server refused the request (e.g. longer than its context).
            ReplicaResponseError: the answer lacks prompt log-probs, or holds NaN/inf.
            BackendUnavailableError: no replica answered.
        """
        return self.token_logprobs(prompt_ids, prompt_attention, completion_ids).sum(axis=1)

    def token_logprobs(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: Sequence[int]
    ) -> np.ndarray:
        """Per completion token log-probabilities, ``(k, len(completion_ids))`` float64."""
        ids, attention, completion = check_completion_inputs(
            prompt_ids, prompt_attention, completion_ids, self._vocab
        )
        first, last = row_bounds(attention)
        inside = [r for r in range(len(ids)) if not attention[r, first[r] : last[r]].all()]
        if inside:
            raise ValueError(
                f"prompt row {inside[0]} has a masked position inside it; the completions API takes no "
                "attention mask (use filler='unk' / 'pad' / 'space' or 'remove')"
            )
        tail = completion.tolist()
        prompts = [ids[r, first[r] : last[r]].tolist() + tail for r in range(len(ids))]
        chunks = [
            list(range(s, min(s + self.batch_rows, len(prompts))))
            for s in range(0, len(prompts), self.batch_rows)
        ]
        results = self.pool.map(chunks, lambda rows: self._score([prompts[r] for r in rows], len(tail)))
        return np.concatenate(results, axis=0) if results else np.zeros((0, len(tail)))

    def _score(self, prompts: list[list[int]], m: int) -> np.ndarray:
        mode = self._mode or "prompt_logprobs"
        body = self._body(prompts, mode)
        reply, endpoint, seconds = self.pool.call(
            lambda client: self._post(client, body),
            _is_retryable,
            _describe,
            what=f"model {self.model!r}'s batch",
        )
        timing = BatchTiming(len(prompts), sum(len(p) for p in prompts), seconds, endpoint)
        self.timings.append(timing)
        if self.on_batch is not None:
            self.on_batch(timing)
        choices = self._choices(reply, len(prompts), endpoint)
        if self.logprobs_mode == "auto" and mode == "prompt_logprobs":
            if not all(c.get("prompt_logprobs") for c in choices):
                # a server that ignores vLLM's field: ask again the OpenAI way, and keep to it
                self._mode = "echo"
                return self._score(prompts, m)
            self._mode = "prompt_logprobs"
        return np.stack([self._read(c, p, m, endpoint, mode) for c, p in zip(choices, prompts, strict=True)])

    def _body(self, prompts: list[list[int]], mode: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": prompts, "max_tokens": self._max_tokens,
                                "temperature": 0.0}  # fmt: skip
        if mode == "prompt_logprobs":
            body["prompt_logprobs"] = 0
            body["max_tokens"] = 1  # vLLM needs one step to finish a request; its token is ignored
        else:
            body.update(echo=True, logprobs=0)
        return body

    def _post(self, client: httpx.Client, body: dict[str, Any]) -> Any:
        reply = client.post("/v1/completions", json=body)
        if reply.status_code in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {reply.status_code} from {client.base_url}: {reply.text[:300]}")
        if reply.status_code == 400 and body["max_tokens"] == 0 and "max_tokens" in reply.text:
            self._max_tokens = 1  # a server that wants to generate at least one token
            return self._post(client, {**body, "max_tokens": 1})
        if reply.status_code != 200:
            raise ReplicaRequestError(
                f"{client.base_url}/v1/completions answered HTTP {reply.status_code}: {_message(reply)}"
            )
        try:
            return reply.json()
        except json.JSONDecodeError as error:
            raise ReplicaResponseError(f"{client.base_url} answered with invalid JSON: {error}") from None

    def _choices(self, reply: Any, rows: int, endpoint: str) -> list[dict[str, Any]]:
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if (
            not isinstance(choices, list)
            or len(choices) != rows
            or not all(isinstance(c, dict) for c in choices)
        ):
            got = len(choices) if isinstance(choices, list) else "no"
            raise ReplicaResponseError(f"{endpoint}: {got} choices for {rows} prompts")
        try:
            order = sorted(range(rows), key=lambda i: int(choices[i].get("index", i)))
        except (TypeError, ValueError):
            raise ReplicaResponseError(f"{endpoint}: a choice has a non-integer index") from None
        return [choices[i] for i in order]

    def _read(
        self, choice: dict[str, Any], prompt: list[int], m: int, endpoint: str, mode: str
    ) -> np.ndarray:
        """The last ``m`` prompt tokens' log-probs from one choice."""
        start = len(prompt) - m
        if mode == "prompt_logprobs":
            entries = choice.get("prompt_logprobs")
            if not isinstance(entries, list) or len(entries) < len(prompt):
                raise ReplicaResponseError(f"{endpoint} returned no prompt_logprobs for the prompt")
            values = []
            for position in range(start, len(prompt)):
                entry = entries[position]
                item = entry.get(str(prompt[position])) if isinstance(entry, dict) else None
                values.append(item.get("logprob") if isinstance(item, dict) else None)
        else:
            logprobs = choice.get("logprobs")
            token_logprobs = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
            if not isinstance(token_logprobs, list) or len(token_logprobs) < len(prompt):
                raise ReplicaResponseError(
                    f"{endpoint} returned no prompt log-probs (echo + logprobs); the server must support "
                    "echo=true with logprobs for prompt scoring"
                )
            values = token_logprobs[start : len(prompt)]
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise ReplicaResponseError(
                f"{endpoint} returned a missing or non-finite log-prob: {values!r}"[:300]
            )
        return np.asarray(values, dtype=np.float64)


def _message(reply: httpx.Response) -> str:
    """The server's error message (OpenAI ``{"error": {"message"}}``, or ``{"message"}``), or text."""
    try:
        payload = reply.json()
    except ValueError:
        return reply.text[:500]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    message = error.get("message") if isinstance(error, dict) else None
    return str(message if message is not None else payload)[:500]
