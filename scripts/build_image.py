"""Build the spex-monitor container image without pulling anything from a container registry.

Steps (each reused when its inputs did not change, so a second run is quick and builds nothing new):

1. **Bases**: a minimal Debian bookworm root filesystem (``mmdebstrap --variant=essential`` + Python 3.11 +
   libgomp1 + libstdc++6, no docs/man/locales) from the Debian mirror the host's apt uses, imported with
   ``podman import`` as ``localhost/spex-monitor-base:bookworm``, and the same plus binutils as
   ``...:bookworm-build`` for the builder stage. Their recipe digest is a label: a changed recipe rebuilds
   them, ``--refresh-base`` rebuilds them for new Debian updates.
2. **Wheelhouse**: every wheel the image needs — the package built from a clean copy of the source tree,
   its dependencies at the versions of the development virtualenv (``pip freeze``, so the image carries what
   the tests ran on), ``torch==2.13.0`` (the CPU build) and pip — collected on the host with the host's pip
   settings into ``build/image/wheels``; ``build/image/*requirements.txt`` pin each one by sha256.
3. **Image**: ``podman build --network none --pull=never`` of ``Containerfile`` (Docker format, so the
   HEALTHCHECK is kept), OCI labels from ``pyproject.toml`` and git.

Prints the image reference on stdout (everything else goes to stderr) and, for the standard image (default
``--torch`` and base), writes it to ``build/image/image-ref`` for the image test. Needs podman, runc,
mmdebstrap (``make image-deps``); as root, or rootless podman with subuids set up. podman is run with
``scripts/image/containers.conf`` unless ``CONTAINERS_CONF`` is set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "image"
CONTAINERS_CONF = ROOT / "scripts" / "image" / "containers.conf"
DEFAULT_REPOSITORY = "ghcr.io/spex-monitor/spex-monitor"
BASE_REPOSITORY = "localhost/spex-monitor-base"
SOURCE_URL = "https://github.com/spex-monitor/spex-monitor"
DEFAULT_TORCH = "torch==2.13.0"
RECIPE_LABEL = "io.spex-monitor.base.recipe"
# Fixed wheel timestamps: the package wheel's bytes (and so its pinned hash and the image layer) depend only
# on the source, never on when it was built.
SOURCE_DATE_EPOCH = "315532800"

# The base: Essential packages + Python + the C++ and OpenMP runtimes the native wheels link against.
# merged-/usr by hook (otherwise the usrmerge package drags in perl, ~50 MB). No documentation (but the
# copyright files), manual pages or translations.
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "libgomp1", "libstdc++6")
# The builder stage also strips the native libraries' symbol tables (~130 MB, most of it libtorch_cpu.so's).
BUILDER_PACKAGES = ("binutils",)
MMDEBSTRAP_OPTIONS = (
    "--variant=essential",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)
DEFAULT_MAIN = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class BuildError(RuntimeError):
    """A step failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"build_image: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- apt mirrors
def _deb822_entries(text: str) -> Iterable[tuple[list[str], list[str], list[str]]]:
    """(types, uris, suites) of each stanza of a deb822 ``.sources`` file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and key is not None:
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield (
            fields.get("types", "").split(),
            fields.get("uris", "").split(),
            fields.get("suites", "").split(),
        )


def _one_line_entries(text: str) -> Iterable[tuple[list[str], list[str], list[str]]]:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # options such as [arch=amd64 signed-by=...]
        parts = line.split()
        if len(parts) >= 3:
            yield [parts[0]], [parts[1]], [parts[2]]


def apt_mirrors(files: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(main archive URI, security archive URI) that apt is configured with.

    ``files``: (file name, text) of sources.list-style (``*.list``) and deb822 (``*.sources``) files. Only
    ``deb`` entries count; an archive serving a ``*-security`` suite is the security mirror, the first other
    one the main mirror. Debian's public mirrors where a kind is missing.
    """
    main = security = None
    for name, text in files:
        entries = _deb822_entries(text) if name.endswith(".sources") else _one_line_entries(text)
        for types, uris, suites in entries:
            if "deb" not in types or not uris:
                continue
            if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
                security = security or uris[0]
            else:
                main = main or uris[0]
    return (main or DEFAULT_MAIN).rstrip("/"), (security or DEFAULT_SECURITY).rstrip("/")


def host_apt_files() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in APT_SOURCES:
        candidates = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in candidates:
            if file.is_file() and file.name.endswith((".list", ".sources")):
                found.append((file.name, file.read_text(errors="replace")))
    return found


