"""OpenAI-compatible backend against HTTP servers on loopback that speak /v1/completions: both log-prob
modes, token-id batches, auth, retries and breakers over two replicas, and clear errors for bad answers.

The servers here score with a fixed arithmetic rule so every expected value is known exactly; the real
vLLM is exercised in tests/integration/test_vllm.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from spex_monitor.backends.openai import (
    BackendUnavailableError,
    OpenAICompletionsBackend,
    ReplicaRequestError,
    ReplicaResponseError,
)

pytestmark = pytest.mark.unit


def rule(prompt: list[int], position: int) -> float:
    """The fake model's log-prob of ``prompt[position]`` given the tokens before it."""
    return -0.01 * (sum(prompt[:position]) % 97) - 0.001 * prompt[position] - 0.5


class Scorer:
    """Behaviour of one fake replica (mutable by tests)."""

    def __init__(self) -> None:
        self.mode = "vllm"  # "vllm": both fields; "openai": ignores prompt_logprobs; "none": no log-probs
        self.fail_status: list[int] = []
        self.refuse_zero_max_tokens = False
        self.api_key: str | None = None
        self.bad = ""  # "nan", "choices", "json"
        self.delay_s = 0.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def answer(self, body: dict, headers) -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(body)
            status = self.fail_status.pop(0) if self.fail_status else 200
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.api_key is not None and headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, json.dumps({"error": {"message": "invalid api key"}}).encode()
        if status != 200:
            return status, json.dumps({"error": {"message": f"injected {status}"}}).encode()
        if body.get("max_tokens") == 0 and self.refuse_zero_max_tokens:
            return 400, json.dumps({"error": {"message": "max_tokens must be at least 1"}}).encode()
        if self.bad == "json":
            return 200, b"{not json"
        choices = []
        for index, prompt in enumerate(body["prompt"]):
            values = [None] + [rule(prompt, p) for p in range(1, len(prompt))]
            if self.bad == "nan":
                values[-1] = float("nan")
            choice: dict = {"index": index, "text": "", "finish_reason": "length"}
            if body.get("echo") and body.get("logprobs") is not None and self.mode != "none":
                generated = [-1.0] * body.get("max_tokens", 0)
                choice["logprobs"] = {"token_logprobs": values + generated, "tokens": ["t"] * len(values)}
            if body.get("prompt_logprobs") is not None and self.mode == "vllm":
                choice["prompt_logprobs"] = [None] + [
                    {str(prompt[p]): {"logprob": values[p], "rank": 1}} for p in range(1, len(prompt))
                ]
            choices.append(choice)
        if self.bad == "choices":
            choices = choices[:-1]
        return 200, json.dumps({"object": "text_completion", "choices": choices[::-1]}).encode()


