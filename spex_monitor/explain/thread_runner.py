"""Explanations in threads of the calling process, and what every runner shares.

:class:`ExplainRunner` is the protocol both runners satisfy (see :mod:`.runner` for why there are two);
:class:`ThreadRunner` builds the backends in this process and explains in the caller's thread.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Protocol

from ..backends.base import BatchTiming
from ..config import Settings
from .explainer import ModelExplainer, build_explainers
from .request import ExplainRequest, ExplainResult

LOCAL_REPLICA = "local"


class ExplainRunner(Protocol):
    """Runs explanations somewhere (threads, worker processes) and owns the backends there."""

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain ``request`` on its model. An error of the explanation propagates with a ``batches``
        attribute (what the failed call still spent) and, from a worker process, ``health``."""
        ...

    def close(self) -> None:
        """Release the backends (and worker processes); later calls fail."""
        ...


def replica_health(explainer: ModelExplainer) -> dict[str, bool]:
    """Replica name → accepts work: the backend's own view (remote pools), else ``{"local": True}``."""
    health = getattr(explainer.backend, "health", None)
    return dict(health()) if callable(health) else {LOCAL_REPLICA: True}


def run(explainer: ModelExplainer, request: ExplainRequest) -> ExplainResult:
    """``explainer.explain(request)`` with the replicas' health after it."""
    return replace(explainer.explain(request), health=replica_health(explainer))


class ThreadRunner:
    """Explain in the calling thread, with backends built in this process.

    Backends report batches from whatever thread ran them (the OIP backend fans a call out over its own
    pool), so batches are collected runner-wide and handed to whichever explanation finishes next: each
    batch is returned exactly once, as the process runner's are, which is all the latency histogram needs.

    Raises (from the constructor): whatever :func:`~.explainer.build_explainers` raises.
    """

    def __init__(self, settings: Settings) -> None:
        self.explainers = build_explainers(settings)
        self._batches: list[BatchTiming] = []
        self._lock = threading.Lock()
        for explainer in self.explainers.values():
            explainer.backend.on_batch = self._collect

    def _collect(self, batch: BatchTiming) -> None:
        with self._lock:
            self._batches.append(batch)

    def _drain(self) -> list[BatchTiming]:
        with self._lock:
            batches, self._batches = self._batches, []
        return batches

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain ``request`` in this thread; see :class:`ExplainRunner`.

        Raises:
            KeyError: ``request.model`` is not configured.
        """
        try:
            result = run(self.explainers[request.model], request)
        except Exception as exc:
            exc.batches = self._drain()  # type: ignore[attr-defined]  # failed calls still used the model
            raise
        return replace(result, batches=self._drain())

    def close(self) -> None:
        """Close every backend that holds connections."""
        for explainer in self.explainers.values():
            close = getattr(explainer.backend, "close", None)
            if callable(close):
                close()

