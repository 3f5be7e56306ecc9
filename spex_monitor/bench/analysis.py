"""From compared windows to the benchmark's numbers: calibrated thresholds, false-alarm rates, detection
delays and where the planted interaction ranks when our detector first alarms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from .calibration import detector_summary, outcome, rank_summary
from .runs import BudgetRun, WindowRecord
from .scenarios import DECISIVE, DETECTORS, OURS, BenchConfig, Scenario, selected


def _matrix(
    records: list[WindowRecord],
    scenario: str,
    attr: Callable[[WindowRecord], float],
    runs: set[int] | None = None,
) -> np.ndarray:
    chosen = [r for r in records if r.scenario == scenario and (runs is None or r.run in runs)]
    ids = sorted({r.run for r in chosen})
    width = max((r.index for r in chosen), default=-1) + 1
    out = np.full((len(ids), width), np.nan)
    row = {run: i for i, run in enumerate(ids)}
    for r in chosen:
        out[row[r.run], r.index] = attr(r)
    return out


def analyse(config: BenchConfig, budget_run: BudgetRun) -> dict:
    """Thresholds, false-alarm rates, and per scenario × detector outcomes for one budget."""
    records = budget_run.records
    detectors = [d for d in DETECTORS if d.name in records[0].values]
    out: dict = {"budget": budget_run.budget, "detectors": {}, "scenarios": {}}
    target = config.target_requests
    for d in detectors:
        null = _matrix(records, "no-incident", lambda r, name=d.name: r.values[name]).ravel()
        held_out = budget_run.calibration.get(d.name, [])  # no-incident windows (not needed by exact tests)
        _, out["detectors"][d.name] = detector_summary(d, null, held_out, config.false_alarm_rate)
    for scenario in selected(config):
        explained = _matrix(records, scenario.name, lambda r: r.explained)
        inferences = _matrix(records, scenario.name, lambda r: r.inferences)
        rows: dict = {}
        for d in detectors:
            values = _matrix(records, scenario.name, lambda r, name=d.name: r.values[name])
            threshold = out["detectors"][d.name]["threshold"]
            calibrated = outcome(d.alarms(values, threshold), explained, inferences, target)
            nominal = outcome(d.alarms(values, d.nominal), explained, inferences, target)
            rows[d.name] = {"calibrated": asdict(calibrated), "nominal": asdict(nominal)}
        ranks = _first_alarm_ranks(config, records, scenario, out["detectors"][OURS]["threshold"])
        out["scenarios"][scenario.name] = {"detectors": rows, "planted": list(scenario.planted), **ranks}
        if DECISIVE in out["detectors"]:  # the planted tuple among the decisive test's tuples
            threshold = out["detectors"][DECISIVE]["threshold"]
            decisive = _first_alarm_ranks(config, records, scenario, threshold, DECISIVE, "decisive_rank")
            out["scenarios"][scenario.name]["decisive_ranks"] = decisive
    return out


def _first_alarm_ranks(
    config: BenchConfig,
    records: list[WindowRecord],
    scenario: Scenario,
    threshold: float,
    detector: str = OURS,
    rank: str = "planted_rank",
) -> dict:
    """Rank of the planted tuple among our top contributors (``rank``: or another ranking a record
    keeps), in each run's first window where ``detector`` alarms."""
    if not scenario.planted:
        return {}
    ours = next(d for d in DETECTORS if d.name == detector)
    firsts: dict[int, WindowRecord] = {}
    for r in sorted(records, key=lambda r: (r.run, r.index)):
        if r.scenario == scenario.name and r.run not in firsts and ours.alarms(r.values[detector], threshold):
            firsts[r.run] = r
    ranks = [getattr(r, rank) for r in firsts.values()]
    every = [getattr(r, rank) for r in records if r.scenario == scenario.name]
    return rank_summary(ranks, every)
