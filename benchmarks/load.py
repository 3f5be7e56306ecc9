"""Sustained load on the data path: Observe and proxied ModelInfer together, explain workers saturated on a
backend shared with the served traffic, for minutes — errors, latency, drops and the sidecar's memory.

Everything runs on loopback as separate processes (model server, sidecar, ``--clients`` load-generator
processes). Each client issues gRPC futures on a fixed schedule (open loop), so a slow answer never slows
the offered rate. Request texts look like production (``harness.production_texts``: an open vocabulary,
handles, emails, phone numbers, order ids; redaction presets on). RSS of the sidecar's serving process and
of its explain workers is sampled every few seconds; the series is written next to the summary, and
growth is reported per million observes over the second half of the run (the plateau), not from start-up.

Usage: ``python benchmarks/load.py [--rps 2000] [--seconds 300] [--proxy-share 0.25] [--clients 2]
[--observe-via unary|client] [--backend oip|local]`` (``--help`` says what each does). Results print as
JSON and go to ``benchmarks/out/load-<time>.json`` with the RSS series.
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
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    SidecarProcess,
    children,
    free_port,
    production_texts,
    rss_bytes,
    start_model_server,
    stop,
    wait_port,
)
from spex_monitor.client import MonitorClient  # noqa: E402
from spex_monitor.examples.embedded import model_path  # noqa: E402
from spex_monitor.protocol.inference import grpc_service_pb2 as oip  # noqa: E402
from spex_monitor.protocol.oip import InferenceStub  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2 as pb  # noqa: E402
from spex_monitor.protocol.v1 import monitor_pb2_grpc as pb_grpc  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


class OpenLoop:
    """Fire ``make_call(i)`` at ``rps`` from one thread; record latency and status.

    A call returns a gRPC future (latency and status come from its callback) or, for the fire-and-forget
    ``MonitorClient.observe``, a bool: its latency is the time the serving path spent in the call, and
    ``False`` (not queued) counts as a drop.
    """

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.details: dict[str, str] = {}  # the first message seen per status: who ended the call, and why
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
                    if name not in self.details and isinstance(error, grpc.RpcError):
                        self.details[name] = str(error.details())[:200]

        return callback

    def run(self, make_call, rps: float, seconds: float, stop: threading.Event) -> int:  # noqa: ANN001
        start = time.perf_counter()
        issued = 0
        total = int(rps * seconds)
        while issued < total and not stop.is_set():
            due = start + issued / rps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            began = time.perf_counter()
            outcome = make_call(issued)
            if isinstance(outcome, bool):
                elapsed = (time.perf_counter() - began) * 1e3
                with self._lock:
                    if outcome:
                        self.latencies.append(elapsed)
                    else:
                        self.errors["client_queue_full"] = self.errors.get("client_queue_full", 0) + 1
            else:
                outcome.add_done_callback(self._done(began))
            issued += 1
        return issued


def _client(
    grpc_port: int,
    proxy_port: int,
    model_port: int,
    observe_rps: float,
    proxy_rps: float,
    seconds: float,
    index: int,
    via: str = "unary",
) -> dict:
    """One load-generator process: Observe and proxied ModelInfer open loops on its own channels."""
    texts = production_texts(4000, seed=index)
    observe_stub = pb_grpc.MonitorServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
    monitor_client = MonitorClient(f"127.0.0.1:{grpc_port}") if via == "client" else None
    proxy_stub = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{proxy_port}"))
    direct_stub = InferenceStub(grpc.insecure_channel(f"127.0.0.1:{model_port}"))

    def observe(i: int) -> grpc.Future | bool:
        fields = {
            "request_id": f"c{index}o{i}",
            "model": "sentiment",
            "label": "positive" if i % 3 else "negative",
            "confidence": 0.6 + 0.39 * ((i * 7919) % 100) / 100,
            # one token no earlier request had, as ticket/session ids do in real traffic
            "text": f"{texts[i % len(texts)]} ticket t{index}x{i}",
        }
        if monitor_client is not None:  # what an app using the Python client does on its serving path
            return monitor_client.observe(**fields)
        return observe_stub.Observe.future(pb.ObserveRequest(**fields), timeout=5)

    def infer_on(stub: InferenceStub, tag: str):  # noqa: ANN202
        def infer(i: int) -> grpc.Future:
            request = oip.ModelInferRequest(model_name="sentiment", id=f"c{index}{tag}{i}")
            tensor = request.inputs.add(name="input", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(texts[-1 - i % len(texts)].encode())
            return stub.ModelInfer.future(request, timeout=10)

        return infer

    stop_event = threading.Event()
    loops = {"observe": OpenLoop(), "proxy": OpenLoop(), "direct": OpenLoop()}
    issued: dict[str, int] = {}
    # "direct" calls the model server at the proxied rate, bypassing the sidecar: the same machine state
    # with and without the proxy, so the proxy's added latency is a difference inside one run
    plan = {
        "observe": (observe, observe_rps),
        "proxy": (infer_on(proxy_stub, "p"), proxy_rps),
        "direct": (infer_on(direct_stub, "d"), proxy_rps),
    }
    threads = [
        threading.Thread(
            target=lambda k=kind, f=call, r=rate: issued.__setitem__(
                k, loops[k].run(f, r, seconds, stop_event) if r > 0 else 0
            )
        )
        for kind, (call, rate) in plan.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(2.0)  # let the last callbacks land
    if monitor_client is not None:
        monitor_client.close()  # flushes what is queued
        for reason, count in monitor_client.dropped.items():
            if count:
                loops["observe"].errors[f"client_{reason}"] = count
    return {
        kind: {
            "issued": issued.get(kind, 0),
            "latencies": np.asarray(loop.latencies, dtype=np.float32),
            "errors": dict(loop.errors),
            "details": dict(loop.details),
        }
        for kind, loop in loops.items()
    }


def _counts(metrics_port: int) -> dict[str, float]:
    """Drops by reason, observed and explained totals, as the exporter reports them."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("spex_monitor_dropped_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            out[f"dropped:{reason}"] = out.get(f"dropped:{reason}", 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(("spex_monitor_requests_observed_total{", "spex_monitor_explanations_total{")):
            name = line.split("{")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _latencies(parts: list[dict], kind: str) -> np.ndarray:
    return np.concatenate([p[kind]["latencies"] for p in parts] + [np.zeros(0, np.float32)])


def _summary(parts: list[dict], seconds: float) -> dict:
    lat = np.concatenate([p["latencies"] for p in parts]) if parts else np.zeros(0)
    errors: dict[str, int] = {}
    details: dict[str, str] = {}
    for part in parts:
        for name, count in part["errors"].items():
            errors[name] = errors.get(name, 0) + count
        details.update(part.get("details", {}))
    issued = sum(p["issued"] for p in parts)
    return {
        "issued": issued,
        "achieved_rps": round(issued / seconds),
        "ok": int(lat.size),
        "errors": errors,
        "error_details": details,
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "p999_ms": round(float(np.percentile(lat, 99.9)), 3) if lat.size else None,
    }


def _growth(series: list[tuple[float, float, int, int]], elapsed: float) -> dict:
    """RSS growth over the second half of the run, per million observes (≈ 0 on a plateau)."""

    def median_near(t_lo: float, t_hi: float, column: int) -> float:
        values = [row[column] for row in series if t_lo <= row[0] <= t_hi]
        return float(np.median(values)) if values else float("nan")

    window = max(elapsed * 0.05, 10.0)
    mid_t, end_t = elapsed / 2, elapsed
    mid_rss = median_near(mid_t - window, mid_t + window, 2)
    end_rss = median_near(end_t - 2 * window, end_t, 2)
    mid_obs = median_near(mid_t - window, mid_t + window, 1)
    end_obs = median_near(end_t - 2 * window, end_t, 1)
    observes = max(end_obs - mid_obs, 1.0)
    return {
        "rss_start_mib": round(series[0][2] / 2**20, 1),
        "rss_half_mib": round(mid_rss / 2**20, 1),
        "rss_end_mib": round(end_rss / 2**20, 1),
        "rss_max_mib": round(max(row[2] for row in series) / 2**20, 1),
        "second_half_observes": round(observes),
        "rss_growth_mib_per_million_observes_second_half": round(
            (end_rss - mid_rss) / 2**20 / observes * 1e6, 1
        ),
        "workers_rss_start_mib": round(series[0][3] / 2**20, 1),
        "workers_rss_end_mib": round(series[-1][3] / 2**20, 1),
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
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the sidecar process, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    parser.add_argument(
        "--rolling-decay",
        type=float,
        default=None,
        help="baseline.rolling_decay: roll the baseline every window (more state to keep bounded)",
    )
    parser.add_argument(
        "--observe-via",
        default="unary",
        choices=["unary", "client"],
        help="unary: one Observe RPC per request (what other languages do); client: the Python "
        "MonitorClient (queue + ObserveStream batches); its latency is the serving path's time in observe()",
    )
    parser.add_argument("--explain-in", default="process", choices=["process", "thread"])
    parser.add_argument(
        "--backend",
        default="oip",
        choices=["oip", "local"],
        help="explain through the model server that serves the traffic (oip: a shared, slow backend that "
        "competes with served traffic at full priority) or in the niced explain workers (local)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spex-load-"))
    upstream_port = free_port()
    upstream = start_model_server(upstream_port)
    if args.backend == "oip":  # explanations share the model server with the served traffic
        backend = {
            "kind": "oip",
            "endpoints": [f"127.0.0.1:{upstream_port}"],
            "model_name": "sentiment",
            "deadline_s": 10,
        }
    else:
        backend = {"kind": "local", "path": str(model_path("sentiment-base"))}
    sidecar = SidecarProcess(
        work,
        "load",
        {"sampling_rate": 1.0, "backend": backend},
        upstream_port,
        server={"explain_in": args.explain_in},
        store={"redact": ["email", "phone", "digits"]},
        baseline={"windows": 2, "rolling_decay": args.rolling_decay},
    )
    try:
        wait_port(upstream_port)
        sidecar.start(env=dict(item.split("=", 1) for item in args.sidecar_env))
        # warm-up: fills the reservoirs, so the explain worker is saturated from the first second
        warm = _client(sidecar.grpc_port, sidecar.proxy_port, upstream_port, 100, 10, 3, index=99)
        assert not warm["observe"]["errors"], warm
        observe_rps = args.rps * (1 - args.proxy_share)
        proxy_rps = args.rps * args.proxy_share
        print(
            f"load: {observe_rps:.0f} Observe/s + {proxy_rps:.0f} proxied ModelInfer/s from "
            f"{args.clients} processes, {args.seconds:.0f} s",
            flush=True,
        )
        scrapes = {"ok": 0, "failed": 0}
        series: list[tuple[float, float, int, int]] = []  # (t, observed so far, sidecar RSS, workers RSS)
        began = time.perf_counter()
        with ProcessPoolExecutor(args.clients, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(
                    _client,
                    sidecar.grpc_port,
                    sidecar.proxy_port,
                    upstream_port,
                    observe_rps / args.clients,
                    proxy_rps / args.clients,
                    args.seconds,
                    index,
                    args.observe_via,
                )
                for index in range(args.clients)
            ]
            next_sample = 0.0
            while not all(f.done() for f in futures):
                now = time.perf_counter() - began
                try:  # what Prometheus does, every second, during the load
                    counts = _counts(sidecar.metrics_port)
                    scrapes["ok"] += 1
                except OSError:
                    counts = {}
                    scrapes["failed"] += 1
                if now >= next_sample:
                    workers = sum(rss_bytes(pid) for pid in children(sidecar.pid))
                    observed = counts.get("spex_monitor_requests_observed_total", float("nan"))
                    series.append((now, observed, rss_bytes(sidecar.pid), workers))
                    print(
                        f"  t={now:5.0f}s observed={observed:>9.0f} rss={series[-1][2] / 2**20:6.1f} MiB "
                        f"workers={workers / 2**20:6.1f} MiB",
                        flush=True,
                    )
                    next_sample = now + 10.0
                time.sleep(1.0)
            parts = [f.result() for f in futures]
        elapsed = time.perf_counter() - began - 2.0
        counts = _counts(sidecar.metrics_port)
        series = [row for row in series if np.isfinite(row[1])]
        result = {
            "machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
            "explain_in": args.explain_in,
            "backend": args.backend,
            "observe_via": args.observe_via,
            "rolling_decay": args.rolling_decay,
            "sidecar_env": args.sidecar_env,
            "clients": args.clients,
            "offered_rps": args.rps,
            "seconds": round(elapsed, 1),
            "observe": _summary([p["observe"] for p in parts], elapsed),
            "proxy": _summary([p["proxy"] for p in parts], elapsed),
            "direct": _summary([p["direct"] for p in parts], elapsed),
            "proxy_added_ms": {
                q: round(
                    float(np.percentile(_latencies(parts, "proxy"), int(q[1:])))
                    - float(np.percentile(_latencies(parts, "direct"), int(q[1:]))),
                    3,
                )
                for q in ("p50", "p99")
            },
            "sidecar_counts": counts,
            "metrics_scrapes": scrapes,
            **_growth(series, elapsed),
        }
        print(json.dumps(result, indent=1))
        OUT.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (OUT / f"load-{stamp}.json").write_text(json.dumps({**result, "rss_series": series}, indent=1))
    finally:
        stop(sidecar.process)
        stop(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
