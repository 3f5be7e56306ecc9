"""Prompt lens: the features of a generation's prompt, and masked token-id batches built from them.

The rendered prompt is tokenized **once**; every token gets an owner (the feature whose characters it
covers, or none: template text and special tokens are always kept). A mask then edits id arrays — a masked
token becomes the filler id, or is removed — so no masked variant is ever re-tokenized and the completion's
tokens are exactly the served ones.

Token boundaries: a token belongs to a feature when its characters, less edge whitespace, lie inside the
feature's ranges (so SentencePiece's "▁word" and byte-level BPE's "Ġword" tokens go with their word). A
named segment whose boundary cuts a token is an error naming both (the caller drew the segment; silently
moving it would explain something else). Words or sentences sharing a token are merged into one feature.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .features import normalize_key
from .generation import Generation, Rendered, Span, message_keys, render, sentence_spans, word_spans

PromptUnit = Literal["segments", "words", "sentences", "messages"]
Filler = Literal["unk", "pad", "space", "remove"]


@dataclass(frozen=True)
class PromptFeature:
    """One ablatable part of a prompt: its monitor ``key`` and its character ranges in the rendered text."""

    key: str
    spans: tuple[Span, ...]


@dataclass
class PromptMasker:
    """Masked prompt batches for one generation (build with :func:`prompt_masker`).

    Attributes:
        text: the rendered prompt; ``input_ids`` / ``offsets``: its tokens, tokenized once.
        features: the features, in prompt order; ``token_owner``: feature index per token (-1 = kept).
        completion_ids: the completion's token ids (scored, never masked).
        filler: ``"unk"``, ``"pad"``, ``"space"`` or a token id (masked tokens take that id, positions
            unchanged), or ``"remove"`` (masked tokens are dropped and rows right-padded with
            ``pad_token_id``; a row left empty keeps one ``empty_token_id`` so it still has a context).
    """

    text: str
    input_ids: np.ndarray
    offsets: np.ndarray
    features: list[PromptFeature]
    token_owner: np.ndarray
    completion_ids: list[int]
    filler: Filler | int
    filler_token_id: int
    pad_token_id: int
    empty_token_id: int

    @property
    def n_features(self) -> int:
        """Number of features (mask columns)."""
        return len(self.features)

    @property
    def keys(self) -> list[str]:
        """Monitor key per feature (segment names, message roles, or normalised words/sentences)."""
        return [f.key for f in self.features]

    def build(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(prompt_ids, attention)`` int64 ``(k, L)`` for ``(k, n_features)`` bool masks (True = kept).

        Raises:
            ValueError: masks of the wrong shape.
        """
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n_features:
            raise ValueError(f"masks must have shape (k, {self.n_features}), got {masks.shape}")
        owned = self.token_owner >= 0
        kept = np.ones((masks.shape[0], len(self.input_ids)), dtype=bool)
        kept[:, owned] = masks[:, self.token_owner[owned]]
        ids = np.broadcast_to(self.input_ids, kept.shape).copy()
        if self.filler != "remove":
            ids[~kept] = self.filler_token_id
            return ids, np.ones_like(ids)
        empty = ~kept.any(axis=1)
        kept[empty, 0] = True
        ids[empty, 0] = self.empty_token_id
        lengths = kept.sum(axis=1)
        order = np.argsort(~kept, axis=1, kind="stable")  # kept tokens first, in order
        ids = np.take_along_axis(ids, order, axis=1)
        positions = np.arange(ids.shape[1])[None, :]
        ids[positions >= lengths[:, None]] = self.pad_token_id
        attention = (positions < lengths[:, None]).astype(np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        return ids[:, :width], attention[:, :width]

    def masked_texts(self, masks: np.ndarray, replacement: str = "") -> list[str]:
        """The rendered prompt as text with masked features' characters replaced (for display and logs)."""
        masks = np.asarray(masks, dtype=bool)
        out = []
        for row in masks:
            spans = sorted(s for f, keep in zip(self.features, row, strict=True) if not keep for s in f.spans)
            pieces, cursor = [], 0
            for a, b in spans:
                pieces += [self.text[cursor:a], replacement]
                cursor = b
            out.append("".join(pieces) + self.text[cursor:])
        return out


def prompt_masker(
    generation: Generation,
    tokenizer: Any,
    unit: PromptUnit = "segments",
    max_features: int | None = 64,
    filler: Filler | int = "unk",
    add_special_tokens: bool | None = None,
) -> PromptMasker:
    """Features of ``generation``'s prompt for ``unit`` and the masker that ablates them.

    Args:
        generation: the prompt (text or chat messages) and the served completion.
        tokenizer: the model's transformers *fast* tokenizer (character offsets are needed).
        unit: ``"segments"`` (the caller's named segments; the rest of the prompt is kept), ``"messages"``
            (one feature per chat message, keyed by role), ``"words"`` or ``"sentences"`` (inside the
            prompt text, or inside message contents for chat prompts).
        max_features: cap; neighbouring features merge into at most this many groups (``None``: no cap).
        filler: what a masked token becomes (see :class:`PromptMasker`).
        add_special_tokens: passed to the tokenizer; default True for plain prompts, False for chat
            prompts (the template already wrote the special tokens).

    Raises:
        ValueError: an unknown unit or filler; a unit the generation cannot give (no segments, no
            messages); a segment cutting a token; a filler the tokenizer has no token for; a slow tokenizer.
    """
    if unit not in ("segments", "words", "sentences", "messages"):
        raise ValueError(f"unit must be 'segments', 'words', 'sentences' or 'messages', got {unit!r}")
    if max_features is not None and max_features < 1:
        raise ValueError(f"max_features must be >= 1 or None, got {max_features}")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("prompt_masker needs a fast (Rust) tokenizer: character offsets are required")
    rendered = render(generation, tokenizer)
    chat = generation.messages is not None
    special = (not chat) if add_special_tokens is None else add_special_tokens
    encoded = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=special)
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    offsets = np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    features, named = _features(rendered, unit, chat)
    features, owner = _assign(rendered.text, offsets, features, named)
    if max_features is not None and len(features) > max_features:
        features, owner = _cap(features, owner, max_features, joiner=" + " if named else " ")
    filler_id, pad_id, empty_id = _filler_ids(tokenizer, filler)
    completion = (
        list(generation.completion_ids)
        if generation.completion_ids is not None
        else tokenizer(generation.completion, add_special_tokens=False)["input_ids"]
    )
    if not completion:
        raise ValueError("the completion is empty: there is nothing to score")
    return PromptMasker(
        rendered.text, ids, offsets, features, owner, [int(t) for t in completion], filler, filler_id,
        pad_id, empty_id,
    )  # fmt: skip


