"""Generate the Python gRPC stubs for protos/ into spex_monitor/protocol/ (committed).

Run after editing a .proto: ``python scripts/gen_protos.py``. ``--check`` regenerates into a temporary
folder and exits 1 if the committed stubs differ (a unit test calls it).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "spex_monitor" / "protocol"
# (include root under protos/, proto path under it, generate a gRPC service stub)
FILES = [("", "inference/grpc_service.proto", False), ("spex_monitor", "v1/monitor.proto", True)]


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    for root, name, service in FILES:
        include = PROTOS / root
        args = ["protoc", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}"]
        if service:
            args.append(f"--grpc_python_out={out}")
        if protoc.main([*args, str(include / name)]) != 0:
            raise SystemExit(f"protoc failed for {name}")
    written = sorted(p for p in out.rglob("*") if p.suffix in {".py", ".pyi"})
    for path in written:
        text = path.read_text()
        # Make generated imports package-relative: `from inference import x_pb2` -> `from . import x_pb2`.
        text = re.sub(r"^from (?:inference|v1) import (\w+)", r"from . import \1", text, flags=re.M)
        path.write_text(text)
        (path.parent / "__init__.py").touch()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args(argv)
    if not args.check:
        generate(TARGET)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            p.relative_to(tmp)
            for p in fresh
            if not (TARGET / p.relative_to(tmp)).exists()
            or not filecmp.cmp(p, TARGET / p.relative_to(tmp), shallow=False)
        ]
    if stale:
        print(
            f"stale generated stubs: {[str(s) for s in stale]}; run python scripts/gen_protos.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
