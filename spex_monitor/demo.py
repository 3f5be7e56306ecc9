"""`make demo`: explain a planted function and a small real text model, and print what was found.

It grows into the sidecar demo as the monitor lands; today it shows the attribution engine at work:
recovered interactions next to the planted truth, and the interactions a trained sentiment model uses.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from spex_monitor.attribution import ProxySPEX, planted_function
from spex_monitor.attribution import fourier as F
from spex_monitor.examples.sentiment import train_sentiment_model


def _planted_section(seed: int) -> None:
    n, budget = 64, 1000
    print(f"\n== 1. A planted function: n={n} features, 8 AND-interactions (orders 1-3), budget {budget}")
    f = planted_function(n, 8, 3, seed=seed, basis="mobius")
    truth_mobius = F.fourier_to_mobius(f.fourier, n)
    started = time.perf_counter()
    result = ProxySPEX(budget=budget, max_order=3, seed=seed).explain(f, n)
    elapsed = time.perf_counter() - started
    found = result.to_mobius()
    print(f"   {'interaction':<18}{'planted':>10}{'recovered':>12}")
    for key in sorted((k for k in truth_mobius if k), key=lambda k: (-abs(truth_mobius[k]), k)):
        print(f"   {str(key):<18}{truth_mobius[key]:>10.3f}{found.get(key, 0.0):>12.3f}")
    spurious = sum(abs(v) for k, v in found.items() if k and k not in truth_mobius)
    print(
        f"   held-out R² {result.faithfulness:.4f} | inferences {result.inferences_used} | "
        f"{elapsed:.2f}s | total |spurious| Möbius mass {spurious:.3f}"
    )


def _model_section(seed: int) -> None:
    print("\n== 2. A trained sentiment model (bag of uni+bigrams, logistic regression, generated corpus)")
    model = train_sentiment_model(seed=seed)
    print(f"   test accuracy {model.accuracy:.3f} on {model.n_test} held-out generated sentences")
    for text in ("the plot was not good but the music was great", "i did not hate the movie"):
        words = text.split()
        value_fn = model.value_function(words)
        result = ProxySPEX(budget=600, max_order=3, seed=seed).explain(value_fn, len(words))
        label = model.predict_label(text)
        print(f'\n   "{text}" -> {label}')
        print(f"   held-out R² {result.faithfulness:.3f}, inferences {result.inferences_used}")
        print(f"   {'interaction (Möbius, log-odds)':<40}{'effect':>8}")
        mobius = result.to_mobius()
        top = sorted((k for k in mobius if k), key=lambda k: -abs(mobius[k]))[:6]
        for key in top:
            name = " × ".join(words[i] for i in key)
            print(f"   {name:<40}{mobius[key]:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spex-monitor-demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="seed for data, sampling and models")
    args = parser.parse_args(argv)
    np.set_printoptions(precision=3, suppress=True)
    print("spex-monitor demo: which feature interactions drive a prediction?")
    _planted_section(args.seed)
    _model_section(args.seed)
    print("\nNext: the sidecar (gRPC + Prometheus) will run this on live traffic; see README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
