"""Importing a light module must not load torch or LightGBM (issue 16 item 4): an OIP-only sidecar's serving
process, the CLI and the monitor's maps start without them. Each import runs in a fresh interpreter, and
the test reads ``sys.modules`` afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightgbm", "transformers")


def _loaded_after(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "spex_monitor.backends.oip",
        "spex_monitor.monitor.maps",
        "spex_monitor.monitor.worker",
        "spex_monitor.attribution",
        "spex_monitor.config",
    ],
)
def test_light_modules_load_no_heavy_dependency(module):
    assert _loaded_after(module) == []


def test_the_check_itself_sees_heavy_imports():
    """The probe can fail: touching the local backend or an engine's fit does load them."""
    assert "torch" in _loaded_after("spex_monitor.backends.local")
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from spex_monitor.attribution import ProxySPEX\n"
        "assert 'lightgbm' not in sys.modules\n"
        "ProxySPEX(budget=200, max_order=2).explain(lambda m: m.sum(axis=1).astype(float), 20)\n"
        "print('lightgbm' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "True"
