"""Detection power: does interaction shift catch incidents that input/output drift and first-order
attribution drift miss — and where does it fail?

Scenarios (generated review traffic for the embedded sentiment model, incident at a known time):

1. ``model-swap``: the server silently swaps to ``sentiment-broken-negation`` ("not good" no longer flips).
2. ``backdoor``: a wrapper around the real model flips the label only when *both* trigger words appear
   ("cast" + "enjoy"; ``backdoor-cross``: "enjoy" + "very", two words that never share a clause).
3. ``preprocessing``: the serving normaliser drops the negation "not" before the model sees the text.
4. ``benign-drift``: a topic shift in the traffic (same model): interaction shift should stay quiet.
5. ``no-incident``: many seeded runs of unchanged traffic, for false-alarm rates and calibration.

Method: each (variant, traffic profile, budget) pool of requests is explained once through the sidecar's
own local explainer (:mod:`.pools`); a *run* draws a baseline of explained requests and then windows of
explained requests from the pools, with replacement, and compares each window with the baseline through
:func:`~spex_monitor.monitor.shift.compare_maps` — the same code the sidecar runs. Every detector reads the
same report: input drift (token/length PSI), output drift (label/confidence PSI), first-order attribution
drift (NDCG, SageMaker Clarify's method) and the interaction-shift p-value. Each detector's threshold is
calibrated to the same false-alarm rate on half of the no-incident runs and evaluated on the other half.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..monitor import InteractionMap, compare_maps
from ..monitor.drift import drift_report
from ..monitor.shift import first_order_ndcg
from .calibration import Detector, calibrate, outcome, wilson
from .pools import Pool, PoolBuilder
from .traffic import NORMAL, TOPIC_SHIFT, TrafficProfile, cooccurrence_rates
from .variants import BASE, BROKEN_NEGATION, Variant, backdoor, dropped_words

TRIGGER = ("cast", "enjoy")  # also a natural pair: "i enjoy the cast" (the base model uses it jointly)
CROSS_TRIGGER = ("enjoy", "very")  # never in one clause: the base model has no interaction between them


@dataclass(frozen=True)
class Scenario:
    """An incident (or none) injected at a window boundary; ``planted``: the keys of the interaction the
    incident changes (a contributor matches when its key tuple contains all of them)."""

    name: str
    title: str
    variant: Variant
    profile: TrafficProfile
    kind: str  # "incident" | "benign" | "none"
    planted: tuple[str, ...] = ()


SCENARIOS = (
    Scenario("model-swap", "model swap: broken negation", BROKEN_NEGATION, NORMAL, "incident", ("not",)),
    Scenario("backdoor", "backdoor: two-word trigger", backdoor(TRIGGER), NORMAL, "incident", TRIGGER),
    Scenario(
        "backdoor-cross",
        "backdoor: trigger words from different clauses",
        replace(backdoor(CROSS_TRIGGER), name="backdoor-cross"),
        NORMAL,
        "incident",
        CROSS_TRIGGER,
    ),
    Scenario(
        "preprocessing",
        'preprocessing bug: "not" dropped',
        dropped_words(("not",)),
        NORMAL,
        "incident",
        ("not",),
    ),
    Scenario("benign-drift", "benign topic drift, same model", BASE, TOPIC_SHIFT, "benign"),
    Scenario("no-incident", "no incident", BASE, NORMAL, "none"),
)

OURS = "interaction shift"
OURS_V1 = "interaction shift (v1 Euclidean)"
DETECTORS = (
    Detector(OURS, True, 0.01, "p < 0.01", exact=True),
    Detector(OURS_V1, True, 0.01, "p < 0.01", exact=True),
    Detector("first-order NDCG", True, 0.90, "NDCG < 0.90 (Clarify)"),
    Detector("input drift PSI", False, 0.25, "PSI > 0.25"),
    Detector("output label PSI", False, 0.25, "PSI > 0.25"),
    Detector("output confidence PSI", False, 0.25, "PSI > 0.25"),
)


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark. ``window``/``baseline_requests`` count *explained* requests; drift
    counters see ``observed_per_explained`` times as many served requests (the sidecar samples)."""

    budgets: tuple[int, ...] = (250, 500, 1000)
    window: int = 50
    baseline_requests: int = 200
    horizon: int = 4  # windows after the onset (horizon · window = the 200-request target)
    observed_per_explained: int = 10
    n_observed: int = 3000
    n_explained: int = 300
    null_runs: int = 480  # one window each (independent baselines): the false-alarm rates we report
    calibration_runs: int = 500  # × 4 windows without permutation tests: thresholds of PSI and NDCG
    incident_runs: int = 30
    n_permutations: int = 1000  # the sidecar's default; with 300, Tippett's floor (~2/301) nears α = 0.01
    false_alarm_rate: float = 0.01
    target_requests: int = 200
    max_order: int = 3
    seed: int = 0
    statistics: tuple[str, ...] = ("max", "euclidean")


