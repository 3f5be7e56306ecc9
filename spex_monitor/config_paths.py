"""File paths in the configuration: resolved against the config file's folder, checked for existence.

A relative path in ``sidecar.yaml`` (a model folder, a reference file, a baseline, TLS files, the store)
means the same file whichever folder ``spex-monitor serve`` runs from: it is resolved against the folder
of the config file that holds it (with no file, against the working directory). Environment overrides
(``SPEX_MONITOR_*``) are resolved the same way, so give them absolute paths when that is not what you mean.

Every configured path must exist before the sidecar starts, except the store's database, whose folder is
created on first use (:data:`CREATED_ON_USE`); left unset, the store goes to a data directory outside the
working tree (:func:`default_store_path`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

CREATED_ON_USE = frozenset({"store.path"})
CREATED_ON_USE_SUFFIXES = (".training.cache_dir",)  # models.<i>.training.cache_dir: made by trace --data


def default_store_path() -> Path:
    """Where the store lives when ``store.path`` is not set: a data directory, never the working tree —
    ``$XDG_DATA_HOME/spex-monitor/spex-monitor.db``, ``~/.local/share/spex-monitor/spex-monitor.db``
    without it (in the image, whose home is ``/var/lib/spex-monitor``, under that volume)."""
    root = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(root).expanduser() / "spex-monitor" / "spex-monitor.db"


def _paths(node: object, prefix: str) -> Iterator[tuple[str, object, str, Path]]:
    """``(field path, owner, attribute, value)`` of every ``Path`` value under ``node`` (models and lists)."""
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            value = getattr(node, name)
            where = f"{prefix}.{name}" if prefix else name
            if isinstance(value, Path):
                yield where, node, name, value
            else:
                yield from _paths(value, where)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _paths(item, f"{prefix}.{i}")


def resolve_paths(settings: BaseModel, base: Path) -> BaseModel:
    """Make every relative ``Path`` in ``settings`` absolute against ``base`` (in place; returns it)."""
    base = base.resolve()
    for _, owner, name, value in list(_paths(settings, "")):
        if not value.is_absolute():
            object.__setattr__(owner, name, base / value.expanduser())
    return settings


def missing_paths(settings: BaseModel) -> list[tuple[str, str]]:
    """``(field path, reason)`` for each configured path that does not exist (``store.path`` excepted)."""
    return [
        (where, f"{value}: no such file or folder")
        for where, _, _, value in _paths(settings, "")
        if where not in CREATED_ON_USE and not where.endswith(CREATED_ON_USE_SUFFIXES) and not value.exists()
    ]
