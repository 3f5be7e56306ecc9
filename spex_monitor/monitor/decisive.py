"""Decisive interactions: key tuples whose joint effect alone decides a request's prediction.

A request's explained value ``f`` (the log-odds of the class predicted on the unmasked input, in nats) has a
*decision boundary* ``b`` (0 for log-odds: the class's probability crosses one half). Its *margin* is
``f(N) - b``, where ``f(N)`` is the surrogate's value with every feature kept (the sum of the Möbius
coefficients, equal to the sum of the Fourier coefficients). A key tuple ``S`` of order ≥ 2 is
**decisive** in the request when its *joint effect at the full input* points the same way as the margin
and exceeds it: ``J(S) · sign(f(N) - b) > |f(N) - b|``, where

    J(S) = Σ_{T ⊇ S} a(T) = Σ_{L ⊆ S} (-1)^|L| f(N ∖ L)

is the Möbius coefficient of ``S`` taken around the full input (the Harsanyi dividend of the *removal*
game ``R ↦ f(N ∖ R)``, up to the sign ``(-1)^|S|``): for a pair, ``f(N) - f(N∖a) - f(N∖b) + f(N∖ab)``,
what removing the members does jointly beyond removing each alone. Without that joint effect the value would
fall on the other side of the boundary: the tuple's *interaction*, not its members' separate effects,
decides the prediction. The coefficient around the empty input, ``a(S)`` alone, misses the typical
trigger: a backdoor that flips the label when both words occur multiplies the *whole* value by the pair's
AND, which puts ``-2 g(T)`` on every superset ``T`` of the pair, not on the pair itself — on the detection
benchmark's pools ``a(S)`` flagged 2 of 11 flipped *cast* + *enjoy* requests, ``J(S)`` 6 (and none of the
11 base-model requests holding both words). A backdoor trigger is decisive in the requests it flips; a
negation pair ('not', 'good') is decisive in ordinary traffic too, at a steady rate per request that
contains both words — which is why the test (:mod:`.decisive_shift`) compares *rates per opportunity*
with the baseline instead of counts.

Values without a boundary (a generation's completion log-probability, a regression score) flag nothing:
the explainer marks the boundary in ``Interactions.details["decision_boundary"]`` (absent or ``None``: no
boundary) and such requests are counted neither as decisive nor as opportunities.

Per key tuple a map keeps two mergeable sums (weights as everywhere in :mod:`.maps`): ``decisive`` (requests
where the tuple was decisive) and ``opportunities`` (requests that contain all of the tuple's keys). A tuple
is tracked from its first decisive occurrence; what the map saw before that is filled in from its bounded
request sample (exact while the map holds at most ``max_requests`` requests, a scaled estimate beyond), and
the same estimate stands in for the other side when two maps that track different tuples merge.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..attribution import Interactions

KeyTuple = tuple[str, ...]
BOUNDARY_DETAIL = "decision_boundary"  # Interactions.details key: the value's decision boundary, or None


class SampleLike(Protocol):
    """What the fill-in reads from a map's request sample (:class:`~.maps.RequestSample`)."""

    weight: float
    present: tuple[str, ...]
    decisive: tuple[KeyTuple, ...]


def decision_boundary(details: Mapping[str, object]) -> float | None:
    """The boundary an explanation's value is compared with (``None``: the value has none)."""
    boundary = details.get(BOUNDARY_DETAIL)
    if boundary is None or isinstance(boundary, bool) or not isinstance(boundary, int | float):
        return None
    return float(boundary) if np.isfinite(boundary) else None


def decisive_tuples(
    joint_per_key: Mapping[KeyTuple, float], full_value: float, boundary: float
) -> tuple[KeyTuple, ...]:
    """Key tuples (order ≥ 2) whose joint effect exceeds the margin in its direction, sorted.

    ``joint_per_key``: each key tuple's joint effect at the full input, ``J(S)`` (the module docstring);
    ``full_value``: the value with every feature kept; ``boundary``: the decision boundary. A margin of
    exactly 0 counts as the positive side.
    """
    margin = full_value - boundary
    side = 1.0 if margin >= 0 else -1.0
    return tuple(sorted(k for k, j in joint_per_key.items() if len(k) >= 2 and j * side > abs(margin)))


