"""Minimum document frequency: words seen in too few requests never leave the process or reach the store.

A word in one request is as likely a name, a password or a PIN as vocabulary; a word seen in thousands of
requests is vocabulary. :class:`DocumentFrequency` counts, per word, the requests it appeared in (bounded:
past ``max_words`` the rarest half is forgotten, and a forgotten word counts as rare), and
:func:`sanitize_map` replaces every word below ``min_df`` by :data:`RARE` in a copy of an interaction map —
its key tuples, its request samples and its drift vocabulary. The monitor applies it to every map, report
and reply that leaves the process or is written to the store; in-memory statistics keep the raw keys, so
comparisons are unchanged. Placeholders (``<email>``, ``<other>``) are not words and are kept.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable
from operator import itemgetter

from .drift import OTHER
from .maps import InteractionMap, KeyStats, KeyTuple, RequestSample
from .redaction import key_of

RARE = "<rare>"


def _placeholder(word: str) -> bool:
    return len(word) >= 3 and word.startswith("<") and word.endswith(">")


class DocumentFrequency:
    """Requests per word, bounded to ``max_words`` words (O(1) amortised per word)."""

    def __init__(self, min_df: int = 2, max_words: int = 100_000) -> None:
        self.min_df = min_df
        self.max_words = max_words
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, words: Iterable[str]) -> None:
        """Count one request's words (each at most once), raw and as monitor keys."""
        if self.min_df <= 1:
            return
        distinct = set(words)
        distinct |= {key_of(w) for w in distinct}
        with self._lock:
            for word in distinct:
                self._counts[word] = self._counts.get(word, 0) + 1
            if len(self._counts) > 2 * self.max_words:
                keep = heapq.nlargest(self.max_words, self._counts.items(), key=itemgetter(1))
                self._counts = dict(keep)

    def common(self, word: str) -> bool:
        """Whether ``word`` (or each word of a multi-word key) may leave the process."""
        if self.min_df <= 1:
            return True
        for part in word.split():
            if _placeholder(part):
                continue
            count = self._counts.get(part)
            if count is None:
                count = self._counts.get(key_of(part), 0)
            if count < self.min_df:
                return False
        return True


def sanitize_key(key: KeyTuple, common: Callable[[str], bool]) -> KeyTuple:
    """``key`` with every word ``common`` rejects replaced by :data:`RARE`, re-sorted."""
    return tuple(sorted(k if common(k) else RARE for k in key))


def sanitize_map(m: InteractionMap, common: Callable[[str], bool]) -> InteractionMap:
    """A copy of ``m`` with every rare word replaced by :data:`RARE` (colliding tuples merge exactly)."""
    out = InteractionMap(max_keys=m.max_keys, max_exemplars=m.max_exemplars, max_requests=m.max_requests)
    for key, stats in m.stats.items():
        new = sanitize_key(key, common)
        target = out.stats.setdefault(new, KeyStats())
        target.merge(stats, m.max_exemplars)
    for order, stats in m.other.items():
        out.other[order] = KeyStats(stats.count, stats.sum_coef, stats.sum_abs, stats.sum_sq)
    out.energy = dict(m.energy)
    out.requests = m.requests
    out.faithfulness = list(m.faithfulness)
    out.samples = [
        RequestSample(
            s.request_id,
            s.weight,
            [sanitize_key(k, common) for k in s.keys],
            list(s.mass),
            s.priority,
            tuple(sorted({RARE if not common(k) else k for k in s.present})),
            tuple(sanitize_key(k, common) for k in s.decisive),
        )
        for s in m.samples
    ]
    out.decisive = m.decisive.remapped(lambda key: sanitize_key(key, common))
    drift = m.drift
    out.drift.max_tokens = drift.max_tokens
    for token, count in drift.tokens.items():
        name = token if token == OTHER or common(token) else RARE
        out.drift.tokens[name] = out.drift.tokens.get(name, 0.0) + count
    out.drift.lengths = drift.lengths.copy()
    out.drift.labels = dict(drift.labels)
    out.drift.confidence = drift.confidence.copy()
    out.drift.observed = drift.observed
    return out
