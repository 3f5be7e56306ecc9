"""Closing one window: persist it, compare it with its baseline, store the report, roll the baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .baselines import Baselines
from .maps import InteractionMap, KeyTuple
from .records import LockedCounter, WindowResult
from .shift import ShiftReport, compare_maps
from .store import Store
from .windows import ClosedWindow

TOP_STORED = 10  # contributors stored with each report


def report_fields(
    report: ShiftReport,
    alarm: bool,
    window_requests: float,
    public_key: Callable[[KeyTuple], KeyTuple] = tuple,
) -> dict:
    """What a pod's and a fleet window's stored report share beside their contributors: order shares,
    first-order NDCG, drift, the alarm, the two tests behind ``p_value`` (the decisive tuples' keys as
    ``public_key`` shows them) and the window's explained requests. JSON-ready."""
    return {
        "order_shares": {str(k): list(v) for k, v in report.order_shares.items()},
        "first_order_ndcg": report.first_order_ndcg,
        "input_drift": report.input_drift,
        "output_drift": report.output_drift,
        "alarm": alarm,
        "shift_p_value": report.shift_p_value,
        "decisive": report.decisive.fields(TOP_STORED, public_key) if report.decisive is not None else None,
        "window_requests": window_requests,
    }


@dataclass
class WindowCloser:
    """Closes windows against their baselines.

    Attributes:
        baselines: the baselines by (model, version).
        store: where windows and reports go (``None``: memory only); persist: a store write that never
            raises (``Monitor.persist``).
        public_map, public_key: what maps and key tuples may look like in the store.
        counters: ``windows:too_small`` is counted here; ``windows:closed`` seeds the permutation test when
            there is no store.
        min_window_requests: explained requests a window needs to be compared.
        n_permutations, alarm_p_value: the permutation test and the alarm threshold. One alarm covers
            both tests: ``report.p_value`` is the interaction-shift p-value combined with the
            decisive-interaction test's (:func:`~.decisive_shift.combine`: weighted Bonferroni), so a window
            alarms when the shift test has ``p < 0.8 · alarm_p_value`` or the decisive test
            ``p < 0.2 · alarm_p_value``, and null windows alarm at most at rate ``alarm_p_value``; both
            parts are stored with the report.
        rolling_decay: weight of each quiet window in a rolling baseline (``None``: no rolling).
    """

    baselines: Baselines
    store: Store | None
    persist: Callable[..., object]
    public_map: Callable[[InteractionMap], InteractionMap]
    public_key: Callable[[KeyTuple], KeyTuple]
    counters: LockedCounter
    min_window_requests: int = 30
    n_permutations: int = 1000
    alarm_p_value: float = 0.01
    rolling_decay: float | None = None

    def close(self, closed: ClosedWindow) -> WindowResult:
        """Store a closed window, compare it with its baseline (building one from the first windows),
        store the report, and roll the baseline unless an operator pinned it."""
        window_id = None
        if self.store is not None:
            window_id = self.persist(
                self.store.save_window,
                closed.model,
                closed.version,
                closed.start_ts,
                closed.end_ts,
                self.public_map(closed.map),
            )
        key = (closed.model, closed.version)
        baseline = self.baselines.get(key)
        report = None
        alarm = False
        if baseline is None:
            self.baselines.warm_up(key, closed.map)
        elif closed.map.requests >= self.min_window_requests:
            report = compare_maps(
                baseline,
                closed.map,
                n_permutations=self.n_permutations,
                seed=window_id or self.counters["windows:closed"],
            )
            alarm = report.p_value < self.alarm_p_value
            if self.store is not None:
                self.persist(
                    self.store.save_report,
                    closed.model,
                    closed.version,
                    window_id,
                    report.score,
                    report.p_value,
                    {
                        "top": [
                            [
                                list(self.public_key(c.key)),
                                c.baseline,
                                c.window,
                                c.delta,
                                c.exemplars,
                                {
                                    **(c.split.fields() if c.split is not None else {}),
                                    "baseline_exemplar_request_ids": list(c.baseline_exemplars),
                                },
                            ]
                            for c in report.top_contributors(TOP_STORED)
                        ],
                        **report_fields(report, alarm, closed.map.requests, self.public_key),
                    },
                )
            if self.rolling_decay is not None and not alarm:
                self.baselines.roll(key, closed.map, self.rolling_decay)
        else:
            self.counters.add("windows:too_small")
        return WindowResult(closed, window_id, report, alarm)
