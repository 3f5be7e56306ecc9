"""Seeded LLM benchmark runs: baselines and windows resampled from pools, every detector's value per window,
and the analysis (calibrated thresholds, false alarms, detection rates, delays, planted-tuple ranks).

A draw takes ``n`` explained requests (with replacement) from a pool's explained ones and folds them into an
:class:`~spex_monitor.monitor.InteractionMap` with their segment keys; the output-level detectors read those
``n`` requests plus ``(observed_per_explained - 1) · n`` more served ones. Each window is compared with its
baseline through :func:`~spex_monitor.monitor.compare_maps` — the sidecar's own code — and through the
output statistics:

* output length / token PSI: :func:`~spex_monitor.monitor.drift.psi` over answer-length bins and over the
  answer tokens (plus an "empty answer" bin);
* log-prob drift: ``|mean_w - mean_b|`` of the served model's mean log-prob per generated token (nats; the
  log of the perplexity ratio);
* embedding drift: the Euclidean distance between the window's and the baseline's mean output embedding
  (the centroid distance embedding monitors such as Arize/Phoenix report).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ..monitor import InteractionMap, compare_maps
from ..monitor.drift import psi
from .calibration import detector_summary, outcome, rank_summary
from .llm_pools import MAX_NEW, LLMPool
from .llm_scenarios import DETECTORS, EMBEDDING, LENGTH, LOGPROB, OURS, TOKENS, LLMBenchConfig, LLMScenario
from .runs import planted_rank


@dataclass
class Draw:
    """A baseline or a window: its interaction map, the served requests its output statistics read, and the
    ablation inferences its explanations cost."""

    map: InteractionMap
    served: np.ndarray
    inferences: int


@dataclass
class LLMWindowRecord:
    """One compared window: cumulative explained requests / inferences since onset, detector values, where
    the planted tuple ranked among the contributors, and the top-3 key tuples."""

    scenario: str
    run: int
    index: int
    explained: int
    inferences: int
    values: dict[str, float]
    planted_rank: int | None
    top: list[list[str]] = field(default_factory=list)


def draw(pool: LLMPool, rng: np.random.Generator, explained: int, observed: int, tag: str) -> Draw:
    """``explained`` explained requests in a map, plus ``observed - explained`` more served requests."""
    m = InteractionMap(seed=int(rng.integers(2**31)))
    index = pool.explained_index
    picks = index[rng.integers(index.size, size=explained)]
    spent = 0
    for i in picks.tolist():
        item = pool.explained[i]
        assert item is not None  # explained_index holds explained requests only
        m.add(item.interactions(), list(item.keys), request_id=f"{tag}-{i}")
        spent += item.inferences
    extra = rng.integers(pool.lengths.size, size=max(observed - explained, 0))
    return Draw(m, np.concatenate([picks, extra]), spent)


def output_values(pool_b: LLMPool, base: Draw, pool_w: LLMPool, window: Draw) -> dict[str, float]:
    """The output-level detectors' values for ``window`` (served from ``pool_w``) against ``base``."""
    b, w = base.served, window.served
    bins = MAX_NEW + 1
    return {
        LENGTH: psi(
            np.bincount(pool_b.lengths[b], minlength=bins), np.bincount(pool_w.lengths[w], minlength=bins)
        ),
        TOKENS: psi(pool_b.token_counts[b].sum(axis=0), pool_w.token_counts[w].sum(axis=0)),
        LOGPROB: abs(float(pool_w.mean_logprob[w].mean() - pool_b.mean_logprob[b].mean())),
        EMBEDDING: float(
            np.linalg.norm(
                pool_w.embeddings[w].mean(axis=0, dtype=np.float64)
                - pool_b.embeddings[b].mean(axis=0, dtype=np.float64)
            )
        ),
    }


def run_windows(
    config: LLMBenchConfig, scenario: LLMScenario, runs: int, base: LLMPool, pool: LLMPool, horizon: int
) -> list[LLMWindowRecord]:
    """``runs`` seeded runs: a baseline from ``base``, then ``horizon`` windows from ``pool``."""
    records = []
    k = config.observed_per_explained
    index = zlib.crc32(scenario.name.encode())
    for run in range(runs):
        rng = np.random.default_rng([config.seed, config.budget, index, run])
        baseline = draw(base, rng, config.baseline_requests, config.baseline_requests * k, "b")
        spent = 0
        for w in range(horizon):
            window = draw(pool, rng, config.window, config.window * k, f"w{w}")
            spent += window.inferences
            report = compare_maps(
                baseline.map,
                window.map,
                config.n_permutations,
                seed=int(rng.integers(2**31)),
                statistic="max",
            )
            values = {OURS: report.p_value, **output_values(base, baseline, pool, window)}
            top = report.top_contributors(50)
            records.append(
                LLMWindowRecord(
                    scenario.name, run, w, config.window * (w + 1), spent, values,
                    planted_rank(top, scenario.planted), [list(c.key) for c in top[:3]],
                )
            )  # fmt: skip
    return records


