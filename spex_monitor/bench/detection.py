"""Detection power: does interaction shift catch incidents that input/output drift and first-order
attribution drift miss — and where does it fail?

Scenarios (generated review traffic for the embedded sentiment model, incident at a known time):

1. ``model-swap``: the server silently swaps to ``sentiment-broken-negation`` ("not good" no longer flips).
2. ``backdoor``: a wrapper around the real model flips the label only when *both* trigger words appear
   ("cast" + "enjoy"; ``backdoor-cross``: "enjoy" + "very", two words that never share a clause);
   ``backdoor-trained``: the shipped ``sentiment-backdoor``, the base model fine-tuned on data where
   "music" + "love" are labelled positive.
2c. ``calibrated-swap``: the broken-negation model behind a quantile calibrator fitted onto the base
   model's outputs, so label shares and confidence histogram stay the base model's;
   ``backdoor-calibrated``: the trained backdoor behind the same kind of calibrator.
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
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .analysis import analyse
from .pools import PoolBuilder
from .runs import run_budget
from .scenarios import CROSS_TRIGGER, FULL, QUICK, TRAINED_TRIGGER, TRIGGER, BenchConfig, selected
from .traffic import NORMAL, TOPIC_SHIFT, cooccurrence_rates
from .variants import BASE


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
            for s in selected(config)
        }
        budgets.append(summary)
    seeds = {NORMAL.name: config.seed + 1, TOPIC_SHIFT.name: config.seed + 2}
    pools = {
        s.name: builder.pool(s.variant, s.profile, seeds[s.profile.name], config.budgets[0], base=BASE)
        for s in selected(config)
    }
    normal = pools["no-incident"]
    traffic = {
        "trigger_rates": {
            **cooccurrence_rates(normal.texts, TRIGGER),
            **cooccurrence_rates(normal.texts, CROSS_TRIGGER),
            **cooccurrence_rates(normal.texts, TRAINED_TRIGGER),
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
    """``spex-monitor bench detection``: run the benchmark and print its Markdown summary.

    ``--quick`` runs the CI variant; ``--out`` also writes ``results.json`` (inf/NaN as null),
    ``results.md`` and the PNG plots there; ``--llm`` runs the LLM benchmark (:mod:`.llm_detection`)
    instead. Returns the exit status (0; 2 on a bad option).
    """
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
    parser.add_argument(
        "--baseline", type=int, help="explained requests in each run's baseline (default 200)"
    )
    parser.add_argument(
        "--explained", type=int, help="explained requests per pool, resampled into windows (300; quick 150)"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        metavar="NAME",
        help="run only these scenarios (and no-incident, which calibrates every run); default: all",
    )
    parser.add_argument(
        "--llm",
        action="store_true",
        help="the LLM benchmark instead: incidents on the embedded tiny LM (context-ignoring and "
        "injection-following rollouts, a retriever bug, benign topic drift), interaction shift between "
        "prompt segments vs output length / token PSI, log-prob (perplexity) drift and "
        "output-embedding drift. --budgets takes one value there (default 64 inferences per "
        "explanation); no plots",
    )
    args = parser.parse_args(argv)
    if args.llm:
        return _main_llm(args)
    config = replace(QUICK if args.quick else FULL, seed=args.seed)
    if args.budgets:
        config = replace(config, budgets=tuple(args.budgets))
    if args.window:
        config = replace(config, window=args.window)
    if args.horizon:
        config = replace(config, horizon=args.horizon)
    for flag, value in (("--baseline", args.baseline), ("--explained", args.explained)):
        if value is not None and value < 20:
            parser.error(f"{flag}: at least 20 explained requests, got {value}")
    if args.baseline:
        config = replace(config, baseline_requests=args.baseline)
    if args.explained:
        observed = max(config.n_observed, args.explained)
        config = replace(config, n_explained=args.explained, n_observed=observed)
    if args.scenarios:
        config = replace(config, only=tuple(args.scenarios))
        try:
            selected(config)
        except ValueError as error:
            parser.error(f"--scenarios: {error}")
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


def _main_llm(args: argparse.Namespace) -> int:
    from .llm_detection import run_cli

    try:
        summary, text = run_cli(args)
    except ValueError as err:
        print(f"spex-monitor bench detection --llm: {err}", file=sys.stderr)
        return 2
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(_finite(summary), indent=1) + "\n")
        (args.out / "results.md").write_text(text + "\n")
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
