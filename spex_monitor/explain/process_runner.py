"""Explanations in ``spawn``-ed worker processes (see :mod:`.runner` for why), and what crosses the pipe.

Each worker builds every configured model's explainer once, at a lower CPU priority. A request goes out
pickled, a result (or an exception that round-trips pickle) comes back; a worker that dies fails the
explanation in flight and the pool is rebuilt.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

from ..backends.base import BatchTiming
from ..config import Settings
from .explainer import ModelExplainer, build_explainers
from .request import ExplainRequest, ExplainResult
from .thread_runner import replica_health, run

log = logging.getLogger(__name__)


class ExplainWorkerLostError(RuntimeError):
    """A worker process died mid-explanation (killed, out of memory); the pool was restarted."""


class ExplainWorkerError(RuntimeError):
    """Stands in for an exception raised in a worker process that could not be pickled back.

    ``kind`` is the original exception's class name; the message is its text. Our own exceptions all
    round-trip (a test pickles every one), so this only shows up for third-party errors.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {message}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.kind, str(self).partition(": ")[2]), self.__dict__)


def picklable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives a pickle round trip, else an :class:`ExplainWorkerError` carrying its
    class name, message and the ``health``/``batches`` attributes the serving process reads.

    An exception that cannot be unpickled in the parent breaks the process pool for every caller
    (``BrokenProcessPool``), so the worker checks before raising.
    """
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a stand-in
        stand_in = ExplainWorkerError(type(exc).__name__, str(exc)[:2000])
        for name in ("health", "batches"):
            if hasattr(exc, name):
                setattr(stand_in, name, getattr(exc, name))
        return stand_in


# ------------------------------------------------------------------------------ inside a worker process
_worker_explainers: dict[str, ModelExplainer] = {}
_worker_batches: list[BatchTiming] = []
# An initializer's exception only breaks the pool with a generic message; keep it and raise it from the
# worker's tasks instead, so start() reports the real cause (a missing model folder, a bad backend).
_worker_error: list[BaseException] = []


def _worker_start(settings_json: str, nice: int) -> None:
    try:
        if nice:
            os.nice(nice)
        settings = Settings.model_validate_json(settings_json)
        if any(m.backend.kind == "local" for m in settings.models):
            import torch

            torch.set_num_threads(settings.server.torch_threads)
        _worker_explainers.update(build_explainers(settings))
        for explainer in _worker_explainers.values():
            explainer.backend.on_batch = _worker_batches.append
    except Exception as exc:  # noqa: BLE001 - re-raised by every task of this worker
        _worker_error.append(exc)


def _check_worker() -> None:
    if _worker_error:
        raise _worker_error[0]


def _worker_explain(request: ExplainRequest) -> ExplainResult:
    _check_worker()
    _worker_batches.clear()
    explainer = _worker_explainers[request.model]
    try:
        result = run(explainer, request)
    except Exception as exc:
        exc.health = replica_health(explainer)  # type: ignore[attr-defined]  # pickled with the exception
        exc.batches = list(_worker_batches)  # type: ignore[attr-defined]
        safe = picklable(exc)
        if safe is exc:
            raise
        raise safe from None
    return replace(result, batches=list(_worker_batches))


def _worker_ready() -> int:
    _check_worker()
    return os.getpid()


# ------------------------------------------------------------------------------ in the serving process
class ProcessRunner:
    """Explain in ``workers`` spawned processes that each load every configured model once.

    ``start()`` waits until every worker has loaded its models, so a bad model path or a broken backend
    fails the sidecar's start rather than its first explanation. A worker that dies (``kill -9``, out of
    memory) fails the explanation in flight with :class:`ExplainWorkerLostError`; the pool is rebuilt
    before the next one.

    Args:
        settings: the whole configuration (sent to each worker as JSON).
        workers: worker processes; nice: their CPU priority offset (0: same as the sidecar).
        start_timeout_s: how long ``start()`` waits for every worker to load its models.
    """

    def __init__(
        self, settings: Settings, workers: int, nice: int = 10, start_timeout_s: float = 300.0
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.nice = nice
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self.worker_pids: list[int] = []  # the processes that answered at start (for operators and tests)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(self.settings.model_dump_json(), self.nice),
        )

    def start(self) -> ProcessRunner:
        """Spawn the workers and wait until each has built its explainers.

        Raises:
            Exception: the first worker's own start-up error (a missing model folder, a bad backend).
            TimeoutError: a worker did not answer within ``start_timeout_s``.
        """
        pool = self._new_pool()
        # one task per worker makes every process spawn and run its initializer now
        ready = [pool.submit(_worker_ready) for _ in range(self.workers)]
        try:
            self.worker_pids = sorted({future.result(timeout=self.start_timeout_s) for future in ready})
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool
        return self

    def explain(self, request: ExplainRequest) -> ExplainResult:
        """Explain ``request`` on a worker; see :class:`~.thread_runner.ExplainRunner`.

        Raises:
            RuntimeError: the runner is not started or was closed.
            ExplainWorkerLostError: the worker died; the pool was rebuilt.
        """
        with self._lock:
            if self._pool is None:
                raise RuntimeError("explain runner is not started (or was closed)")
            pool = self._pool
        try:
            return pool.submit(_worker_explain, request).result()
        except BrokenProcessPool as exc:
            self._replace(pool)
            raise ExplainWorkerLostError("an explain worker process died; workers restarted") from exc

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return  # another thread already replaced it
            log.warning("explain worker process died; starting a new pool")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def close(self) -> None:
        """Stop the workers after the explanations in flight."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
