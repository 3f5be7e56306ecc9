"""Reference explainers for benchmarks/llm.py, run in their own virtualenv (``make .venv-ref/.installed``:
Python 3.12, shapiq 1.8.0, spectralexplain 0.0.4). Never imported by the package.

The value function lives in the parent process (torch, our model); this child asks for it over a pipe:
it writes ``EVAL k n`` and ``k*n`` mask bytes (1 = kept) to stdout and reads ``k`` float64 values from stdin.
At the end it writes ``RESULT <json>``: the reference's sparse Fourier estimate **in our convention**
(``prod z_i`` with ``z = +1`` kept; theirs is ``(-1)^{<x, k>}``, so an order-``|S|`` coefficient flips by
``(-1)^{|S|}``), the inferences it used and its own wall time split into value-function time and overhead.

    .venv-ref/bin/python benchmarks/llm_reference.py --method shapiq|spectralexplain --n 40 --budget 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
# the protocol owns the real stdout; anything else written to fd 1 (library prints) goes to stderr
_OUT = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
_IN = sys.stdin.buffer
_STATS = {"rows": 0, "game_s": 0.0}


def value_fn(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks).astype(np.uint8)
    began = time.perf_counter()
    k, n = masks.shape
    _OUT.write(f"EVAL {k} {n}\n".encode())
    _OUT.write(masks.tobytes())
    _OUT.flush()
    values = np.frombuffer(_IN.read(8 * k), dtype="<f8").copy()
    _STATS["rows"] += k
    _STATS["game_s"] += time.perf_counter() - began
    return values


def run_shapiq(n: int, budget: int, seed: int, max_order: int) -> dict:
    from shapiq.approximator.proxy import proxyspex as module

    captured: dict = {}
    original = module.ProxySPEX._refine

    def refine(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        captured["fourier"] = out
        return out

    module.ProxySPEX._refine = refine
    try:
        module.ProxySPEX(n=n, max_order=max_order, random_state=seed).approximate(budget, value_fn)
    finally:
        module.ProxySPEX._refine = original
    return {tuple(int(i) for i in k): float(v) for k, v in captured.get("fourier", {}).items()}


def run_spectralexplain(n: int, budget: int, seed: int, max_order: int) -> dict:
    import spectralexplain as spex

    np.random.seed(seed)  # noqa: NPY002 - spectralexplain draws its queries from the global generator
    explainer = spex.Explainer(value_fn, n, sample_budget=budget, max_order=max_order, algorithm="proxyspex")
    return {
        tuple(int(i) for i in np.nonzero(k)[0]): float(np.real(v))
        for k, v in explainer.fourier_transform.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["shapiq", "spectralexplain"], required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--budget", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-order", type=int, default=2)
    args = parser.parse_args()
    began = time.perf_counter()
    run = run_shapiq if args.method == "shapiq" else run_spectralexplain
    theirs = run(args.n, args.budget, args.seed, args.max_order)
    total = time.perf_counter() - began
    ours = [[list(k), v * (-1) ** len(k)] for k, v in theirs.items()]
    result = {
        "fourier": ours,
        "inferences": _STATS["rows"],
        "seconds_total": total,
        "seconds_overhead": total - _STATS["game_s"],
    }
    _OUT.write(b"RESULT " + json.dumps(result).encode() + b"\n")
    _OUT.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
