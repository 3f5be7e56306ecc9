"""How much ablation work may run: inferences per second, GPU-seconds per hour, and backpressure.

A token bucket refills ``inferences_per_second`` up to ``burst``; a sliding hour of backend seconds caps
accelerator time; and a backpressure gate closes while the backend's recent latency or queue depth is
above its threshold. The sidecar feeds both signals from real work (:meth:`signal`): latency is the mean
seconds per ablation batch of each finished explanation (``BatchTiming`` records from the runners), queue
depth the number of explanations running against the backend at once (background workers plus Explain
calls). A latency signal older than ``signal_ttl_s`` no longer closes the gate, so one explanation goes
through and measures again — a gate closed by latency would otherwise never see a new measurement.
``acquire(n)`` waits up to ``max_wait_s`` for room and returns False otherwise: the
caller counts the request as dropped (reason ``budget``), never loses it silently.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Budget:
    """The ablation budget every explanation reserves from (see the module docstring).

    Args:
        inferences_per_second: refill rate of the token bucket (inferences per second).
        burst: bucket size (inferences); a request larger than this never fits.
        backend_seconds_per_hour: cap on backend seconds recorded over the last hour (``None``: no cap).
        max_latency_s: backpressure: nothing starts while the fresh latency signal (seconds per ablation
            batch, an EWMA) exceeds this (``None``: off).
        max_queue_depth: backpressure: nothing starts while more explanations than this run (``None``: off).
        signal_ttl_s: seconds after which a latency signal no longer closes the gate.
        clock, sleep: monotonic seconds and a sleep (tests pass fakes).

    Raises:
        ValueError: ``inferences_per_second`` or ``burst`` is not positive.
    """

    inferences_per_second: float = 2000.0
    burst: float = 4000.0
    backend_seconds_per_hour: float | None = None
    max_latency_s: float | None = None
    max_queue_depth: int | None = None
    signal_ttl_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _tokens: float = field(init=False)
    _last: float = field(init=False)
    _spent: deque = field(init=False, default_factory=deque)
    _latency: float = field(init=False, default=0.0)
    _latency_at: float = field(init=False, default=float("-inf"))
    _queue_depth: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.inferences_per_second <= 0 or self.burst <= 0:
            raise ValueError("inferences_per_second and burst must be > 0")
        self._tokens = self.burst
        self._last = self.clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.inferences_per_second)
        self._last = now
        while self._spent and now - self._spent[0][0] > 3600.0:
            self._spent.popleft()

    def backend_seconds_last_hour(self) -> float:
        """Backend seconds recorded (:meth:`record`) within the last 3600 s of the clock."""
        with self._lock:
            self._refill()
            return sum(s for _, s in self._spent)

    def blocked_reason(self, inferences: int) -> str | None:
        """Why ``inferences`` cannot start now (``None`` when they can)."""
        with self._lock:
            self._refill()
            if inferences > self.burst:
                return "larger_than_burst"
            fresh = self.clock() - self._latency_at < self.signal_ttl_s
            if self.max_latency_s is not None and fresh and self._latency > self.max_latency_s:
                return "backpressure_latency"
            if self.max_queue_depth is not None and self._queue_depth > self.max_queue_depth:
                return "backpressure_queue"
            if self.backend_seconds_per_hour is not None and sum(s for _, s in self._spent) >= (
                self.backend_seconds_per_hour
            ):
                return "backend_seconds"
            if self._tokens < inferences:
                return "rate"
            return None

    def acquire(self, inferences: int, max_wait_s: float = 0.0) -> bool:
        """Reserve ``inferences``; wait up to ``max_wait_s`` for the rate to allow it."""
        deadline = self.clock() + max_wait_s
        while True:
            reason = self.blocked_reason(inferences)
            if reason is None:
                with self._lock:
                    if self._tokens >= inferences:
                        self._tokens -= inferences
                        return True
                continue
            if reason == "larger_than_burst" or self.clock() >= deadline:
                return False
            self.sleep(min(0.05, max(0.0, deadline - self.clock())))

    def record(
        self, backend_seconds: float, latency_s: float | None = None, queue_depth: int | None = None
    ) -> None:
        """Account finished backend work and the backend's health signals (latency: an EWMA)."""
        with self._lock:
            self._spent.append((self.clock(), backend_seconds))
        self.signal(latency_s, queue_depth)

    def signal(self, latency_s: float | None = None, queue_depth: int | None = None) -> None:
        """The backend's health signals without spent seconds: ``latency_s`` (seconds per ablation batch,
        folded into an EWMA) and ``queue_depth`` (explanations running against the backend now)."""
        with self._lock:
            if latency_s is not None and math.isfinite(latency_s):
                stale = self.clock() - self._latency_at >= self.signal_ttl_s
                self._latency = latency_s if stale else 0.8 * self._latency + 0.2 * latency_s
                self._latency_at = self.clock()
            if queue_depth is not None:
                self._queue_depth = queue_depth

    def utilization(self) -> float:
        """Share of the hourly backend-seconds cap used (or of the bucket, without a cap)."""
        with self._lock:
            self._refill()
            if self.backend_seconds_per_hour:
                return min(1.0, sum(s for _, s in self._spent) / self.backend_seconds_per_hour)
            return 1.0 - self._tokens / self.burst