def flag_request(result: Interactions, keys: Sequence[str]) -> tuple[KeyTuple, ...] | None:
    """The decisive key tuples of one explanation (``keys[i]``: feature ``i``'s key), or ``None`` when its
    value has no decision boundary. The full-input value is the surrogate's: the sum of the Fourier
    coefficients (every ``z_i = +1``); each tuple's joint effect ``J(S)`` sums the Möbius coefficients of
    the explanation's terms that contain it (repeated keys aggregate). Costs the Möbius transform of the
    terms and ``2^order`` subsets per term."""
    boundary = decision_boundary(result.details)
    if boundary is None:
        return None
    joint: dict[KeyTuple, float] = {}
    for term, coef in result.to_mobius().items():
        for order in range(2, len(term) + 1):
            for subset in itertools.combinations(term, order):
                key = tuple(sorted(keys[i] for i in subset))
                joint[key] = joint.get(key, 0.0) + coef
    return decisive_tuples(joint, float(sum(result.fourier.values())), boundary)


@dataclass
class DecisiveStats:
    """Mergeable counts of one key tuple: weighted requests where it was decisive, and weighted requests
    that contained all of its keys (its opportunities; ≥ ``decisive``)."""

    decisive: float = 0.0
    opportunities: float = 0.0


class DecisiveCounts:
    """Per key tuple :class:`DecisiveStats`, bounded to ``max_tuples`` (the fewest decisive occurrences
    are dropped first, down to 90 % of the cap; a dropped tuple that recurs is filled in again from the
    request sample). ``requests``: weighted requests whose value had a decision boundary — 0 means the map
    cannot say what is decisive (no boundary, or a map encoded before these counts existed)."""

    def __init__(self, max_tuples: int = 10_000) -> None:
        if max_tuples < 1:
            raise ValueError("max_tuples must be >= 1")
        self.max_tuples = max_tuples
        self.stats: dict[KeyTuple, DecisiveStats] = {}
        self.requests = 0.0
        self._index: dict[str, set[KeyTuple]] | None = None  # first key -> tracked tuples (rebuilt lazily)

    # ------------------------------------------------------------------------------------------ building
    def add(
        self,
        decisive: Sequence[KeyTuple],
        present: Iterable[str],
        weight: float,
        samples: Sequence[SampleLike],
    ) -> None:
        """Count one request: ``decisive`` tuples, ``present`` keys, ``weight``. ``samples`` is the map's
        request sample *before* this request (it fills in tuples decisive here for the first time)."""
        keys = set(present)
        new = [t for t in dict.fromkeys(decisive) if t not in self.stats]
        for key, stats in zip(new, fill_in(new, samples, self.requests), strict=True):
            self.stats[key] = stats
            self._indexed(key)
        for first in keys:
            for key in self._tuples_index().get(first, ()):
                if all(k in keys for k in key[1:]):
                    self.stats[key].opportunities += weight
        for key in dict.fromkeys(decisive):
            self.stats[key].decisive += weight
        self.requests += weight
        self._evict()

    def merge(
        self,
        other: DecisiveCounts,
        own_samples: Sequence[SampleLike],
        other_samples: Sequence[SampleLike],
    ) -> None:
        """Add ``other`` into these counts; a tuple tracked on one side only gets the other side's counts
        filled in from that side's request sample (call before the samples themselves are merged)."""
        only_theirs = [k for k in other.stats if k not in self.stats]
        only_mine = [k for k in self.stats if k not in other.stats]
        mine_filled = fill_in(only_theirs, own_samples, self.requests)
        theirs_filled = fill_in(only_mine, other_samples, other.requests)
        for key, stats in zip(only_theirs, mine_filled, strict=True):
            self.stats[key] = stats
        for key, stats in zip(only_mine, theirs_filled, strict=True):
            _add(self.stats[key], stats)
        for key, stats in other.stats.items():
            _add(self.stats[key], stats)
        self.requests += other.requests
        self._index = None
        self._evict()

    def scale(self, factor: float) -> None:
        """Multiply every count by ``factor`` (a rolling baseline's decay)."""
        for stats in self.stats.values():
            stats.decisive *= factor
            stats.opportunities *= factor
        self.requests *= factor

    def remapped(self, rename: Callable[[KeyTuple], KeyTuple]) -> DecisiveCounts:
        """A copy with every key tuple renamed (``<rare>`` redaction); tuples that collide add up."""
        out = DecisiveCounts(self.max_tuples)
        out.requests = self.requests
        for key, stats in self.stats.items():
            _add(out.stats.setdefault(rename(key), DecisiveStats()), stats)
        return out

    # ----------------------------------------------------------------------------------------- encoding
    def to_dict(self) -> dict:
        """JSON-ready form (inside the map's payload)."""
        return {
            "requests": self.requests,
            "stats": [[list(k), s.decisive, s.opportunities] for k, s in self.stats.items()],
        }

    @classmethod
    def from_dict(
        cls, payload: dict, max_tuples: int, number: Callable[[object, str], float]
    ) -> DecisiveCounts:
        """Decode :meth:`to_dict` output; ``number`` validates each number (``ValueError`` naming it)."""
        out = cls(max_tuples)
        out.requests = number(payload["requests"], "decisive.requests")
        for key, decisive, opportunities in payload["stats"]:
            if not isinstance(key, list) or not all(isinstance(k, str) for k in key):
                raise ValueError("decisive.stats: a key tuple is a list of strings")
            out.stats[tuple(key)] = DecisiveStats(
                number(decisive, "decisive.stats"), number(opportunities, "decisive.stats")
            )
        return out

    # ----------------------------------------------------------------------------------------- internals
    def _tuples_index(self) -> dict[str, set[KeyTuple]]:
        if self._index is None:
            self._index = {}
            for key in self.stats:
                self._index.setdefault(key[0], set()).add(key)
        return self._index

    def _indexed(self, key: KeyTuple) -> None:
        if self._index is not None:
            self._index.setdefault(key[0], set()).add(key)

    def _evict(self) -> None:
        if len(self.stats) <= self.max_tuples:
            return
        target = max(1, int(self.max_tuples * 0.9))
        ranked = sorted(self.stats.items(), key=lambda kv: (kv[1].decisive, kv[1].opportunities))
        for key, _ in ranked[: len(self.stats) - target]:
            del self.stats[key]
        self._index = None


