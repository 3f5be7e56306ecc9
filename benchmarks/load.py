"""Sustained load on the data path: Observe and proxied ModelInfer together, explain workers saturated on a
backend shared with the served traffic, for minutes — errors, latency, drops and the sidecar's memory.

Everything runs on loopback as separate processes (model server, sidecar, this load generator). Calls are
issued as gRPC futures on a fixed schedule (open loop), so a slow answer never slows the offered rate.
RSS of the sidecar's serving process is sampled every few seconds; growth is reported per million observes.

Usage: ``python benchmarks/load.py [--rps 2000] [--seconds 300] [--proxy-share 0.25]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sidecar import UPSTREAM, _free_port, _wait_port  # noqa: E402

from spex_monitor.protocol.inference import grpc_service_pb2 as oip  # noqa: E402
from spex_monitor.protocol.oip import InferenceStub  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2 as pb  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc  # noqa: E402

TEXTS = [
    "the plot was not good but the music was great",
    "i did not hate the movie",
    "a dull and weak film with wonderful acting",
    "not bad at all",
]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class OpenLoop:
    """Fire ``make_future(i)`` at ``rps`` from one thread; record latency and status from callbacks."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self._lock = threading.Lock()

    def _done(self, began: float):  # noqa: ANN202
        def callback(future: grpc.Future) -> None:
            elapsed = (time.perf_counter() - began) * 1e3
            error = future.exception()
            with self._lock:
                if error is None:
                    self.latencies.append(elapsed)
                else:
                    name = error.code().name if isinstance(error, grpc.RpcError) else type(error).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1

        return callback

    def run(self, make_future, rps: float, seconds: float, stop: threading.Event) -> int:  # noqa: ANN001
        start = time.perf_counter()
        issued = 0
        total = int(rps * seconds)
        while issued < total and not stop.is_set():
            due = start + issued / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            make_future(issued).add_done_callback(self._done(began))
            issued += 1
        return issued


def _config(work: Path, upstream_port: int, explain_in: str) -> tuple[Path, int, int, int]:
    grpc_port, metrics_port, proxy_port = (_free_port() for _ in range(3))
    path = work / "load.yaml"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "sentiment",
                        "sampling_rate": 1.0,
                        # explanations share the model server with the served traffic: a slow backend
                        "backend": {
                            "kind": "oip",
                            "endpoints": [f"127.0.0.1:{upstream_port}"],
                            "model_name": "sentiment",
                            "deadline_s": 10,
                        },
                    }
                ],
                "engine": {"budget": 256, "max_order": 3},
                "windows": {"seconds": 30},
                "store": {"path": str(work / "spex.db")},
                "server": {
                    "grpc_port": grpc_port,
                    "metrics_port": metrics_port,
                    "proxy_port": proxy_port,
                    "upstream": f"127.0.0.1:{upstream_port}",
                    "workers": 1,
                    "queue_per_label": 64,
                    "explain_in": explain_in,
                },
            }
        )
    )
    return path, grpc_port, metrics_port, proxy_port


