"""Grafana dashboards as code: renders grafana/dashboards/*.json with grafana-foundation-sdk.

    python scripts/build_dashboards.py           # rewrite grafana/dashboards/*.json
    python scripts/build_dashboards.py --check   # exit 1 when the committed JSON is not what this renders

The JSON is committed so that `grafana/` drops into a Grafana install (and the Helm chart can glob it)
without Python; the package scripts/dashboards/ is its only source (its docstring shows the layers).
Datasources are dashboard variables (``DS_PROMETHEUS``, ``DS_SPEX_SIDECAR``) whose default is the uid
provisioned by grafana/provisioning/datasources, so the same file works when provisioned, imported by hand,
or pointed at an existing Prometheus. grafana-foundation-sdk is a dev dependency (`pip install -e ".[dev]"`),
never a runtime one.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the dashboards package beside this script

from dashboards.alerts import RUNBOOKS  # noqa: E402
from dashboards.layout import render  # noqa: E402
from dashboards.model import model_drilldown  # noqa: E402
from dashboards.overview import overview  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grafana" / "dashboards"
DASHBOARDS = {"spex-monitor-overview.json": overview, "spex-monitor-model.json": model_drilldown}
__all__ = ["DASHBOARDS", "RUNBOOKS", "main", "render", "render_all"]


def render_all() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def _stale(out: Path, rendered: dict[str, str]) -> list[str]:
    problems = []
    for name, body in rendered.items():
        path = out / name
        current = path.read_text() if path.exists() else ""
        if current != body:
            diff = difflib.unified_diff(
                current.splitlines(), body.splitlines(), str(path), "rendered", lineterm=""
            )
            problems.append("\n".join(list(diff)[:40]))
    extra = sorted(p.name for p in out.glob("*.json") if p.name not in rendered)
    problems += [f"{out / name}: not produced by this script (remove it or add a builder)" for name in extra]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: grafana/dashboards)")
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        problems = _stale(args.out, rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("dashboards are stale: run python scripts/build_dashboards.py", file=sys.stderr)
        return 1 if problems else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, body in rendered.items():
        (args.out / name).write_text(body)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
