"""Monitor keys: the name a piece of input text goes by in interaction maps, reports and metrics-free lookups.

A leaf module (standard library only) because both the lenses (which name features) and the monitor (which
counts words for the ``<rare>`` filter and redaction) must compute exactly the same key.
"""

from __future__ import annotations

import unicodedata


def _is_word_char(char: str) -> bool:
    """Python ``re``'s ``\\w`` for ``str`` patterns: Unicode letters and digits, and the underscore."""
    return char.isalnum() or char == "_"


def normalize_key(text: str) -> str:
    """The monitor key of ``text``: NFKC, lower-case, inner whitespace collapsed, edge punctuation stripped;
    a token that is only punctuation keeps it (so "!" stays a key).

    Linear in ``len(text)``: plain scans from both ends. The regex ``^[^\\w]+|[^\\w]+$`` it replaces is
    quadratic in Python's ``re`` on a word like ``1((((…((1`` (21 s at 20,000 characters).
    """
    folded = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    start, end = 0, len(folded)
    while start < end and not _is_word_char(folded[start]):
        start += 1
    while end > start and not _is_word_char(folded[end - 1]):
        end -= 1
    return folded[start:end] or folded
