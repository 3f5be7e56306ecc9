"""KServe inference-logger receiver: events/s and handling latency, with sampling on.

Two measurements in one run:

1. ``handler``: ``EventReceiver.handle`` called in-process on pre-encoded CloudEvents (binary mode, half V1
   and half OIP-V2, a quarter of the pairs response-first) with a real ``Monitor`` behind it (sampler at
   rate 1, drift counters) — the per-event cost of parse + decode + pair + observe, no HTTP.
2. ``http``: ``spex-monitor serve`` in its own process with ``server.events_port`` set, sampling rate 1 and
   an explain worker process kept saturated (explanations run off the hot path, as deployed); load comes
   from client processes holding keep-alive connections (as KServe's agent does), first closed-loop (as
   fast as the receiver answers: throughput), then paced at ``--rate`` events/s (latency at a steady load).
   The same load against a bare Starlette/uvicorn app on the same stack gives the framework's floor, so the
   ratio holds on a busy machine.

Usage: ``python benchmarks/events.py [--seconds 8] [--rate 500]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.sidecar import _free_port, _wait_port  # noqa: E402
from spex_monitor.examples.embedded import model_path  # noqa: E402
from spex_monitor.examples.sentiment import generate_corpus  # noqa: E402

TEXTS, _ = generate_corpus(512, seed=5)

# The framework floor: the same uvicorn/Starlette stack (ASGIThread) answering 202 after reading the body.
BARE = """
import sys, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from spex_monitor.server.asgi_thread import ASGIThread

async def receive(request):
    await request.body()
    return JSONResponse({"status": "pending"}, status_code=202)

ASGIThread(Starlette(routes=[Route("/", receive, methods=["POST"])]), "127.0.0.1", int(sys.argv[1])).start()
time.sleep(10**6)
"""


def encoded_pair(i: int, prefix: str) -> list[tuple[dict, bytes]]:
    """The two events KServe's agent would post for inference ``i`` (binary mode), in arrival order."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    text = TEXTS[i % len(TEXTS)]
    logits = [0.3, -0.2] if i % 3 else [-1.1, 0.9]
    if i % 2:
        request, response = {"instances": [text]}, {"predictions": [logits]}
    else:
        request = {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [text]}]}
        response = {
            "model_name": "sentiment",
            "outputs": [{"name": "output", "shape": [1, 2], "datatype": "FP32", "data": logits}],
        }
    out = []
    for kind, data in (("request", request), ("response", response)):
        attributes = {
            "type": f"org.kubeflow.serving.inference.{kind}",
            "source": "http://localhost:9081/",
            "id": f"{prefix}-{i}",
            "inferenceservicename": "sentiment",
            "namespace": "default",
            "component": "predictor",
            "endpoint": "default",
            "metadata": "{}",
            "datacontenttype": "application/json",
        }
        headers, body = to_binary(CloudEvent(attributes, data))
        out.append((dict(headers), body))
    return out if i % 4 else out[::-1]


def _settings_dict(work: Path, events_port: int, grpc_port: int, metrics_port: int) -> dict:
    return {
        "models": [
            {
                "name": "sentiment",
                "sampling_rate": 1.0,
                "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
                "events": {"labels": ["negative", "positive"]},
            }
        ],
        "engine": {"budget": 256, "max_order": 3},
        "windows": {"seconds": 30},
        "store": {"path": str(work / "events.db")},
        "server": {
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "events_port": events_port,
            "workers": 1,
            "queue_per_label": 64,
            "explain_in": "process",
        },
    }


def _percentiles(prefix: str, values_ms: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(float(np.percentile(values_ms, 50)), 3),
        f"{prefix}_p99_ms": round(float(np.percentile(values_ms, 99)), 3),
    }


# -------------------------------------------------------------------------------------------- in-process
def bench_handler(pairs: int) -> dict:
    from spex_monitor.config import Settings
    from spex_monitor.monitor.sampling import StratifiedSampler
    from spex_monitor.monitor.windows import TumblingWindows
    from spex_monitor.monitor.worker import Monitor
    from spex_monitor.server.events import EventReceiver
    from spex_monitor.server.metrics import Metrics

    work = Path(tempfile.mkdtemp(prefix="spex-events-"))
    settings = Settings.model_validate(_settings_dict(work, 0, 0, 0))
    monitor = Monitor(
        explainer=lambda observation: None,  # never called: no workers, the hot path only
        sampler=StratifiedSampler({"sentiment": 1.0}, 64, 0),
        windows=TumblingWindows(30.0, None),
    )
    receiver = EventReceiver(settings, monitor, Metrics(), {"sentiment": {0: "negative", 1: "positive"}})
    events = [e for i in range(pairs) for e in encoded_pair(i, "h")]
    for headers, body in events[:200]:
        receiver.handle(headers, body)  # warm-up (ids are reused below: counted as duplicates, still timed)
    events = [e for i in range(pairs) for e in encoded_pair(i, "m")]
    times = np.empty(len(events))
    began = time.perf_counter()
    for k, (headers, body) in enumerate(events):
        t0 = time.perf_counter()
        reply = receiver.handle(headers, body)
        times[k] = time.perf_counter() - t0
        assert reply.status in (200, 202), reply
    elapsed = time.perf_counter() - began
    observed = monitor.counters["observed"]
    assert observed == pairs + 100, (observed, pairs)  # 100 warm-up pairs + every measured pair observed
    return {
        "events": len(events),
        "events_per_s": round(len(events) / elapsed),
        **_percentiles("handle", times * 1e3),
    }


