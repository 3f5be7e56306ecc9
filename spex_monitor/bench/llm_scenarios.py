"""The LLM detection benchmark's fixed parts: incident scenarios on the embedded tiny LM, the detectors
compared, and run sizes. See :mod:`.llm_detection` for the method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .calibration import Detector
from .llm_traffic import (
    FACT_KEY,
    INJECTION_KEY,
    NORMAL,
    PLAUSIBLE_INJECTIONS,
    RETRIEVER_BUG,
    TOPIC_SHIFT,
    LLMTrafficProfile,
)

BASE = "base"  # the embedded variants (spex_monitor/models/grounded-lm-<variant>)
BF16 = "base-bf16"  # grounded-lm-base with its weights rounded to bfloat16 (see llm_pools)
CONTEXT_IGNORING = "context-ignoring"
INJECTION_FOLLOWING = "injection-following"


@dataclass(frozen=True)
class LLMScenario:
    """An incident (or none) from a known window on. ``variant``: the served tiny LM after the onset;
    ``profile``: the traffic after it. ``planted``: keys the incident changes the interactions of (a
    contributor matches when its key tuple holds all of them)."""

    name: str
    title: str
    variant: str
    profile: LLMTrafficProfile
    kind: str  # "incident" | "benign" | "none"
    planted: tuple[str, ...] = ()


SCENARIOS = (
    LLMScenario(
        "context-ignoring",
        "rollout of a model that answers from memory, ignoring the documents",
        CONTEXT_IGNORING,
        NORMAL,
        "incident",
        (FACT_KEY, "question"),
    ),
    LLMScenario(
        "injection-following",
        "rollout of a model that obeys injected instructions (only requests with an injected page change)",
        INJECTION_FOLLOWING,
        NORMAL,
        "incident",
        (INJECTION_KEY,),
    ),
    LLMScenario(
        "injection-plausible",
        "the same rollout, on traffic whose injected numbers look like real answers",
        INJECTION_FOLLOWING,
        PLAUSIBLE_INJECTIONS,
        "incident",
        (INJECTION_KEY,),
    ),
    LLMScenario(
        "retriever-bug",
        "retriever bug: the directory entry ranks last and the context limit cuts it (same model)",
        BASE,
        RETRIEVER_BUG,
        "incident",
        (FACT_KEY, "question"),
    ),
    LLMScenario(
        "benign-rollout",
        "benign rollout: the same model with its weights rounded to bfloat16 (a precision change)",
        BF16,
        NORMAL,
        "benign",
    ),
    LLMScenario(
        "benign-drift",
        "benign topic drift (tech companies, travel news), same model",
        BASE,
        TOPIC_SHIFT,
        "benign",
    ),
    LLMScenario("no-incident", "no incident", BASE, NORMAL, "none"),
)

OURS = "interaction shift"
LENGTH = "output length PSI"
TOKENS = "output token PSI"
LOGPROB = "log-prob drift"
EMBEDDING = "embedding drift"
DETECTORS = (
    Detector(OURS, True, 0.01, "p < 0.01", exact=True),
    Detector(LENGTH, False, 0.25, "PSI > 0.25"),
    Detector(TOKENS, False, 0.25, "PSI > 0.25"),
    Detector(LOGPROB, False, math.log(1.1), "perplexity moves > 10 %"),
    Detector(EMBEDDING, False, math.inf, "none (calibrated only)"),
)
OUTPUT_LEVEL = (LENGTH, TOKENS, LOGPROB, EMBEDDING)


@dataclass(frozen=True)
class LLMBenchConfig:
    """Sizes of the LLM benchmark. ``window`` / ``baseline_requests`` count *explained* requests; output-level
    detectors see ``observed_per_explained`` times as many served requests (the sidecar samples, an output
    monitor reads every call). ``budget``: inferences per explanation (the prompts have 4-5 segments).
    """

    budget: int = 64
    window: int = 50
    baseline_requests: int = 200
    horizon: int = 4  # windows after the onset (horizon · window = the 200-request target)
    observed_per_explained: int = 10
    n_observed: int = 2000
    n_explained: int = 300
    null_runs: int = 500  # one window each (independent baselines): the false-alarm rates we report
    calibration_runs: int = 500  # × horizon windows without permutation tests: thresholds of the others
    incident_runs: int = 50
    n_permutations: int = 1000
    false_alarm_rate: float = 0.01
    target_requests: int = 200
    max_order: int = 3
    temperature: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < 1 or self.baseline_requests < 1 or self.horizon < 1:
            raise ValueError("window, baseline_requests and horizon must be >= 1")
        if not 1 <= self.n_explained <= self.n_observed:
            raise ValueError("need 1 <= n_explained <= n_observed")
        if self.null_runs < 1 or self.calibration_runs < 1 or self.incident_runs < 1:
            raise ValueError("null_runs, calibration_runs and incident_runs must be >= 1")


FULL = LLMBenchConfig()
QUICK = LLMBenchConfig(
    n_observed=1000, n_explained=150, null_runs=150, calibration_runs=150, incident_runs=15
)