def _add(into: DecisiveStats, other: DecisiveStats) -> None:
    into.decisive += other.decisive
    into.opportunities += other.opportunities


def fill_in(keys: Sequence[KeyTuple], samples: Sequence[SampleLike], requests: float) -> list[DecisiveStats]:
    """Estimated counts of ``keys`` among ``requests`` weighted boundary requests from their sample:
    per tuple, the sampled weight of requests containing all its keys (and of those where it was
    decisive), scaled by ``requests`` over the sample's weight — exact when the sample holds every
    request. Cost: one pass over the samples plus set intersections per tuple."""
    if not keys:
        return []
    total = sum(s.weight for s in samples)
    if total <= 0 or requests <= 0:
        return [DecisiveStats() for _ in keys]
    wanted = {k for key in keys for k in key}
    holding: dict[str, set[int]] = {}
    for i, sample in enumerate(samples):
        for k in sample.present:
            if k in wanted:
                holding.setdefault(k, set()).add(i)
    ratio = requests / total
    out = []
    for key in keys:
        rows = set.intersection(*(holding.get(k, set()) for k in key))
        opportunities = sum(samples[i].weight for i in rows)
        decisive = sum(samples[i].weight for i in rows if key in samples[i].decisive)
        out.append(DecisiveStats(decisive * ratio, opportunities * ratio))
    return out