def _features(rendered: Rendered, unit: PromptUnit, chat: bool) -> tuple[list[PromptFeature], bool]:
    text = rendered.text
    if unit == "segments":
        if not rendered.segments:
            raise ValueError("unit='segments' needs named segments (Generation(segments={...}))")
        return [PromptFeature(name, (span,)) for name, span in rendered.segments.items()], True
    if unit == "messages":
        if not chat:
            raise ValueError("unit='messages' needs a chat prompt (Generation(messages=[...]))")
        keys = message_keys(rendered.roles)
        pairs = zip(keys, rendered.content, strict=True)
        return [PromptFeature(key, (span,)) for key, span in pairs if span[1] > span[0]], True
    spans = word_spans(text, rendered.content) if unit == "words" else sentence_spans(text, rendered.content)
    if not spans:
        raise ValueError(f"the prompt has no {unit} to explain")
    return [PromptFeature(normalize_key(text[a:b]), ((a, b),)) for a, b in spans], False


def _assign(
    text: str, offsets: np.ndarray, features: list[PromptFeature], named: bool
) -> tuple[list[PromptFeature], np.ndarray]:
    """Owner feature per token; words/sentences sharing a token are merged, segments cutting one raise."""
    ranges = sorted((a, b, i) for i, f in enumerate(features) for a, b in f.spans)
    starts = [a for a, _, _ in ranges]
    parent = list(range(len(features)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = np.full(len(offsets), -1, dtype=np.int64)
    for token, (a, b) in enumerate(offsets.tolist()):
        if b <= a:
            continue  # special token added by the tokenizer: always kept
        core_a, core_b = a, b
        while core_a < core_b and text[core_a].isspace():
            core_a += 1
        while core_b > core_a and text[core_b - 1].isspace():
            core_b -= 1
        blank = core_a == core_b
        lo, hi = (a, b) if blank else (core_a, core_b)
        touched = []
        for r in ranges[max(bisect_right(starts, lo) - 1, 0) :]:
            if r[0] >= hi:
                break
            if r[1] > lo:
                touched.append(r)
        inside = [r for r in touched if r[0] <= lo and hi <= r[1]]
        if inside:
            owner[token] = inside[0][2]
            continue
        if blank or not touched:
            continue  # whitespace between features, or template text: kept
        if named:
            names = ", ".join(repr(features[r[2]].key) for r in touched)
            raise ValueError(
                f"segment {names} cuts token {text[a:b]!r} (characters {a}..{b}); segments must start and "
                "end on token boundaries"
            )
        root = find(touched[0][2])
        for r in touched[1:]:
            parent[find(r[2])] = root
        owner[token] = root
    roots = sorted({find(i) for i in range(len(features))}, key=lambda i: features[i].spans[0])
    if len(roots) == len(features):
        return features, owner
    members: dict[int, list[int]] = {r: [] for r in roots}
    for i in range(len(features)):
        members[find(i)].append(i)
    new_index = {r: j for j, r in enumerate(roots)}
    merged = [
        PromptFeature(
            " ".join(features[i].key for i in members[r]),
            tuple(sorted(s for i in members[r] for s in features[i].spans)),
        )
        for r in roots
    ]
    remap = np.asarray([new_index[find(i)] for i in range(len(features))], dtype=np.int64)
    return merged, np.where(owner >= 0, remap[np.maximum(owner, 0)], -1)


def _cap(
    features: list[PromptFeature], owner: np.ndarray, max_features: int, joiner: str
) -> tuple[list[PromptFeature], np.ndarray]:
    """Merge neighbours into ``max_features`` contiguous groups of near-equal size (as cap_features)."""
    bounds = np.linspace(0, len(features), max_features + 1).round().astype(int)
    group = np.zeros(len(features), dtype=np.int64)
    merged = []
    for g, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        group[lo:hi] = g
        members = features[lo:hi]
        merged.append(
            PromptFeature(joiner.join(f.key for f in members), tuple(s for f in members for s in f.spans))
        )
    return merged, np.where(owner >= 0, group[np.maximum(owner, 0)], -1)


def _filler_ids(tokenizer: Any, filler: Filler | int) -> tuple[int, int, int]:
    """``(filler id, pad id, id for a row left empty)``."""
    unk, pad = tokenizer.unk_token_id, tokenizer.pad_token_id
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    fallback = next((t for t in (unk, pad, eos, bos) if t is not None), 0)
    pad_id = int(pad if pad is not None else fallback)
    if isinstance(filler, bool) or not isinstance(filler, int | str):
        raise ValueError(f"filler must be 'unk', 'pad', 'space', 'remove' or a token id, got {filler!r}")
    if isinstance(filler, int):
        if not 0 <= filler < len(tokenizer):
            raise ValueError(f"filler token id {filler} is outside the vocabulary of {len(tokenizer)}")
        return filler, pad_id, filler
    if filler == "remove":
        return pad_id, pad_id, int(fallback)
    if filler == "unk":
        if unk is None:
            raise ValueError("filler='unk': the tokenizer has no unk token; use 'pad', 'space' or 'remove'")
        return int(unk), pad_id, int(unk)
    if filler == "pad":
        if pad is None:
            raise ValueError("filler='pad': the tokenizer has no pad token; use 'unk', 'space' or 'remove'")
        return int(pad), pad_id, int(pad)
    if filler == "space":
        space = tokenizer(" ", add_special_tokens=False)["input_ids"]
        if len(space) != 1:
            raise ValueError(
                f"filler='space': a space is {len(space)} tokens for this tokenizer, not one; "
                "use 'unk', 'pad' or 'remove'"
            )
        return int(space[0]), pad_id, int(space[0])
    raise ValueError(f"filler must be 'unk', 'pad', 'space', 'remove' or a token id, got {filler!r}")


def feature_tokens(masker: PromptMasker) -> list[Sequence[int]]:
    """Token positions owned by each feature (for display and tests)."""
    return [np.nonzero(masker.token_owner == i)[0].tolist() for i in range(masker.n_features)]
