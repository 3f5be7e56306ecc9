"""``spex-monitor bench detection --llm --quick``: the LLM benchmark's headline claims hold on a small run.

Pools of 150 explained / 1,000 served requests per (model, traffic), 15 runs per scenario, thresholds at 1 %
false alarms per window. The assertions are the claims of benchmarks/RESULTS.md ("Detection power on LLM
incidents"), measured in this run: interaction shift catches both rollouts within 200 explained requests and
names the planted segments; it stays near its false-alarm rate on the benign topic drift and the benign
precision rollout; the output length and token monitors miss the context-ignoring rollout.
"""

from __future__ import annotations

import pytest

from spex_monitor.bench.llm_detection import run
from spex_monitor.bench.llm_scenarios import LENGTH, OURS, QUICK, TOKENS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis() -> dict:
    return run(QUICK, log=lambda _: None)["analysis"]


def _rate(analysis: dict, scenario: str, detector: str) -> float:
    return analysis["scenarios"][scenario]["detectors"][detector]["calibrated"]["detection_rate"]


def test_false_alarms_are_held_at_the_calibrated_rate(analysis):
    for name, detector in analysis["detectors"].items():
        # 1 % target on 150 held-out windows: allow the binomial noise of that estimate
        assert detector["false_alarm_rate"] <= 0.04, (name, detector)


@pytest.mark.parametrize("scenario", ["context-ignoring", "injection-following"])
def test_rollouts_are_caught_and_traced_to_the_planted_segments(analysis, scenario):
    assert _rate(analysis, scenario, OURS) >= 0.8
    assert analysis["scenarios"][scenario]["top3_share_at_first_alarm"] >= 0.8


def test_output_length_and_tokens_miss_the_context_ignoring_rollout(analysis):
    assert _rate(analysis, "context-ignoring", LENGTH) <= 0.2
    assert _rate(analysis, "context-ignoring", TOKENS) <= 0.4


@pytest.mark.parametrize("scenario", ["benign-drift", "benign-rollout"])
def test_interaction_shift_stays_quiet_on_benign_changes(analysis, scenario):
    result = analysis["scenarios"][scenario]["detectors"][OURS]["calibrated"]
    assert result["window_alarm_rate"] <= 0.1, result
