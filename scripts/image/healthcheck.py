#!/opt/spex-monitor/bin/python
"""The image's HEALTHCHECK: is the sidecar's metrics port answering?

``GET /healthz`` on the metrics port; where that answers 404 (a sidecar without the endpoint) ``GET /metrics``
instead. Exit status 0 when the answer is 200, 1 otherwise (refused, timed out, any other status), with one
line on stderr saying why — what ``podman healthcheck run`` / ``docker inspect`` show.

Where the port is: ``$SPEX_MONITOR_SERVER__METRICS_PORT`` (the sidecar's own environment override), else
``server.metrics_port`` in the config file (``$SPEX_MONITOR_CONFIG``, default
``/etc/spex-monitor/config.yaml``, the image's default ``--config``), else 9464, the sidecar's default. The
host is ``server.host`` the same way; a wildcard bind address (``0.0.0.0``, ``::``, empty) is reached on
loopback. Standard library only (PyYAML when it can be imported, as in the image), so a check costs one
short-lived interpreter and no sidecar import.
"""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/spex-monitor/config.yaml"
DEFAULT_PORT = 9464
TIMEOUT_S = 3.0
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def _server_section(config_path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    server = data.get("server") if isinstance(data, dict) else None
    return server if isinstance(server, dict) else {}


def target(environ: dict[str, str]) -> tuple[str, int]:
    """(host, port) of the metrics endpoint, from the environment and the config file."""
    server = _server_section(Path(environ.get("SPEX_MONITOR_CONFIG", DEFAULT_CONFIG)))
    port = environ.get("SPEX_MONITOR_SERVER__METRICS_PORT") or server.get("metrics_port") or DEFAULT_PORT
    host = str(environ.get("SPEX_MONITOR_SERVER__HOST", server.get("host", "127.0.0.1")))
    if host in WILDCARDS:
        host = "127.0.0.1"
    return host.strip("[]"), int(port)


def _get(host: str, port: int, path: str) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def check(host: str, port: int) -> str | None:
    """None when healthy, else the reason."""
    try:
        status = _get(host, port, "/healthz")
        path = "/healthz"
        if status == 404:
            status = _get(host, port, "/metrics")
            path = "/metrics"
    except OSError as exc:
        return f"http://{host}:{port}: {exc}"
    return None if status == 200 else f"http://{host}:{port}{path}: HTTP {status}"


def main() -> int:
    try:
        host, port = target(dict(os.environ))
    except ValueError as exc:
        print(f"spex-monitor healthcheck: bad metrics port: {exc}", file=sys.stderr)
        return 1
    reason = check(host, port)
    if reason is not None:
        print(f"spex-monitor healthcheck: unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
