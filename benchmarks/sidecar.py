"""Sidecar data-path latency: Observe at a target rate with explanation workers saturated, and the
OIP proxy's added latency over calling the model server directly — measured in the same run.

The sidecar and the model server run as separate processes (as in a pod); this process is the load
generator. Usage: ``python benchmarks/sidecar.py [--rps 2000] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import SidecarProcess, free_port, start_model_server, stop, wait_port  # noqa: E402
from spex_monitor.examples.embedded import model_path  # noqa: E402
from spex_monitor.protocol.inference import grpc_service_pb2 as oip  # noqa: E402
from spex_monitor.protocol.oip import InferenceStub  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2 as pb  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc  # noqa: E402


def paced(call, rps: float, seconds: float, threads: int = 4) -> np.ndarray:
    """Issue ``call(i)`` at ``rps`` for ``seconds`` from ``threads`` threads; latencies in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    total = int(rps * seconds)
    start = time.perf_counter() + 0.2

    def worker(offset: int) -> None:
        local = []
        for i in range(offset, total, threads):
            due = start + i / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            call(i)
            local.append((time.perf_counter() - began) * 1e3)
        with lock:
            latencies.extend(local)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    achieved = total / (time.perf_counter() - start)
    print(f"  achieved {achieved:.0f} rps over {total} calls", flush=True)
    return np.array(latencies)


def _start_sidecar(work: Path, upstream_port: int, mode: str) -> SidecarProcess:
    # "idle": nothing is sampled, so no explanation runs — the floor the two saturated modes compare with
    model = {
        "sampling_rate": 0.0 if mode == "idle" else 1.0,
        "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
    }
    server = {"explain_in": "thread" if mode == "idle" else mode}
    return SidecarProcess(work, mode, model, upstream_port, server=server).start()


def _percentiles(prefix: str, values: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_p50_ms": round(float(np.percentile(values, 50)), 3),
        f"{prefix}_p99_ms": round(float(np.percentile(values, 99)), 3),
    }


def measure(args: argparse.Namespace, grpc_port: int, proxy_port: int, upstream_port: int) -> dict:
    """Observe latency at ``args.rps`` with the explain worker saturated, then direct vs proxied infer."""
    stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
    texts = ["the plot was not good but the music was great", "i did not hate the movie"]

    def observe(i: int) -> None:
        stub.Observe(
            pb.ObserveRequest(request_id=f"r{i}", model="sentiment", label="positive", text=texts[i % 2]),
            timeout=5,
        )

    for i in range(200):
        observe(i)  # warm-up; also fills the reservoirs so workers stay saturated
    print(f"Observe at {args.rps:.0f} rps for {args.seconds:.0f} s (explain worker saturated):", flush=True)
    began = time.perf_counter()
    observe_ms = paced(observe, args.rps, args.seconds)
    achieved = observe_ms.size / (time.perf_counter() - began)
    direct = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{upstream_port}"))
    proxied = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{proxy_port}"))

    def infer(stub_: InferenceStub, i: int) -> None:
        request = oip.ModelInferRequest(model_name="sentiment", id=f"q{i}")
        tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(texts[i % 2].encode())
        stub_.ModelInfer(request, timeout=10)

    for i in range(50):
        infer(direct, i)
        infer(proxied, i)
    pairs: list[tuple[float, float]] = []

    def both(i: int) -> None:
        # Interleave direct and proxied calls so both see the same machine state.
        t0 = time.perf_counter()
        infer(direct, i)
        t1 = time.perf_counter()
        infer(proxied, i)
        pairs.append(((t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3))

    print(f"ModelInfer direct vs through the proxy, {args.proxy_rps:.0f} pairs/s:", flush=True)
    paced(both, args.proxy_rps, args.seconds, threads=2)
    d = np.array([p[0] for p in pairs])
    x = np.array([p[1] for p in pairs])
    return {
        "observe_rps_achieved": round(achieved),
        **_percentiles("observe", observe_ms),
        **_percentiles("direct", d),
        **_percentiles("proxy", x),
        "proxy_added_p50_ms": round(float(np.percentile(x, 50) - np.percentile(d, 50)), 3),
        "proxy_added_p99_ms": round(float(np.percentile(x, 99) - np.percentile(d, 99)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rps", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--proxy-rps", type=float, default=100)
    parser.add_argument(
        "--explain-in",
        nargs="+",
        default=["idle", "thread", "process"],
        choices=["idle", "thread", "process"],
        help="server.explain_in settings to compare in this run (idle: no explanation work at all)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spex-bench-"))
    upstream_port = free_port()
    upstream = start_model_server(upstream_port)
    results = {
        "machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
        "observe_rps_target": args.rps,
        "seconds": args.seconds,
    }
    try:
        wait_port(upstream_port)
        for mode in args.explain_in:
            print(f"== explain_in: {mode}", flush=True)
            sidecar = _start_sidecar(work, upstream_port, mode)
            try:
                results[mode] = measure(args, sidecar.grpc_port, sidecar.proxy_port, upstream_port)
            finally:
                stop(sidecar.process)
        print(json.dumps(results, indent=1))
    finally:
        stop(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
