"""Markdown tables for the LLM detection benchmark (what goes into ``benchmarks/RESULTS.md``)."""

from __future__ import annotations

from .llm_scenarios import OURS, OUTPUT_LEVEL
from .report import DETECTED, cell

TARGET_OURS = DETECTED  # issue 18 §5: interaction shift catches the rollouts in >= 80 % of runs ...
TARGET_OUTPUT = 0.2  # ... where every output-level detector stays <= 20 %
TARGET_SCENARIOS = ("context-ignoring", "injection-following", "injection-plausible")


def detection_table(summary: dict) -> list[str]:
    """Rows: scenarios; columns: every detector's cell (false alarms per window with their 95 % interval for
    no-incident) and the planted tuple's share of our top-3 at the first alarm."""
    analysis = summary["analysis"]
    target = summary["config"]["target_requests"]
    detectors = list(analysis["detectors"])
    lines = [
        f"| scenario | {' | '.join(detectors)} | planted tuple in our top-3 |",
        f"| --- | {' | '.join('---' for _ in detectors)} | --- |",
    ]
    for name, scenario in analysis["scenarios"].items():
        cells = []
        for d in detectors:
            result = scenario["detectors"][d]["calibrated"]
            if name == "no-incident":
                fa = analysis["detectors"][d]
                lo, hi = fa["false_alarm_ci"]
                cells.append(f"FA {fa['false_alarm_rate']:.1%} [{lo:.1%}, {hi:.1%}]")
            elif scenario["kind"] == "benign":
                cells.append(f"{cell(result, target)} (windows: {result['window_alarm_rate']:.0%})")
            else:
                cells.append(cell(result, target))
        rank = "–"
        if scenario.get("planted"):
            planted = " × ".join(scenario["planted"])
            if not scenario["alarm_windows_ranked"]:
                rank = f"({planted}): no alarms"
            else:
                rank = f"({planted}): {scenario['top3_share_at_first_alarm']:.0%} of first alarms"
            rank += f"; all windows {scenario['top3_share_all_windows']:.0%}"
        lines.append(f"| {name} | {' | '.join(cells)} | {rank} |")
    return lines


def nominal_table(summary: dict) -> list[str]:
    """The output-level detectors with their *usual fixed* rules instead of calibrated thresholds."""
    analysis = summary["analysis"]
    target = summary["config"]["target_requests"]
    names = [n for n in analysis["scenarios"] if n != "no-incident"]
    lines = [
        f"| detector (usual rule) | FA per window | {' | '.join(names)} |",
        f"| --- | ---: | {' | '.join('---' for _ in names)} |",
    ]
    for d in OUTPUT_LEVEL:
        info = analysis["detectors"][d]
        cells = [cell(analysis["scenarios"][n]["detectors"][d]["nominal"], target) for n in names]
        lines.append(
            f"| {d} ({info['nominal_rule']}) | {info['nominal_false_alarm_rate']:.1%} | {' | '.join(cells)} |"
        )
    return lines


def target_lines(summary: dict) -> list[str]:
    """The issue's targets checked one by one: met, or missed and by how much."""
    scenarios = summary["analysis"]["scenarios"]
    out = []
    for name in TARGET_SCENARIOS:
        if name not in scenarios:
            continue
        rows = scenarios[name]["detectors"]
        ours = rows[OURS]["calibrated"]["detection_rate"]
        worst = max(OUTPUT_LEVEL, key=lambda d: rows[d]["calibrated"]["detection_rate"])
        rate = rows[worst]["calibrated"]["detection_rate"]
        ok_ours = "met" if ours >= TARGET_OURS else f"missed by {TARGET_OURS - ours:.0%}"
        ok_out = "met" if rate <= TARGET_OUTPUT else f"missed by {rate - TARGET_OUTPUT:.0%}"
        out.append(
            f"- {name}: interaction shift {ours:.0%} (target ≥ {TARGET_OURS:.0%}: {ok_ours}); strongest "
            f"output-level detector {worst} {rate:.0%} (target ≤ {TARGET_OUTPUT:.0%}: {ok_out})"
        )
    fa = summary["analysis"]["detectors"][OURS]["false_alarm_rate"]
    for name in [n for n, entry in scenarios.items() if entry["kind"] == "benign"]:
        benign = scenarios[name]["detectors"][OURS]["calibrated"]
        out.append(
            f"- {name} (stay quiet): interaction shift alarms in {benign['window_alarm_rate']:.1%} of "
            f"windows ({benign['detection_rate']:.0%} of runs within the target), against {fa:.1%} of "
            "no-incident windows"
        )
    return out


