"""Pair the two halves of one inference — its request and its response — that arrive as separate events.

KServe's inference logger posts the request and the response of one call as two CloudEvents with the same
id, from a pool of workers, so either may arrive first, arrive twice, or never arrive (the response of a
failed call is not logged). ``PairingBuffer`` holds the first half until its partner comes, for at most
``ttl_s`` seconds and within a bound on entries and bytes, so a flood of unpaired halves costs bounded
memory. Every half that will never be paired is handed back to the caller to count: nothing is lost
silently. Each operation is O(1) amortised: expiry pops from the front of an arrival-ordered dict.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

Half = Literal["request", "response"]
Status = Literal["pending", "paired", "duplicate", "late"]


@dataclass(frozen=True)
class PendingHalf:
    """One half waiting for its partner."""

    key: Hashable
    half: Half
    item: Any
    size: int
    arrived: float


@dataclass
class Offer:
    """What became of an offered half.

    ``pending``: held until its partner arrives. ``paired``: ``request`` and ``response`` are both set.
    ``duplicate``: this half was already seen (pending or paired) and is dropped. ``late``: its partner
    already expired or was evicted, so it can never be paired. ``dropped`` lists older halves evicted to
    make room or found expired during this call; the caller counts them as unpaired.
    """

    status: Status
    request: Any = None
    response: Any = None
    dropped: list[PendingHalf] = field(default_factory=list)


class PairingBuffer:
    """Args:
    ttl_s: how long a half waits for its partner.
    max_pending: most halves waiting at once; the oldest is evicted beyond it.
    max_bytes: most ``size`` held by waiting halves (sizes are whatever the caller says, e.g. body bytes).
    memory_s: how long paired and expired ids are remembered to recognise duplicates and late partners
        (default ``10 * ttl_s``; at most ``max_pending`` ids of each kind).
    clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        ttl_s: float = 30.0,
        max_pending: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        memory_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_pending < 1 or max_bytes < 1:
            raise ValueError("ttl_s, max_pending and max_bytes must be positive")
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.memory_s = 10 * ttl_s if memory_s is None else memory_s
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[Hashable, PendingHalf] = OrderedDict()
        self._bytes = 0
        self._paired: OrderedDict[Hashable, float] = OrderedDict()  # key -> when paired
        self._gone: OrderedDict[Hashable, tuple[Half, float]] = OrderedDict()  # key -> (half lost, when)

    @property
    def pending(self) -> int:
        """Halves waiting for their partner now."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Sum of the ``size`` of the waiting halves (in the caller's unit, e.g. body bytes)."""
        return self._bytes

    def offer(self, key: Hashable, half: Half, item: Any, size: int = 0) -> Offer:
        """Hold ``item`` until the other half of ``key`` arrives, or complete the pair."""
        if half not in ("request", "response"):
            raise ValueError(f"half must be 'request' or 'response', got {half!r}")
        with self._lock:
            now = self.clock()
            dropped = self._expire(now)
            waiting = self._pending.get(key)
            if waiting is not None:
                if waiting.half == half:
                    return Offer("duplicate", dropped=dropped)
                del self._pending[key]
                self._bytes -= waiting.size
                self._remember(self._paired, key, now)
                pair = (waiting.item, item) if half == "response" else (item, waiting.item)
                return Offer("paired", request=pair[0], response=pair[1], dropped=dropped)
            if key in self._paired:
                return Offer("duplicate", dropped=dropped)
            lost = self._gone.get(key)
            if lost is not None:
                return Offer("duplicate" if lost[0] == half else "late", dropped=dropped)
            while self._pending and (
                len(self._pending) >= self.max_pending or self._bytes + size > self.max_bytes
            ):
                dropped.append(self._evict_oldest(now))
            self._pending[key] = PendingHalf(key, half, item, size, now)
            self._bytes += size
            return Offer("pending", dropped=dropped)

    def expire(self) -> list[PendingHalf]:
        """Drop and return every half that waited longer than ``ttl_s`` (call it periodically)."""
        with self._lock:
            return self._expire(self.clock())

    # ------------------------------------------------------------------------------------------ internals
    def _expire(self, now: float) -> list[PendingHalf]:
        out = []
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.arrived < self.ttl_s:
                break
            out.append(self._evict_oldest(now))
        for memory in (self._paired, self._gone):
            while memory:
                stamp = next(iter(memory.values()))
                when = stamp[1] if isinstance(stamp, tuple) else stamp
                if now - when < self.memory_s:
                    break
                memory.popitem(last=False)
        return out

    def _evict_oldest(self, now: float) -> PendingHalf:
        _, oldest = self._pending.popitem(last=False)
        self._bytes -= oldest.size
        self._remember(self._gone, oldest.key, (oldest.half, now))
        return oldest

    def _remember(self, memory: OrderedDict, key: Hashable, value: Any) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > self.max_pending:
            memory.popitem(last=False)