def calibration_values(config: LLMBenchConfig, base: LLMPool) -> dict[str, list[float]]:
    """No-incident values of the detectors without an exact test, on windows drawn with seeds of their own
    (held out from the evaluation windows), without the permutation test so there can be many."""
    k = config.observed_per_explained
    values: dict[str, list[float]] = {d.name: [] for d in DETECTORS if not d.exact}
    for run in range(config.calibration_runs):
        rng = np.random.default_rng([config.seed, config.budget, zlib.crc32(b"calibration"), run])
        baseline = _served_only(base, rng, config.baseline_requests * k)
        for _ in range(config.horizon):
            window = _served_only(base, rng, config.window * k)
            for name, value in output_values(base, baseline, base, window).items():
                values[name].append(value)
    return values


def _served_only(pool: LLMPool, rng: np.random.Generator, observed: int) -> Draw:
    """Served requests for the output statistics only (explained ones count among them, as in a run)."""
    return Draw(InteractionMap(), rng.integers(pool.lengths.size, size=observed), 0)


def _matrix(records: list[LLMWindowRecord], scenario: str, attr: str, name: str | None = None) -> np.ndarray:
    chosen = [r for r in records if r.scenario == scenario]
    ids = sorted({r.run for r in chosen})
    width = max((r.index for r in chosen), default=-1) + 1
    out = np.full((len(ids), width), np.nan)
    row = {run: i for i, run in enumerate(ids)}
    for r in chosen:
        out[row[r.run], r.index] = r.values[name] if name else getattr(r, attr)
    return out


def analyse(
    config: LLMBenchConfig,
    scenarios: tuple[LLMScenario, ...],
    records: list[LLMWindowRecord],
    calibration: dict[str, list[float]],
) -> dict:
    """Thresholds and false-alarm rates per detector, and per scenario × detector the calibrated and nominal
    outcomes (detection rate within the target, median delays) plus the planted tuple's top-3 share."""
    out: dict = {"detectors": {}, "scenarios": {}}
    for d in DETECTORS:
        null = _matrix(records, "no-incident", "", d.name).ravel()
        held_out = calibration.get(d.name, [])  # no-incident windows (not needed by exact tests)
        _, out["detectors"][d.name] = detector_summary(d, null, held_out, config.false_alarm_rate)
    ours = DETECTORS[0]
    for scenario in scenarios:
        explained = _matrix(records, scenario.name, "explained")
        inferences = _matrix(records, scenario.name, "inferences")
        rows = {}
        for d in DETECTORS:
            values = _matrix(records, scenario.name, "", d.name)
            threshold = out["detectors"][d.name]["threshold"]
            rows[d.name] = {
                "calibrated": asdict(
                    outcome(d.alarms(values, threshold), explained, inferences, config.target_requests)
                ),
                "nominal": asdict(
                    outcome(d.alarms(values, d.nominal), explained, inferences, config.target_requests)
                ),
            }
        entry: dict = {"detectors": rows, "planted": list(scenario.planted), "kind": scenario.kind}
        if scenario.planted:
            entry.update(_ranks(records, scenario, ours.nominal))
        out["scenarios"][scenario.name] = entry
    return out


def _ranks(records: list[LLMWindowRecord], scenario: LLMScenario, threshold: float) -> dict:
    """Where the planted tuple ranked among our contributors in each run's first alarming window."""
    firsts: dict[int, LLMWindowRecord] = {}
    for r in sorted(records, key=lambda r: (r.run, r.index)):
        if r.scenario == scenario.name and r.run not in firsts and r.values[OURS] < threshold:
            firsts[r.run] = r
    ranks = [r.planted_rank for r in firsts.values()]
    every = [r.planted_rank for r in records if r.scenario == scenario.name]
    return rank_summary(ranks, every) | {"top3_examples": [r.top for r in list(firsts.values())[:2]]}
