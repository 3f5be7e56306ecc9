"""Thresholds calibrated to a false-alarm rate on no-incident windows, and detection outcomes per run.

Every detector is reduced to one number per window and a direction (PSI alarms when *high*, a p-value or
an NDCG when *low*). A calibrated threshold is the most sensitive one whose alarm rate on the calibration
windows is at most the target; it is then *evaluated* on other no-incident windows, so the false-alarm
rate we report is not the one we tuned on. An exact test (a permutation p-value) needs no calibration:
``p < α`` alarms on at most a fraction ``α`` of no-incident windows by construction, which the evaluation
windows then check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detector:
    """A monitor signal: its name, whether low values alarm, and its usual fixed threshold."""

    name: str
    low_alarms: bool
    nominal: float
    nominal_rule: str
    exact: bool = False  # an exact test: its nominal threshold *is* the false-alarm rate (no calibration)

    def alarms(self, values: np.ndarray | float, threshold: float) -> np.ndarray:
        """Strict comparison: ``value < threshold`` (low alarms) or ``value > threshold``."""
        values = np.asarray(values, dtype=np.float64)
        return values < threshold if self.low_alarms else values > threshold


def calibrate(detector: Detector, null_values: Sequence[float], rate: float) -> float:
    """Most sensitive threshold with at most ``floor(rate · n)`` alarms among ``null_values``."""
    values = np.sort(np.asarray(null_values, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no null windows to calibrate on")
    allowed = math.floor(rate * values.size + 1e-9)
    if detector.low_alarms:
        return float(values[allowed])  # alarms: the `allowed` values strictly below it (ties excluded)
    return float(values[values.size - 1 - allowed])


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate (what a false-alarm estimate is worth)."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Outcome:
    """How one detector did on one scenario's runs (windows after the incident onset)."""

    detection_rate: float  # share of runs with an alarm within the target number of explained requests
    window_alarm_rate: float  # share of post-onset windows that alarm
    median_delay_requests: float  # explained requests from onset to the first alarm (inf: none in horizon)
    median_delay_inferences: float  # ablation inferences spent on them
    runs: int


def outcome(
    alarms: np.ndarray, explained: np.ndarray, inferences: np.ndarray, target_requests: int
) -> Outcome:
    """``alarms``, ``explained``, ``inferences``: ``(runs, windows)``; the last two cumulative since onset."""
    alarms = np.asarray(alarms, dtype=bool)
    runs = alarms.shape[0]
    first = np.where(alarms.any(axis=1), alarms.argmax(axis=1), -1)
    delays = np.array([explained[r, f] if f >= 0 else np.inf for r, f in enumerate(first)], dtype=float)
    costs = np.array([inferences[r, f] if f >= 0 else np.inf for r, f in enumerate(first)], dtype=float)
    return Outcome(
        detection_rate=float(np.mean(delays <= target_requests)) if runs else 0.0,
        window_alarm_rate=float(alarms.mean()) if alarms.size else 0.0,
        median_delay_requests=float(np.median(delays)) if runs else math.inf,
        median_delay_inferences=float(np.median(costs)) if runs else math.inf,
        runs=runs,
    )


def detector_summary(
    detector: Detector, null: np.ndarray, calibration: Sequence[float], rate: float
) -> tuple[float, dict]:
    """A detector's threshold and its held-out false-alarm record: the exact test's own nominal level, or
    the ``rate`` quantile of ``calibration`` (no-incident windows); then how often it alarms on ``null``
    (other no-incident windows, any shape), with a Wilson interval. Returns ``(threshold, summary)``."""
    if detector.exact:
        threshold, how = detector.nominal, "exact test"
    else:
        threshold = calibrate(detector, calibration, rate)
        how = f"{rate * 100:g} % of {len(calibration)} windows"
    null = np.asarray(null).ravel()
    alarms = int(detector.alarms(null, threshold).sum())
    return threshold, {
        "threshold": threshold,
        "threshold_from": how,
        "false_alarm_rate": alarms / null.size,
        "false_alarm_ci": wilson(alarms, null.size),
        "evaluation_windows": int(null.size),
        "nominal_rule": detector.nominal_rule,
        "nominal_false_alarm_rate": float(detector.alarms(null, detector.nominal).mean()),
    }


def rank_summary(at_first_alarm: Sequence[int | None], every_window: Sequence[int | None]) -> dict:
    """Where the planted tuple ranked among a detector's contributors: in each run's first alarming window
    (``at_first_alarm``) and in every window of the scenario (``every_window``); ``None`` = not ranked."""

    def top3(ranks: Sequence[int | None]) -> float:
        return float(np.mean([r is not None and r <= 3 for r in ranks])) if ranks else float("nan")

    found = [r for r in at_first_alarm if r is not None]
    return {
        "alarm_windows_ranked": len(at_first_alarm),
        "median_rank_at_first_alarm": float(np.median(found)) if found else None,
        "top3_share_at_first_alarm": top3(at_first_alarm),
        "top3_share_all_windows": top3(every_window),
    }
