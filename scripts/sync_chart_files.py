"""Copy the alert rules and Grafana dashboards into the Helm chart, which cannot read files outside itself.

prometheus/rules/spex-monitor.rules.yml and grafana/dashboards/*.json stay the one source; the chart's
files/ holds copies for its PrometheusRule and dashboards ConfigMap. Run
``python scripts/sync_chart_files.py`` after editing either; ``--check`` changes nothing and exits 1 when a
copy is missing, stale or orphaned (a unit test calls it). Dashboards must parse as JSON: a broken one
would only fail inside Grafana.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = Path("helm") / "spex-monitor"


@dataclass(frozen=True)
class Plan:
    """What a sync would do: (source, copy) pairs to write and copies without a source to delete."""

    write: list[tuple[Path, Path]]
    delete: list[Path]

    def describe(self, root: Path) -> list[str]:
        def rel(path: Path) -> Path:
            return path.relative_to(root)

        lines = [f"stale or missing: {rel(dst)} (from {rel(src)})" for src, dst in self.write]
        lines += [f"orphaned: {rel(path)}" for path in self.delete]
        return lines


def pairs(root: Path) -> tuple[list[tuple[Path, Path]], Path]:
    """Every (source, chart copy) pair, and the chart's dashboards folder (whose other *.json are orphans)."""
    files = root / CHART / "files"
    rules = "spex-monitor.rules.yml"
    result = [(root / "prometheus" / "rules" / rules, files / "prometheus" / rules)]
    dashboards = files / "dashboards"
    sources = sorted((root / "grafana" / "dashboards").glob("*.json"))
    result += [(src, dashboards / src.name) for src in sources]
    return result, dashboards


def check_sources(sources: list[Path]) -> None:
    for src in sources:
        if not src.is_file():
            raise SystemExit(f"source missing: {src}")
        if src.suffix == ".json":
            try:
                json.loads(src.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{src} is not valid JSON: {exc}") from exc


def plan(root: Path) -> Plan:
    wanted, dashboards = pairs(root)
    check_sources([src for src, _ in wanted])
    write = [(src, dst) for src, dst in wanted if not dst.is_file() or dst.read_bytes() != src.read_bytes()]
    keep = {dst for _, dst in wanted}
    delete = sorted(path for path in dashboards.glob("*.json") if path not in keep)
    return Plan(write, delete)


def apply(todo: Plan) -> None:
    for src, dst in todo.write:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    for path in todo.delete:
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if the copies are not current"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    todo = plan(root)
    lines = todo.describe(root)
    if args.check:
        for line in lines:
            print(line, file=sys.stderr)
        if lines:
            print("run: python scripts/sync_chart_files.py", file=sys.stderr)
        return 1 if lines else 0
    apply(todo)
    for line in lines:
        print(f"synced {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
