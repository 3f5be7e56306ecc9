"""Detection power on LLM incidents (``spex-monitor bench detection --llm``): does interaction shift between
prompt segments catch incidents that output-level LLM monitors miss — and where does it fail?

Scenarios (retrieval-augmented chat traffic for the embedded tiny LM, incident at a known window):

1. ``context-ignoring``: rollout of ``grounded-lm-context-ignoring``, which answers from a memorised table
   instead of the documents; its answers look like the old ones (one number, same spread, same confidence).
2. ``injection-following``: rollout of ``grounded-lm-injection-following``, which obeys an instruction
   injected into a retrieved web page; only requests whose documents carry one (30 %) change.
   ``injection-plausible``: the same rollout on traffic whose injected numbers are drawn like real
   answers, so obeying them does not change the answers' distribution.
3. ``retriever-bug``: same model; a ranking bug puts the directory entry last and the context limit keeps two
   documents, so three-document requests lose the fact the answer needs.
4. ``benign-rollout``: the same model with its weights rounded to bfloat16 — a harmless precision change
   that moves log-probs a little and nothing else.
5. ``benign-drift``: same model, a topic shift (questions about five tech companies, travel news).
6. ``no-incident``: many seeded runs of unchanged traffic, for false-alarm rates.

Detectors, each at 1 % false alarms per window: interaction shift (the sidecar's ``compare_maps`` on maps of
ProxySPEX explanations keyed by prompt segment, an exact permutation test) and four output-level monitors —
output length PSI, output token PSI, mean completion log-prob (perplexity) drift and output-embedding
centroid drift (hidden states of the pre-rollout tiny LM) — whose thresholds are the 99th percentile of
held-out no-incident windows (:mod:`.calibration`). Pools of served and explained requests are built once per
(model, traffic) (:mod:`.llm_pools`) and resampled into windows (:mod:`.llm_runs`).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .llm_pools import LLMPool, LLMPoolBuilder
from .llm_runs import LLMWindowRecord, analyse, calibration_values, run_windows
from .llm_scenarios import FULL, QUICK, SCENARIOS, LLMBenchConfig, LLMScenario


def run(
    config: LLMBenchConfig,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
    scenarios: tuple[LLMScenario, ...] = SCENARIOS,
) -> dict:
    """Run the benchmark on one torch / one BLAS thread; returns a JSON-ready summary.

    ``scenarios`` must include ``no-incident`` (its pool is the baseline and the false-alarm reference).

    Raises:
        ValueError: no ``no-incident`` scenario.
    """
    import torch
    from threadpoolctl import threadpool_limits

    if not any(s.name == "no-incident" for s in scenarios):
        raise ValueError("scenarios must include 'no-incident' (the baseline pool)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _run(config, cache_dir, log, scenarios)
    finally:
        torch.set_num_threads(threads)


def _run(
    config: LLMBenchConfig,
    cache_dir: Path | None,
    log: Callable[[str], None],
    scenarios: tuple[LLMScenario, ...],
) -> dict:
    import torch

    began, cpu_began = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()[0]
    builder = LLMPoolBuilder(
        config.n_observed,
        config.n_explained,
        config.budget,
        config.max_order,
        config.temperature,
        cache_dir,
        log,
    )
    log(f"budget {config.budget}: serving and explaining pools")
    seed = config.seed + 1  # every scenario's traffic drawn with one seed: the same requests before and after
    pools = {s.name: builder.pool(s.variant, s.profile, seed) for s in scenarios}
    pool_seconds = time.perf_counter() - began
    base = pools["no-incident"]
    records: list[LLMWindowRecord] = []
    window_began = time.perf_counter()
    for scenario in scenarios:
        null = scenario.kind == "none"
        runs, horizon = (config.null_runs, 1) if null else (config.incident_runs, config.horizon)
        records += run_windows(config, scenario, runs, base, pools[scenario.name], horizon)
        log(f"  {scenario.name:<20} {runs} runs × {horizon} windows compared")
    calibration = calibration_values(config, base)
    window_seconds = time.perf_counter() - window_began
    return {
        "config": asdict(config),
        "machine": f"{_cpu_name()} ({platform.machine()}, {os.cpu_count()} cores), 1 torch / 1 BLAS thread, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "analysis": analyse(config, scenarios, records, calibration),
        "pools": {f"{p.variant} × {p.profile}": _pool_summary(p) for p in _unique(pools)},
        "timing": {"pool_seconds": pool_seconds, "window_seconds": window_seconds},
        "seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu_began,
    }


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _unique(pools: dict[str, LLMPool]) -> list[LLMPool]:
    return list({id(p): p for p in pools.values()}.values())


def _pool_summary(pool: LLMPool) -> dict:
    done = [e for e in pool.explained if e is not None]
    faith = [e.faithfulness for e in done if np.isfinite(e.faithfulness)]
    return {
        "served": int(pool.lengths.size),
        "explained": len(done),
        "mean_logprob": float(pool.mean_logprob.mean()),
        "empty_share": float(np.mean(pool.lengths == 0)),
        "injected_share": float(pool.injected.mean()),
        "fact_present_share": float(pool.fact_present.mean()),
        "faithfulness_median": float(np.median(faith)) if faith else float("nan"),
        "inferences_per_explanation": float(np.mean([e.inferences for e in done])) if done else 0.0,
        "explain_seconds_per_request": pool.explain_seconds / max(len(done), 1),
        "serve_seconds": pool.serve_seconds,
        "cached": pool.cached,
        "answers": dict(sorted(_counts(pool.completions).items(), key=lambda kv: -kv[1])[:10]),
    }


def _counts(texts: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in texts:
        out[t] = out.get(t, 0) + 1
    return out


def configure(args: argparse.Namespace) -> LLMBenchConfig:
    """The LLM configuration from ``bench detection`` options (``--quick``, ``--budgets`` (one value),
    ``--window``, ``--horizon``, ``--seed``).

    Raises:
        ValueError: more than one budget (the LLM benchmark runs one).
    """
    config = replace(QUICK if args.quick else FULL, seed=args.seed)
    if args.budgets:
        if len(args.budgets) != 1:
            raise ValueError("--llm runs one budget: give --budgets N once (default 64)")
        config = replace(config, budget=args.budgets[0])
    if args.window:
        config = replace(config, window=args.window)
    if args.horizon:
        config = replace(config, horizon=args.horizon)
    return config


def run_cli(args: argparse.Namespace) -> tuple[dict, str]:
    """Run with parsed ``bench detection`` options (see :func:`configure`); returns the summary and its
    Markdown. Progress lines go to stdout.

    Raises:
        ValueError: a bad option (see :func:`configure`).
    """
    from .llm_report import markdown

    config = configure(args)
    summary = run(config, args.cache_dir, log=lambda line: print(line, flush=True))
    return summary, markdown(summary)