def _dropped(metrics_port: int) -> dict[str, float]:
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("spex_monitor_dropped_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            out[reason] = out.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(("spex_monitor_requests_observed_total{", "spex_monitor_explanations_total{")):
            name = line.split("{")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _summary(loop: OpenLoop, issued: int, seconds: float) -> dict:
    lat = np.asarray(loop.latencies)
    return {
        "issued": issued,
        "achieved_rps": round(issued / seconds),
        "ok": int(lat.size),
        "errors": loop.errors,
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "p999_ms": round(float(np.percentile(lat, 99.9)), 3) if lat.size else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rps", type=float, default=2000, help="Observe + proxied calls per second")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument(
        "--proxy-share", type=float, default=0.25, help="share of the rate sent via the proxy"
    )
    parser.add_argument("--explain-in", default="process", choices=["process", "thread"])
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spex-load-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    upstream_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(upstream_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    config, grpc_port, metrics_port, proxy_port = _config(work, upstream_port, args.explain_in)
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "spex_monitor.cli", "serve", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_port(upstream_port)
        _wait_port(grpc_port, 120)
        _wait_port(proxy_port)
        observe_stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        proxy_stub = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{proxy_port}"))

        def observe(i: int) -> grpc.Future:
            request = pb.ObserveRequest(
                request_id=f"o{i}",
                model="sentiment",
                label="positive",
                confidence=0.9,
                text=TEXTS[i % len(TEXTS)],
            )
            return observe_stub.Observe.future(request, timeout=5)

        def infer(i: int) -> grpc.Future:
            request = oip.ModelInferRequest(model_name="sentiment", id=f"p{i}")
            tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(TEXTS[i % len(TEXTS)].encode())
            return proxy_stub.ModelInfer.future(request, timeout=10)

        for i in range(300):  # warm-up; fills the reservoirs so the explain worker stays saturated
            observe(i).result()
        for i in range(20):
            infer(i).result()
        baseline_rss = rss_bytes(sidecar.pid)
        observe_rps = args.rps * (1 - args.proxy_share)
        proxy_rps = args.rps * args.proxy_share
        print(
            f"load: {observe_rps:.0f} Observe/s + {proxy_rps:.0f} proxied ModelInfer/s, {args.seconds:.0f} s"
        )
        stop = threading.Event()
        loops = {"observe": OpenLoop(), "proxy": OpenLoop()}
        issued: dict[str, int] = {}
        runners = [
            threading.Thread(
                target=lambda: issued.__setitem__(
                    "observe", loops["observe"].run(observe, observe_rps, args.seconds, stop)
                )
            ),
            threading.Thread(
                target=lambda: issued.__setitem__(
                    "proxy", loops["proxy"].run(infer, proxy_rps, args.seconds, stop)
                )
            ),
        ]
        scrapes = {"ok": 0, "failed": 0}

        def scrape() -> None:  # what Prometheus does, every second, during the load
            import urllib.request

            while not stop.is_set() and any(r.is_alive() for r in runners):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
                    scrapes["ok"] += 1
                except OSError:
                    scrapes["failed"] += 1
                stop.wait(1.0)

        began = time.perf_counter()
        for runner in runners:
            runner.start()
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        rss = [(0.0, baseline_rss)]
        while any(r.is_alive() for r in runners):
            time.sleep(5)
            rss.append((time.perf_counter() - began, rss_bytes(sidecar.pid)))
            print(f"  t={rss[-1][0]:.0f}s rss={rss[-1][1] / 2**20:.1f} MiB", flush=True)
        elapsed = time.perf_counter() - began
        time.sleep(2)  # let the last callbacks land
        counts = _dropped(metrics_port)
        observes = counts.get("spex_monitor_requests_observed_total", 0.0)
        # growth: the late-run plateau against the early-run level, so start-up allocation is not counted
        early = float(np.median([r for t, r in rss if t <= max(30.0, elapsed * 0.1)]))
        late = float(np.median([r for t, r in rss if t >= elapsed * 0.8]))
        result = {
            "machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
            "explain_in": args.explain_in,
            "offered_rps": args.rps,
            "seconds": round(elapsed, 1),
            "observe": _summary(loops["observe"], issued.get("observe", 0), elapsed),
            "proxy": _summary(loops["proxy"], issued.get("proxy", 0), elapsed),
            "sidecar_counts": counts,
            "metrics_scrapes": scrapes,
            "rss_start_mib": round(baseline_rss / 2**20, 1),
            "rss_early_mib": round(early / 2**20, 1),
            "rss_end_mib": round(late / 2**20, 1),
            "rss_growth_mib_per_million_observes": round((late - early) / 2**20 / max(observes, 1) * 1e6, 1),
        }
        print(json.dumps(result, indent=1))
    finally:
        for process in (sidecar, upstream):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
            except ProcessLookupError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
