"""Attribution benchmark: our ProxySPEX / SPEX against shapiq 1.4.1, side by side in one run.

Measures held-out R² (on 4,000 fresh uniform masks) against inferences used, and algorithm overhead
(wall time minus time spent inside the value function), on:

(a) planted functions: hierarchical (Möbius-sparse) ones for the proxy engines at n = 64, 128, 256, 1000;
    Fourier-sparse ones at n = 1000 (20 terms, order <= 3) for exact SPEX recovery;
(b) a real small transformer text classifier (trained from scratch in the run) with 20-60 word features.

Usage: ``python benchmarks/attribution.py [--quick] [--out benchmarks/out]``. Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shapiq_adapter import run_shapiq  # noqa: E402

from spex_monitor.attribution import SPEX, ProxySPEX, planted_function  # noqa: E402
from spex_monitor.attribution import fourier as F  # noqa: E402
from spex_monitor.attribution.metrics import r2_score  # noqa: E402
from spex_monitor.examples.sentiment import generate_long_reviews  # noqa: E402


def _score(fourier: dict, truth_fn, n: int, seed: int = 12345) -> float:
    masks = np.random.default_rng(seed).random((4000, n)) < 0.5
    predicted = F.evaluate(F.group_by_order(fourier), masks) if fourier else np.zeros(len(masks))
    return r2_score(truth_fn(masks), predicted)


def run_ours(engine: str, f, n: int, budget: int, seed: int) -> dict:
    cls = ProxySPEX if engine == "proxyspex" else SPEX
    began = time.perf_counter()
    result = cls(budget=budget, max_order=4 if engine == "proxyspex" else 3, seed=seed).explain(f, n)
    total = time.perf_counter() - began
    return {
        "fourier": result.fourier,
        "inferences": result.inferences_used,
        "seconds_total": total,
        "seconds_overhead": total - float(result.details["seconds_value_fn"]),
        "faithfulness": result.faithfulness,
    }


def proxy_curves(problems: list[tuple[int, int, int]], budgets: list[int], seeds: int) -> list[dict]:
    rows = []
    for n, terms, order in problems:
        for budget in budgets:
            for seed in range(seeds):
                f = planted_function(n, terms, order, seed=seed, basis="mobius")
                for who in ("ours", "shapiq"):
                    out = (
                        run_ours("proxyspex", f, n, budget, seed)
                        if who == "ours"
                        else run_shapiq("proxyspex", f, n, budget, seed)
                    )
                    row = {
                        "problem": f"n={n},s={terms},order<={order}",
                        "n": n,
                        "engine": "ProxySPEX",
                        "who": who,
                        "budget": budget,
                        "seed": seed,
                        "inferences": out["inferences"],
                        "r2": _score(out["fourier"], f.exact, n),
                        "overhead_s": out["seconds_overhead"],
                        "terms": len(out["fourier"]),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def spex_recovery(
    budgets: list[int], seeds: int, n: int = 1000, terms: int = 20, order: int = 3
) -> list[dict]:
    rows = []
    for budget in budgets:
        for seed in range(seeds):
            f = planted_function(n, terms, order, seed=seed)
            truth = set(f.fourier)
            for who in ("ours", "shapiq"):
                try:
                    out = (
                        run_ours("spex", f, n, budget, seed)
                        if who == "ours"
                        else run_shapiq("spex", f, n, budget, seed)
                    )
                except Exception as exc:  # budget too small for that implementation
                    print(f"{who} SPEX budget={budget}: {exc}", flush=True)
                    continue
                found = {k for k, v in out["fourier"].items() if k and abs(v) > 1e-3}
                row = {
                    "problem": f"n={n},s={terms},order<={order} (Fourier)",
                    "engine": "SPEX",
                    "who": who,
                    "budget": budget,
                    "seed": seed,
                    "inferences": out["inferences"],
                    "exact": found == truth,
                    "r2": _score(out["fourier"], f.exact, n),
                    "overhead_s": out["seconds_overhead"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def text_model(budgets: list[int], n_sentences: int) -> list[dict]:
    """A real transformer (trained from scratch here, ~30 s) on 20-60-word generated reviews."""
    from spex_monitor.examples.tiny_transformer import train_tiny_transformer

    model = train_tiny_transformer(seed=0)
    print(f"tiny transformer trained: held-out accuracy {model.accuracy:.3f}", flush=True)
    texts, _ = generate_long_reviews(400, seed=99, clauses=(5, 7))
    long_texts = [t.split() for t in texts if 20 <= len(t.split()) <= 60][:n_sentences]
    rows = []
    for words in long_texts:
        value_fn = model.value_function(words)
        n = len(words)
        for budget in budgets:
            for who in ("ours", "shapiq"):
                out = (
                    run_ours("proxyspex", value_fn, n, budget, 0)
                    if who == "ours"
                    else run_shapiq("proxyspex", value_fn, n, budget, 0)
                )
                row = {
                    "problem": "tiny transformer, 20-60 words",
                    "n": n,
                    "engine": "ProxySPEX",
                    "who": who,
                    "budget": budget,
                    "inferences": out["inferences"],
                    "r2": _score(out["fourier"], value_fn, n),
                    "overhead_s": out["seconds_overhead"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def warm_start(budgets: list[int], seeds: int, n: int = 256) -> list[dict]:
    """Does a prior support (what the monitor passes from its baseline) buy R² at small budgets?

    The prior is the support ProxySPEX found for a *related* function (same planted terms, coefficients
    jittered by 30 %, two terms swapped out) at a generous budget, as a baseline window would provide.
    """
    rows = []
    for seed in range(seeds):
        f = planted_function(n, 20, 4, seed=seed, basis="mobius")
        rng = np.random.default_rng(seed)
        mobius = F.fourier_to_mobius(f.fourier, n)
        related = {k: v * rng.uniform(0.7, 1.3) for k, v in mobius.items()}
        prior_fn = planted_function(n, 2, 2, seed=seed + 100, basis="mobius")
        for k, v in F.fourier_to_mobius(prior_fn.fourier, n).items():
            related[k] = related.get(k, 0.0) + v
        related_fn = type(f)(n, F.mobius_to_fourier(related, n))
        prior = ProxySPEX(budget=4000, max_order=4, seed=seed).explain(related_fn, n)
        support = [k for k in prior.fourier if k]
        for budget in budgets:
            for label, kwargs in (("cold", {}), ("warm", {"prior_support": support})):
                result = ProxySPEX(budget=budget, max_order=4, seed=seed, **kwargs).explain(f, n)
                row = {
                    "problem": f"warm start n={n}",
                    "engine": "ProxySPEX",
                    "who": label,
                    "budget": budget,
                    "seed": seed,
                    "r2": _score(result.fourier, f.exact, n),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in rows if r["engine"] == "ProxySPEX"})
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        for who, style in (("ours", "o-"), ("shapiq", "s--")):
            sel = [
                r for r in rows if r["problem"] == problem and r["who"] == who and r["engine"] == "ProxySPEX"
            ]
            budgets = sorted({r["budget"] for r in sel})
            xs = [np.mean([r["inferences"] for r in sel if r["budget"] == b]) for b in budgets]
            ys = [np.mean([r["r2"] for r in sel if r["budget"] == b]) for b in budgets]
            ax.plot(xs, ys, style, label="spex-monitor" if who == "ours" else "shapiq 1.4.1")
        ax.set_title(problem, fontsize=9)
        ax.set_xlabel("inferences")
        ax.set_ylabel("held-out R²")
        ax.set_ylim(max(-0.1, ax.get_ylim()[0]), 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarize(rows: list[dict]) -> str:
    lines = [
        "| problem | engine | budget | ours R² | shapiq R² | ours overhead s | shapiq overhead s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(r["problem"], r["engine"], r["budget"]) for r in rows})
    for problem, engine, budget in keys:

        def stat(who, field, problem=problem, engine=engine, budget=budget):
            vals = [
                r[field]
                for r in rows
                if (r["problem"], r["engine"], r["budget"], r["who"]) == (problem, engine, budget, who)
            ]
            return float(np.mean(vals)) if vals else float("nan")

        lines.append(
            f"| {problem} | {engine} | {budget} | {stat('ours', 'r2'):.3f} | {stat('shapiq', 'r2'):.3f} "
            f"| {stat('ours', 'overhead_s'):.3f} | {stat('shapiq', 'overhead_s'):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one seed, fewer budgets (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="output folder")
    parser.add_argument(
        "--sections",
        default="proxy,spex,text,warm",
        help="comma-separated subset of: proxy, spex, text, warm (default: all)",
    )
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = 1 if args.quick else 3
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}", flush=True)
    rows: list[dict] = []
    problems = [(128, 29, 4)] if args.quick else [(64, 10, 4), (128, 29, 4), (256, 20, 4), (1000, 20, 3)]
    budgets = [500, 1000, 2000] if args.quick else [250, 500, 1000, 2000, 4000]
    if "proxy" in sections:
        rows += proxy_curves(problems, budgets, seeds)
    if "spex" in sections:
        rows += spex_recovery([1344, 1450, 1600, 3200, 6500] if not args.quick else [3200], seeds)
    if "text" in sections:
        rows += text_model([250, 500, 1000] if not args.quick else [500], 2 if args.quick else 4)
    warm = [] if "warm" not in sections else warm_start([250, 500] if args.quick else [250, 500, 1000], seeds)
    if warm:
        (args.out / "attribution_warm_start.json").write_text(json.dumps(warm, indent=1))
    print("| budget | cold R² | warm R² |\n| ---: | ---: | ---: |")
    for budget in sorted({r["budget"] for r in warm}):
        cold = np.mean([r["r2"] for r in warm if r["budget"] == budget and r["who"] == "cold"])
        hot = np.mean([r["r2"] for r in warm if r["budget"] == budget and r["who"] == "warm"])
        print(f"| {budget} | {cold:.3f} | {hot:.3f} |")
    (args.out / "attribution.json").write_text(json.dumps(rows, indent=1))
    if any(r["engine"] == "ProxySPEX" for r in rows):
        plot(rows, args.out / "attribution_r2_vs_inferences.png")
    table = summarize(rows)
    (args.out / "attribution_summary.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
