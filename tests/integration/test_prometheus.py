"""A real Prometheus (Debian package) scrapes the sidecar on loopback; metrics arrive and move."""

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

import pytest

from spex_monitor.client import MonitorClient
from spex_monitor.config import Settings
from spex_monitor.examples.embedded import model_path
from spex_monitor.examples.sentiment import generate_corpus
from spex_monitor.server.app import Sidecar

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="Debian package 'prometheus' not installed"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prom")
    settings = Settings.model_validate(
        {
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
    )
    sidecar = Sidecar(settings).start()
    port = _free_port()
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
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
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/-/ready", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("Prometheus did not become ready")
            time.sleep(0.2)
    yield sidecar, base
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(10)
    sidecar.stop()


def _query(base: str, promql: str) -> float | None:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    data = json.loads(urllib.request.urlopen(url, timeout=5).read())
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _wait_for(base: str, promql: str, predicate, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = _query(base, promql)
        if value is not None and predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {value} did not satisfy the condition in {timeout_s}s")


def _send(sidecar: Sidecar, texts: list[str], prefix: str) -> None:
    with MonitorClient(f"127.0.0.1:{sidecar.grpc_port}") as client:
        for i, text in enumerate(texts):
            client.observe(f"{prefix}{i}", "sentiment", "positive", text=text, confidence=0.8)
        client.flush()


def test_metrics_arrive_and_move_in_prometheus(stack):
    sidecar, base = stack
    texts, _ = generate_corpus(200, seed=9)
    texts = [t for t in texts if len(t.split()) <= 8]
    _send(sidecar, texts[:30], "a")
    observed = 'sum(spex_monitor_requests_observed_total{model="sentiment"})'
    first = _wait_for(base, observed, lambda v: v >= 30)
    _wait_for(base, 'sum(spex_monitor_explanations_total{status="ok"})', lambda v: v > 0)
    _send(sidecar, texts[30:70], "b")
    _wait_for(base, observed, lambda v: v >= first + 40)
    _wait_for(base, "sum(spex_monitor_ablation_inferences_total)", lambda v: v > 0)
    _wait_for(base, 'count(spex_monitor_interaction_shift_pvalue{model="sentiment"})', lambda v: v >= 1)
    _wait_for(
        base,
        "histogram_quantile(0.5, sum by (le) (rate(spex_monitor_explanation_duration_seconds_bucket[1m])))",
        lambda v: v > 0,
    )
    assert _query(base, 'up{job="spex-monitor"}') == 1.0
