"""A generation to explain: a prompt (plain text or chat messages) plus the completion the model served.

The prompt is rendered once into text (chat messages through the tokenizer's own chat template) and every
unit the caller may ask for — named segments, messages, words, sentences — becomes a set of character
ranges in that rendered text. :mod:`spex_monitor.lenses.prompt` turns those ranges into token ownership.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int]
SegmentSpec = tuple[int, int] | tuple[int, int, int]

_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$|(?=\n))")


@dataclass(frozen=True)
class Generation:
    """One served generation.

    Args:
        prompt: the prompt as plain text (exactly one of ``prompt`` / ``messages``).
        messages: chat messages ``[{"role": ..., "content": ...}, ...]``, rendered with the model's chat
            template (with the generation prompt appended).
        completion: the text the model served (never masked).
        segments: named parts of the prompt, ``name -> (start, end)`` half-open character offsets into
            ``prompt`` (for ``messages``: into the *rendered* prompt), or ``name -> (message_index, start,
            end)`` offsets into that message's ``content``. Names become monitor keys
            (``"system"``, ``"doc:refund-policy"``, ``"question"``); segments must not overlap.
        completion_ids: the token ids the model served, when known (exact; otherwise the completion text
            is tokenized on its own).

    Raises:
        ValueError: both or neither of ``prompt``/``messages``; a message without a string ``role`` and
            ``content``; a malformed segment (the message names it).
    """

    prompt: str | None = None
    messages: Sequence[Mapping[str, str]] | None = None
    completion: str = ""
    segments: Mapping[str, SegmentSpec] = field(default_factory=dict)
    completion_ids: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("Generation needs exactly one of prompt= or messages=")
        if self.messages is not None:
            if isinstance(self.messages, str | bytes) or not self.messages:
                raise ValueError("messages must be a non-empty list of {role, content} dicts")
            for index, message in enumerate(self.messages):
                if not isinstance(message, Mapping) or not all(
                    isinstance(message.get(k), str) for k in ("role", "content")
                ):
                    raise ValueError(f"messages[{index}] needs string 'role' and 'content'")
        if not isinstance(self.completion, str):
            raise ValueError("completion must be a string")
        if self.completion_ids is not None and not all(
            isinstance(t, int) and t >= 0 for t in self.completion_ids
        ):
            raise ValueError("completion_ids must be non-negative ints")
        for name, spec in self.segments.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"segment names must be non-empty strings, got {name!r}")
            if not (isinstance(spec, tuple | list) and len(spec) in (2, 3)):
                raise ValueError(f"segment {name!r}: expected (start, end) or (message, start, end)")
            if not all(isinstance(v, int) for v in spec):
                raise ValueError(f"segment {name!r}: offsets must be ints, got {spec!r}")
            if len(spec) == 3 and self.messages is None:
                raise ValueError(f"segment {name!r}: (message, start, end) needs messages=")

    @classmethod
    def from_parts(
        cls, parts: Sequence[tuple[str | None, str]], completion: str, **kwargs: Any
    ) -> Generation:
        """A plain-text prompt from ``(segment name or None, text)`` pieces, concatenated in order.

        ``Generation.from_parts([("system", "Be brief. "), ("doc:1", "..."), (None, " Q: "),
        ("question", "...")], completion="...")`` records each named piece as a segment.
        """
        text, segments, cursor = [], {}, 0
        for name, piece in parts:
            if name is not None:
                if name in segments:
                    raise ValueError(f"segment {name!r} given twice")
                segments[name] = (cursor, cursor + len(piece))
            text.append(piece)
            cursor += len(piece)
        return cls(prompt="".join(text), completion=completion, segments=segments, **kwargs)


@dataclass(frozen=True)
class Rendered:
    """A generation's prompt as text, with the character ranges the units are made of.

    ``content`` holds the ranges that belong to the caller (the whole prompt, or each message's content
    inside the template's text); template text outside them is never a feature.
    """

    text: str
    content: list[Span]
    roles: list[str]
    segments: dict[str, Span]


def render(generation: Generation, tokenizer: Any) -> Rendered:
    """Render the prompt (chat template for messages) and resolve every segment to rendered offsets.

    Raises:
        ValueError: the tokenizer has no chat template; a message's content does not appear verbatim in
            the rendered text (a template that rewrites content cannot be explained by character spans);
            a segment outside its text, empty, or overlapping another.
    """
    if generation.prompt is not None:
        text = generation.prompt
        content = [(0, len(text))]
        roles: list[str] = []
    else:
        messages = [dict(m) for m in generation.messages or ()]
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("messages= needs a tokenizer with a chat template (tokenizer.chat_template)")
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        content = _locate_contents(tokenizer, messages, text)
        roles = [m["role"] for m in messages]
    segments: dict[str, Span] = {}
    for name, spec in generation.segments.items():
        if len(spec) == 3:
            index, start, end = spec  # type: ignore[misc]
            if not 0 <= index < len(content):
                raise ValueError(f"segment {name!r}: message index {index} is out of range")
            base, limit = content[index]
            if not 0 <= start < end <= limit - base:
                raise ValueError(
                    f"segment {name!r}: ({start}, {end}) is empty or outside message {index}'s content "
                    f"of length {limit - base}"
                )
            segments[name] = (base + start, base + end)
        else:
            start, end = spec  # type: ignore[misc]
            if not 0 <= start < end <= len(text):
                raise ValueError(
                    f"segment {name!r}: ({start}, {end}) is empty or outside the prompt of length {len(text)}"
                )
            segments[name] = (start, end)
    ordered = sorted(segments.items(), key=lambda item: item[1])
    for (name_a, (_, end_a)), (name_b, (start_b, _)) in zip(ordered, ordered[1:], strict=False):
        if start_b < end_a:
            raise ValueError(f"segments {name_a!r} and {name_b!r} overlap")
    return Rendered(text, content, roles, dict(ordered))


def _locate_contents(tokenizer: Any, messages: list[dict[str, str]], text: str) -> list[Span]:
    """Each message content's range in the rendered text.

    The template is rendered a second time with a unique placeholder per content; the template text
    between placeholders then tells exactly where each content sits (a content that also occurs inside the
    template's own text, say a message "user", is not mistaken for it). A template that rewrites contents
    (trims, escapes) falls back to a left-to-right verbatim search.
    """
    marks = [f"\ue000{index}\ue001" for index in range(len(messages))]
    probe = [{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)]
    skeleton = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    pieces, cursor, ok = [], 0, True
    for mark in marks:
        found = skeleton.find(mark, cursor)
        if found < 0:
            ok = False
            break
        pieces.append(skeleton[cursor:found])
        cursor = found + len(mark)
    if ok:
        pieces.append(skeleton[cursor:])
        spans, rebuilt, position = [], [], 0
        for piece, message in zip(pieces, messages, strict=False):
            position += len(piece)
            spans.append((position, position + len(message["content"])))
            position += len(message["content"])
            rebuilt += [piece, message["content"]]
        if "".join(rebuilt) + pieces[-1] == text:
            return spans
    spans, cursor = [], 0
    for index, message in enumerate(messages):
        found = text.find(message["content"], cursor)
        if found < 0:
            raise ValueError(
                f"messages[{index}]: its content does not appear verbatim in the chat template's "
                "output, so its characters cannot be located"
            )
        spans.append((found, found + len(message["content"])))
        cursor = found + len(message["content"])
    return spans


def word_spans(text: str, ranges: Sequence[Span]) -> list[Span]:
    """Whitespace-separated words inside each range."""
    return [(a + m.start(), a + m.end()) for a, b in ranges for m in _WORD.finditer(text[a:b])]


def sentence_spans(text: str, ranges: Sequence[Span]) -> list[Span]:
    """Sentences (ending in ``.!?`` or a line break) inside each range, edge whitespace trimmed."""
    out = []
    for a, b in ranges:
        for match in _SENTENCE.finditer(text[a:b]):
            start, end = a + match.start(), a + match.end()
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if end > start:
                out.append((start, end))
    return out


def message_keys(roles: Sequence[str]) -> list[str]:
    """Stable keys for messages: the role, with ``#2``, ``#3``... for its later occurrences."""
    seen: dict[str, int] = {}
    keys = []
    for role in roles:
        seen[role] = seen.get(role, 0) + 1
        keys.append(role if seen[role] == 1 else f"{role}#{seen[role]}")
    return keys