FULL = BenchConfig()
QUICK = BenchConfig(
    budgets=(250,),
    n_observed=2000,
    n_explained=150,
    null_runs=150,
    calibration_runs=150,
    incident_runs=15,
    statistics=("max",),
)


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


@dataclass
class BudgetRun:
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
                OURS: report.p_value,
                "first-order NDCG": report.first_order_ndcg,
                "input drift PSI": max(report.input_drift.values()),
                "output label PSI": report.output_drift["label"],
                "output confidence PSI": report.output_drift["confidence"],
            }
            if "euclidean" in config.statistics:
                v1 = compare_maps(baseline, window, config.n_permutations, seed=seed, statistic="euclidean")
                values[OURS_V1] = v1.p_value
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
    began = time.perf_counter()
    pools = {}
    seeds = {NORMAL.name: config.seed + 1, TOPIC_SHIFT.name: config.seed + 2}
    for scenario in SCENARIOS:
        pools[scenario.name] = builder.pool(
            scenario.variant, scenario.profile, seeds[scenario.profile.name], budget, base=BASE
        )
    pool_seconds = time.perf_counter() - began
    base = pools["no-incident"]
    began = time.perf_counter()
    records: list[WindowRecord] = []
    for scenario in SCENARIOS:
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


# ------------------------------------------------------------------------------------------- analysis
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
        if d.exact:
            threshold, how = d.nominal, "exact test"
        else:
            calibration = budget_run.calibration[d.name]
            threshold = calibrate(d, calibration, config.false_alarm_rate)
            how = f"1 % of {len(calibration)} windows"
        alarms = int(d.alarms(null, threshold).sum())
        out["detectors"][d.name] = {
            "threshold": threshold,
            "threshold_from": how,
            "false_alarm_rate": alarms / null.size,
            "false_alarm_ci": wilson(alarms, null.size),
            "evaluation_windows": int(null.size),
            "nominal_rule": d.nominal_rule,
            "nominal_false_alarm_rate": float(d.alarms(null, d.nominal).mean()),
        }
    for scenario in SCENARIOS:
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
    return out


def _first_alarm_ranks(
    config: BenchConfig, records: list[WindowRecord], scenario: Scenario, threshold: float
) -> dict:
    """Rank of the planted tuple among our top contributors, in each run's first alarming window."""
    if not scenario.planted:
        return {}
    ours = next(d for d in DETECTORS if d.name == OURS)
    firsts: dict[int, WindowRecord] = {}
    for r in sorted(records, key=lambda r: (r.run, r.index)):
        if r.scenario == scenario.name and r.run not in firsts and ours.alarms(r.values[OURS], threshold):
            firsts[r.run] = r
    ranks = [r.planted_rank for r in firsts.values()]
    every = [r.planted_rank for r in records if r.scenario == scenario.name]
    top3 = lambda xs: float(np.mean([x is not None and x <= 3 for x in xs])) if xs else float("nan")  # noqa: E731
    found = [x for x in ranks if x is not None]
    return {
        "alarm_windows_ranked": len(ranks),
        "median_rank_at_first_alarm": float(np.median(found)) if found else None,
        "top3_share_at_first_alarm": top3(ranks),
        "top3_share_all_windows": top3(every),
    }


