"""Seeded benchmark runs: a baseline drawn from a pool, then windows compared with it, per scenario.

Each draw resamples explained requests from a pool (:mod:`.pools`) and counts drift over served ones;
every window is compared through :func:`~spex_monitor.monitor.shift.compare_maps`, the sidecar's own code.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..monitor import InteractionMap, compare_maps
from ..monitor.drift import drift_report
from ..monitor.shift import first_order_ndcg
from .pools import Pool, PoolBuilder
from .scenarios import DECISIVE, DETECTORS, ONE_ALARM, OURS, OURS_V1, BenchConfig, Scenario, selected
from .traffic import NORMAL, TOPIC_SHIFT
from .variants import BASE


@dataclass
class WindowRecord:
    """One compared window: cumulative explained requests / inferences since onset, detector values."""

    scenario: str
    run: int
    index: int
    explained: int
    inferences: int
    values: dict[str, float]
    planted_rank: int | None
    top: list[list[str]] = field(default_factory=list)
    decisive_rank: int | None = None  # the planted tuple's rank among the decisive test's tuples


@dataclass
class BudgetRun:
    """Everything one budget produced: the window records, the no-incident calibration values, wall times
    (seconds) and what the explanations cost (inferences) and scored (median R²).
    """

    budget: int
    records: list[WindowRecord]
    calibration: dict[str, list[float]]  # no-incident values of the detectors without an exact test
    pool_seconds: float
    window_seconds: float
    explained_requests: int  # explanations actually computed for this budget (pools, not resampled)
    inferences_per_explanation: float
    faithfulness_median: float


def _draw(
    pool: Pool, rng: np.random.Generator, explained: int, observed: int, tag: str
) -> tuple[InteractionMap, int]:
    """A map of ``explained`` explained requests plus drift counters over ``observed`` served ones."""
    m = InteractionMap(seed=int(rng.integers(2**31)))
    spent = 0
    for i in rng.integers(len(pool.explained), size=explained).tolist():
        item = pool.explained[i]
        m.add(item.interactions(), list(item.keys), request_id=f"{tag}-{i}")
        m.observe(pool.tokens[i], pool.labels[i], float(pool.confidence[i]))
        spent += item.inferences
    for i in rng.integers(len(pool.texts), size=max(observed - explained, 0)).tolist():
        m.observe(pool.tokens[i], pool.labels[i], float(pool.confidence[i]))
    return m, spent


def planted_rank(contributors: list, planted: tuple[str, ...]) -> int | None:
    """1-based rank of the first contributor whose key tuple contains every planted key."""
    if not planted:
        return None
    for rank, contributor in enumerate(contributors, start=1):
        if set(planted) <= set(contributor.key):
            return rank
    return None


def run_windows(
    config: BenchConfig, scenario: Scenario, runs: int, base: Pool, pool: Pool, budget: int, horizon: int
) -> list[WindowRecord]:
    """``runs`` seeded runs: a baseline from ``base``, then ``horizon`` windows from ``pool``."""
    records = []
    k = config.observed_per_explained
    index = zlib.crc32(scenario.name.encode())  # seeds stay put when scenarios are added
    for run in range(runs):
        rng = np.random.default_rng([config.seed, budget, index, run])
        baseline, _ = _draw(base, rng, config.baseline_requests, config.baseline_requests * k, "b")
        spent = 0
        for w in range(horizon):
            window, cost = _draw(pool, rng, config.window, config.window * k, f"w{w}")
            spent += cost
            seed = int(rng.integers(2**31))
            report = compare_maps(baseline, window, config.n_permutations, seed=seed, statistic="max")
            values = {
                OURS: report.shift_p_value,
                DECISIVE: report.decisive.p_value if report.decisive is not None else 1.0,
                ONE_ALARM: report.p_value,
                "first-order NDCG": report.first_order_ndcg,
                "input drift PSI": max(report.input_drift.values()),
                "output label PSI": report.output_drift["label"],
                "output confidence PSI": report.output_drift["confidence"],
            }
            if "euclidean" in config.statistics:
                v1 = compare_maps(baseline, window, config.n_permutations, seed=seed, statistic="euclidean")
                values[OURS_V1] = v1.shift_p_value
            top = report.top_contributors(50)
            records.append(
                WindowRecord(
                    scenario.name,
                    run,
                    w,
                    config.window * (w + 1),
                    spent,
                    values,
                    planted_rank(top, scenario.planted),
                    [list(c.key) for c in top[:3]],
                    planted_rank(report.decisive.tuples, scenario.planted) if report.decisive else None,
                )
            )
    return records


def calibration_values(config: BenchConfig, base: Pool, budget: int) -> dict[str, list[float]]:
    """No-incident windows for the detectors without an exact test (NDCG, PSI), computed by the same
    functions ``compare_maps`` uses but without its permutation test, so there can be many of them."""
    k = config.observed_per_explained
    values: dict[str, list[float]] = {d.name: [] for d in DETECTORS if not d.exact}
    for run in range(config.calibration_runs):
        rng = np.random.default_rng([config.seed, budget, zlib.crc32(b"calibration"), run])
        baseline, _ = _draw(base, rng, config.baseline_requests, config.baseline_requests * k, "b")
        for w in range(config.horizon):
            window, _ = _draw(base, rng, config.window, config.window * k, f"w{w}")
            drift = drift_report(baseline.drift, window.drift, [], [])
            values["first-order NDCG"].append(first_order_ndcg(baseline, window))
            values["input drift PSI"].append(max(drift.input_psi.values()))
            values["output label PSI"].append(drift.output_psi["label"])
            values["output confidence PSI"].append(drift.output_psi["confidence"])
    return values


def run_budget(
    config: BenchConfig, budget: int, builder: PoolBuilder, log: Callable[[str], None]
) -> BudgetRun:
    """Build (or load) every scenario's pool at ``budget`` inferences per explanation, run the seeded
    baseline/window comparisons of every scenario and the calibration windows; ``log`` gets progress lines.
    """
    began = time.perf_counter()
    pools = {}
    seeds = {NORMAL.name: config.seed + 1, TOPIC_SHIFT.name: config.seed + 2}
    for scenario in selected(config):
        pools[scenario.name] = builder.pool(
            scenario.variant, scenario.profile, seeds[scenario.profile.name], budget, base=BASE
        )
    pool_seconds = time.perf_counter() - began
    base = pools["no-incident"]
    began = time.perf_counter()
    records: list[WindowRecord] = []
    for scenario in selected(config):
        null = scenario.kind == "none"
        runs = config.null_runs if null else config.incident_runs
        horizon = 1 if null else config.horizon
        records += run_windows(config, scenario, runs, base, pools[scenario.name], budget, horizon)
        log(f"  budget {budget:>4}: {scenario.name:<14} {runs} runs × {horizon} windows compared")
    calibration = calibration_values(config, base, budget)
    window_seconds = time.perf_counter() - began
    unique = {id(e): e for p in pools.values() for e in p.explained}.values()
    faith = [e.faithfulness for e in unique if np.isfinite(e.faithfulness)]
    return BudgetRun(
        budget,
        records,
        calibration,
        pool_seconds,
        window_seconds,
        len(unique),
        float(np.mean([e.inferences for e in unique])),
        float(np.median(faith)) if faith else float("nan"),
    )
