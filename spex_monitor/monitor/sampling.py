"""Which observed requests get explained: a stratified, bounded, deterministic sampler.

``offer`` is O(1) and never blocks: a request passes a per-model rate test (a hash of its id and the
seed, so every pod makes the same decision for the same request), then enters a bounded per-label
reservoir for the current window (Algorithm R). Workers ``take`` round-robin across labels, so a window
dominated by one predicted label still yields explanations of the others. Everything not taken is
counted with a reason, never silently lost.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_LABELS_PER_MODEL = 64
OTHER_LABEL = "<other>"


@dataclass
class Candidate:
    """An observed request offered to the sampler; ``payload`` is what the worker explains."""

    request_id: str
    model: str
    label: str
    payload: Any = None


def unit_hash(request_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from ``(seed, request_id)``: stable across processes and pods."""
    digest = hashlib.blake2b(f"{seed}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class StratifiedSampler:
    """Args:
    rate: share of requests considered, globally or per model (``{"sentiment": 0.1}``; others 0).
    reservoir_per_label: most candidates held per (model, label) per window.
    seed: seeds the rate hash and the reservoirs.
    """

    rate: float | Mapping[str, float] = 0.05
    reservoir_per_label: int = 64
    seed: int = 0
    dropped: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        rates = self.rate.values() if isinstance(self.rate, Mapping) else [self.rate]
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError(f"rate must be within [0, 1], got {self.rate}")
        if self.reservoir_per_label < 1:
            raise ValueError(f"reservoir_per_label must be >= 1, got {self.reservoir_per_label}")
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(self.seed)
        self._reservoirs: dict[Hashable, list[Candidate]] = {}
        self._seen: Counter = Counter()
        self._strata: Counter = Counter()  # strata per model
        self._turn = 0

    def rate_for(self, model: str) -> float:
        """The share of ``model``'s requests considered (0 for a model missing from a per-model mapping)."""
        if isinstance(self.rate, Mapping):
            return float(self.rate.get(model, 0.0))
        return float(self.rate)

    def offer(self, candidate: Candidate) -> bool:
        """O(1): True when the candidate now sits in a reservoir (it may still be replaced later)."""
        return self.offer_reason(candidate) in ("accepted", "reservoir_replaced")

    def offer_reason(self, candidate: Candidate) -> str:
        """Like :meth:`offer`, saying what happened: ``accepted``, ``reservoir_replaced`` (accepted, an
        older candidate dropped), ``sampled_out`` or ``reservoir_full``."""
        if unit_hash(candidate.request_id, self.seed) >= self.rate_for(candidate.model):
            with self._lock:  # += on a shared counter is a read-modify-write: callers run on many threads
                self.dropped["sampled_out"] += 1
            return "sampled_out"
        stratum = (candidate.model, candidate.label)
        with self._lock:
            if stratum not in self._reservoirs and self._strata[candidate.model] >= MAX_LABELS_PER_MODEL:
                stratum = (candidate.model, OTHER_LABEL)  # bounded strata, whatever labels callers send
            if stratum not in self._reservoirs:
                self._strata[candidate.model] += 1
            reservoir = self._reservoirs.setdefault(stratum, [])
            self._seen[stratum] += 1
            if len(reservoir) < self.reservoir_per_label:
                reservoir.append(candidate)
                return "accepted"
            slot = int(self._rng.integers(self._seen[stratum]))
            if slot < self.reservoir_per_label:
                reservoir[slot] = candidate
                self.dropped["reservoir_replaced"] += 1
                return "reservoir_replaced"
            self.dropped["reservoir_full"] += 1
            return "reservoir_full"

    def take(self) -> Candidate | None:
        """Next candidate, round-robin across strata; ``None`` when all reservoirs are empty."""
        with self._lock:
            strata = [s for s, r in self._reservoirs.items() if r]
            if not strata:
                return None
            stratum = strata[self._turn % len(strata)]
            self._turn += 1
            reservoir = self._reservoirs[stratum]
            return reservoir.pop(int(self._rng.integers(len(reservoir))))

    def new_window(self) -> int:
        """Start a new window: untaken candidates are dropped (counted as ``window_closed``)."""
        with self._lock:
            left = sum(len(r) for r in self._reservoirs.values())
            self.dropped["window_closed"] += left
            self._reservoirs.clear()
            self._seen.clear()
            self._strata.clear()
            return left

    def pending(self) -> int:
        """Candidates waiting in the reservoirs of the current window."""
        with self._lock:
            return sum(len(r) for r in self._reservoirs.values())