# ------------------------------------------------------------------------------------------------ HTTP
def _client(args: tuple) -> tuple[int, float, float, list[float]]:
    """One load process: ``threads`` keep-alive connections; returns (events, first send, last reply, ms)."""
    port, worker, start_at, seconds, rate, threads = args
    import threading

    pairs = [encoded_pair(i, "template") for i in range(1000)]
    latencies: list[float] = []
    sent = [0]
    lock = threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    began = time.perf_counter()
    stop_at = began + seconds

    def run(thread: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local: list[float] = []
        n = pair = 0
        while time.perf_counter() < stop_at:
            event_id = f"w{worker}t{thread}-{pair}"  # unique per inference: binary mode keeps it in ce-id
            for headers, body in pairs[(pair * threads + thread) % len(pairs)]:
                if rate:
                    delay = began + n / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                t0 = time.perf_counter()
                connection.request("POST", "/", body=body, headers={**headers, "ce-id": event_id})
                reply = connection.getresponse()
                reply.read()
                local.append((time.perf_counter() - t0) * 1e3)
                n += 1
                if reply.status not in (200, 202):
                    raise RuntimeError(f"HTTP {reply.status}")
            pair += 1
        connection.close()
        with lock:
            latencies.extend(local)
            sent[0] += n

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sent[0], began, time.perf_counter(), latencies


def _load(port: int, seconds: float, rate: float | None, clients: int, threads: int, tag: int) -> dict:
    per_thread = rate / (clients * threads) if rate else 0.0
    start_at = time.time() + 5.0  # spawned clients import and pre-encode first, then start together
    jobs = [(port, tag * 100 + c, start_at, seconds, per_thread, threads) for c in range(clients)]
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    sent = sum(r[0] for r in results)
    wall = max(r[2] - r[1] for r in results)
    latencies = np.array([x for r in results for x in r[3]])
    return {"events": sent, "events_per_s": round(sent / wall), **_percentiles("post", latencies)}


def _scrape(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    wanted = (
        "spex_monitor_requests_observed_total",
        "spex_monitor_sampled_total",
        "spex_monitor_events_received_total",
        "spex_monitor_dropped_total",
        "spex_monitor_explanations_total",
    )
    out = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _spawn(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _measure(port: int, args: argparse.Namespace, tag: int) -> dict:
    _load(port, 2.0, None, args.clients, args.threads, tag)  # warm-up (fills the sidecar's reservoirs)
    closed = _load(port, args.seconds, None, args.clients, args.threads, tag + 1)
    paced = _load(port, args.seconds, args.rate, args.clients, args.threads, tag + 2)
    return {"closed_loop": closed, f"paced_{args.rate:.0f}": paced}


def bench_http(args: argparse.Namespace) -> dict:
    """The receiver in ``spex-monitor serve`` and the bare framework, same load, same run."""
    work = Path(tempfile.mkdtemp(prefix="spex-events-"))
    events_port, grpc_port, metrics_port, bare_port = (_free_port() for _ in range(4))
    config = work / "sidecar.json"
    config.write_text(json.dumps(_settings_dict(work, events_port, grpc_port, metrics_port)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sidecar = _spawn([sys.executable, "-m", "spex_monitor.cli", "serve", "--config", str(config)], env)
    bare = _spawn([sys.executable, "-c", BARE, str(bare_port)], env)
    try:
        _wait_port(events_port, 120)
        _wait_port(bare_port, 60)
        print("bare Starlette/uvicorn (floor):", flush=True)
        floor = _measure(bare_port, args, 10)
        print(f"  {floor}", flush=True)
        print("spex-monitor receiver (explain worker saturated):", flush=True)
        receiver = _measure(events_port, args, 20)
        print(f"  {receiver}", flush=True)
        counters = _scrape(metrics_port)
    finally:
        for process in (sidecar, bare):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
    ratio = receiver["closed_loop"]["events_per_s"] / floor["closed_loop"]["events_per_s"]
    return {
        "bare_framework": floor,
        "receiver": receiver,
        "throughput_ratio_receiver_vs_bare": round(ratio, 2),
        "sidecar_counters": counters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=500.0, help="events/s for the paced latency run")
    parser.add_argument("--pairs", type=int, default=5000, help="request/response pairs for the handler run")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="keep-alive connections per client process")
    args = parser.parse_args(argv)
    results: dict = {"machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}"}
    print("handler in-process:", flush=True)
    results["handler"] = bench_handler(args.pairs)
    print(f"  {results['handler']}", flush=True)
    results["http"] = bench_http(args)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
