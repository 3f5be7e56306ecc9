"""PNG plots of the detection benchmark's summary (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scenarios import OURS, OURS_V1

INCIDENTS = ("model-swap", "backdoor", "backdoor-cross", "preprocessing")


def plot_all(summary: dict, out: Path) -> list[Path]:
    """Write the trade-off and power plots of ``summary`` as PNG files into the existing folder ``out``.

    Returns the paths written. Needs matplotlib (the ``bench`` extra); draws with the Agg backend.
    """
    import matplotlib

    matplotlib.use("Agg")
    return [_tradeoff(summary, out / "detection_tradeoff.png"), _power(summary, out / "detection_power.png")]


def _tradeoff(summary: dict, path: Path) -> Path:
    """Budget per explanation vs detection within the target, and the ablation inferences it took."""
    import matplotlib.pyplot as plt

    budgets = [b["budget"] for b in summary["budgets"]]
    target = summary["config"]["target_requests"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip((*INCIDENTS, "benign-drift"), ("C0", "C3", "C1", "C2", "C7"), strict=True))
    for name, colour in colours.items():
        for detector, style in ((OURS, "-o"), (OURS_V1, "--x")):
            if detector not in summary["budgets"][0]["detectors"]:
                continue
            rates = [
                b["scenarios"][name]["detectors"][detector]["calibrated"]["detection_rate"]
                for b in summary["budgets"]
            ]
            label = f"{name} ({'max' if detector == OURS else 'v1'})"
            left.plot(budgets, rates, style, color=colour, label=label)
            if detector == OURS and name != "benign-drift":
                cost = [
                    b["scenarios"][name]["detectors"][detector]["calibrated"]["median_delay_inferences"]
                    for b in summary["budgets"]
                ]
                cost = [np.nan if c is None or not np.isfinite(c) else c for c in cost]
                right.plot(budgets, cost, style, color=colour, label=name)
    left.axhline(0.8, color="k", lw=0.6, ls="--", label="target: 80 % of runs")
    fa = [b["detectors"][OURS]["false_alarm_rate"] for b in summary["budgets"]]
    left.plot(budgets, fa, ":", color="k", label="false alarms per window (no incident)")
    left.set(
        xscale="log",
        xlabel="ablation inferences per explanation (budget)",
        ylim=(-0.03, 1.03),
        ylabel=f"runs alarmed within {target} explained requests",
        title="Interaction shift: detection vs explanation budget",
    )
    left.set_xticks(budgets, [str(b) for b in budgets])
    left.legend(fontsize=7)
    right.set(
        xscale="log",
        yscale="log",
        xlabel="ablation inferences per explanation (budget)",
        ylabel="median ablation inferences to first alarm",
        title="Cost of a detection (no point: not detected)",
    )
    right.set_xticks(budgets, [str(b) for b in budgets])
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _power(summary: dict, path: Path) -> Path:
    """Per-window alarm rate of every detector per scenario (calibrated thresholds), one panel per budget."""
    import matplotlib.pyplot as plt

    budgets = summary["budgets"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.2), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], budgets, strict=True):
        scenarios = list(b["scenarios"])
        detectors = list(b["detectors"])
        width = 0.8 / len(detectors)
        x = np.arange(len(scenarios))
        for i, d in enumerate(detectors):
            rates = [b["scenarios"][s]["detectors"][d]["calibrated"]["window_alarm_rate"] for s in scenarios]
            ax.bar(x + (i - (len(detectors) - 1) / 2) * width, rates, width, label=d)
        ax.axhline(summary["config"]["false_alarm_rate"], color="k", lw=0.8, ls=":")
        ax.set_xticks(x, scenarios, rotation=20, fontsize=8)
        ax.set_title(f"budget {b['budget']}: alarm rate per window")
    axes[0][0].set_ylabel("share of windows that alarm (thresholds at 1 % FA)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
