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
FILES = ["inference/grpc_service.proto"]


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            str(PROTOS / name),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {name}")
    written = sorted(p for p in out.rglob("*") if p.suffix in {".py", ".pyi"})
    for path in written:
        text = path.read_text()
        # Make generated imports package-relative: `from inference import x_pb2` -> `from . import x_pb2`.
        text = re.sub(r"^from inference import (\w+)", r"from . import \1", text, flags=re.M)
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
