"""Backends: who runs the masked batches (in-process model, or remote OIP-V2 replicas)."""

from .base import BatchTiming
from .local import LocalBackend

__all__ = ["BatchTiming", "LocalBackend"]
