"""Where explanation work runs: worker processes (default) or threads of the sidecar process.

An explanation is hundreds of model forwards plus a LightGBM fit: seconds of CPU, much of it holding the
GIL. In the sidecar's own process that work competes with the gRPC threads that answer ``Observe`` and
forward proxied inference, and the serving path's p99 pays for it. ``ProcessRunner`` moves the model, the
backend and the engine into ``spawn``-ed worker processes started at a lower CPU priority (``nice``), so the
serving process only enqueues, waits on a pipe (GIL released) and folds the result. ``ThreadRunner`` keeps
everything in-process: no start-up cost, for tests and tiny models.

Both return an :class:`ExplainOutcome`, which carries what the serving process needs without loading the
model itself: the interactions, feature keys, predicted label, the backend batches (for
``spex_monitor_backend_request_duration_seconds``) and replica health (for ``spex_monitor_backend_up``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..attribution import Interactions
from ..backends.base import BatchTiming
from ..config import Settings
from .explainers import ModelExplainer, build_backend

log = logging.getLogger(__name__)

LOCAL_REPLICA = "local"


@dataclass
class ExplainOutcome:
    result: Interactions
    keys: list[str]
    target: int
    label: str
    batches: list[BatchTiming] = field(default_factory=list)
    health: dict[str, bool] = field(default_factory=dict)


class ExplainRunner(Protocol):
    def explain(
        self,
        model: str,
        text: str | None = None,
        fields: dict[str, float] | None = None,
        budget: int | None = None,
        max_order: int | None = None,
        deadline: float | None = None,
    ) -> ExplainOutcome: ...

    def close(self) -> None: ...


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


def _health(explainer: ModelExplainer) -> dict[str, bool]:
    health = getattr(explainer.backend, "health", None)
    return dict(health()) if callable(health) else {LOCAL_REPLICA: True}


def build_explainers(settings: Settings) -> dict[str, ModelExplainer]:
    return {
        m.name: ModelExplainer(m, settings.engine, build_backend(m.backend), settings.seed)
        for m in settings.models
    }


def _run(
    explainer: ModelExplainer,
    text: str | None,
    fields: dict[str, float] | None,
    budget: int | None,
    max_order: int | None,
    deadline: float | None = None,
) -> ExplainOutcome:
    result, keys, target = explainer.explain(
        text=text, fields=fields, budget=budget, max_order=max_order, deadline=deadline
    )
    return ExplainOutcome(result, keys, target, explainer.label_name(target), health=_health(explainer))


class ThreadRunner:
    """Explain in the calling thread, with backends built in this process.

    Backends report batches from whatever thread ran them (the OIP backend fans a call out over its own
    pool), so batches are collected runner-wide and handed to whichever explanation finishes next: each
    batch is returned exactly once, as the process runner's are, which is all the latency histogram needs.
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

    def explain(
        self,
        model: str,
        text: str | None = None,
        fields: dict[str, float] | None = None,
        budget: int | None = None,
        max_order: int | None = None,
        deadline: float | None = None,
    ) -> ExplainOutcome:
        try:
            outcome = _run(self.explainers[model], text, fields, budget, max_order, deadline)
        except Exception as exc:
            exc.batches = self._drain()  # type: ignore[attr-defined]  # failed calls still used the model
            raise
        outcome.batches = self._drain()
        return outcome

    def close(self) -> None:
        for explainer in self.explainers.values():
            close = getattr(explainer.backend, "close", None)
            if callable(close):
                close()


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


def _worker_explain(
    model: str,
    text: str | None,
    fields: dict[str, float] | None,
    budget: int | None,
    max_order: int | None,
    deadline: float | None = None,
) -> ExplainOutcome:
    _check_worker()
    _worker_batches.clear()
    explainer = _worker_explainers[model]
    try:
        outcome = _run(explainer, text, fields, budget, max_order, deadline)
    except Exception as exc:
        exc.health = _health(explainer)  # type: ignore[attr-defined]  # pickled with the exception
        exc.batches = list(_worker_batches)  # type: ignore[attr-defined]
        safe = picklable(exc)
        if safe is exc:
            raise
        raise safe from None
    outcome.batches = list(_worker_batches)
    return outcome


def _worker_ready() -> int:
    _check_worker()
    return os.getpid()


class ProcessRunner:
    """Explain in ``workers`` spawned processes that each load every configured model once.

    ``start()`` waits until every worker has loaded its models, so a bad model path or a broken backend
    fails the sidecar's start rather than its first explanation. A worker that dies (``kill -9``, out of
    memory) fails the explanation in flight with :class:`ExplainWorkerLostError`; the pool is rebuilt
    before the next one.
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

    def explain(
        self,
        model: str,
        text: str | None = None,
        fields: dict[str, float] | None = None,
        budget: int | None = None,
        max_order: int | None = None,
        deadline: float | None = None,
    ) -> ExplainOutcome:
        with self._lock:
            if self._pool is None:
                raise RuntimeError("explain runner is not started (or was closed)")
            pool = self._pool
        try:
            return pool.submit(_worker_explain, model, text, fields, budget, max_order, deadline).result()
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
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def make_runner(settings: Settings) -> Any:
    """The runner ``server.explain_in`` asks for, started."""
    server = settings.server
    if server.explain_in == "process":
        return ProcessRunner(settings, workers=server.workers, nice=server.worker_nice).start()
    return ThreadRunner(settings)
