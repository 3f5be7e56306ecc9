"""``spex-monitor explain`` for LLM generations: the options that describe one, and the protobuf they make.

``--prompt TEXT`` or ``--messages FILE`` (a JSON list of ``{"role", "content"}``, or an OpenAI request body
with a ``messages`` list), ``--completion TEXT`` (the text the model served), and named segments with
``--segment name=start:end`` (prompt offsets) / ``--segment name=message:start:end`` (offsets into one
message's content) or ``--segments FILE`` (JSON ``{"name": [start, end] | [message, start, end]}``).
Offsets are half-open, in Unicode code points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


class GenerationArgsError(ValueError):
    """A generation option that cannot be read; the message names the option."""


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--prompt``, ``--messages``, ``--completion``, ``--segment`` and ``--segments`` to ``parser``."""
    group = parser.add_argument_group("LLM generations (models with lens.kind: prompt)")
    group.add_argument("--prompt", help="the plain-text prompt")
    group.add_argument("--messages", metavar="FILE", help="JSON chat messages [{role, content}, ...]")
    group.add_argument("--completion", help="the completion the model served (explained by teacher forcing)")
    group.add_argument(
        "--segment",
        action="append",
        default=[],
        metavar="NAME=START:END",
        help="a named prompt segment (repeatable); NAME=MESSAGE:START:END for a chat message's content",
    )
    group.add_argument(
        "--segments", metavar="FILE", help='JSON {"name": [start, end] or [message, start, end]}'
    )


def wants_generation(args: argparse.Namespace) -> bool:
    """Whether the command line describes a generation (any generation option given)."""
    return any((args.prompt, args.messages, args.completion, args.segment, args.segments))


def _read_json(option: str, path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise GenerationArgsError(f"{option}: {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise GenerationArgsError(f"{option}: {path} is not JSON ({exc})") from exc


def _segment(option: str, name: str, spec: Any) -> dict[str, Any]:
    if (
        not isinstance(spec, list | tuple)
        or len(spec) not in (2, 3)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in spec)
    ):
        raise GenerationArgsError(
            f"{option}: segment {name!r} needs [start, end] or [message, start, end] (non-negative integers)"
        )
    if len(spec) == 3:
        return {"name": name, "message": spec[0], "start": spec[1], "end": spec[2]}
    return {"name": name, "start": spec[0], "end": spec[1]}


def generation_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``spex_monitor.v1.Generation`` fields the options describe (a dict for ``pb.Generation(**d)``).

    Raises:
        GenerationArgsError: no completion, both or neither of ``--prompt``/``--messages``, an unreadable
            file, a malformed segment.
    """
    if not args.completion:
        raise GenerationArgsError("--completion: required for a generation (the text the model served)")
    if bool(args.prompt) == bool(args.messages):
        raise GenerationArgsError("--prompt / --messages: give exactly one")
    fields: dict[str, Any] = {"completion": args.completion, "segments": []}
    if args.prompt:
        fields["prompt"] = args.prompt
    else:
        loaded = _read_json("--messages", args.messages)
        messages = loaded.get("messages") if isinstance(loaded, dict) else loaded
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise GenerationArgsError('--messages: a JSON list of {"role": ..., "content": ...} objects')
        fields["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
    if args.segments:
        loaded = _read_json("--segments", args.segments)
        if not isinstance(loaded, dict):
            raise GenerationArgsError('--segments: a JSON object {"name": [start, end], ...}')
        fields["segments"] += [_segment("--segments", str(k), v) for k, v in loaded.items()]
    for item in args.segment:
        name, sep, spec = item.partition("=")
        parts = spec.split(":")
        if not sep or not name or not all(p.isdigit() for p in parts):
            raise GenerationArgsError(f"--segment: {item!r} is not NAME=START:END or NAME=MESSAGE:START:END")
        fields["segments"].append(_segment("--segment", name, [int(p) for p in parts]))
    return fields


def generation_title(args: argparse.Namespace) -> str:
    """A one-line description of the generation for the HTML/PNG title."""
    prompt = args.prompt or f"messages from {args.messages}"
    return f"{prompt[:80]} ⇒ {args.completion[:40]}"
