"""Backends: who runs the masked batches (in-process model, remote OIP-V2 or OpenAI-compatible replicas).

Names load lazily, so importing one remote backend (``spex_monitor.backends.oip``) pulls in neither torch
nor transformers; ``LocalBackend`` and ``LocalCausalLM`` import torch when first touched.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base import BatchTiming

if TYPE_CHECKING:
    from .causal import LocalCausalLM
    from .local import LocalBackend
    from .openai import OpenAICompletionsBackend

_LAZY = {
    "LocalBackend": ".local",
    "LocalCausalLM": ".causal",
    "OpenAICompletionsBackend": ".openai",
}

__all__ = ["BatchTiming", "LocalBackend", "LocalCausalLM", "OpenAICompletionsBackend"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