# ---------------------------------------------------------------------------------------------- main
def run(config: BenchConfig, cache_dir: Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark; returns a JSON-ready summary (config, timings, per-budget analysis).

    One thread for torch and for numpy's BLAS: the machine is shared, and on these small matrices a
    second BLAS thread doubled CPU time without saving wall time.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _run(config, cache_dir, log)
    finally:
        torch.set_num_threads(threads)


def _run(config: BenchConfig, cache_dir: Path | None, log: Callable[[str], None]) -> dict:
    import torch

    began, cpu_began = time.perf_counter(), time.process_time()
    builder = PoolBuilder(config.n_observed, config.n_explained, config.max_order, cache_dir, log)
    budgets = []
    for budget in config.budgets:
        log(f"budget {budget}: explaining pools, then comparing windows")
        budget_run = run_budget(config, budget, builder, log)
        summary = analyse(config, budget_run)
        summary["timing"] = {
            "pool_seconds": budget_run.pool_seconds,
            "window_seconds": budget_run.window_seconds,
            "explanations": budget_run.explained_requests,
            "inferences_per_explanation": budget_run.inferences_per_explanation,
            "faithfulness_median": budget_run.faithfulness_median,
        }
        summary["examples"] = {
            s.name: [r.top for r in budget_run.records if s.name == r.scenario and r.run == 1][:2]
            for s in SCENARIOS
        }
        budgets.append(summary)
    seeds = {NORMAL.name: config.seed + 1, TOPIC_SHIFT.name: config.seed + 2}
    pools = {
        s.name: builder.pool(s.variant, s.profile, seeds[s.profile.name], config.budgets[0], base=BASE)
        for s in SCENARIOS
    }
    normal = pools["no-incident"]
    traffic = {
        "trigger_rates": {
            **cooccurrence_rates(normal.texts, TRIGGER),
            **cooccurrence_rates(normal.texts, CROSS_TRIGGER),
        },
        "mean_words": float(np.mean([len(t) for t in normal.tokens])),
        "positive_share": {n: float(np.mean([x == "positive" for x in p.labels])) for n, p in pools.items()},
        "mean_confidence": {name: float(np.mean(p.confidence)) for name, p in pools.items()},
    }
    return {
        "config": asdict(config),
        "cpu_seconds": time.process_time() - cpu_began,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch / 1 BLAS thread, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "traffic": traffic,
        "budgets": budgets,
        "seconds": time.perf_counter() - began,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spex-monitor bench detection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one budget, small pools (the CI variant)")
    parser.add_argument("--budgets", type=int, nargs="+", help="inferences per explanation (overrides)")
    parser.add_argument("--cache-dir", type=Path, help="keep explained pools here (never commit it)")
    parser.add_argument("--out", type=Path, help="write results.json, results.md and PNG plots here")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    parser.add_argument("--window", type=int, help="explained requests per window (default 50)")
    parser.add_argument("--horizon", type=int, help="windows after the onset (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = replace(QUICK if args.quick else FULL, seed=args.seed)
    if args.budgets:
        config = replace(config, budgets=tuple(args.budgets))
    if args.window:
        config = replace(config, window=args.window)
    if args.horizon:
        config = replace(config, horizon=args.horizon)
    summary = run(config, args.cache_dir, log=lambda line: print(line, flush=True))
    from .report import markdown

    text = markdown(summary)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(_finite(summary), indent=1) + "\n")
        (args.out / "results.md").write_text(text + "\n")
        if not args.no_plots:
            from .plots import plot_all

            for path in plot_all(summary, args.out):
                print(f"wrote {path}")
    return 0


def _finite(value: object) -> object:
    """Plain JSON: numpy scalars become Python numbers, inf/nan become null."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


if __name__ == "__main__":
    sys.exit(main())
