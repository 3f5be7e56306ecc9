"""The detection benchmark's definitions: incident scenarios, the detectors compared, and run sizes.

See :mod:`.detection` for the method; these are the fixed parts every run, analysis and plot refers to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .calibration import Detector
from .traffic import NORMAL, TOPIC_SHIFT, TrafficProfile
from .variants import (
    BASE,
    BROKEN_NEGATION,
    TRAINED_TRIGGER,
    Variant,
    backdoor,
    calibrated_backdoor,
    calibrated_swap,
    dropped_words,
    trained_backdoor,
)

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
        "backdoor-trained",
        "trained backdoor: base fine-tuned on poisoned data (music + love)",
        trained_backdoor(),
        NORMAL,
        "incident",
        TRAINED_TRIGGER,
    ),
    Scenario(
        "backdoor-calibrated",
        "stealthy trained backdoor: the same, quantile-calibrated onto the base",
        calibrated_backdoor(),
        NORMAL,
        "incident",
        TRAINED_TRIGGER,
    ),
    Scenario(
        "calibrated-swap",
        "confidence-preserving swap: broken negation, quantile-calibrated onto the base",
        calibrated_swap(),
        NORMAL,
        "incident",
        ("not",),
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
DECISIVE = "decisive interactions"  # issue 21 §1: Fisher per tuple, Holm over tuples
ONE_ALARM = "one alarm (shift + decisive)"  # what the sidecar alarms on: Bonferroni over the two
DETECTORS = (
    Detector(OURS, True, 0.01, "p < 0.01", exact=True),
    Detector(OURS_V1, True, 0.01, "p < 0.01", exact=True),
    Detector("first-order NDCG", True, 0.90, "NDCG < 0.90 (Clarify)"),
    Detector("input drift PSI", False, 0.25, "PSI > 0.25"),
    Detector("output label PSI", False, 0.25, "PSI > 0.25"),
    Detector("output confidence PSI", False, 0.25, "PSI > 0.25"),
    Detector(DECISIVE, True, 0.01, "Holm p < 0.01", exact=True),
    Detector(ONE_ALARM, True, 0.01, "p < 0.01", exact=True),
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
    only: tuple[str, ...] = ()  # scenario names to run (no-incident is always run); empty: all


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


def selected(config: BenchConfig) -> tuple[Scenario, ...]:
    """The scenarios a run covers: ``config.only`` plus no-incident (every run calibrates on it), or all.

    Raises:
        ValueError: a name that is no scenario.
    """
    if not config.only:
        return SCENARIOS
    names = {s.name for s in SCENARIOS}
    unknown = sorted(set(config.only) - names)
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {sorted(names)}")
    wanted = {*config.only, "no-incident"}
    return tuple(s for s in SCENARIOS if s.name in wanted)
