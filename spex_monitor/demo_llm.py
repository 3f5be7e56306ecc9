"""The LLM part of ``make demo`` (issue 18 §4): a grounded-QA LLM behind spex-monitor's OpenAI-compatible
proxy, a silent rollout of a variant that ignores the retrieved documents, and the trace that names the
(document × question) interaction that collapsed — where the answers themselves still look fine.

1. An OpenAI-compatible server (:mod:`.examples.openai_server`, standing in for vLLM) serves the embedded
   tiny LM ``grounded-lm-base``; the sidecar's OpenAI proxy (``server.openai_proxy_port``) sits in front
   of it, and the model is configured with the prompt lens on named segments (``system``, ``doc:1`` ..
   ``doc:3`` by retrieval rank, ``question``) and the ``openai`` backend pointed at *the same server*: the
   very model being watched scores the masked prompts.
2. RAG chat traffic (some of it streamed) flows through the proxy, segments named in the
   ``X-Spex-Segments`` header; the first windows become the baseline.
3. The server silently swaps in ``grounded-lm-context-ignoring`` (same name): it still answers one
   plausible number per question, now from a memorised table instead of the documents.
4. The next windows raise the interaction-shift alarm; the trace names ``doc:1 × question``; the
   ``spex_monitor_generation_context_share_ratio`` histogram shows the answers' reliance on the documents.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .config import Settings
from .examples.grounded import Example, make_example
from .examples.openai_server import GroundedLMServer
from .examples.tiny_lm import model_path
from .protocol.v1 import monitor_pb2 as pb
from .protocol.v1 import monitor_pb2_grpc as pb_grpc
from .server.app import Sidecar
from .trace_text import format_p, render_trace

MODEL = "grounded-lm"
WINDOW = 24  # explained generations per window
TRACED = frozenset({"doc:1", "question"})  # the interaction the incident collapses
WINDOW_DEADLINE_S = 180.0  # a window that has not closed by then fails the demo instead of hanging it


@dataclass(frozen=True)
class Call:
    """One RAG chat request: its messages, ``X-Spex-Segments`` spans, and each variant's answer."""

    messages: list[dict[str, str]]
    segments: dict[str, list[int]]
    answers: dict[str, str]


def ranked_call(example: Example) -> Call:
    """The example's prompt as a retriever would send it: the document naming the asked company first
    (``doc:1``), the others after it in their drawn order; segments as ``[message, start, end]`` spans."""
    user = example.messages[1]["content"]
    docs = sorted((k for k in example.segments if k.startswith("doc:")), key=lambda k: int(k[4:]))
    order = [example.fact_doc] + [k for k in docs if k != example.fact_doc]
    texts = [user[example.segments[k][1] : example.segments[k][2]] for k in order]
    question = user[example.segments["question"][1] : example.segments["question"][2]]
    parts, segments, cursor = [], {"system": [0, 0, len(example.messages[0]["content"])]}, 0
    for rank, text in enumerate(texts, start=1):
        head = f"document {rank} : "
        segments[f"doc:{rank}"] = [1, cursor + len(head), cursor + len(head) + len(text)]
        parts.append(f"{head}{text} ")
        cursor += len(head) + len(text) + 1
    segments["question"] = [1, cursor + len("question : "), cursor + len("question : ") + len(question)]
    parts.append(f"question : {question}")
    messages = [example.messages[0], {"role": "user", "content": "".join(parts)}]
    return Call(messages=messages, segments=segments, answers=example.answers)