def base_sources(main: str, security: str) -> list[str]:
    return [
        f"deb {main} {SUITE} main",
        f"deb {main} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]


def recipe_digest(sources: Sequence[str]) -> str:
    """What the base is made of: a new digest means the imported base is stale."""
    recipe = "\n".join([SUITE, *BASE_PACKAGES, *BUILDER_PACKAGES, *MMDEBSTRAP_OPTIONS, *sources])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ wheels
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(normalised project name, version) from a wheel file name (PEP 427 / PEP 491)."""
    match = _WHEEL.match(filename)
    if match is None:
        raise BuildError(f"not a wheel file name: {filename}")
    return re.sub(r"[-_.]+", "-", match["name"]).lower(), match["version"]


def pinned(wheel: Path) -> str:
    """A hash-checking requirement line for one wheel: ``name==version --hash=sha256:...``."""
    name, version = wheel_name_version(wheel.name)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name}=={version} --hash=sha256:{digest}"


def requirement_files(wheels: Iterable[Path], app: str = "spex-monitor") -> tuple[str, str]:
    """(dependencies, the package itself) as requirements files; pip's own wheel is run, never installed."""
    deps, own = [], []
    for wheel in sorted(wheels, key=lambda w: w.name.lower()):
        name, _ = wheel_name_version(wheel.name)
        if name == "pip":
            continue
        (own if name == app else deps).append(pinned(wheel))
    if len(own) != 1:
        raise BuildError(f"expected one {app} wheel in the wheelhouse, found {len(own)}")
    return "\n".join(deps) + "\n", own[0] + "\n"


def _copy_source(destination: Path) -> None:
    """The files the package is built from, without caches or build leftovers (setuptools reuses build/)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("LICENSE*")]:
        shutil.copy2(path, destination / path.name)
    shutil.copytree(ROOT / "spex_monitor", destination / "spex_monitor", ignore=ignore)


def build_wheelhouse(python: str, torch: str) -> Path:
    """Collect every wheel into build/image/wheels (replaced whole) and write the requirements files."""
    wheels = BUILD / "wheels"
    with tempfile.TemporaryDirectory(prefix="spex-image-") as tmp:
        source, fresh, constraints = Path(tmp) / "src", Path(tmp) / "wheels", Path(tmp) / "constraints.txt"
        source.mkdir()
        _copy_source(source)
        frozen = run([python, "-m", "pip", "freeze", "--exclude-editable"], capture=True)
        # Pin to what the development virtualenv holds, except torch (given explicitly) and pip itself.
        lines = [
            line
            for line in frozen.splitlines()
            if "==" in line and " @ " not in line and not re.match(r"^(torch|pip)==", line, re.I)
        ]
        constraints.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
        BUILD.mkdir(parents=True, exist_ok=True)
        run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--wheel-dir",
                str(fresh),
                "-c",
                str(constraints),
                torch,
                "pip",
                str(source),
            ],
            env=env,
            log_file=BUILD / "pip-wheel.log",
        )
        if wheels.exists():
            shutil.rmtree(wheels)
        BUILD.mkdir(parents=True, exist_ok=True)
        shutil.move(str(fresh), wheels)
    found = sorted(wheels.glob("*.whl"))
    if not any(wheel_name_version(w.name)[0] == "pip" for w in found):
        raise BuildError("pip's wheel is missing from the wheelhouse")
    deps, own = requirement_files(found)
    (BUILD / "requirements.txt").write_text(deps)
    (BUILD / "app-requirements.txt").write_text(own)
    return wheels


def torch_version(wheels: Path) -> str:
    for wheel in wheels.glob("torch-*.whl"):
        return wheel_name_version(wheel.name)[1]
    raise BuildError("no torch wheel in the wheelhouse")


# ------------------------------------------------------------------------------------------------ podman
def run(
    command: Sequence[str],
    *,
    capture: bool = False,
    env: dict[str, str] | None = None,
    check: bool = True,
    log_file: Path | None = None,
) -> str:
    """Run a command; its output goes to stderr, to ``log_file``, or is returned (``capture``).

    Raises BuildError naming the command (and the log file, or the end of its stderr) when it fails.
    """
    try:
        with open(log_file, "w") if log_file else open(os.devnull) as sink:
            done = subprocess.run(
                list(command),
                stdout=subprocess.PIPE if capture else (sink if log_file else sys.stderr),
                stderr=subprocess.PIPE if capture else (subprocess.STDOUT if log_file else None),
                text=True,
                env=env,
                check=False,
            )
    except FileNotFoundError as exc:
        raise BuildError(f"{command[0]} not found ({exc}); run `make image-deps`") from exc
    if check and done.returncode != 0:
        detail = f": {done.stderr.strip()[-2000:]}" if capture and done.stderr else ""
        detail = f" (log: {log_file})" if log_file else detail
        raise BuildError(f"`{' '.join(command[:4])} ...` failed with exit code {done.returncode}{detail}")
    return done.stdout if capture else ""


def podman(*args: str, capture: bool = False, check: bool = True) -> str:
    return run(["podman", *args], capture=capture, check=check)


def image_label(reference: str, label: str) -> str | None:
    """The label's value, "" when the image has no such label, None when there is no such image."""
    try:
        value = podman(
            "image", "inspect", "--format", f'{{{{ index .Labels "{label}" }}}}', reference, capture=True
        )
    except BuildError:
        return None
    value = value.strip()
    return "" if value == "<no value>" else value


def _make_base(reference: str, packages: Sequence[str], sources: Sequence[str], digest: str) -> None:
    tarball = BUILD / f"{reference.rpartition(':')[2]}.tar"
    # Downloaded .debs are kept in build/image/debs (mmdebstrap's documented sync-in/sync-out recipe), so
    # the second base and later rebuilds fetch only what changed.
    cache = BUILD / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    cache_hooks = [
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
    ]
    try:
        run(
            [
                "mmdebstrap",
                *MMDEBSTRAP_OPTIONS,
                *cache_hooks,
                f"--include={','.join(packages)}",
                SUITE,
                str(tarball),
                *sources,
            ],
            log_file=tarball.with_suffix(".log"),
        )
        podman(
            "import",
            "--change",
            f"LABEL {RECIPE_LABEL}={digest}",
            "--change",
            'CMD ["/bin/sh"]',
            str(tarball),
            reference,
            capture=True,
        )
    finally:
        tarball.unlink(missing_ok=True)


def ensure_bases(refresh: bool) -> tuple[str, str]:
    """(runtime base, builder base), imported from mmdebstrap root filesystems when missing or stale.

    The builder base is the runtime base plus binutils (``strip``); both are made from the same mirror state
    in one go, so the virtualenv built on one runs on the other's identical Python.
    """
    main, security = apt_mirrors(host_apt_files())
    sources = base_sources(main, security)
    digest = recipe_digest(sources)
    runtime, builder = f"{BASE_REPOSITORY}:{SUITE}", f"{BASE_REPOSITORY}:{SUITE}-build"
    if not refresh and all(image_label(ref, RECIPE_LABEL) == digest for ref in (runtime, builder)):
        log(f"bases {runtime}, {builder} are up to date (recipe {digest})")
        return runtime, builder
    if shutil.which("mmdebstrap") is None:
        raise BuildError("mmdebstrap not found: run `make image-deps` (Debian: apt-get install mmdebstrap)")
    BUILD.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building the base root filesystems with mmdebstrap from {main} ...")
    _make_base(runtime, BASE_PACKAGES, sources, digest)
    _make_base(builder, (*BASE_PACKAGES, *BUILDER_PACKAGES), sources, digest)
    log(f"bases {runtime}, {builder} built in {time.monotonic() - started:.0f} s")
    return runtime, builder


def git_revision() -> str:
    try:
        revision = run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture=True).strip()
        dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture=True)
    except BuildError:
        return "unknown"
    return revision + ("-dirty" if dirty.strip() else "")


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def build(args: argparse.Namespace) -> str:
    if shutil.which("podman") is None:
        raise BuildError("podman not found: run `make image-deps` (Debian: apt-get install podman runc)")
    started = time.monotonic()
    if args.base_image:
        base = builder = args.base_image
    else:
        base, builder = ensure_bases(args.refresh_base)
    log("collecting wheels ...")
    step = time.monotonic()
    wheels = build_wheelhouse(args.python, args.torch)
    log(f"{len(list(wheels.glob('*.whl')))} wheels in {BUILD / 'wheels'} in {time.monotonic() - step:.0f} s")
    reference = f"{args.repository}:{args.tag or project_version()}"
    info = {
        "VERSION": project_version(),
        "REVISION": git_revision(),
        "SOURCE": SOURCE_URL,
        "TORCH": torch_version(wheels),
        "BASE_IMAGE": base,
    }
    # Also copied into the image before its labels: buildah (1.28) leaves build-argument values out of a
    # LABEL step's cache key and would keep the previous revision's labels; a changed file rebuilds the step.
    (BUILD / "build-info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    log(f"building {reference} on {base} ...")
    build_args = [f"--build-arg={key}={value}" for key, value in info.items()]
    podman(
        "build", "--format", "docker", "--network", "none", "--pull=never", "--layers",
        "--file", str(ROOT / "Containerfile"), "--tag", reference,
        f"--build-arg=BUILDER_IMAGE={builder}", *build_args,
        str(ROOT),
    )  # fmt: skip
    size = int(podman("image", "inspect", "--format", "{{.Size}}", reference, capture=True).strip() or 0)
    log(f"{reference}: {size / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    if args.torch == DEFAULT_TORCH and not args.base_image:
        # The standard (CPU, Debian base) image: the one make test and tests/integration/test_image.py use.
        (BUILD / "image-ref").write_text(reference + "\n")
    return reference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/image.md.")
    parser.add_argument("--repository", default=DEFAULT_REPOSITORY, help="image name (default: %(default)s)")
    parser.add_argument("--tag", help="image tag (default: the version in pyproject.toml)")
    parser.add_argument(
        "--torch",
        default=DEFAULT_TORCH,
        help="torch requirement put in the wheelhouse (default: %(default)s, the CPU build)",
    )
    parser.add_argument(
        "--base-image",
        help="build on this local image instead of the mmdebstrap base (needs Python 3.11 at "
        "/usr/bin/python3; e.g. a CUDA runtime base)",
    )
    parser.add_argument(
        "--refresh-base",
        action="store_true",
        help="rebuild the Debian base even when its recipe did not change (new Debian updates)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter whose pip collects the wheels and whose packages pin the versions "
        "(default: this one)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    try:
        print(build(args))
    except BuildError as exc:
        print(f"build_image: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
