"""Fixtures every integration module may use; the plain helpers are in :mod:`.harness`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from spex_monitor.config import Settings
from spex_monitor.server.app import Sidecar


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
