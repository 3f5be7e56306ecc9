"""Tumbling windows per (model, version) and the baseline policies that compare against them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..attribution import Interactions
from .maps import InteractionMap


@dataclass
class ClosedWindow:
    """A window taken off :class:`TumblingWindows`: its (model, version), start and end (clock seconds) and
    map."""

    model: str
    version: str
    start_ts: float
    end_ts: float
    map: InteractionMap


def epoch_period(t: float, window_s: float) -> int:
    """The index ``k`` of the epoch-aligned period ``[k·W, (k+1)·W)`` holding ``t`` (``W = window_s``),
    checked against the products ``k·W`` themselves so a boundary computed as ``k·W`` is never placed in
    period ``k - 1`` by rounding in ``t / W``."""
    k = math.floor(t / window_s)
    if k * window_s > t:
        k -= 1
    elif (k + 1) * window_s <= t:
        k += 1
    return k


@dataclass
class TumblingWindows:
    """A window closes after ``window_s`` seconds or ``window_requests`` explained requests, whichever first.

    A new model version gets its own window (and its own baseline): comparisons never mix versions.

    With ``align`` (and ``window_s``), windows are aligned to the epoch, as Prometheus ranges and Flink's
    tumbling windows are: a window opened at time t belongs to the period ``[k·W, (k+1)·W)`` holding t and
    ends at ``(k+1)·W`` whenever the tick that closes it runs, so every pod writing to a shared store cuts
    its windows at the same instants and a fleet window holds exactly one window of each pod (DESIGN.md
    "Scale"). An aligned window starts at its period's start, or where an earlier window of the same period
    closed when ``window_requests`` cut it. Without ``align`` a window starts at its first request and
    ends when it is closed.
    """

    window_s: float | None = 300.0
    window_requests: int | None = None
    map_kwargs: dict = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    align: bool = False

    def __post_init__(self) -> None:
        if self.window_s is None and self.window_requests is None:
            raise ValueError("set window_s and/or window_requests")
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], tuple[float, InteractionMap]] = {}
        self._last_end: dict[tuple[str, str], float] = {}  # aligned: where the last closed window ended

    def _aligned(self) -> bool:
        return self.align and self.window_s is not None

    def _period_end(self, start: float) -> float:
        """The end of the epoch-aligned period holding ``start`` (a start on a boundary opens a period)."""
        w = float(self.window_s)  # type: ignore[arg-type]
        return (epoch_period(start, w) + 1) * w

    def _current(self, model: str, version: str) -> InteractionMap:
        key = (model, version)
        if key not in self._open:
            start = self.clock()
            if self._aligned():
                w = float(self.window_s)  # type: ignore[arg-type]
                period_start = epoch_period(start, w) * w  # the product k·W, never (k+1)·W − W (rounds)
                start = max(period_start, self._last_end.get(key, period_start))
            self._open[key] = (start, InteractionMap(**self.map_kwargs))
        return self._open[key][1]

    def add(self, model: str, version: str, result: Interactions, keys: list[str], request_id: str) -> None:
        """Fold one explanation into the open window of (model, version), opening one if needed."""
        with self._lock:
            self._current(model, version).add(result, keys, request_id=request_id)

    def observe(
        self, model: str, version: str, tokens: list[str] | None, label: str | None, confidence: float | None
    ) -> None:
        """Count one observed request's drift into the open window of (model, version), opening one if
        needed."""
        with self._lock:
            self._current(model, version).observe(tokens, label, confidence)

    def close_due(self, force: bool = False) -> list[ClosedWindow]:
        """Close every window whose time or count is up (all of them with ``force``)."""
        now = self.clock()
        closed = []
        with self._lock:
            for key, (start, m) in list(self._open.items()):
                if self._aligned():
                    deadline = self._period_end(start)
                    timed_out = now >= deadline
                    end = min(now, deadline)
                else:
                    timed_out = self.window_s is not None and now - start >= self.window_s
                    end = now
                full = self.window_requests is not None and m.requests >= self.window_requests
                if force or timed_out or full:
                    closed.append(ClosedWindow(key[0], key[1], start, end, m))
                    del self._open[key]
                    if self._aligned():
                        self._last_end[key] = end
        return closed


def baseline_from_windows(windows: Iterable[InteractionMap]) -> InteractionMap:
    """Pin a baseline: the exact merge of the given windows (e.g. "model v12 at launch")."""
    return InteractionMap.merged(windows)


def roll_baseline(baseline: InteractionMap, window: InteractionMap, decay: float) -> InteractionMap:
    """Exponentially decayed baseline: ``decay * baseline + window`` (sums, so it stays mergeable)."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    return baseline.scale(decay).merge(window)


def compare_versions(
    store: object,
    model: str,
    version_a: str,
    version_b: str,
    since: float = 0.0,
    until: float = float("inf"),
    n_permutations: int = 1000,
    seed: int = 0,
):  # noqa: ANN201
    """ "Compare version A vs B" on stored windows: A's merged windows are the baseline."""
    from .shift import compare_maps

    maps_a = [w[3] for w in store.windows(model, version_a, since, until)]  # type: ignore[attr-defined]
    maps_b = [w[3] for w in store.windows(model, version_b, since, until)]  # type: ignore[attr-defined]
    if not maps_a or not maps_b:
        raise LookupError(f"no stored windows for {model} {version_a if not maps_a else version_b}")
    return compare_maps(baseline_from_windows(maps_a), baseline_from_windows(maps_b), n_permutations, seed)