def _serve(scorer: Scorer) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            payload = json.dumps({"data": [{"id": "tiny"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = scorer.answer(body, self.headers)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def replicas():
    scorers = [Scorer(), Scorer()]
    served = [_serve(s) for s in scorers]
    yield scorers, [endpoint for _, endpoint in served], [server for server, _ in served]
    for server, _ in served:
        server.shutdown()
        server.server_close()


def _expected(ids, attention, completion):
    out = []
    for row_ids, row_att in zip(ids, attention, strict=True):
        prompt = [int(t) for t, a in zip(row_ids, row_att, strict=True) if a] + list(completion)
        start = len(prompt) - len(completion)
        out.append(sum(rule(prompt, p) for p in range(start, len(prompt))))
    return np.asarray(out)


def _rows(k: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 200, size=(k, 12))
    attention = np.ones_like(ids)
    for row in range(k):
        cut = int(rng.integers(0, 6))
        if row % 2:
            attention[row, :cut] = 0  # left padded
        elif cut:
            attention[row, -cut:] = 0  # right padded
    return ids, attention


@pytest.mark.parametrize("mode", ["vllm", "openai"])
def test_scores_in_both_logprob_modes_over_two_replicas(replicas, mode):
    scorers, endpoints, _ = replicas
    for scorer in scorers:
        scorer.mode = mode
    ids, attention = _rows(10)
    completion = [7, 8, 9]
    with OpenAICompletionsBackend(endpoints, model="tiny", batch_rows=3, max_concurrency=2) as backend:
        got = backend.completion_logprob(ids, attention, completion)
        assert backend.ready() == {e: True for e in endpoints}
        # every request the servers answered is accounted (auto mode's first probe of an "openai"
        # server included: it used the model too)
        assert sum(t.rows for t in backend.timings) == sum(
            len(r["prompt"]) for s in scorers for r in s.requests
        )
    np.testing.assert_allclose(got, _expected(ids, attention, completion), atol=1e-12)
    sent = [r for s in scorers for r in s.requests]
    assert all(s.requests for s in scorers)  # both replicas served
    prompts = [p for r in sent if r.get("prompt_logprobs") is None or mode == "vllm" for p in r["prompt"]]
    assert all(isinstance(t, int) for p in prompts for t in p)  # token ids, never text
    probes = [r for r in sent if "prompt_logprobs" in r]
    echoes = [r for r in sent if r.get("echo")]
    if mode == "vllm":  # vLLM's field answered: never asked the echo way
        assert len(probes) == 4 and not echoes
    else:  # ignored: at most one probe per in-flight batch, then every batch the OpenAI way
        assert 1 <= len(probes) <= 2 and len(echoes) == 4


def test_api_key_and_max_tokens_fallback(replicas):
    scorers, endpoints, _ = replicas
    scorers[0].mode, scorers[0].api_key, scorers[0].refuse_zero_max_tokens = "openai", "s3cret", True
    ids, attention = _rows(2)
    with OpenAICompletionsBackend(
        endpoints[:1], model="tiny", api_key="s3cret", logprobs_mode="echo"
    ) as backend:
        np.testing.assert_allclose(
            backend.completion_logprob(ids, attention, [5]), _expected(ids, attention, [5])
        )
    assert scorers[0].requests[-1]["max_tokens"] == 1
    with (
        OpenAICompletionsBackend(endpoints[:1], model="tiny", api_key="wrong") as backend,
        pytest.raises(ReplicaRequestError, match="HTTP 401: invalid api key"),
    ):
        backend.completion_logprob(ids, attention, [5])


def test_retryable_statuses_move_to_the_other_replica_and_breaker_opens(replicas):
    scorers, endpoints, servers = replicas
    scorers[0].fail_status = [503, 503, 503]
    ids, attention = _rows(1)
    with OpenAICompletionsBackend(
        endpoints, model="tiny", retries=2, backoff_s=0.001, breaker_failures=2
    ) as backend:
        for _ in range(3):
            np.testing.assert_allclose(
                backend.completion_logprob(ids, attention, [5]), _expected(ids, attention, [5])
            )
        assert backend.health() == {endpoints[0]: False, endpoints[1]: True}
        servers[1].shutdown()
        servers[1].server_close()
        with pytest.raises(BackendUnavailableError, match="no replica served"):
            backend.completion_logprob(ids, attention, [5])


def test_a_hung_replica_times_out_and_falls_over(replicas):
    scorers, endpoints, _ = replicas
    scorers[0].delay_s = 2.0
    ids, attention = _rows(1)
    with OpenAICompletionsBackend(
        endpoints, model="tiny", deadline_s=0.3, retries=1, backoff_s=0.001
    ) as backend:
        began = time.monotonic()
        np.testing.assert_allclose(
            backend.completion_logprob(ids, attention, [5]), _expected(ids, attention, [5])
        )
        assert time.monotonic() - began < 1.8


@pytest.mark.parametrize(
    ("bad", "mode", "error", "message"),
    [
        ("nan", "vllm", ReplicaResponseError, "non-finite"),
        ("choices", "vllm", ReplicaResponseError, "choices for 3 prompts"),
        ("json", "vllm", ReplicaResponseError, "invalid JSON"),
        ("", "none", ReplicaResponseError, "returned no prompt log-probs"),
    ],
)
def test_bad_answers_are_clear_errors(replicas, bad, mode, error, message):
    scorers, endpoints, _ = replicas
    scorers[0].bad, scorers[0].mode = bad, mode
    ids, attention = _rows(3)
    with (
        OpenAICompletionsBackend(endpoints[:1], model="tiny") as backend,
        pytest.raises(error, match=message),
    ):
        backend.completion_logprob(ids, attention, [5])


def test_non_retryable_status_surfaces_with_the_server_message(replicas):
    scorers, endpoints, _ = replicas
    scorers[0].fail_status = [400]
    with OpenAICompletionsBackend(endpoints[:1], model="tiny") as backend:
        with pytest.raises(ReplicaRequestError, match="HTTP 400: injected 400"):
            backend.completion_logprob(*_rows(1), [5])
        assert backend.health() == {endpoints[0]: True}  # it answered: alive


def test_input_and_config_errors(replicas):
    _, endpoints, _ = replicas
    with OpenAICompletionsBackend(endpoints[:1], model="tiny") as backend:
        ids = np.ones((1, 5), dtype=np.int64)
        with pytest.raises(ValueError, match="inside it"):
            backend.completion_logprob(ids, np.array([[1, 0, 1, 1, 1]]), [5])
        with pytest.raises(ValueError, match="non-empty"):
            backend.completion_logprob(ids, np.ones_like(ids), [])
    for kwargs, field in [
        ({"model": ""}, "model"),
        ({"batch_rows": 0}, "batch_rows"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"logprobs_mode": "both"}, "logprobs_mode"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ]:
        with pytest.raises(ValueError, match=field):
            OpenAICompletionsBackend(endpoints[:1], **{"model": "tiny", **kwargs})
