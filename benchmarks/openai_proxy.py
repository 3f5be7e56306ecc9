"""The OpenAI-compatible proxy's added latency (issue 18 §2): non-streamed chat completions (p50 / p99) and
time to first token of streamed ones, direct to the upstream vs through the proxy, idle (nothing sampled)
and busy (every call sampled and explained by one explain worker process on the embedded tiny LM).

The upstream is a scripted OpenAI-compatible server in its own process (answers at once; a stream sends its
first event at once and the rest 20 ms later), so what is measured is the proxy, not a model. Direct and
proxied calls alternate in one loop (one keep-alive httpx client each), so drift hits both alike.
Usage: ``nice -n 10 python benchmarks/openai_proxy.py [--calls 400]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import free_port, spawn, stop, wait_port  # noqa: E402
from spex_monitor.examples.explain_generation import USER  # noqa: E402
from spex_monitor.examples.tiny_lm import model_path  # noqa: E402

UPSTREAM = r"""
import asyncio, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
ANSWER = (b'{"id":"chatcmpl-1","object":"chat.completion",'
          b'"choices":[{"index":0,"message":{"role":"assistant","content":"5"}}]}')
async def chat(request):
    body = await request.body()
    if b'"stream": true' in body or b'"stream":true' in body:
        async def events():
            yield b'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"5"}}]}\n\n'
            await asyncio.sleep(0.02)
            yield b"data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    return Response(ANSWER, media_type="application/json")
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _segments() -> str:
    spans = {}
    for name, text in (
        ("doc:acme", "the office of acme is on floor 3 ."),
        ("question", "which floor is two"),
    ):
        start = USER.index(text)
        spans[name] = [1, start, start + len(text)]
    return json.dumps(spans)


def _body(stream: bool) -> dict:
    messages = [{"role": "system", "content": "use the documents ."}, {"role": "user", "content": USER}]
    return {"model": "llm", "messages": messages, "temperature": 0.7, "stream": stream}


def _sidecar(work: Path, upstream_port: int, sampling: float) -> tuple[object, int]:
    port = free_port()
    config = work / f"sidecar-{sampling}.yaml"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "llm",
                        "sampling_rate": sampling,
                        "lens": {"kind": "prompt"},
                        "backend": {"kind": "causal", "path": str(model_path("base"))},
                    }
                ],
                "engine": {"budget": 64, "max_order": 2},
                "budget": {"inferences_per_second": 1e6, "burst": 1e6},
                "store": {"path": str(work / f"s-{sampling}.db")},
                "server": {
                    "grpc_port": free_port(), "metrics_port": free_port(), "openai_proxy_port": port,
                    "openai_upstream": f"http://127.0.0.1:{upstream_port}",
                    "workers": 1, "queue_per_label": 64,
                },
            }
        )
    )  # fmt: skip
    process = spawn([sys.executable, "-m", "spex_monitor.cli", "serve", "--config", str(config)])
    wait_port(port, 180)
    return process, port


def _measure(direct: str, proxy: str, calls: int) -> dict[str, float]:
    headers = {"x-spex-segments": _segments()}
    plain, ttft = {"direct": [], "proxy": []}, {"direct": [], "proxy": []}
    with httpx.Client(timeout=30) as a, httpx.Client(timeout=30) as b:
        for index in range(calls + 20):
            for name, client, base in (("direct", a, direct), ("proxy", b, proxy)):
                began = time.perf_counter()
                reply = client.post(f"{base}/v1/chat/completions", json=_body(False), headers=headers)
                took = time.perf_counter() - began
                assert reply.status_code == 200
                began = time.perf_counter()
                with client.stream(
                    "POST", f"{base}/v1/chat/completions", json=_body(True), headers=headers
                ) as r:
                    chunks = r.iter_raw()
                    next(chunks)
                    first = time.perf_counter() - began
                    for _ in chunks:
                        pass
                if index >= 20:  # warm-up calls left out
                    plain[name].append(took * 1e3)
                    ttft[name].append(first * 1e3)
    out = {}
    for label, series in (("call", plain), ("ttft", ttft)):
        for q in (50, 99):
            d, p = np.percentile(series["direct"], q), np.percentile(series["proxy"], q)
            out[f"{label}_p{q}_direct"], out[f"{label}_p{q}_proxy"] = float(d), float(p)
            out[f"{label}_p{q}_added"] = float(p - d)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=400, help="measured calls of each kind, per setting")
    args = parser.parse_args(argv)
    upstream_port = free_port()
    upstream = spawn([sys.executable, "-c", UPSTREAM, str(upstream_port)])
    results = {}
    try:
        wait_port(upstream_port, 60)
        with tempfile.TemporaryDirectory() as tmp:
            for setting, sampling in (("idle", 0.0), ("busy", 1.0)):
                sidecar, port = _sidecar(Path(tmp), upstream_port, sampling)
                try:
                    results[setting] = _measure(
                        f"http://127.0.0.1:{upstream_port}", f"http://127.0.0.1:{port}", args.calls
                    )
                finally:
                    stop(sidecar)
    finally:
        stop(upstream)
    print(f"machine: {platform.node()} {platform.machine()}, {platform.python_version()}")
    head = ["idle direct", "idle proxied", "idle added", "busy direct", "busy proxied", "busy added"]
    print("| measurement (ms) | " + " | ".join(head) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, name in (("call", "chat completion"), ("ttft", "stream: first chunk")):
        for q in (50, 99):
            row = [
                f"{results[s][f'{label}_p{q}_{k}']:.2f}"
                for s in ("idle", "busy")
                for k in ("direct", "proxy", "added")
            ]
            print(f"| {name} p{q} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
