"""Monitor-core costs at scale: InteractionMap.add and compare_maps with 10,000 key tuples.

Usage: ``python benchmarks/monitor.py``. Explanations are synthetic (30 words from a 3,000-word vocabulary,
30 first-order and 20 pair terms each) so that the maps reach 10k key tuples quickly.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spex_monitor.attribution import Interactions  # noqa: E402
from spex_monitor.monitor import InteractionMap, compare_maps  # noqa: E402

VOCAB = [f"w{i}" for i in range(3000)]


def explanation(rng: np.random.Generator) -> tuple[Interactions, list[str]]:
    words = [str(w) for w in rng.choice(VOCAB, size=30)]
    terms = {(i,): float(rng.normal()) for i in range(30)}
    for _ in range(20):
        i, j = sorted(rng.choice(30, size=2, replace=False).tolist())
        terms[(i, j)] = float(rng.normal())
    return Interactions(terms, 30), words


def main() -> int:
    rng = np.random.default_rng(0)
    prepared = [explanation(rng) for _ in range(3000)]
    baseline = InteractionMap(max_keys=10_000)
    for i, (result, words) in enumerate(prepared[:2000]):
        baseline.add(result, words, request_id=f"b{i}")
    window = InteractionMap(max_keys=10_000)
    began = time.perf_counter()
    for i, (result, words) in enumerate(prepared[2000:2200]):
        window.add(result, words, request_id=f"w{i}")
    add_full = (time.perf_counter() - began) / 200
    began = time.perf_counter()
    for i, (result, words) in enumerate(prepared[2200:2400]):
        baseline.add(result, words, request_id=f"x{i}")  # a map already at its 10k-key cap: adds evict
    add_capped = (time.perf_counter() - began) / 200
    timings = {}
    for n_perm in (200, 1000):
        began = time.perf_counter()
        report = compare_maps(baseline, window, n_permutations=n_perm)
        timings[n_perm] = time.perf_counter() - began
    blob = baseline.to_bytes()
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, Python {platform.python_version()}",
                "baseline_keys": len(baseline),
                "window_keys": len(window),
                "baseline_sampled_requests": len(baseline.samples),
                "window_requests": window.requests,
                "add_ms_per_explanation": round(add_full * 1e3, 3),
                "add_ms_per_explanation_at_cap": round(add_capped * 1e3, 3),
                "compare_s_200_permutations": round(timings[200], 3),
                "compare_s_1000_permutations": round(timings[1000], 3),
                "baseline_bytes": len(blob),
                "p_value": report.p_value,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
