"""A real Prometheus (Debian package) scraping a running sidecar on loopback, for the tests that need one.

Each test module starts its own stack (module-scoped fixture), so a module can drive its own traffic and
settings without disturbing the series another module asserts on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spex_monitor.client import MonitorClient
from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.server.app import Sidecar

# Skipped on a developer machine without the Debian package; under CI (CI set) the tests run and
# prometheus_stack fails with the reason, so a broken CI setup cannot pass as skipped.
requires_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None and not os.environ.get("CI"),
    reason="Debian package 'prometheus' not installed (make system-deps)",
)
SCRAPE_INTERVAL_S = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sidecar_settings(folder: Path, **overrides: object) -> dict:
    """A fast sidecar on the embedded model: tiny ablation budget, 20-request windows, baseline = 1st window.

    ``overrides`` replace top-level sections (``models``, ``engine``, ...) wholesale.
    """
    settings: dict = {
        "models": [
            {
                "name": "sentiment",
                "sampling_rate": 1.0,
                "backend": {"kind": "local", "path": str(model_path("sentiment-base"))},
            }
        ],
        "engine": {"budget": 64, "max_order": 2},
        "budget": {"inferences_per_second": 1e7, "burst": 1e7},
        "windows": {"seconds": None, "requests": 20},
        "baseline": {"windows": 1, "min_window_requests": 10, "n_permutations": 200},
        "store": {"path": str(folder / "spex.db")},
        "server": {"grpc_port": 0, "metrics_port": 0, "tick_s": 0.2, "queue_per_label": 500},
    }
    settings.update(overrides)
    return settings


def _wait_ready(base: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{base}/-/ready", timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("Prometheus did not become ready")
            time.sleep(0.2)


@contextmanager
def prometheus_stack(folder: Path, settings: dict) -> Iterator[tuple[Sidecar, str]]:
    """Start the sidecar and a Prometheus scraping it every second; yield (sidecar, Prometheus base URL)."""
    if shutil.which("prometheus") is None:
        pytest.fail("the 'prometheus' binary is missing: install the Debian package (make system-deps)")
    sidecar = Sidecar(Settings.model_validate(settings)).start()
    port = free_port()
    (folder / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {SCRAPE_INTERVAL_S}s, evaluation_interval: {SCRAPE_INTERVAL_S}s}}\n"
        "scrape_configs:\n"
        "  - job_name: spex-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{sidecar.metrics_port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        yield sidecar, base
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        sidecar.stop()


def api(base: str, path: str, params: dict[str, str | list[str]]) -> dict:
    """GET a Prometheus HTTP API endpoint; raise on an error status (a bad query is a test failure)."""
    url = f"{base}{path}?" + urllib.parse.urlencode(params, doseq=True)
    data = json.loads(urllib.request.urlopen(url, timeout=10).read())
    if data.get("status") != "success":
        raise AssertionError(f"{path} {params}: {data}")
    return data["data"]


def query(base: str, promql: str) -> float | None:
    """Instant query; the first series' value or None when the result is empty."""
    result = api(base, "/api/v1/query", {"query": promql})["result"]
    return float(result[0]["value"][1]) if result else None


def query_range(base: str, promql: str, start: float, end: float, step_s: float = 1.0) -> list[dict]:
    """Range query, as a Grafana time-series panel runs it; the raw ``matrix`` result."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s}"}
    return api(base, "/api/v1/query_range", params)["result"]


def label_values(base: str, label: str, match: str) -> list[str]:
    """What Grafana's ``label_values(match, label)`` variable query resolves to."""
    return api(base, f"/api/v1/label/{label}/values", {"match[]": match})


def wait_for(base: str, promql: str, predicate: Callable[[float], bool], timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = query(base, promql)
        if value is not None and predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {value} did not satisfy the condition in {timeout_s}s")


def send(
    sidecar: Sidecar,
    texts: list[str],
    prefix: str,
    label: str = "positive",
    confidence: float = 0.8,
    model: str = "sentiment",
) -> None:
    with MonitorClient(f"127.0.0.1:{sidecar.grpc_port}") as client:
        for i, text in enumerate(texts):
            client.observe(f"{prefix}{i}", model, label, text=text, confidence=confidence)
        client.flush()