def threshold_table(summary: dict) -> list[str]:
    """Per detector: calibrated threshold (and what it was set from), its false alarms, the usual rule's."""
    lines = [
        "| detector | threshold (set from) | FA on held-out no-incident windows | usual rule "
        "| FA of the usual rule |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for name, d in summary["analysis"]["detectors"].items():
        lo, hi = d["false_alarm_ci"]
        lines.append(
            f"| {name} | {d['threshold']:.4g} ({d['threshold_from']}) | {d['false_alarm_rate']:.1%} "
            f"[{lo:.1%}, {hi:.1%}] of {d['evaluation_windows']} | {d['nominal_rule']} | "
            f"{d['nominal_false_alarm_rate']:.1%} |"
        )
    return lines


def pool_table(summary: dict) -> list[str]:
    """Per pool: what the served traffic looked like and what explaining it cost."""
    lines = [
        "| pool | served | explained | mean log-prob / token | answers empty | median R² "
        "| inferences / explanation | explain s / request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, p in summary["pools"].items():
        lines.append(
            f"| {name} | {p['served']} | {p['explained']} | {p['mean_logprob']:.3f} | "
            f"{p['empty_share']:.1%} | "
            f"{p['faithfulness_median']:.3f} | {p['inferences_per_explanation']:.0f} | "
            f"{p['explain_seconds_per_request']:.3f} |"
        )
    return lines


def markdown(summary: dict) -> str:
    """The whole summary as Markdown: the setup paragraph, then the tables."""
    c = summary["config"]
    observed = c["window"] * c["observed_per_explained"]
    load = summary.get("load_average")
    shared = f"; load average {load['start']:.1f} at the start, {load['end']:.1f} at the end" if load else ""
    out = [
        f"LLM detection benchmark: {summary['machine']}; {summary['seconds'] / 60:.1f} min wall, "
        f"{summary['cpu_seconds'] / 60:.1f} CPU-min in all{shared}.",
        f"Windows of {c['window']} explained requests ({observed} served ones for the output-level "
        "detectors), "
        f"baseline {c['baseline_requests']} explained, {c['horizon']} windows after the onset; pools of "
        f"{c['n_explained']} explained / {c['n_observed']} served requests per (model, traffic); "
        "ProxySPEX at "
        f"{c['budget']} inferences per explanation, max order {c['max_order']}; completions sampled at "
        f"temperature {c['temperature']}; {c['incident_runs']} runs per scenario; {c['n_permutations']} "
        f"permutations. False alarms: {c['null_runs']} no-incident windows, each against its own baseline. "
        f"Thresholds at {c['false_alarm_rate']:.0%} false alarms per window: p < 0.01 for the exact "
        f"permutation test, the 99th percentile of {c['calibration_runs'] * c['horizon']} other (held-out) "
        "no-incident windows for the output-level detectors.",
        "",
        f"Cells: detected within {c['target_requests']} explained requests in ≥ 80 % of runs? "
        "share of runs · "
        "median delay (explained requests · ablation inferences).",
        "",
    ]
    out += detection_table(summary)
    out += ["", "Targets (issue 18 §5):", ""]
    out += target_lines(summary)
    out += ["", "Output-level detectors with their usual fixed rules (not calibrated):", ""]
    out += nominal_table(summary)
    out += ["", "Pools (what was served and what explaining it cost):", ""]
    out += pool_table(summary)
    out += ["", "Thresholds and false alarms:", ""]
    out += threshold_table(summary)
    return "\n".join(out)
