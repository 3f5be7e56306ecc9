"""Generations from callers (Observe, Explain, the OpenAI proxy) → a validated :class:`Generation`.

Every entry path hands plain values here, so one generation is accepted or refused the same way — with the
same message naming the same field (``generation.segments[2].end: ...``) — whichever door it came through.
Each check costs O(the bytes given): sizes are bounded first, segments are sorted once to find overlaps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..lenses.generation import Generation
from .observations import MAX_EXPLAINED_WORD, MAX_TEXT, InvalidObservation, unicode_problem

MAX_COMPLETION = 65_536
MAX_MESSAGES = 256
MAX_ROLE = 32
MAX_SEGMENTS = 256
MAX_SEGMENT_NAME = 128
# segment names become monitor keys ("doc:refund-policy", "question", "tool#2"): no whitespace or controls
_SEGMENT_NAME = re.compile(r"^[\w.:#/@+-]+$")
_ROLE = re.compile(r"^[A-Za-z_][\w-]*$")


@dataclass(frozen=True)
class SegmentInput:
    """One named segment as a caller sends it: ``message`` is ``None`` for offsets into a plain prompt."""

    name: str
    message: int | None
    start: int
    end: int


def _text(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidObservation(f"{field}: longer than {limit} characters")
    problem = unicode_problem(value)
    if problem:
        raise InvalidObservation(f"{field}: {problem}")
    longest = max((len(word) for word in value.split()), default=0)
    if longest > MAX_EXPLAINED_WORD:
        raise InvalidObservation(
            f"{field}: a word of {longest} characters without whitespace; at most {MAX_EXPLAINED_WORD} are "
            "explained"
        )


def build_generation(
    *,
    prompt: str | None,
    messages: Sequence[tuple[str, str]] | None,
    completion: str,
    segments: Sequence[SegmentInput] = (),
    temperature: float = 0.0,
    top_p: float = 0.0,
) -> Generation:
    """Validate a generation and build it (``prompt`` xor non-empty ``messages`` of ``(role, content)``).

    Bounds: prompt and all message contents together at most 200,000 characters, completion at most
    65,536, at most 256 messages (roles of 1-32 identifier characters) and 256 segments (names of 1-128
    characters from ``A-Z a-z 0-9 _ . : # / @ + -`` and other word characters); segments non-empty, inside
    their text, not overlapping, names unique; sampling parameters finite and non-negative (``top_p`` at
    most 1). Temperature is recorded by the caller only: the completion served is what gets explained.

    Raises:
        InvalidObservation: the first problem, naming its field under ``generation.``.
    """
    if messages:
        if prompt:
            raise InvalidObservation("generation.prompt: give a prompt or messages, not both")
        if len(messages) > MAX_MESSAGES:
            raise InvalidObservation(f"generation.messages: at most {MAX_MESSAGES} messages")
        total = 0
        for index, (role, content) in enumerate(messages):
            if not _ROLE.match(role or "") or len(role) > MAX_ROLE:
                raise InvalidObservation(
                    f"generation.messages[{index}].role: 1 to {MAX_ROLE} characters A-Z a-z 0-9 _ - "
                    "(system, user, assistant, tool, ...)"
                )
            total += len(content)
            if total > MAX_TEXT:
                raise InvalidObservation(f"generation.messages: contents longer than {MAX_TEXT} characters")
            _text(f"generation.messages[{index}].content", content, MAX_TEXT)
        lengths = [len(content) for _, content in messages]
    else:
        if not prompt or not prompt.strip():
            raise InvalidObservation("generation.prompt: give a non-blank prompt or messages")
        _text("generation.prompt", prompt, MAX_TEXT)
        lengths = []
    _text("generation.completion", completion, MAX_COMPLETION)
    if not completion:
        raise InvalidObservation("generation.completion: empty (the served completion is what is explained)")
    if not math.isfinite(temperature) or temperature < 0:
        raise InvalidObservation("generation.temperature: a finite number >= 0")
    if not math.isfinite(top_p) or not 0.0 <= top_p <= 1.0:
        raise InvalidObservation("generation.top_p: in [0, 1] (0 = unknown)")
    spans = _segments(segments, prompt if not messages else None, lengths)
    try:
        return Generation(
            prompt=None if messages else prompt,
            messages=[{"role": r, "content": c} for r, c in messages] if messages else None,
            completion=completion,
            segments=spans,
        )
    except ValueError as exc:  # the checks above make this unreachable; keep the contract anyway
        raise InvalidObservation(f"generation: {exc}") from exc


def _segments(
    segments: Sequence[SegmentInput], prompt: str | None, lengths: list[int]
) -> dict[str, tuple[int, int] | tuple[int, int, int]]:
    if len(segments) > MAX_SEGMENTS:
        raise InvalidObservation(f"generation.segments: at most {MAX_SEGMENTS} segments")
    out: dict[str, tuple[int, int] | tuple[int, int, int]] = {}
    placed: list[tuple[int, int, int, str]] = []
    for index, segment in enumerate(segments):
        field = f"generation.segments[{index}]"
        name = segment.name
        if not name or len(name) > MAX_SEGMENT_NAME or not _SEGMENT_NAME.match(name):
            raise InvalidObservation(
                f"{field}.name: 1 to {MAX_SEGMENT_NAME} characters without whitespace "
                "(letters, digits, _ . : # / @ + -)"
            )
        if name in out:
            raise InvalidObservation(f"{field}.name: {name!r} is given twice")
        if segment.message is None:
            if prompt is None:
                raise InvalidObservation(f"{field}.message: required for a chat prompt (the message index)")
            limit, where = len(prompt), "the prompt"
        else:
            if prompt is not None:
                raise InvalidObservation(f"{field}.message: only for chat messages (leave it unset)")
            if not 0 <= segment.message < len(lengths):
                raise InvalidObservation(f"{field}.message: {segment.message} is not a message index")
            limit, where = lengths[segment.message], f"message {segment.message}'s content"
        if not 0 <= segment.start < segment.end <= limit:
            raise InvalidObservation(
                f"{field}.end: ({segment.start}, {segment.end}) is empty or outside {where} of length {limit}"
            )
        message = -1 if segment.message is None else segment.message
        placed.append((message, segment.start, segment.end, name))
        out[name] = (
            (segment.start, segment.end)
            if segment.message is None
            else (segment.message, segment.start, segment.end)
        )
    placed.sort()
    for a, b in zip(placed, placed[1:], strict=False):
        if a[0] == b[0] and b[1] < a[2]:
            raise InvalidObservation(f"generation.segments: {a[3]!r} and {b[3]!r} overlap")
    return out


def generation_from_pb(message: object) -> Generation:
    """A validated :class:`Generation` from a ``spex_monitor.v1.Generation`` protobuf message.

    Raises:
        InvalidObservation: see :func:`build_generation`.
    """
    segments = [
        SegmentInput(s.name, s.message if s.HasField("message") else None, s.start, s.end)
        for s in message.segments  # type: ignore[attr-defined]
    ]
    return build_generation(
        prompt=message.prompt,  # type: ignore[attr-defined]
        messages=[(m.role, m.content) for m in message.messages],  # type: ignore[attr-defined]
        completion=message.completion,  # type: ignore[attr-defined]
        segments=segments,
        temperature=message.temperature,  # type: ignore[attr-defined]
        top_p=message.top_p,  # type: ignore[attr-defined]
    )
