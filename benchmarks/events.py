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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import free_port, spawn, stop, wait_port  # noqa: E402
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


def _measure(port: int, args: argparse.Namespace, tag: int) -> dict:
    _load(port, 2.0, None, args.clients, args.threads, tag)  # warm-up (fills the sidecar's reservoirs)
    closed = _load(port, args.seconds, None, args.clients, args.threads, tag + 1)
    paced = _load(port, args.seconds, args.rate, args.clients, args.threads, tag + 2)
    return {"closed_loop": closed, f"paced_{args.rate:.0f}": paced}


def _sidecar_argv(work: Path, name: str, sampling_rate: float) -> tuple[list[str], int, int]:
    events_port, grpc_port, metrics_port = (free_port() for _ in range(3))
    (work / name).mkdir()
    settings = _settings_dict(work / name, events_port, grpc_port, metrics_port)
    settings["models"][0]["sampling_rate"] = sampling_rate
    config = work / name / "sidecar.json"
    config.write_text(json.dumps(settings))
    return (
        [sys.executable, "-m", "spex_monitor.cli", "serve", "--config", str(config)],
        events_port,
        metrics_port,
    )


def _median_round(rounds: list[dict]) -> dict:
    ordered = sorted(rounds, key=lambda r: r["closed_loop"]["events_per_s"])
    return {
        **ordered[len(ordered) // 2],
        "rounds_events_per_s": [r["closed_loop"]["events_per_s"] for r in rounds],
    }


def bench_http(args: argparse.Namespace) -> dict:
    """Same load against: the bare framework and the receiver without sampling, interleaved over
    ``--rounds`` (both idle when not loaded, so the ratio survives a busy machine); then the receiver with
    sampling on and its explain worker saturated, on its own (that worker burns CPU whenever it has work)."""
    work = Path(tempfile.mkdtemp(prefix="spex-events-"))
    bare_port = free_port()
    hot_argv, hot_port, hot_metrics = _sidecar_argv(work, "no_sampling", 0.0)
    processes = [spawn([sys.executable, "-c", BARE, str(bare_port)]), spawn(hot_argv)]
    floor, hot = [], []
    try:
        wait_port(bare_port, 60)
        wait_port(hot_port, 120)
        for k in range(args.rounds):
            print(f"round {k + 1}: bare Starlette/uvicorn (floor)", flush=True)
            floor.append(_measure(bare_port, args, 10 + 10 * k))
            print(f"  {floor[-1]}", flush=True)
            print(f"round {k + 1}: receiver, sampling rate 0 (hot path only)", flush=True)
            hot.append(_measure(hot_port, args, 11 + 10 * k))
            print(f"  {hot[-1]}", flush=True)
        hot_counters = _scrape(hot_metrics)
    finally:
        for process in processes:
            stop(process, 60)
    on_argv, on_port, on_metrics = _sidecar_argv(work, "sampling_on", 1.0)
    process = spawn(on_argv)
    try:
        wait_port(on_port, 120)
        print("receiver, sampling rate 1 (explain worker process saturated)", flush=True)
        sampling_on = _measure(on_port, args, 90)
        print(f"  {sampling_on}", flush=True)
        sampling_on["sidecar_counters"] = _scrape(on_metrics)
    finally:
        stop(process, 60)
    ratios = [
        h["closed_loop"]["events_per_s"] / f["closed_loop"]["events_per_s"]
        for f, h in zip(floor, hot, strict=True)
    ]
    return {
        "bare_framework": _median_round(floor),
        "receiver_no_sampling": {**_median_round(hot), "sidecar_counters": hot_counters},
        "receiver_sampling_on": sampling_on,
        "throughput_ratio_no_sampling_vs_bare_per_round": [round(r, 2) for r in ratios],
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of floor vs receiver")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]  # other work on the machine shows up in every figure below
    results: dict = {"machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}"}
    print("handler in-process:", flush=True)
    results["handler"] = bench_handler(args.pairs)
    print(f"  {results['handler']}", flush=True)
    results["http"] = bench_http(args)
    results["load_average_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
