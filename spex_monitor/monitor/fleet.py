"""The fleet view: merge every pod's windows of a model into fleet windows and compare them with a fleet
baseline (DESIGN.md "Scale"; issue 20 §3).

Fleet windows are aligned to the epoch: fleet window ``k`` covers ``(k·W, (k+1)·W]`` and holds every pod
window (any version, any instance) whose *end* falls in it (with pod windows aligned too, ``windows.align``,
and as long as the fleet's: exactly one window of each pod), merged per version by addition
(:meth:`InteractionMap.merge` — exact for the sums, so the fleet map is what one pod seeing all the traffic
would have built). A fleet window is merged once it ended ``grace_s`` ago (pods write a window on their
next tick); a pod window stored after that is left out of the fleet view (its pod's own report has it).
The fleet baseline is built like a pod's — the merge of the first ``baseline_windows`` fleet windows — or
pinned (:meth:`FleetAggregator.pin_baseline`, ``fleet.baseline_file``). Each fleet window and
its report are stored in one transaction under a unique key on (model, version, scope, range), and the
next fleet window to merge is read back from the store, so a new aggregator continues exactly where a dead
one stopped: no window lost, none reported twice.

Only the holder of the model's lock (:mod:`.fleet_lock`) aggregates; :meth:`FleetAggregator.tick` is
cheap for the others (one lock attempt). A sidecar's ticker or a standalone process
(:mod:`.aggregate`) drives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .closing import TOP_STORED, report_fields
from .fleet_lock import AdvisoryLock, HeldLock, Lock
from .maps import InteractionMap
from .shift import ShiftReport, compare_maps
from .store import FLEET, POD, FleetWindow, SQLStore, StoredWindow
from .windows import baseline_from_windows, epoch_period

log = logging.getLogger(__name__)
AUTOMATIC_SOURCE = "first "  # "first 2 fleet windows", as the pod baseline's source


@dataclass
class FleetResult:
    """One stored fleet window: ``pods`` instances' windows merged; ``report`` when it was compared."""

    model: str
    version: str
    start_ts: float
    end_ts: float
    pods: int
    pod_windows: int
    requests: float
    window_id: int
    report_id: int | None
    report: ShiftReport | None
    alarm: bool


