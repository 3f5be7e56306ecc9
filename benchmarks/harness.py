"""What the data-path benchmarks share: ports, the model server, a sidecar started as a real process,
memory readings, and request texts that look like production (an open vocabulary, not four fixed strings).

A sidecar in a pod runs as its own process next to the model server, so the benchmarks start both with
``subprocess`` (their own sessions, stopped by process group) and talk to them over loopback gRPC.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# The embedded sentiment model behind OIP-V2 (the "served model" of every data-path benchmark).
UPSTREAM = """
import sys, time
from spex_monitor.examples.oip_server import SentimentServer
server = SentimentServer().start(port=int(sys.argv[1]))
print("ready", flush=True)
time.sleep(10**6)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open")


def bench_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """A quiet child in its own session, so :func:`stop` can end it with everything it started."""
    return subprocess.Popen(
        argv,
        env={**bench_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_model_server(port: int) -> subprocess.Popen:
    return spawn([sys.executable, "-c", UPSTREAM, str(port)])


class SidecarProcess:
    """``spex-monitor serve`` with one model, a store in ``work``, gRPC/metrics/proxy on free ports.

    ``model`` is the model section (sampling rate, backend); ``server``, ``store`` and ``baseline``
    entries override the defaults below.
    """

    def __init__(
        self,
        work: Path,
        name: str,
        model: dict,
        upstream_port: int,
        server: dict | None = None,
        store: dict | None = None,
        baseline: dict | None = None,
    ) -> None:
        self.grpc_port, self.metrics_port, self.proxy_port = (free_port() for _ in range(3))
        self.config = work / f"{name}.yaml"
        self.config.write_text(
            json.dumps(
                {
                    "models": [{"name": "sentiment", **model}],
                    "engine": {"budget": 256, "max_order": 3},
                    "windows": {"seconds": 30},
                    "baseline": baseline or {},
                    "store": {"path": str(work / f"{name}.db"), **(store or {})},
                    "server": {
                        "grpc_port": self.grpc_port,
                        "metrics_port": self.metrics_port,
                        "proxy_port": self.proxy_port,
                        "upstream": f"127.0.0.1:{upstream_port}",
                        "workers": 1,
                        "queue_per_label": 64,
                        **(server or {}),
                    },
                }
            )
        )
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0, env: dict[str, str] | None = None) -> SidecarProcess:
        self.process = spawn(
            [sys.executable, "-m", "spex_monitor.cli", "serve", "--config", str(self.config)], env
        )
        wait_port(self.grpc_port, timeout_s)
        wait_port(self.proxy_port, timeout_s)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid


def stop(process: subprocess.Popen | None, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group (the sidecar's explain workers too) and wait."""
    if process is None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout_s)


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children (the sidecar's explain worker processes)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def production_texts(size: int, seed: int) -> list[str]:
    """Review traffic from the detection benchmark's grammar, each request carrying what real requests
    carry and the model never saw: a user handle (a new token almost every time), and in some an email, a
    phone number or an order id (what redaction presets exist for). Vocabulary therefore grows without
    bound, as in production; a fixed handful of strings would hide every per-token cost."""
    from spex_monitor.bench.traffic import NORMAL, generate_traffic

    rng = np.random.default_rng(seed)
    out = []
    for i, text in enumerate(generate_traffic(NORMAL, size, seed)):
        extra = [f"from user{int(rng.integers(10**7))}"]
        if i % 7 == 0:
            extra.append(f"mail me at u{int(rng.integers(10**6))}@example.com")
        if i % 11 == 0:
            extra.append(f"call +1 415 555 {int(rng.integers(10**4)):04d}")
        if i % 13 == 0:
            extra.append(f"order {int(rng.integers(10**9))}")
        out.append(f"{text} {' '.join(extra)}")
    return out
