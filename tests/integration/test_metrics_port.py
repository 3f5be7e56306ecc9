"""The metrics port (issue 15 item 8, the chart's probes): a real concurrent server, /healthz and /readyz."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest

from spex_monitor.config import Settings
from spex_monitor.server.app import Sidecar

from .harness import sentiment_settings

pytestmark = pytest.mark.integration


def _settings(folder, **server) -> Settings:
    return sentiment_settings(folder, server=server)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    app = Sidecar(_settings(tmp_path_factory.mktemp("metrics"))).start()
    yield app
    app.stop()


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_idle_and_slow_reading_clients_do_not_delay_a_scrape(sidecar):
    """With wsgiref, one idle connection held the single server thread: this scrape timed out."""
    port = sidecar.metrics_port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # connect, send nothing
    slow = socket.create_connection(("127.0.0.1", port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # pipelined, never read
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost:")  # a request that never finishes
    try:
        for _ in range(3):
            status, body = _get(port, "/metrics", timeout=5)
            assert status == 200 and "spex_monitor_requests_observed" in body
        assert _get(port, "/healthz", timeout=5) == (200, "ok\n")
    finally:
        for connection in (*idle, slow, half):
            connection.close()


def test_health_and_readiness(sidecar, tmp_path):
    port = sidecar.metrics_port
    assert _get(port, "/healthz") == (200, "ok\n")
    assert _get(port, "/readyz") == (200, "ready\n")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405
    # proxy mode: readiness follows the proxy port, which this (unstarted) sidecar does not listen on
    proxied = Sidecar(_settings(tmp_path, proxy_port=0, upstream="127.0.0.1:1"))
    assert proxied.readiness() == "the OIP proxy port is not listening yet"
    proxied.store.close()


def test_readiness_reports_a_port_that_stopped_listening(tmp_path):
    app = Sidecar(_settings(tmp_path)).start()
    try:
        assert app.readiness() is None
        app._grpc.server.stop(0).wait(5)  # the serving port goes away; the HTTP server and process live on
        reason = app.readiness()
        assert reason is not None and reason.startswith(f"the gRPC port {app.grpc_port} refuses connections")
        status, body = _get(app.metrics_port, "/readyz")
        assert status == 503 and body.startswith("not ready: the gRPC port")
        assert _get(app.metrics_port, "/healthz") == (200, "ok\n")  # liveness does not follow serving
    finally:
        app.stop()


def test_probes_answer_while_the_explain_runner_loads_its_models(tmp_path):
    """The chart's startup and liveness probes hit /healthz while worker processes load their models (a
    large model takes minutes): the metrics port is served before the runner starts; /readyz stays 503
    until the serving port listens."""
    from spex_monitor.explain.runner import make_runner

    loading, release = threading.Event(), threading.Event()

    def slow_runner(settings: Settings):  # a runner whose start blocks until the test lets it finish
        loading.set()
        assert release.wait(60)
        return make_runner(settings)

    app = Sidecar(_settings(tmp_path), runner_factory=slow_runner)
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        assert loading.wait(30)
        assert app.metrics_port  # bound before the runner started
        assert _get(app.metrics_port, "/healthz") == (200, "ok\n")
        status, body = _get(app.metrics_port, "/readyz")
        assert (status, body) == (503, "not ready: the gRPC port is not listening yet\n")
        status, body = _get(app.metrics_port, "/metrics")
        assert status == 200 and "spex_monitor_requests_observed" in body
        release.set()
        starting.join(60)
        assert not starting.is_alive() and app.grpc_port
        assert _get(app.metrics_port, "/readyz") == (200, "ready\n")
    finally:
        release.set()
        starting.join(60)
        app.stop()


def test_a_runner_that_fails_to_start_stops_the_metrics_port(tmp_path):
    def broken_runner(settings: Settings):
        raise FileNotFoundError("model folder /models/m does not exist")

    app = Sidecar(_settings(tmp_path), runner_factory=broken_runner)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        app.start()
    port = app.metrics_port
    assert port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
