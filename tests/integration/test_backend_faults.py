"""A replica dies, hangs or comes back while the sidecar explains through it (worker processes)."""

from __future__ import annotations

import time

import pytest

from spex_monitor.config import Settings
from spex_monitor.examples.oip_server import SentimentServer
from spex_monitor.monitor.worker import Observation
from spex_monitor.server.app import Sidecar

from .harness import wait_until

pytestmark = pytest.mark.integration


def _wait(predicate, timeout_s: float = 60.0) -> bool:  # noqa: ANN001
    return wait_until(predicate, timeout_s, interval_s=0.1)


def _threads(pid: int) -> int:
    """Threads of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_replica_killed_and_restarted_breaker_opens_and_recovers(tmp_path):
    replica = SentimentServer().start()
    port = replica.port
    endpoint = f"127.0.0.1:{port}"
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": "sentiment",
                    "lens": {"kind": "text", "max_features": 5},  # 2^5 masks: exact within budget 32
                    "sampling_rate": 1.0,
                    "backend": {
                        "kind": "oip",
                        "endpoints": [endpoint],
                        "model_name": "sentiment",
                        "deadline_s": 5.0,  # a loaded machine's first call after a restart is slow
                        "retries": 1,
                        "breaker_failures": 2,
                        "breaker_reset_s": 1.0,
                    },
                }
            ],
            "engine": {"budget": 32, "max_order": 2},
            "budget": {"inferences_per_second": 1e7, "burst": 1e7},
            "windows": {"seconds": None, "requests": 1000},
            "store": {"path": str(tmp_path / "spex.db")},
            "server": {"grpc_port": 0, "metrics_port": 0, "tick_s": 0.1, "explain_in": "process"},
        }
    )
    sidecar = Sidecar(settings).start()
    value = sidecar.metrics.registry.get_sample_value
    counters = sidecar.monitor.counters

    def observe(tag: str, count: int) -> None:
        for i in range(count):
            sidecar.monitor.observe(
                Observation(f"{tag}{i}", "sentiment", "v1", "negative", text="the plot was not good")
            )

    try:
        observe("up", 5)
        assert _wait(lambda: counters["explanations:ok"] >= 5)
        assert value("spex_monitor_backend_up", {"replica": endpoint}) == 1.0
        assert value("spex_monitor_backend_request_duration_seconds_count", {"replica": endpoint}) >= 5
        # The backend's calls run in the explain worker process (the replica runs in this one, so this
        # process's thread count says nothing about the backend): count the worker's threads, warmed up.
        (worker,) = sidecar.runner.worker_pids
        threads_before = _threads(worker)

        replica.stop()  # killed mid-traffic
        observe("down", 5)
        assert _wait(lambda: counters["explanations:failed"] >= 5)
        assert _wait(lambda: value("spex_monitor_backend_up", {"replica": endpoint}) == 0.0)
        failed = value(
            "spex_monitor_explanations_total",
            {"model": "sentiment", "version": "v1", "lens": "text", "status": "failed"},
        )
        assert failed == counters["explanations:failed"]

        replica = SentimentServer().start(port=port)  # back on the same address
        time.sleep(1.2)  # past breaker_reset_s: the next call is the half-open probe
        ok_before = counters["explanations:ok"]
        sent = iter(range(10_000))

        def recovered() -> bool:  # traffic keeps coming, as in production, until the breaker lets it through
            if counters["explanations:ok"] >= ok_before + 4:
                return True
            observe(f"back{next(sent)}-", 1)
            return False

        assert wait_until(recovered, 90, interval_s=0.5), "the breaker never closed again"
        assert _wait(lambda: value("spex_monitor_backend_up", {"replica": endpoint}) == 1.0)
        assert _threads(worker) <= threads_before + 2  # no thread per failure or retry
    finally:
        sidecar.stop()
        replica.stop()
