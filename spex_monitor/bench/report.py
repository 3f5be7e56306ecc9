"""Markdown tables for the detection benchmark's summary (what goes into ``benchmarks/RESULTS.md``)."""

from __future__ import annotations

import math

DETECTED = 0.8  # a detector "detects" a scenario when ≥ 80 % of runs alarm within the target


def _num(x: float | None) -> float:
    return math.inf if x is None else float(x)  # results.json stores inf as null


def _k(x: float | None) -> str:
    x = _num(x)
    if not math.isfinite(x):
        return "–"
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def cell(result: dict, target: int) -> str:
    """``yes 95 % · 50 req · 6.1k inf`` (detection rate within target, median delays) or ``no 10 %``."""
    rate = result["detection_rate"]
    verdict = "**yes**" if rate >= DETECTED else "no"
    text = f"{verdict} {rate:.0%}"
    if _num(result["median_delay_requests"]) <= target:
        text += f" · {_k(result['median_delay_requests'])} req · {_k(result['median_delay_inferences'])} inf"
    return text


def detection_table(summary: dict, budget_summary: dict) -> list[str]:
    """Markdown table rows for one budget: every detector's cell per scenario (false alarms with their
    confidence interval for no-incident) and where the planted tuple ranked among our top contributors.
    """
    config = summary["config"]
    target = config["target_requests"]
    detectors = list(budget_summary["detectors"])
    lines = [
        f"| scenario | {' | '.join(detectors)} | planted tuple in our top-3 |",
        f"| --- | {' | '.join('---' for _ in detectors)} | --- |",
    ]
    for name, scenario in budget_summary["scenarios"].items():
        cells = []
        for d in detectors:
            result = scenario["detectors"][d]["calibrated"]
            if name == "no-incident":
                fa = budget_summary["detectors"][d]
                lo, hi = fa["false_alarm_ci"]
                cells.append(f"FA {fa['false_alarm_rate']:.1%} per window [{lo:.1%}, {hi:.1%}]")
            elif name == "benign-drift":
                cells.append(f"{cell(result, target)} (windows: {result['window_alarm_rate']:.0%})")
            else:
                cells.append(cell(result, target))
        rank = "–"
        if scenario.get("planted"):
            share = scenario["top3_share_at_first_alarm"]
            median = scenario["median_rank_at_first_alarm"]
            rank = (
                f"{share:.0%} of first alarms (median rank {median:g})"
                if scenario["alarm_windows_ranked"] and median is not None
                else "no alarms"
                if not scenario["alarm_windows_ranked"]
                else f"{share:.0%}"
            )
            rank += f"; all windows {scenario['top3_share_all_windows']:.0%}"
        lines.append(f"| {name} | {' | '.join(cells)} | {rank} |")
    return lines


def tradeoff_table(summary: dict, detector: str) -> list[str]:
    """Markdown table rows, one per budget, for ``detector``: inferences per explanation, median faithfulness
    (R²), explain seconds per request, false alarms per window and its cell per incident scenario.
    """
    names = [n for n in summary["budgets"][0]["scenarios"] if n != "no-incident"]
    lines = [
        "| budget | inferences / explanation | median R² | explain s / request | FA per window | "
        + " | ".join(names)
        + " |",
        "| ---: | ---: | ---: | ---: | ---: | " + " | ".join("---" for _ in names) + " |",
    ]
    target = summary["config"]["target_requests"]
    for b in summary["budgets"]:
        timing = b["timing"]
        per_request = timing["pool_seconds"] / max(timing["explanations"], 1)
        cells = [timing["inferences_per_explanation"], timing["faithfulness_median"], per_request]
        fa = b["detectors"][detector]["false_alarm_rate"]
        results = [cell(b["scenarios"][n]["detectors"][detector]["calibrated"], target) for n in names]
        lines.append(
            f"| {b['budget']} | {cells[0]:.0f} | {cells[1]:.3f} | {cells[2]:.3f} | {fa:.1%} | "
            + " | ".join(results)
            + " |"
        )
    return lines


def threshold_table(summary: dict) -> list[str]:
    """Markdown table rows per budget and detector: the calibrated threshold and what it was set from, its
    false-alarm rate (with confidence interval) and that of the usual rule.
    """
    lines = [
        "| budget | detector | threshold (set from) | FA on no-incident windows | usual rule "
        "| FA of the usual rule |",
        "| ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for b in summary["budgets"]:
        for name, d in b["detectors"].items():
            lo, hi = d["false_alarm_ci"]
            lines.append(
                f"| {b['budget']} | {name} | {d['threshold']:.4g} ({d['threshold_from']}) | "
                f"{d['false_alarm_rate']:.1%} [{lo:.1%}, {hi:.1%}] of {d['evaluation_windows']} | "
                f"{d['nominal_rule']} | {d['nominal_false_alarm_rate']:.1%} |"
            )
    return lines


def markdown(summary: dict) -> str:
    """The whole summary as Markdown: the setup paragraphs, then every table."""
    config = summary["config"]
    traffic = summary["traffic"]
    rates = ", ".join(f"{k} {v:.1%}" for k, v in traffic["trigger_rates"].items())
    shares = ", ".join(
        f"{k} {v:.1%} (mean confidence {traffic['mean_confidence'][k]:.3f})"
        for k, v in traffic["positive_share"].items()
    )
    observed = config["window"] * config["observed_per_explained"]
    out = [
        f"Detection benchmark: {summary['machine']}; {summary['seconds'] / 60:.1f} min wall, "
        f"{summary.get('cpu_seconds', float('nan')) / 60:.1f} CPU-min in all.",
        f"Windows of {config['window']} explained requests ({observed} observed), baseline "
        f"{config['baseline_requests']} explained, {config['horizon']} windows after the onset; pools of "
        f"{config['n_explained']} explained / {config['n_observed']} observed requests; "
        f"{config['incident_runs']} runs per scenario; {config['n_permutations']} permutations. False "
        f"alarms: {config['null_runs']} no-incident windows, each against its own baseline. Thresholds at "
        f"{config['false_alarm_rate']:.0%} false alarms per window: p < 0.01 for the (exact) permutation "
        f"tests, the 99th percentile of {config['calibration_runs'] * config['horizon']} other no-incident "
        "windows for NDCG and PSI.",
        f"Traffic: {traffic['mean_words']:.1f} words per request; trigger words present: {rates}; "
        f"predicted positive share per scenario (after the onset): {shares}.",
        "",
        "Cells: detected within "
        f"{config['target_requests']} explained requests in ≥ {DETECTED:.0%} of runs? share of runs · "
        "median delay (explained requests · ablation inferences).",
    ]
    for b in summary["budgets"]:
        out += ["", f"#### Budget {b['budget']} inferences per explanation", ""]
        out += detection_table(summary, b)
    out += ["", "#### Budget trade-off (interaction shift)", ""]
    out += tradeoff_table(summary, "interaction shift")
    if any("interaction shift (v1 Euclidean)" in b["detectors"] for b in summary["budgets"]):
        out += ["", "#### Budget trade-off (v1 Euclidean statistic, before this issue)", ""]
        out += tradeoff_table(summary, "interaction shift (v1 Euclidean)")
    out += ["", "#### Thresholds and false alarms", ""]
    out += threshold_table(summary)
    return "\n".join(out)
