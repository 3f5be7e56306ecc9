"""Fixtures every integration module may use; the plain helpers are in :mod:`.harness`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from spex_monitor.config import Settings
from spex_monitor.server.app import Sidecar


@pytest.fixture(scope="session")
def vllm() -> Iterator[object]:
    """A real vLLM serving ``grounded-lm-base`` as ``grounded-base`` on 127.0.0.1, once per session (per
    xdist worker: keep vLLM tests in ``test_vllm.py`` so one worker runs them); stopped by PID. A vLLM that
    cannot start fails the test with the reason and log tail (never a skip)."""
    from spex_monitor.examples import vllm_replica
    from spex_monitor.examples.tiny_lm import model_path

    try:
        server = vllm_replica.start(model_path("base"), served_name="grounded-base", timeout_s=900)
    except vllm_replica.VLLMStartError as error:
        pytest.fail(f"vLLM did not start: {error}", pytrace=False)
    yield server
    vllm_replica.stop(server)


@pytest.fixture
def start_sidecar() -> Iterator[Callable[[Settings], Sidecar]]:
    """Start sidecars from settings inside a test; every one started is stopped when the test ends."""
    started: list[Sidecar] = []

    def start(settings: Settings) -> Sidecar:
        sidecar = Sidecar(settings).start()
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in reversed(started):
        sidecar.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:  # noqa: ANN001
    """A throwaway CA with a server certificate for localhost/127.0.0.1 and a client certificate named
    ``app``: paths ``ca``, ``server.crt``, ``server.key``, ``client.crt``, ``client.key``."""
    from .harness import issue_pki

    identities = {"server": ("localhost", "127.0.0.1"), "client": ("app",)}
    return issue_pki(tmp_path_factory.mktemp("pki"), identities)
