"""Run inside the image's builder stage: prove the runtime works, then byte-compile exactly what it loaded.

1. Imports every ``spex_monitor`` module (those needing an extra that the image does not carry, such as the
   benchmark plots, are listed and skipped) and uvicorn's server pieces, then explains one sentence with the
   embedded model (local backend, text lens, ProxySPEX): the build fails here if pruning removed anything the
   sidecar needs.
2. Writes ``__pycache__`` files only for the modules that step loaded (``checked-hash`` pycs: valid however
   file times change between stages). Compiling all of site-packages would add ~230 MB, mostly for modules
   the sidecar never imports (sympy, torch's compiler stack, most of transformers' model zoo); those still
   import, compiled in memory on first use.

Usage: ``python precompile.py`` with the image's virtualenv interpreter; prints one summary line.
"""

from __future__ import annotations

import importlib
import pkgutil
import py_compile
import sys
import sysconfig
from pathlib import Path

# Loaded lazily by uvicorn when the metrics/events servers start.
LAZY_MODULES = (
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
)


def import_everything() -> list[str]:
    """Import all spex_monitor modules and LAZY_MODULES; return the ones skipped (missing optional extra)."""
    import spex_monitor

    skipped = []
    names = [m.name for m in pkgutil.walk_packages(spex_monitor.__path__, "spex_monitor.")]
    for name in [*names, *LAZY_MODULES]:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"spex_monitor", "uvicorn"}:
                raise
            skipped.append(f"{name} (needs {exc.name})")
    return skipped


def explain_once() -> None:
    from spex_monitor.attribution import ProxySPEX
    from spex_monitor.backends import LocalBackend
    from spex_monitor.examples.embedded import model_path
    from spex_monitor.lenses import classifier_value_function, text_masker

    backend = LocalBackend.from_pretrained(model_path("sentiment-base"))
    masker = text_masker("the plot was not good", backend.tokenizer, unit="words", max_features=16)
    value_fn, _ = classifier_value_function(masker, backend)
    result = ProxySPEX(budget=128, max_order=2, seed=0).explain(value_fn, masker.n_features)
    if not result.fourier:
        raise SystemExit("precompile: the smoke explanation returned no terms")


def compile_loaded(site_packages: Path) -> int:
    count = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        path = Path(source)
        if site_packages not in path.parents:
            continue
        py_compile.compile(
            str(path), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        count += 1
    return count


def main() -> int:
    sys.dont_write_bytecode = True  # only compile_loaded writes pycs
    skipped = import_everything()
    explain_once()
    count = compile_loaded(Path(sysconfig.get_paths()["purelib"]))
    print(
        f"precompile: smoke explanation OK; {count} modules compiled; skipped: {', '.join(skipped) or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
