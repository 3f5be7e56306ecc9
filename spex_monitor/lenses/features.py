"""Feature lens: split an input into features, give each a monitor key, and build masked variants.

Text is split into words (default), sentences, tokens or caller-given character spans; each feature
keeps its character span so masking happens at the **token-id level**: the text is tokenized once and
masked variants are built by editing id arrays (replace with the mask/unk id, remove, or zero the
attention mask), never by re-tokenizing strings. Long inputs are capped at ``max_features`` by merging
neighbours into contiguous groups. Structured inputs (a dict of fields) mask a field by giving it a
baseline value: a per-field default or a value drawn from a reference sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..keys import normalize_key

Unit = Literal["words", "sentences", "tokens", "spans"]
Strategy = Literal["mask", "remove", "attention"]

_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


@dataclass(frozen=True)
class Feature:
    """One ablatable unit of an input.

    ``key`` is what the monitor aggregates on (normalized word text, field name); ``span`` is the
    half-open character range in the original text (``None`` for structured fields).
    """

    key: str
    span: tuple[int, int] | None = None


def segment_text(
    text: str,
    unit: Unit = "words",
    max_features: int | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
    token_offsets: Sequence[tuple[int, int]] | None = None,
) -> list[Feature]:
    """Split ``text`` into features.

    Args:
        unit: ``"words"`` (whitespace-separated), ``"sentences"``, ``"tokens"`` (needs
            ``token_offsets`` from the tokenizer) or ``"spans"`` (needs ``spans``).
        max_features: cap; neighbours are merged into at most this many contiguous groups.
        spans: caller-given half-open character spans (``unit="spans"``).
        token_offsets: per-token character offsets; ``(0, 0)`` entries (special tokens) are skipped.
    """
    if unit == "words":
        ranges = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    elif unit == "sentences":
        ranges = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]
        ranges = [_trim(text, a, b) for a, b in ranges]
    elif unit == "tokens":
        if token_offsets is None:
            raise ValueError("unit='tokens' needs token_offsets from the tokenizer")
        ranges = [(int(a), int(b)) for a, b in token_offsets if b > a]
    elif unit == "spans":
        if spans is None:
            raise ValueError("unit='spans' needs spans=[(start, end), ...]")
        ranges = [(int(a), int(b)) for a, b in spans]
        for a, b in ranges:
            if not 0 <= a < b <= len(text):
                raise ValueError(f"span ({a}, {b}) is outside the text of length {len(text)} or empty")
    else:
        raise ValueError(f"unit must be 'words', 'sentences', 'tokens' or 'spans', got {unit!r}")
    features = [Feature(normalize_key(text[a:b]), (a, b)) for a, b in ranges]
    if max_features is not None:
        features = cap_features(features, max_features)
    return features


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def cap_features(features: list[Feature], max_features: int) -> list[Feature]:
    """Merge neighbours into at most ``max_features`` contiguous groups of near-equal size.

    The merged key joins the member keys with spaces; the span covers the members. A 5,000-word input
    becomes ``max_features`` phrase features instead of 5,000 word features.
    """
    if max_features < 1:
        raise ValueError(f"max_features must be >= 1, got {max_features}")
    if len(features) <= max_features:
        return list(features)
    bounds = np.linspace(0, len(features), max_features + 1).round().astype(int)
    merged = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        group = features[lo:hi]
        spans = [f.span for f in group if f.span is not None]
        span = (spans[0][0], spans[-1][1]) if spans else None
        merged.append(Feature(" ".join(f.key for f in group), span))
    return merged


@dataclass
class TextMasker:
    """Builds masked token-id batches for one tokenized text.

    Args:
        input_ids: the token ids of the full text (special tokens included), tokenized once.
        offsets: per-token character offsets as the tokenizer reports them; ``(0, 0)`` marks special
            tokens, which are never masked.
        features: the features whose spans decide which tokens each mask bit controls.
        mask_token_id: id used by the ``"mask"`` strategy (the tokenizer's mask token, else unk).
        pad_token_id: id used to right-pad ``"remove"`` rows.
        strategy: ``"mask"`` (replace ids), ``"remove"`` (drop tokens), ``"attention"`` (attention 0).
    """

    input_ids: Sequence[int]
    offsets: Sequence[tuple[int, int]]
    features: Sequence[Feature]
    mask_token_id: int
    pad_token_id: int = 0
    strategy: Strategy = "mask"

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.offsets):
            raise ValueError(f"{len(self.input_ids)} input ids but {len(self.offsets)} offsets")
        if self.strategy not in ("mask", "remove", "attention"):
            raise ValueError(f"strategy must be 'mask', 'remove' or 'attention', got {self.strategy!r}")
        self._ids = np.asarray(self.input_ids, dtype=np.int64)
        spans = []
        for index, feature in enumerate(self.features):
            if feature.span is None:
                raise ValueError(f"feature {index} ({feature.key!r}) has no character span")
            spans.append(feature.span)
        starts = np.asarray([a for a, _ in spans], dtype=np.int64)
        ends = np.asarray([b for _, b in spans], dtype=np.int64)
        if np.any(np.diff(starts) < 0) or np.any(starts[1:] < ends[:-1]):
            raise ValueError("feature spans must be sorted and must not overlap")
        offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        # The feature owning a token is the last one starting before the token ends, if it overlaps.
        candidate = np.searchsorted(starts, offsets[:, 1], side="left") - 1
        valid = (candidate >= 0) & (offsets[:, 1] > offsets[:, 0])
        safe = np.clip(candidate, 0, max(len(spans) - 1, 0))
        overlaps = valid & (ends[safe] > offsets[:, 0]) if spans else np.zeros(len(offsets), bool)
        owner = np.where(overlaps, candidate, -1)
        self.token_owner = owner  # feature index per token, -1 = always kept

    @property
    def n_features(self) -> int:
        """Number of features (mask columns)."""
        return len(self.features)

    def build(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of shape ``(k, L)`` for ``(k, n_features)`` bool masks."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        owned = self.token_owner >= 0
        kept = np.ones((masks.shape[0], len(self._ids)), dtype=bool)
        kept[:, owned] = masks[:, self.token_owner[owned]]
        ids = np.broadcast_to(self._ids, kept.shape).copy()
        attention = np.ones_like(ids)
        if self.strategy == "mask":
            ids[~kept] = self.mask_token_id
        elif self.strategy == "attention":
            attention[~kept] = 0
        else:
            lengths = kept.sum(axis=1)
            order = np.argsort(~kept, axis=1, kind="stable")  # kept tokens first, in order
            ids = np.take_along_axis(ids, order, axis=1)
            positions = np.arange(ids.shape[1])[None, :]
            ids[positions >= lengths[:, None]] = self.pad_token_id
            attention = (positions < lengths[:, None]).astype(np.int64)
        return ids, attention


@dataclass
class FieldMasker:
    """Masks fields of a structured record (as tabular models served by KServe receive them).

    A masked field takes its baseline value: ``defaults[field]`` when given, otherwise the field's value in
    reference records. ``draws`` donor records are drawn from ``reference`` once (seeded) and reused for
    every mask (common random numbers), so the value function stays a deterministic function of the mask;
    :meth:`build` returns ``draws`` rows per mask and :meth:`mean_over_draws` folds the model's outputs
    back to one value per mask: the interventional expectation over the reference distribution.
    """

    record: Mapping[str, Any]
    defaults: Mapping[str, Any] | None = None
    reference: Sequence[Mapping[str, Any]] | None = None
    draws: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self.fields = list(self.record)
        if not self.fields:
            raise ValueError("record has no fields to explain")
        if self.draws < 1:
            raise ValueError(f"draws must be >= 1, got {self.draws}")
        missing = [f for f in self.fields if not (self.defaults and f in self.defaults)]
        if missing and not self.reference:
            raise ValueError(f"fields {missing} have no default and no reference sample to draw from")
        for index, row in enumerate(self.reference or ()):
            absent = [f for f in missing if f not in row]
            if absent:
                raise ValueError(f"reference[{index}] lacks fields {absent}")
        rng = np.random.default_rng(self.seed)
        picks = rng.integers(len(self.reference), size=self.draws) if self.reference else []
        self.donors = [self.reference[int(i)] for i in picks] if self.reference else [{}] * self.draws

    @property
    def features(self) -> list[Feature]:
        """One feature per field of the record, keyed by the field name, in record order."""
        return [Feature(field) for field in self.fields]

    @property
    def n_features(self) -> int:
        """Number of fields (mask columns)."""
        return len(self.fields)

    def build(self, masks: np.ndarray) -> list[dict[str, Any]]:
        """``draws`` rows per mask, mask-major: row ``i * draws + d`` is mask ``i`` with donor ``d``."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        rows = []
        for mask in masks:
            for donor in self.donors:
                row = dict(self.record)
                for field, keep in zip(self.fields, mask.tolist(), strict=True):
                    if not keep:
                        has_default = self.defaults is not None and field in self.defaults
                        row[field] = self.defaults[field] if has_default else donor[field]  # type: ignore[index]
                rows.append(row)
        return rows

    def mean_over_draws(self, values: np.ndarray) -> np.ndarray:
        """One value per mask from the model's outputs on :meth:`build`'s rows."""
        values = np.asarray(values, dtype=np.float64)
        return values.reshape(-1, self.draws).mean(axis=1)


def mask_texts(
    text: str, features: Sequence[Feature], masks: np.ndarray, replacement: str = "[MASK]"
) -> list[str]:
    """Masked *strings*, for servers that take raw text (OIP ``BYTES`` inputs) and tokenize themselves.

    Each masked feature's span is replaced by ``replacement`` (``""`` removes it); text between features
    is kept verbatim. Local models use :class:`TextMasker` instead (token-id level, tokenized once).
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[1] != len(features):
        raise ValueError(f"masks must have shape (k, {len(features)}), got {masks.shape}")
    spans = [f.span for f in features]
    if any(span is None for span in spans):
        raise ValueError("every feature needs a character span to mask text")
    pieces, cursor = [], 0
    for a, b in spans:  # type: ignore[misc]
        pieces.append(text[cursor:a])
        cursor = b
    tail = text[cursor:]
    words = [text[a:b] for a, b in spans]  # type: ignore[misc]
    out = []
    for row in masks:
        parts = []
        for gap, word, keep in zip(pieces, words, row.tolist(), strict=True):
            parts.append(gap)
            parts.append(word if keep else replacement)
        parts.append(tail)
        out.append(" ".join("".join(parts).split()))
    return out
