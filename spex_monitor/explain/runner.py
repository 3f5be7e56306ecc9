"""Where explanation work runs: worker processes (default) or threads of the sidecar process.

An explanation is hundreds of model forwards plus a LightGBM fit: seconds of CPU, much of it holding the
GIL. In the sidecar's own process that work competes with the gRPC threads that answer ``Observe`` and
forward proxied inference, and the serving path's p99 pays for it. :class:`ProcessRunner` moves the model,
the backend and the engine into ``spawn``-ed worker processes started at a lower CPU priority (``nice``),
so the serving process only enqueues, waits on a pipe (GIL released) and folds the result.
:class:`ThreadRunner` keeps everything in-process: no start-up cost, for tests and tiny models.

Both take an :class:`~.request.ExplainRequest` and return an :class:`~.request.ExplainResult` carrying the
backend batches (for ``spex_monitor_backend_request_duration_seconds``) and replica health (for
``spex_monitor_backend_up``), so the serving process never loads the model itself.
"""

from __future__ import annotations

from ..config import Settings
from .process_runner import ExplainWorkerError, ExplainWorkerLostError, ProcessRunner, picklable
from .thread_runner import LOCAL_REPLICA, ExplainRunner, ThreadRunner

__all__ = [
    "LOCAL_REPLICA",
    "ExplainRunner",
    "ExplainWorkerError",
    "ExplainWorkerLostError",
    "ProcessRunner",
    "ThreadRunner",
    "make_runner",
    "picklable",
]


def make_runner(settings: Settings) -> ExplainRunner:
    """The runner ``server.explain_in`` asks for, started (worker processes load their models here).

    Raises:
        Exception: a worker's start-up error (see :meth:`ProcessRunner.start`), or what building a backend
            raises in this process (``explain_in: thread``).
    """
    server = settings.server
    if server.explain_in == "process":
        return ProcessRunner(settings, workers=server.workers, nice=server.worker_nice).start()
    return ThreadRunner(settings)
