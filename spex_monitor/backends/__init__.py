"""Backends: who runs the masked batches (in-process model, or remote OIP-V2 replicas).

Names load lazily, so importing one remote backend (``spex_monitor.backends.oip``) pulls in neither torch
nor transformers; ``LocalBackend`` imports torch when first touched.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base import BatchTiming

if TYPE_CHECKING:
    from .local import LocalBackend

_LAZY = {
    "LocalBackend": ".local",
}

__all__ = ["BatchTiming", "LocalBackend"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
