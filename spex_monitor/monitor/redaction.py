"""Redaction of personal data before anything derived from a request is kept.

Interaction keys are words of real requests, and the drift counters keep a vocabulary of them; both end up
in the store, in ``GetInteractionMap`` replies and in the top-interactions JSON. A word that is an email
address, a phone number or an account number must not: every key and vocabulary token passes through a
:class:`Redactor` first, and stored text (``store_text: true``) too. Matches are replaced by a typed
placeholder (``<email>``), so maps still aggregate ("an email address mattered") without the value.

Everything here runs in time linear in the text (issue 23 §1): the patterns, built-in and configured, are
compiled with RE2 (:mod:`spex_monitor.patterns`), matches are blanked in one pass per rule, and words are
normalised with :func:`key_of` (plain string scans) rather than a backtracking regex. Python's ``re`` took
10 s for the email preset on 100,000 letters without an ``@``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..keys import normalize_key
from ..patterns import compile_linear

# Applied in this order whatever the configured order: a card number is <digits>, not a <phone>.
PRESETS: dict[str, str] = {
    # RFC 5321 bounds the parts (local part 64, domain labels 63): bounded quantifiers keep every match,
    # and the scan, short
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}",
    # account, card and ID numbers: any run of 6 or more digits
    "digits": r"\d{6,}",
    # an optional +country code, then 9+ digits with the usual separators: (555) 123-4567, +44 20 7946 0958
    "phone": r"\+?\(?\d[\d\s().-]{7,40}\d",
}
DEFAULT_PRESETS = ("email", "phone", "digits")
# Every preset match contains a digit or an "@": a word without either cannot match one.
_TRIGGERS = frozenset("0123456789@")


def key_of(text: str) -> str:
    """The monitor key of a piece of text (:func:`spex_monitor.keys.normalize_key`, linear time), the same
    key the lenses give the features they cut from it."""
    return normalize_key(text)


def load_hook(path: str) -> Callable[[str], str]:
    """Import ``"package.module:function"``: a user's own ``str -> str`` redaction, run after the regexes."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not 'module:function'")
    hook = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(hook):
        raise ValueError(f"{path!r} is not a callable")
    return hook


@dataclass
class Redactor:
    """Replace every match of the named presets and extra patterns (RE2 syntax); then apply the hook."""

    presets: Iterable[str] = DEFAULT_PRESETS
    patterns: Iterable[str] = ()
    hook: Callable[[str], str] | None = None
    _rules: list[tuple[Any, str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.presets) - set(PRESETS))
        if unknown:
            raise ValueError(f"unknown redaction presets {unknown}; known: {sorted(PRESETS)}")
        chosen = set(self.presets)
        custom = [(compile_linear(p), "<redacted>") for p in self.patterns]
        self._rules = [(compile_linear(PRESETS[name]), f"<{name}>") for name in PRESETS if name in chosen]
        self._rules += custom
        # with presets only, words that cannot match skip the regexes (most words, on the serving path)
        self._presets_only = not custom and self.hook is None

    def __call__(self, text: str) -> str:
        for pattern, placeholder in self._rules:
            text = pattern.sub(placeholder, text)
        return self.hook(text) if self.hook is not None else text

    def pieces(self, text: str) -> dict[str, str]:
        """Normalised words that fall inside a match in ``text``, each with its placeholder.

        A phone number spans several words ("(555)", "123-4567"), and the lens makes each word a key; no
        single word matches the pattern, so keys are judged against matches in the whole text instead.
        Rules apply in order; a later rule does not see text an earlier one matched (it is blanked, in
        one pass per rule).
        """
        found: dict[str, str] = {}
        if self._presets_only and not _TRIGGERS.intersection(text):
            return found
        for pattern, placeholder in self._rules:
            spans = []
            for match in pattern.finditer(text):
                if match.end() == match.start():
                    continue
                spans.append((match.start(), match.end()))
                for word in match.group(0).split():
                    found.setdefault(key_of(word), placeholder)
            if spans:
                parts, last = [], 0
                for start, end in spans:
                    parts += [text[last:start], " " * (end - start)]
                    last = end
                parts.append(text[last:])
                text = "".join(parts)
        return found

    def words(self, words: Iterable[str], text: str | None) -> list[str]:
        """Redact interaction keys or vocabulary tokens taken from ``text`` (multi-word keys word by word)."""
        tainted = self.pieces(text) if text else {}
        if text and not tainted and self.hook is None:
            return list(words)  # nothing in the text matched, so no word of it can (the serving-path case)
        out = []
        for word in words:
            if tainted:
                word = " ".join(tainted.get(key_of(part), part) for part in word.split()) or word
            if not self._presets_only or _TRIGGERS.intersection(word):
                word = self(word)
            out.append(word)
        return out

    @property
    def active(self) -> bool:
        """True when any rule or a hook is configured (otherwise redaction changes nothing)."""
        return bool(self._rules) or self.hook is not None