class FleetAggregator:
    """Merges one model's pod windows into fleet windows while it holds the model's lock.

    Args:
        store: the shared store every pod writes its windows to.
        model: the model aggregated.
        window_s: fleet window length W in seconds (fleet windows are ``(k·W, (k+1)·W]``).
        lock: who aggregates; :class:`AdvisoryLock` for a fleet, :class:`HeldLock` for a single process.
        grace_s: wait after a fleet window's end for late pod windows.
        baseline_windows, min_window_requests, n_permutations, alarm_p_value: as the pod's baseline
            settings, applied to the fleet totals.
        backfill_windows: on a first start, how many past fleet windows to merge.
        max_windows_per_tick: bound on one tick's catching up (the rest follows on the next ticks).
        on_result: called with each stored :class:`FleetResult` (metrics export); its failures are logged.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        store: SQLStore,
        model: str,
        window_s: float,
        lock: Lock | None = None,
        grace_s: float = 30.0,
        baseline_windows: int = 2,
        min_window_requests: int = 30,
        n_permutations: int = 1000,
        alarm_p_value: float = 0.01,
        backfill_windows: int = 12,
        max_windows_per_tick: int = 100,
        on_result: Callable[[FleetResult], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.store = store
        self.model = model
        self.window_s = float(window_s)
        self.lock = lock if lock is not None else HeldLock()
        self.grace_s = grace_s
        self.baseline_windows = baseline_windows
        self.min_window_requests = min_window_requests
        self.n_permutations = n_permutations
        self.alarm_p_value = alarm_p_value
        self.backfill_windows = backfill_windows
        self.max_windows_per_tick = max_windows_per_tick
        self.on_result = on_result
        self.clock = clock
        self.leader = False
        self._cursor: float | None = None  # end of the last fleet window handled while leading
        self._baselines: dict[str, tuple[tuple[float, str], InteractionMap]] = {}  # version -> (stamp, map)

    @classmethod
    def from_settings(
        cls, store: SQLStore, settings: object, model: str, **kwargs: object
    ) -> FleetAggregator:
        """An aggregator for ``model`` configured by ``settings`` (``spex_monitor.config.Settings``): an
        :class:`AdvisoryLock` on a dedicated connection when the store is PostgreSQL."""
        fleet, baseline = settings.fleet, settings.baseline  # type: ignore[attr-defined]
        window_s = fleet.window_s or settings.windows.seconds  # type: ignore[attr-defined]
        if window_s is None:
            raise ValueError("fleet.window_s: required when windows.seconds is unset")
        connect = getattr(store, "connect", None)
        lock = AdvisoryLock(connect, model) if connect is not None else HeldLock()
        options: dict = {
            "grace_s": fleet.grace_s,
            "baseline_windows": fleet.baseline_windows or baseline.windows,
            "min_window_requests": fleet.min_window_requests or baseline.min_window_requests,
            "n_permutations": baseline.n_permutations,
            "alarm_p_value": baseline.alarm_p_value,
            "backfill_windows": fleet.backfill_windows,
        }
        return cls(store, model, window_s, lock, **(options | kwargs))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------ ticking
    def tick(self, now: float | None = None) -> list[FleetResult]:
        """Merge every due fleet window not stored yet (only while holding the lock). Returns what this call
        stored, oldest first. Store errors propagate (the caller logs and counts them; the next tick
        retries the same windows)."""
        if not self.lock.hold():
            if self.leader:
                log.info("fleet aggregation of %s handed over", self.model)
            self.leader, self._cursor = False, None
            return []
        self.leader = True
        now = self.clock() if now is None else now
        w = self.window_s
        due = epoch_period(now - self.grace_s, w)  # fleet windows k with (k+1)·W <= due·W are due
        k = self._start(due)
        results: list[FleetResult] = []
        for _ in range(self.max_windows_per_tick):
            if k is None or k + 1 > due:
                break
            # each boundary is the product k·W, as the pods' aligned window ends are: no rounding gap
            results += self._aggregate(k * w, (k + 1) * w)
            self._cursor = (k + 1) * w
            k = self._next_period(self._cursor)
        return results

    def _start(self, due: int) -> int | None:
        """Where to continue: after the last stored fleet window, else ``backfill_windows`` back."""
        if self._cursor is not None:
            return self._next_period(self._cursor)
        last = self.store.window_end_bound(self.model, FLEET, latest=True)
        if last is not None:
            return self._next_period(last)
        # a first start: anchor the backfill once, so later ticks go on from it (recomputing it from each
        # tick's due period would chase, with backfill_windows=0, a window that is never due)
        self._cursor = (due - self.backfill_windows) * self.window_s
        return self._next_period(self._cursor)

    def _next_period(self, after: float) -> int | None:
        """The index k of the first fleet window ``(k·W, (k+1)·W]`` after ``after`` that holds a pod
        window (empty stretches are skipped with one query)."""
        first = self.store.window_end_bound(self.model, POD, latest=False, end_after=after)
        if first is None:
            return None
        k = epoch_period(first, self.window_s)  # k·W <= first < (k+1)·W
        return k - 1 if k * self.window_s == first else k  # an end on a boundary closes window k - 1

    # ------------------------------------------------------------------------------------- one window
    def _aggregate(self, start: float, end: float) -> list[FleetResult]:
        by_version: dict[str, dict[tuple[str, float, float], StoredWindow]] = {}
        for row in self.store.pod_windows_ending(self.model, start, end):
            # the same pod window stored twice (a write retried after a lost commit) counts once
            by_version.setdefault(row.version, {}).setdefault((row.instance, row.start_ts, row.end_ts), row)
        pending: list[tuple[FleetWindow, int, int, ShiftReport | None, bool]] = []
        for version in sorted(by_version):
            rows = list(by_version[version].values())
            merged = InteractionMap.merged(r.map for r in rows)
            pods = len({r.instance for r in rows})
            report, alarm, body = self._compare(version, start, merged, pods, len(rows))
            row = None if report is None else (report.score, report.p_value, body)
            pending.append((FleetWindow(version, start, end, merged, row), pods, len(rows), report, alarm))
        stored = self.store.save_fleet_windows(self.model, [p[0] for p in pending])
        results = []
        for (window, pods, n_rows, report, alarm), ids in zip(pending, stored, strict=True):
            if ids is None:  # an earlier holder stored this range: its result stands
                continue
            result = FleetResult(
                self.model, window.version, start, end, pods, n_rows, window.map.requests, ids[0], ids[1],
                report, alarm,
            )  # fmt: skip
            results.append(result)
            self._learn_baseline(window.version)
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:
                    log.exception("fleet result hook failed for %s %s", self.model, window.version)
        return results

    def _compare(
        self, version: str, start: float, merged: InteractionMap, pods: int, pod_windows: int
    ) -> tuple[ShiftReport | None, bool, dict]:
        baseline = self._baseline(version)
        if baseline is None or merged.requests < self.min_window_requests:
            return None, False, {}
        seed = int(start // self.window_s) % (2**31)  # the same report whoever computes it
        report = compare_maps(baseline, merged, n_permutations=self.n_permutations, seed=seed)
        alarm = report.p_value < self.alarm_p_value
        body = {
            "top": [
                [list(c.key), c.baseline, c.window, c.delta, c.exemplars]
                for c in report.top_contributors(TOP_STORED)
            ],
            **report_fields(report, alarm, merged.requests),  # as a pod's report stores them
            "pods": pods,
            "pod_windows": pod_windows,
        }
        return report, alarm, body

    # ------------------------------------------------------------------------------------------ baseline
    def _baseline(self, version: str) -> InteractionMap | None:
        """The stored fleet baseline (decoded once, again only when its stamp changes: an operator pinned
        another), else the merge of the first ``baseline_windows`` fleet windows when that many are stored
        (then stored: whoever holds the lock later finds it)."""
        stamp = self.store.baseline_stamp(self.model, version, scope=FLEET)
        cached = self._baselines.get(version)
        if stamp is not None and cached is not None and cached[0] == stamp:
            return cached[1]
        if stamp is not None:
            found = self.store.baseline(self.model, version, scope=FLEET)
            if found is not None:
                self._baselines[version] = (stamp, found)
                return found
        first = self.store.windows(self.model, version, scope=FLEET)[: self.baseline_windows]
        if len(first) < self.baseline_windows:
            return None
        return self._store_learned(version, [w[3] for w in first])

    def _learn_baseline(self, version: str) -> None:
        """After storing a fleet window: the warm-up is complete when it was the last of the first ones."""
        if self.store.baseline_stamp(self.model, version, scope=FLEET) is not None:
            return
        self._baseline(version)

    def _store_learned(self, version: str, maps: list[InteractionMap]) -> InteractionMap:
        baseline = baseline_from_windows(maps)
        source = f"{AUTOMATIC_SOURCE}{len(maps)} fleet windows"
        self.store.set_baseline(self.model, version, baseline, source, scope=FLEET)
        stamp = self.store.baseline_stamp(self.model, version, scope=FLEET)
        if stamp is not None:
            self._baselines[version] = (stamp, baseline)
        log.info("fleet baseline of %s %s learned: %s", self.model, version, source)
        return baseline

    def pin_baseline(self, version: str, baseline: InteractionMap, source: str = "api") -> None:
        """Use ``baseline`` as the fleet baseline of ``version`` from the next fleet window on."""
        self.store.set_baseline(self.model, version, baseline, source, scope=FLEET)

    def close(self) -> None:
        """Release the aggregator lock (another candidate takes over on its next tick)."""
        self.lock.release()
        self.leader = False
