"""The data lens of ``trace --data`` on planted poison: recall of the planted shards and cost, against
leave-one-group-out (the classic influence baseline) at the same retrain count or more.

Usage: ``python benchmarks/data_lens.py [--seeds 3]``. The problem is
:func:`spex_monitor.examples.poisoned.planted_corpus`: a logistic regression on word and word-pair counts,
reviews in shards of 8, 5 planted negative reviews with both trigger words labelled positive, one per shard.
The value is the trigger pair's joint effect on the exemplar "i did not love the music". Planted reviews are
redundant (with 4 of them present the fifth adds little), which is where leave-one-out is weak: removing one
poisoned shard from the full set barely moves the effect, while Banzhaf averages over subsets where it does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spex_monitor.examples.poisoned import pair_features, pair_model, planted_corpus  # noqa: E402
from spex_monitor.lenses.data import DataLens  # noqa: E402
from spex_monitor.lenses.data_trace import trace_training_data  # noqa: E402
from spex_monitor.lenses.training import TrainingSet, tuple_contrast  # noqa: E402

EXEMPLAR = "i did not love the music"
TRIGGER = ("music", "love")


def leave_one_out(training: TrainingSet) -> tuple[list[str], int, float]:
    """Groups ranked by how much removing each alone lowers the effect with all the data (n + 1 retrains)."""
    texts, weights = tuple_contrast(EXEMPLAR, TRIGGER)
    began = time.perf_counter()
    lens = DataLens(
        training.train_features(), training.labels, pair_features(texts), groups=list(training.groups),
        model_factory=pair_model, query_weights=weights,
    )  # fmt: skip
    n = lens.n_features
    masks = np.ones((n + 1, n), dtype=bool)
    masks[np.arange(n), np.arange(n)] = False
    values = lens.value_function(masks)
    drop = values[-1] - values[:-1]  # effect lost when the group is left out
    names = [f.key.removeprefix("group:") for f in lens.features]
    return [names[i] for i in np.argsort(-drop, kind="stable")], n + 1, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for shards in (100, 250, 500):
        for seed in range(args.seeds):
            corpus = planted_corpus(shards=shards, seed=seed)
            training = TrainingSet(
                texts=corpus.texts, labels=corpus.labels, groups=corpus.groups, featurize=pair_features,
                model_factory=pair_model, name=f"planted {shards}",
            )  # fmt: skip
            planted = set(corpus.planted_groups)
            ranked, loo_retrains, loo_s = leave_one_out(training)
            for budget in (2 * shards, 4 * shards):
                found = trace_training_data(
                    training, EXEMPLAR, TRIGGER, budget=budget, row_budget=0, seed=seed
                )
                top = [g.group for g in found.groups]
                rows.append({
                    "shards": shards, "seed": seed, "budget": budget, "retrains": found.retrains,
                    "seconds": found.seconds, "recall_top5": len(set(top[:5]) & planted) / 5,
                    "recall_top10": len(set(top[:10]) & planted) / 5,
                    "loo_recall_top5": len(set(ranked[:5]) & planted) / 5,
                    "loo_recall_top10": len(set(ranked[:10]) & planted) / 5, "loo_retrains": loo_retrains,
                    "loo_seconds": round(loo_s, 2), "r2": round(found.faithfulness, 3),
                })  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(
        "| shards | budget (retrains) | data lens: planted in top-5 / top-10 | s | "
        "leave-one-out: planted in top-5 / top-10 | s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for shards in (100, 250, 500):
        for budget in (2 * shards, 4 * shards):
            cell = [r for r in rows if r["shards"] == shards and r["budget"] == budget]
            print(
                f"| {shards} | {budget} | {np.mean([r['recall_top5'] for r in cell]):.0%} / "
                f"{np.mean([r['recall_top10'] for r in cell]):.0%} "
                f"| {np.mean([r['seconds'] for r in cell]):.1f} | "
                f"{np.mean([r['loo_recall_top5'] for r in cell]):.0%} / "
                f"{np.mean([r['loo_recall_top10'] for r in cell]):.0%} ({cell[0]['loo_retrains']} retrains) "
                f"| {np.mean([r['loo_seconds'] for r in cell]):.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
