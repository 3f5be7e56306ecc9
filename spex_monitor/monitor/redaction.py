"""Redaction of personal data before anything derived from a request is kept.

Interaction keys are words of real requests, and the drift counters keep a vocabulary of them; both end up
in the store, in ``GetInteractionMap`` replies and in the top-interactions JSON. A word that is an email
address, a phone number or an account number must not: every key and vocabulary token passes through a
:class:`Redactor` first, and stored text (``store_text: true``) too. Matches are replaced by a typed
placeholder (``<email>``), so maps still aggregate ("an email address mattered") without the value.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..lenses.features import normalize_key

# Applied in this order whatever the configured order: a card number is <digits>, not a <phone>.
PRESETS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    # account, card and ID numbers: any run of 6 or more digits
    "digits": r"\d{6,}",
    # an optional +country code, then 9+ digits with the usual separators: (555) 123-4567, +44 20 7946 0958
    "phone": r"\+?\(?\d[\d\s().-]{7,}\d",
}
DEFAULT_PRESETS = ("email", "phone", "digits")
# Every preset match contains a digit or an "@": a word without either cannot match one.
_PRESET_TRIGGER = re.compile(r"[\d@]")


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
    """Replace every match of the named presets and extra patterns; then apply the optional hook."""

    presets: Iterable[str] = DEFAULT_PRESETS
    patterns: Iterable[str] = ()
    hook: Callable[[str], str] | None = None
    _rules: list[tuple[re.Pattern[str], str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.presets) - set(PRESETS))
        if unknown:
            raise ValueError(f"unknown redaction presets {unknown}; known: {sorted(PRESETS)}")
        chosen = set(self.presets)
        custom = [(re.compile(p), "<redacted>") for p in self.patterns]
        self._rules = [(re.compile(PRESETS[name]), f"<{name}>") for name in PRESETS if name in chosen]
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
        """
        found: dict[str, str] = {}
        for pattern, placeholder in self._rules:
            for match in pattern.finditer(text):
                for word in match.group(0).split():
                    found.setdefault(normalize_key(word), placeholder)
                text = text.replace(match.group(0), " " * len(match.group(0)), 1)
        return found

    def words(self, words: Iterable[str], text: str | None) -> list[str]:
        """Redact interaction keys or vocabulary tokens taken from ``text`` (multi-word keys word by word)."""
        tainted = self.pieces(text) if text else {}
        if text and not tainted and self.hook is None:
            return list(words)  # nothing in the text matched, so no word of it can (the serving-path case)
        out = []
        for word in words:
            if tainted:
                word = " ".join(tainted.get(normalize_key(part), part) for part in word.split()) or word
            if not self._presets_only or _PRESET_TRIGGER.search(word):
                word = self(word)
            out.append(word)
        return out

    @property
    def active(self) -> bool:
        return bool(self._rules) or self.hook is not None