def settings_for(server: GroundedLMServer, workdir: Path, window: int, seed: int) -> Settings:
    """The sidecar's configuration: the prompt lens, the openai backend on the watched server itself, the
    OpenAI proxy in front of it, windows of ``window`` explained generations, two baseline windows."""
    return Settings.model_validate(
        {
            "models": [
                {
                    "name": MODEL,
                    "version": "v1",
                    "sampling_rate": 1.0,
                    "lens": {"kind": "prompt", "unit": "segments"},
                    "backend": {
                        "kind": "openai",
                        "endpoints": [server.endpoint],
                        "served_model": MODEL,
                        "tokenizer_path": str(model_path("base")),
                        "batch_rows": 64,
                    },
                }
            ],
            # 4-5 segments: 16-32 masked prompts pay for the exact transform (all masks, one batch)
            "engine": {"budget": 64, "max_order": 3},
            "budget": {"inferences_per_second": 1e6, "burst": 1e6},
            "windows": {"seconds": None, "requests": window},
            "baseline": {"windows": 2, "min_window_requests": max(8, window * 3 // 4), "n_permutations": 500},
            "store": {"path": str(workdir / "spex-monitor.db")},
            "server": {
                "host": "127.0.0.1",
                "grpc_port": 0,
                "metrics_port": 0,
                "openai_proxy_port": 0,
                "openai_upstream": server.url,
                "workers": 2,
                # in-process explain workers: no worker start-up; the scoring itself runs on the LLM server
                "explain_in": "thread",
                "tick_s": 0.2,
                "queue_per_label": max(64, 2 * window),  # a whole window waits to be explained, none dropped
            },
            "seed": seed,
        }
    )


def _send(client: httpx.Client, call: Call, request_id: str, stream: bool) -> str:
    """One chat completion through the proxy (streamed or not); returns the answer text."""
    body: dict[str, Any] = {"model": MODEL, "messages": call.messages, "max_tokens": 4, "temperature": 0.0}
    headers = {"x-request-id": request_id, "x-spex-segments": json.dumps(call.segments)}
    if not stream:
        reply = client.post("/v1/chat/completions", json=body, headers=headers)
        reply.raise_for_status()
        return str(reply.json()["choices"][0]["message"]["content"])
    pieces = []
    body["stream"] = True
    with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                delta = json.loads(line[6:])["choices"][0]["delta"]
                pieces.append(delta.get("content") or "")
    return "".join(pieces)


def _window_line(result: Any, phase: str, right: int, window: int) -> str:
    head = f"   [{phase:8}] window {result.window_id}: {right:2d}/{window} answers right"
    if result.report is None:
        return f"{head}, {result.window.map.requests:.0f} explained -> building the baseline"
    top = result.report.top_contributors(1)
    # a quiet window's largest move is chance by the test's own verdict: name a mover only on alarm
    moved = f"; top moved: {' × '.join(top[0].key)} ({top[0].delta:+.3f})" if result.alarm and top else ""
    verdict = "ALARM" if result.alarm else "quiet"
    return f"{head}, p = {format_p(result.report.p_value)} {verdict}{moved}"


@dataclass
class _Traffic:
    """What the traffic loop saw: calls sent and streamed, whether every window closed, whether traced."""

    sent: int = 0
    streamed: int = 0
    closed_all: bool = True
    traced: bool = False
    share_at_swap: tuple[float, float] = (0.0, 0.0)  # context-share histogram (sum, count) at the rollout


def _traffic(
    upstream: GroundedLMServer, sidecar: Sidecar, window: int, seed: int, metrics_url: str
) -> _Traffic:
    """Send each phase's windows of calls, wait (with a deadline) for each window to close, print it."""
    rng = np.random.default_rng(seed + 18)
    phases = [("baseline", 2, "base"), ("steady", 1, "base"), ("incident", 2, "context-ignoring")]
    seen = _Traffic()
    with httpx.Client(base_url=f"http://127.0.0.1:{sidecar.openai_proxy_port}", timeout=60) as proxy:
        for phase, windows, variant in phases:
            if variant != upstream.variant:
                seen.share_at_swap = _context_share(metrics_url)
                upstream.swap(variant)
                print(f"   !! the LLM server silently swapped to 'grounded-lm-{variant}' (same model name)")
            for _ in range(windows):
                closed = sidecar.monitor.counters["windows:closed"]
                right = 0
                for _ in range(window):
                    call = ranked_call(make_example(rng, injection_rate=0.0))
                    stream = seen.sent % 3 == 2
                    answer = _send(proxy, call, f"llm-{seen.sent:04d}", stream)
                    right += answer.strip() == call.answers["base"]
                    seen.sent, seen.streamed = seen.sent + 1, seen.streamed + stream
                deadline = time.monotonic() + WINDOW_DEADLINE_S
                while sidecar.monitor.counters["windows:closed"] == closed and time.monotonic() < deadline:
                    time.sleep(0.1)
                if sidecar.monitor.counters["windows:closed"] == closed:
                    print(f"   [{phase:8}] the window did not close within {WINDOW_DEADLINE_S:.0f}s")
                    seen.closed_all = False
                    return seen
                result = sidecar.monitor.results[-1]
                print(_window_line(result, phase, right, window))
                if phase == "incident" and result.alarm:
                    top = result.report.top_contributors(3)
                    seen.traced = seen.traced or any(set(c.key) == TRACED for c in top)
    return seen


def _context_share(metrics_url: str) -> tuple[float, float]:
    """``(sum, count)`` of the ``spex_monitor_generation_context_share_ratio`` histogram of the model."""
    body = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = {"_sum": 0.0, "_count": 0.0}
    for family in text_string_to_metric_families(body):
        if family.name == "spex_monitor_generation_context_share_ratio":
            for sample in family.samples:
                suffix = sample.name[len(family.name) :]
                if suffix in found and sample.labels.get("model") == MODEL:
                    found[suffix] = sample.value
    return found["_sum"], found["_count"]


def _share_line(before: tuple[float, float], after: tuple[float, float]) -> str:
    """Mean context share per explained generation before the rollout and after it."""
    (s0, n0), (s1, n1) = before, after
    mean_before = s0 / n0 if n0 else float("nan")
    mean_after = (s1 - s0) / (n1 - n0) if n1 > n0 else float("nan")
    return (
        f"   mean share of the answer's log-prob carried by interactions with a retrieved document: "
        f"{mean_before:.2f} before the rollout ({n0:.0f} generations), {mean_after:.2f} after ({n1 - n0:.0f})"
    )


def _metric_lines(metrics_url: str) -> list[str]:
    """A few ``spex_monitor_generation_*`` lines: count, sum and two buckets of the context share."""
    body = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    wanted = ("_count", "_sum", 'le="0.25"', 'le="0.5"')
    return [
        line
        for line in body.splitlines()
        if line.startswith("spex_monitor_generation_") and any(w in line for w in wanted)
    ][:6]


def run_llm_story(seed: int = 0, window: int = WINDOW, keep_running: bool = False) -> bool:
    """Run the LLM story end to end, printing it; True when an incident window alarmed with
    (``doc:1`` × ``question``) among its top-3 moved interactions.

    Raises:
        ValueError: ``window`` under 8 (too few explained generations for a baseline).
    """
    if window < 8:
        raise ValueError(f"window must be at least 8 explained generations, got {window}")
    print("== LLM 1. OpenAI-compatible server (embedded grounded tiny LM) and the sidecar's OpenAI proxy")
    began = time.time()
    upstream = GroundedLMServer("base", name=MODEL).start()
    sidecar: Sidecar | None = None
    try:
        workdir = Path(tempfile.mkdtemp(prefix="spex-demo-llm-"))
        sidecar = Sidecar(settings_for(upstream, workdir, window, seed)).start()
        metrics_url = f"http://127.0.0.1:{sidecar.metrics_port}/metrics"
        print(
            f"   LLM server {upstream.url} (served as '{MODEL}') | OpenAI proxy "
            f"http://127.0.0.1:{sidecar.openai_proxy_port} | sidecar gRPC 127.0.0.1:{sidecar.grpc_port} | "
            f"metrics {metrics_url}\n   lens: prompt segments (system, doc:1..3 by retrieval rank, question);"
            " scoring backend: openai, on the same server\n"
        )
        print(
            "== LLM 2. RAG chat traffic through the proxy (every third call streamed), one line per window\n"
            "   ('answers right' is ground truth for you, the reader: no monitor sees it)"
        )
        started = time.time()
        seen = _traffic(upstream, sidecar, window, seed, metrics_url)
        elapsed = time.time() - started
        print(f"\n== LLM 3. What on-call sees: spex-monitor trace --model {MODEL} "
              f"--target 127.0.0.1:{sidecar.grpc_port}")  # fmt: skip
        monitor = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}"))
        report = monitor.GetShiftReport(pb.GetShiftReportRequest(model=MODEL), timeout=30)
        print(render_trace(report, monitor, MODEL))
        print(f"\n== LLM 4. Prometheus ({metrics_url}): how much answers lean on the retrieved documents")
        for line in _metric_lines(metrics_url):
            print(f"   {line}")
        print(_share_line(seen.share_at_swap, _context_share(metrics_url)))
        counters = sidecar.monitor.counters
        print(
            f"\n{seen.sent} chat completions through the proxy ({seen.streamed} streamed), "
            f"{counters['observed']} observed, {counters['explanations:ok']} explained "
            f"({counters['ablation_inferences']} scoring inferences on the watched server) in {elapsed:.0f}s "
            f"({time.time() - began:.0f}s with start-up)."
        )
        print(
            "RESULT (LLM): the silent rollout was detected and traced to the doc:1 × question interaction."
            if seen.traced
            else "RESULT (LLM): the rollout was NOT traced to doc:1 × question (see the lines above)."
        )
        if keep_running:
            print("\nLLM stack left running; Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return seen.traced
    finally:
        if sidecar is not None:
            sidecar.stop()
        upstream.stop()
