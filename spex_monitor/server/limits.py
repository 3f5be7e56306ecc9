"""Keep callers from exhausting the monitor's gRPC server: health checks on threads of their own, per-class
concurrency caps, and idle/total timeouts for client streams.

A sync gRPC server runs every call on one thread pool and queues the rest. 16 idle ``ObserveStream`` calls
or 20 slow ``Explain`` calls used to hold every thread, so ``Observe`` and the gRPC health check queued
until their deadlines passed. Now:

* :class:`PriorityExecutor` gives ``grpc.health.v1.Health/Check`` a small pool of its own, so a health check
  never waits behind a user call (it still counts against ``server.max_concurrent_rpcs``).
* :class:`Slots` caps each expensive class — open streams, Explain, reads — below the pool size
  (``ServerConfig`` checks ``grpc_threads`` covers the caps), refusing the excess at once with
  RESOURCE_EXHAUSTED instead of queueing it.
* :class:`StreamWatchdog` cancels a stream that sent nothing for ``stream_idle_timeout_s``; the handler
  itself answers once ``stream_max_duration_s`` has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from typing import Any

log = logging.getLogger(__name__)

PRIORITY_METHODS = (b"/grpc.health.v1.Health/Check",)


def _method_of(args: tuple) -> bytes | None:
    """The method of the call grpc's server submits (its ``rpc_event.call_details.method``)."""
    for arg in args:
        details = getattr(arg, "call_details", None)
        if details is not None:
            return getattr(details, "method", None)
    return None


class PriorityExecutor(futures.Executor):
    """The gRPC server's thread pool, with :data:`PRIORITY_METHODS` routed to ``priority_workers`` threads
    that user calls never occupy.

    grpcio submits ``(context.run, handler_in_pool, rpc_event, ...)``; the method is read from the event.
    Should a future grpcio submit something else, every call simply runs on the main pool, as before.
    """

    def __init__(self, workers: int, priority_workers: int = 2) -> None:
        self._main = futures.ThreadPoolExecutor(workers, thread_name_prefix="spex-grpc")
        self._priority = futures.ThreadPoolExecutor(priority_workers, thread_name_prefix="spex-grpc-health")

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future:
        """Run the call on the priority pool for a :data:`PRIORITY_METHODS` call, else on the main pool."""
        pool = self._priority if _method_of(args) in PRIORITY_METHODS else self._main
        return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut both pools down (``Executor.shutdown`` semantics)."""
        self._main.shutdown(wait, cancel_futures=cancel_futures)
        self._priority.shutdown(wait, cancel_futures=cancel_futures)


class Slots:
    """A non-blocking counting semaphore: ``acquire()`` is False at once when ``limit`` are taken."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.active = 0

    def acquire(self) -> bool:
        """Take a slot: True when one was free, False at once when all ``limit`` are taken."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        """Give a slot back (never below zero)."""
        with self._lock:
            self.active = max(0, self.active - 1)


class StreamWatchdog:
    """Cancels client streams that send nothing for ``idle_s`` (checked every ``tick_s``)."""

    def __init__(self, idle_s: float, tick_s: float = 0.25) -> None:
        self.idle_s = idle_s
        self.tick_s = min(tick_s, idle_s / 4)
        self._streams: dict[int, list] = {}  # id -> [context, last activity]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spex-stream-watchdog", daemon=True)
        self._thread.start()
        self.cancelled = 0

    def watch(self, context: Any) -> int:
        """Start watching the stream of ``context``; returns the key for :meth:`touch` and :meth:`forget`."""
        with self._lock:
            key = id(context)
            self._streams[key] = [context, time.monotonic()]
            return key

    def touch(self, key: int) -> None:
        """Note activity on stream ``key`` (its idle time restarts)."""
        entry = self._streams.get(key)
        if entry is not None:
            entry[1] = time.monotonic()

    def forget(self, key: int) -> None:
        """Stop watching stream ``key`` (call when the handler ends)."""
        with self._lock:
            self._streams.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                idle = [k for k, (_, last) in self._streams.items() if now - last > self.idle_s]
                contexts = [self._streams.pop(k)[0] for k in idle]
            for context in contexts:
                self.cancelled += 1
                try:
                    context.cancel()  # the handler's request iterator ends; the caller sees CANCELLED
                except Exception:  # noqa: BLE001 - the stream may have ended meanwhile
                    log.debug("cancelling an idle stream failed", exc_info=True)

    def close(self) -> None:
        """Stop the watchdog thread (waits up to 2 s)."""
        self._stop.set()
        self._thread.join(2.0)
