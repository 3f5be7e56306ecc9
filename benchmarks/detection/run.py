"""``make bench-detection``: the full detection-power benchmark; results and plots land in this folder.

Usage: ``python benchmarks/detection/run.py [--quick] [--budgets 250 500] [--seed N]``. Explained pools are
cached in ``benchmarks/out/detection-cache`` (git-ignored), so a second run only redoes the windows.
``--quick`` writes to ``benchmarks/out/detection-quick`` and leaves the committed full results alone.
The benchmark itself lives in the package (``spex_monitor.bench.detection``), so
``spex-monitor bench detection`` runs the same code from an installed wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from spex_monitor.bench.detection import main  # noqa: E402


def defaults(argv: list[str]) -> list[str]:
    args = list(argv)
    if "--out" not in args:
        args += ["--out", str(ROOT / "benchmarks/out/detection-quick" if "--quick" in args else HERE)]
    if "--cache-dir" not in args:
        args += ["--cache-dir", str(ROOT / "benchmarks/out/detection-cache")]
    return args


if __name__ == "__main__":
    sys.exit(main(defaults(sys.argv[1:])))
