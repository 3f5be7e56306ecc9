"""Monitoring as code: renders the Grafana dashboards, the Prometheus alert rules and the Grafana alert rules.

    python scripts/build_dashboards.py           # rewrite every generated file below
    python scripts/build_dashboards.py --check   # exit 1 when a committed file is not what this renders

Generated (the package scripts/dashboards/ is their only source; its docstring shows the layers):

* grafana/dashboards/*.json: the dashboards (grafana-foundation-sdk);
* prometheus/rules/spex-monitor.rules.yml: the alert rules (from scripts/dashboards/alerts.py);
* grafana/provisioning/alerting/spex-monitor.yaml: the same alerts as Grafana-managed rules (SDK alerting
  types), each linked to the dashboard panel that shows it;
* grafana/alerting-examples/*.yaml: an example contact point and notification policy.

The files are committed so that `grafana/` and `prometheus/` drop into an install (and the Helm chart can
copy them, scripts/sync_chart_files.py) without Python. Dashboard datasources are variables
(``DS_PROMETHEUS``, ``DS_SPEX_SIDECAR``) defaulting to the uids grafana/provisioning/datasources provisions.
grafana-foundation-sdk is a dev dependency (`pip install -e ".[dev]"`), never a runtime one.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the dashboards package beside this script

from dashboards import grafana_alerting, prometheus_rules  # noqa: E402
from dashboards.alerts import RUNBOOKS  # noqa: E402
from dashboards.layout import render  # noqa: E402
from dashboards.model import model_drilldown  # noqa: E402
from dashboards.overview import overview  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = "grafana/dashboards"
DASHBOARDS = {"spex-monitor-overview.json": overview, "spex-monitor-model.json": model_drilldown}
# Folders whose every file of this kind must be generated here (anything else there is an orphan).
OWNED = {DASHBOARD_DIR: "*.json", "grafana/provisioning/alerting": "*.y*ml", "grafana/alerting-examples": "*"}
__all__ = ["DASHBOARDS", "RUNBOOKS", "main", "outputs", "render", "render_all"]


def render_all() -> dict[str, str]:
    """The dashboards' JSON text by file name."""
    return {name: render(build) for name, build in DASHBOARDS.items()}


def outputs() -> dict[str, str]:
    """Every generated file's text by path relative to the repository root."""
    files = {f"{DASHBOARD_DIR}/{name}": body for name, body in render_all().items()}
    files[prometheus_rules.PATH] = prometheus_rules.render()
    files.update(grafana_alerting.render_all())
    return files


def _stale(root: Path, rendered: dict[str, str]) -> list[str]:
    problems = []
    for name, body in rendered.items():
        path = root / name
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != body:
            diff = difflib.unified_diff(
                current.splitlines(), body.splitlines(), str(path), "rendered", lineterm=""
            )
            problems.append("\n".join(list(diff)[:40]))
    for folder, pattern in OWNED.items():
        for path in sorted((root / folder).glob(pattern)):
            if path.relative_to(root).as_posix() not in rendered:
                problems.append(f"{path}: not produced by this script (remove it or add a builder)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root to write or check")
    args = parser.parse_args(argv)
    rendered = outputs()
    if args.check:
        problems = _stale(args.root, rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("generated files are stale: run python scripts/build_dashboards.py", file=sys.stderr)
        return 1 if problems else 0
    for name, body in rendered.items():
        path = args.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
