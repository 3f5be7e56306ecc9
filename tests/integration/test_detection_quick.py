"""`spex-monitor bench detection --quick`: the detection benchmark's headline results hold on a small run.

One budget (250 inferences), pools of 100 explained requests, thresholds calibrated to 1 % false alarms
per window on no-incident runs. The assertions are the benchmark's claims, measured in this run:
interaction shift catches the silent model swap within 200 explained requests and names negation;
input drift does not see incidents that change only the model, and fires on a benign topic shift that
the interaction alarm stays quiet on; the confidence-preserving swap hides from output drift but not from
interaction shift; the trained backdoor runs (its poisoned fine-tune moves the whole output distribution,
which output drift sees) and, calibrated, keeps the base model's label shares (the test bed for a
request-local statistic: none of these detectors catches it). (Full run and discussion:
benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import pytest

from spex_monitor.bench.detection import run
from spex_monitor.bench.report import markdown
from spex_monitor.bench.scenarios import DECISIVE, ONE_ALARM, OURS, QUICK
from spex_monitor.cli import build_parser

# The module fixture builds every scenario's pool of explanations from a cold cache (about 5 CPU-min with
# the trained-variant scenarios): above the suite's 600 s per-test limit on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def summary() -> dict:
    return run(QUICK, log=lambda _: None)


def _calibrated(result: dict, scenario: str, detector: str) -> dict:
    return result["scenarios"][scenario]["detectors"][detector]["calibrated"]


def test_false_alarms_are_held_at_the_calibrated_rate(summary):
    budget = summary["budgets"][0]
    ours = budget["detectors"][OURS]
    # 1 % target on 120 held-out windows: allow the binomial noise of that estimate.
    assert ours["evaluation_windows"] >= 100
    assert ours["false_alarm_rate"] <= 0.04, ours


def test_model_swap_is_caught_and_traced_to_negation(summary):
    budget = summary["budgets"][0]
    swap = _calibrated(budget, "model-swap", OURS)
    assert swap["detection_rate"] >= 0.8, swap
    assert swap["median_delay_requests"] <= QUICK.target_requests
    assert budget["scenarios"]["model-swap"]["top3_share_at_first_alarm"] >= 0.8


def test_input_drift_misses_model_incidents_and_fires_on_benign_drift(summary):
    budget = summary["budgets"][0]
    incidents = ("model-swap", "backdoor", "backdoor-trained", "backdoor-calibrated", "calibrated-swap")
    for scenario in (*incidents, "preprocessing"):
        assert _calibrated(budget, scenario, "input drift PSI")["detection_rate"] <= 0.35, scenario
    assert _calibrated(budget, "benign-drift", "input drift PSI")["detection_rate"] >= 0.8


def test_interaction_alarm_stays_quiet_on_benign_topic_drift(summary):
    benign = _calibrated(summary["budgets"][0], "benign-drift", OURS)
    assert benign["window_alarm_rate"] <= 0.1, benign


def test_the_decisive_test_and_the_one_alarm_keep_the_false_alarm_rate_and_quiet_on_benign_drift(summary):
    # issue 21 §1: the decisive-interaction test and the alarm that combines it with the shift test
    budget = summary["budgets"][0]
    for detector in (DECISIVE, ONE_ALARM):
        assert budget["detectors"][detector]["false_alarm_rate"] <= 0.04, detector
        assert _calibrated(budget, "benign-drift", detector)["window_alarm_rate"] <= 0.1, detector
    assert _calibrated(budget, "model-swap", ONE_ALARM)["detection_rate"] >= 0.8


def test_report_renders_and_the_cli_reaches_the_benchmark(summary):
    text = markdown(summary)
    assert "| model-swap |" in text and "Thresholds and false alarms" in text
    args = build_parser().parse_args(["bench", "detection", "--quick", "--no-plots"])
    assert args.func.__name__ == "_bench" and args.quick and args.no_plots


def test_calibrated_swap_hides_from_output_drift_but_not_from_interaction_shift(summary):
    budget = summary["budgets"][0]
    # the same weights uncalibrated (model-swap) are caught by output confidence PSI in every run
    assert _calibrated(budget, "model-swap", "output confidence PSI")["detection_rate"] >= 0.8
    for detector in ("output label PSI", "output confidence PSI"):
        assert _calibrated(budget, "calibrated-swap", detector)["detection_rate"] <= 0.35, detector
    caught = _calibrated(budget, "calibrated-swap", OURS)
    assert caught["detection_rate"] >= 0.8 and caught["median_delay_requests"] <= QUICK.target_requests
    assert budget["scenarios"]["calibrated-swap"]["top3_share_at_first_alarm"] >= 0.8  # names negation


def test_trained_backdoor_runs_and_its_fine_tune_shows_in_output_drift(summary):
    budget = summary["budgets"][0]
    scenario = budget["scenarios"]["backdoor-trained"]
    assert scenario["planted"] == ["music", "love"]
    assert summary["traffic"]["trigger_rates"]["music+love"] >= 0.03  # the trigger fires in normal traffic
    # the poisoned fine-tune pushes far more than the triggered requests to "positive" (4.9 % trigger)
    shares = summary["traffic"]["positive_share"]
    assert shares["backdoor-trained"] - shares["no-incident"] >= 0.1, shares
    assert _calibrated(budget, "backdoor-trained", "output label PSI")["detection_rate"] >= 0.8
    assert {"alarm_windows_ranked", "top3_share_all_windows"} <= set(scenario)


def test_calibrated_backdoor_keeps_output_labels_and_first_order_attributions(summary):
    budget = summary["budgets"][0]
    assert budget["scenarios"]["backdoor-calibrated"]["planted"] == ["music", "love"]
    shares = summary["traffic"]["positive_share"]
    assert abs(shares["backdoor-calibrated"] - shares["no-incident"]) <= 0.02, shares
    for detector in ("output label PSI", "first-order NDCG", "input drift PSI"):
        assert _calibrated(budget, "backdoor-calibrated", detector)["detection_rate"] <= 0.35, detector
