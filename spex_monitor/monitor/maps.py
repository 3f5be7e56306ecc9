"""Interaction maps: what a window of explained requests says, keyed by feature *keys* instead of indices.

A per-request explanation speaks of feature indices; a map speaks of key tuples (the sorted keys of a
term's features: normalized words, field names, ``L3.H5``). Per key tuple a map keeps mergeable sums —
count, Σcoef, Σ|coef|, Σcoef² — and a small reservoir of exemplar request ids, so windows and pods merge
by addition. It also keeps a bounded uniform sample of per-request interaction vectors (order ≥ 2),
which is what makes an exact permutation test between two maps possible.

Coefficients are the Fourier (±1 basis) coefficients of :class:`~spex_monitor.attribution.Interactions`:
the basis is orthogonal, so Σcoef² per order is that order's share of the explained variance.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..attribution import Interactions
from .decisive import DecisiveCounts, flag_request
from .drift import DriftCounters
from .map_rows import finite_number as _number
from .map_rows import sample_decisive as _decisive
from .map_rows import sample_present as _present

FORMAT_VERSION = 2  # v2: decisive-interaction counts (v1 maps decode with none)
_MAGIC = b"SPXM"
KeyTuple = tuple[str, ...]
# An encoded map is read from uploads (SetBaseline) and files: bound what decoding it may cost. A full map
# (10,000 key tuples, 2,000 request samples, a 4,000-token vocabulary) is a few MB of JSON.
MAX_DECODED_BYTES = 64 * 1024 * 1024
MAX_LIMITS = (1_000_000, 1_000, 1_000_000)  # max_keys, max_exemplars, max_requests


class MapTooLargeError(ValueError):
    """An encoded map that would decompress past :data:`MAX_DECODED_BYTES` (or declares larger limits)."""


def key_tuple_coefficients(
    terms: dict[tuple[int, ...], float], keys: Sequence[str], min_order: int = 1
) -> dict[KeyTuple, float]:
    """Sum an explanation's coefficients per key tuple (the sorted keys of each term's features), so
    repeated keys in one request aggregate. Terms below ``min_order`` (and the constant) are skipped."""
    per_key: dict[KeyTuple, float] = {}
    for term, coef in terms.items():
        if len(term) < max(min_order, 1):
            continue
        key = tuple(sorted(keys[i] for i in term))
        per_key[key] = per_key.get(key, 0.0) + coef
    return per_key


@dataclass
class KeyStats:
    """Mergeable sums for one key tuple (``weight`` multiplies every request's contribution)."""

    count: float = 0.0
    sum_coef: float = 0.0
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    exemplars: list[str] = field(default_factory=list)

    def add(self, coef: float, weight: float) -> None:
        """Count one request's coefficient ``coef`` with weight ``weight`` into the sums."""
        self.count += weight
        self.sum_coef += weight * coef
        self.sum_abs += weight * abs(coef)
        self.sum_sq += weight * coef * coef

    def merge(self, other: KeyStats, max_exemplars: int) -> None:
        """Add ``other``'s sums into these, and its exemplar ids not held yet while fewer than
        ``max_exemplars``."""
        self.count += other.count
        self.sum_coef += other.sum_coef
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        for request_id in other.exemplars:
            if len(self.exemplars) >= max_exemplars:
                break
            if request_id not in self.exemplars:
                self.exemplars.append(request_id)


@dataclass
class RequestSample:
    """One explained request in the map's bounded sample: its order ≥ 2 key tuples and |coef| mass, and
    ``present``: the distinct keys of all its features (sorted), which tells whether a key tuple *occurred*
    in the request even where the explanation holds no term for it (empty in maps from before it was
    kept: co-occurrence is then unknown); ``decisive``: its decisive key tuples (:mod:`.decisive`)."""

    request_id: str
    weight: float
    keys: list[KeyTuple]
    mass: list[float]
    priority: float  # reservoir priority: the sample keeps the highest priorities
    present: tuple[str, ...] = ()
    decisive: tuple[KeyTuple, ...] = ()


class InteractionMap:
    """Mergeable summary of explained requests, keyed by key tuples.

    Args:
        max_keys: most key tuples kept; the weakest (by Σ|coef|) are folded into a per-order "other"
            bucket that the statistics still count.
        max_exemplars: request ids kept per key tuple.
        max_requests: per-request vectors kept for the permutation test (a uniform sample), and the
            most faithfulness values kept (a sample weighted like the requests they stand for, so a
            decayed rolling baseline forgets old windows at the decay rate instead of growing forever).
        seed: seeds the request sample.
    """

    def __init__(
        self, max_keys: int = 10_000, max_exemplars: int = 5, max_requests: int = 2_000, seed: int = 0
    ) -> None:
        if max_keys < 1 or max_exemplars < 0 or max_requests < 1:
            raise ValueError("max_keys and max_requests must be >= 1, max_exemplars >= 0")
        self.max_keys = max_keys
        self.max_exemplars = max_exemplars
        self.max_requests = max_requests
        self._rng = np.random.default_rng(seed)
        self.stats: dict[KeyTuple, KeyStats] = {}
        self.other: dict[int, KeyStats] = {}
        self.energy: dict[int, float] = {}  # order -> Σ weight·coef² (all terms, incl. evicted)
        self.requests = 0.0
        self.samples: list[RequestSample] = []
        self.faithfulness: list[float] = []
        self.drift = DriftCounters()
        self.decisive = DecisiveCounts(max_keys)  # per key tuple: decisive occurrences, opportunities

    def observe(
        self,
        tokens: list[str] | None = None,
        label: str | None = None,
        confidence: float | None = None,
        weight: float = 1.0,
    ) -> None:
        """Count an observed request's input and output for drift (explained or not)."""
        self.drift.observe(tokens, label, confidence, weight)

    # ------------------------------------------------------------------------------------------- build
    def add(
        self, result: Interactions, keys: Sequence[str], request_id: str = "", weight: float = 1.0
    ) -> None:
        """Fold one explanation in. ``keys[i]`` is feature ``i``'s key; repeated keys aggregate. Where
        ``result.details`` names a decision boundary, its decisive tuples are counted (:mod:`.decisive`)."""
        if len(keys) != result.n_features:
            raise ValueError(f"{len(keys)} keys for an explanation over {result.n_features} features")
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        per_key = key_tuple_coefficients(result.fourier, keys)
        for key, coef in per_key.items():
            order = len(key)
            self.energy[order] = self.energy.get(order, 0.0) + weight * coef * coef
            stats = self.stats.get(key)
            if stats is None:
                stats = self.stats[key] = KeyStats()
            stats.add(coef, weight)
            if request_id and len(stats.exemplars) < self.max_exemplars and request_id not in stats.exemplars:
                stats.exemplars.append(request_id)
        if np.isfinite(result.faithfulness):
            self._fold_faithfulness([float(result.faithfulness)], self.requests, weight)
        self.requests += weight
        high = [(k, abs(c)) for k, c in per_key.items() if len(k) >= 2]
        decisive = flag_request(result, keys)
        if decisive is not None:
            self.decisive.add(decisive, keys, weight, self.samples)
        self._offer(
            RequestSample(
                request_id,
                weight,
                [k for k, _ in high],
                [m for _, m in high],
                float(self._rng.random() ** (1.0 / weight)),
                tuple(sorted(set(keys))),
                decisive or (),
            )
        )
        self._evict()

    def _offer(self, sample: RequestSample) -> None:
        # Weighted reservoir (Efraimidis–Spirakis): keep the max_requests highest priorities u^(1/w).
        self.samples.append(sample)
        if len(self.samples) > self.max_requests:
            self.samples.sort(key=lambda s: -s.priority)
            del self.samples[self.max_requests :]

    def _fold_faithfulness(self, values: list[float], own_weight: float, their_weight: float) -> None:
        """Add ``values`` (standing for ``their_weight`` requests) to the at most ``max_requests`` kept.

        Past the cap each side keeps a share proportional to its weight, rounded at random so that
        folding one value at a time is exactly reservoir sampling (kept with probability cap·w / total).
        """
        cap = self.max_requests
        if len(self.faithfulness) + len(values) <= cap:
            self.faithfulness.extend(values)
            return
        total = own_weight + their_weight
        share = cap * (their_weight / total if total > 0 else 0.5)
        theirs = min(len(values), int(share) + int(self._rng.random() < share - int(share)))
        mine = min(len(self.faithfulness), cap - theirs)
        theirs = min(len(values), cap - mine)  # the other side could not fill its share
        self.faithfulness = self._subsample(self.faithfulness, mine) + self._subsample(values, theirs)

    def _subsample(self, values: list[float], k: int) -> list[float]:
        if k >= len(values):
            return list(values)
        return [values[i] for i in np.sort(self._rng.choice(len(values), size=k, replace=False))]

    def _evict(self) -> None:
        if len(self.stats) <= self.max_keys:
            return
        # Evict down to 90 % of the cap so the sort runs once per many adds, not on every add.
        target = max(1, int(self.max_keys * 0.9))
        ranked = sorted(self.stats.items(), key=lambda kv: kv[1].sum_abs)
        for key, stats in ranked[: len(self.stats) - target]:
            bucket = self.other.setdefault(len(key), KeyStats())
            bucket.merge(KeyStats(stats.count, stats.sum_coef, stats.sum_abs, stats.sum_sq), 0)
            del self.stats[key]

    def merge(self, other: InteractionMap) -> InteractionMap:
        """Add ``other`` into this map (exact for the sums; the request sample stays a uniform sample)."""
        for key, stats in other.stats.items():
            mine = self.stats.get(key)
            if mine is None:
                mine = self.stats[key] = KeyStats()
            mine.merge(stats, self.max_exemplars)
        for order, stats in other.other.items():
            self.other.setdefault(order, KeyStats()).merge(stats, 0)
        for order, energy in other.energy.items():
            self.energy[order] = self.energy.get(order, 0.0) + energy
        self._fold_faithfulness(other.faithfulness, self.requests, other.requests)
        self.requests += other.requests
        self.drift.merge(other.drift)
        self.decisive.merge(other.decisive, self.samples, other.samples)
        # the same set as offering one sample at a time (the max_requests highest priorities), sorted once:
        # one by one re-sorted the full reservoir per sample (1 s of a 10-pod fleet merge)
        self.samples.extend(other.samples)
        if len(self.samples) > self.max_requests:
            self.samples.sort(key=lambda s: -s.priority)
            del self.samples[self.max_requests :]
        self._evict()
        return self

    def scale(self, factor: float) -> InteractionMap:
        """Multiply every sum by ``factor`` (exponential decay of a rolling baseline)."""
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        for stats in (*self.stats.values(), *self.other.values()):
            stats.count *= factor
            stats.sum_coef *= factor
            stats.sum_abs *= factor
            stats.sum_sq *= factor
        self.energy = {k: v * factor for k, v in self.energy.items()}
        self.requests *= factor
        self.decisive.scale(factor)
        for sample in self.samples:
            sample.weight *= factor
        d = self.drift
        d.tokens = {k: v * factor for k, v in d.tokens.items()}
        d.labels = {k: v * factor for k, v in d.labels.items()}
        d.lengths = d.lengths * factor
        d.confidence = d.confidence * factor
        d.observed *= factor
        return self

    @classmethod
    def merged(cls, maps: Iterable[InteractionMap], **kwargs: object) -> InteractionMap:
        """A new map (built with ``kwargs``: ``max_keys``, ``max_exemplars``, ``max_requests``, ``seed``)
        holding the merge of every map in ``maps``.
        """
        out = cls(**kwargs)  # type: ignore[arg-type]
        for m in maps:
            out.merge(m)
        return out

    # ------------------------------------------------------------------------------------------ reading
    def strength(self, key: KeyTuple) -> float:
        """Mean |coefficient| per explained request (0 when the key never appeared)."""
        stats = self.stats.get(key)
        return 0.0 if stats is None or self.requests == 0 else stats.sum_abs / self.requests

    def mean_coef(self, key: KeyTuple) -> float:
        """Mean signed coefficient per explained request (0 when the key never appeared)."""
        stats = self.stats.get(key)
        return 0.0 if stats is None or self.requests == 0 else stats.sum_coef / self.requests

    def order_shares(self) -> dict[int, float]:
        """Energy share of orders 1, 2 and 3+ (Σcoef² by order over all orders)."""
        total = sum(self.energy.values())
        shares = {1: 0.0, 2: 0.0, 3: 0.0}
        for order, energy in self.energy.items():
            shares[min(order, 3)] += energy / total if total else 0.0
        return shares

    def __len__(self) -> int:
        return len(self.stats)

    # ---------------------------------------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        """Compact, versioned encoding: magic, format version, zlib-compressed JSON."""
        payload = {
            "v": FORMAT_VERSION,
            "limits": [self.max_keys, self.max_exemplars, self.max_requests],
            "requests": self.requests,
            "energy": {str(k): v for k, v in self.energy.items()},
            "stats": [
                [list(k), s.count, s.sum_coef, s.sum_abs, s.sum_sq, s.exemplars]
                for k, s in self.stats.items()
            ],
            "other": [[o, s.count, s.sum_coef, s.sum_abs, s.sum_sq] for o, s in self.other.items()],
            "samples": [
                [s.request_id, s.weight, [list(k) for k in s.keys], s.mass, s.priority, list(s.present)]
                + ([[list(k) for k in s.decisive]] if s.decisive else [])
                for s in self.samples
            ],
            "faithfulness": self.faithfulness,
            "drift": self.drift.to_dict(),
            "decisive": self.decisive.to_dict(),
        }
        body = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)
        return _MAGIC + FORMAT_VERSION.to_bytes(2, "big") + body

    @classmethod
    def from_bytes(cls, data: bytes, max_decoded_bytes: int = MAX_DECODED_BYTES) -> InteractionMap:
        """Decode :meth:`to_bytes` output. Raises ``ValueError`` (bad magic, corrupt data) and
        :class:`MapTooLargeError` (past ``max_decoded_bytes`` decompressed, or oversized limits) — after
        decompressing at most ``max_decoded_bytes``, whatever the input claims."""
        if data[:4] != _MAGIC:
            raise ValueError("not an InteractionMap encoding (bad magic)")
        version = int.from_bytes(data[4:6], "big")
        if version > FORMAT_VERSION:
            raise ValueError(f"InteractionMap format v{version} is newer than this build (v{FORMAT_VERSION})")
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(data[6:], max_decoded_bytes)
            if inflater.unconsumed_tail:
                raise MapTooLargeError(
                    f"map: decompresses to more than {max_decoded_bytes} bytes (the most a map may hold)"
                )
            payload = json.loads(raw)
        except (zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"corrupt InteractionMap encoding: {exc}") from exc
        try:
            return cls._from_payload(payload)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            if isinstance(exc, MapTooLargeError):
                raise
            raise ValueError(f"corrupt InteractionMap encoding: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def _from_payload(cls, payload: dict) -> InteractionMap:
        max_keys, max_exemplars, max_requests = (int(v) for v in payload["limits"])
        if any(v > cap for v, cap in zip((max_keys, max_exemplars, max_requests), MAX_LIMITS, strict=True)):
            raise MapTooLargeError(f"map: limits {payload['limits']} exceed {list(MAX_LIMITS)}")
        out = cls(max_keys=max_keys, max_exemplars=max_exemplars, max_requests=max_requests)
        out.requests = _number(payload["requests"], "requests")
        out.energy = {int(k): _number(v, "energy") for k, v in payload["energy"].items()}
        for key, count, sum_coef, sum_abs, sum_sq, exemplars in payload["stats"]:
            sums = (_number(v, "stats") for v in (count, sum_coef, sum_abs, sum_sq))
            out.stats[tuple(str(k) for k in key)] = KeyStats(*sums, [str(e) for e in exemplars])
        for order, count, sum_coef, sum_abs, sum_sq in payload["other"]:
            sums = (_number(v, "other") for v in (count, sum_coef, sum_abs, sum_sq))
            out.other[int(order)] = KeyStats(*sums)
        # Samples written before ``present`` was kept have five fields (co-occurrence unknown for them).
        out.samples = [
            RequestSample(
                str(row[0]),
                _number(row[1], "samples"),
                [tuple(str(k) for k in key) for key in row[2]],
                [_number(m, "samples") for m in row[3]],
                _number(row[4], "samples"),
                tuple(_present(row)),
                _decisive(row),
            )
            for row in payload["samples"]
        ]
        out.faithfulness = [_number(f, "faithfulness") for f in payload["faithfulness"]]
        if "drift" in payload:
            out.drift = DriftCounters.from_dict(payload["drift"])
        if "decisive" in payload:  # v1 maps: no decisive counts (the decisive test then does not apply)
            out.decisive = DecisiveCounts.from_dict(payload["decisive"], max_keys, _number)
        return out

