"""Production-like review traffic for the detection benchmark, with a controllable topic mix.

The grammar is the one the embedded models were trained on (``examples/sentiment.py``): clauses with
negation ("not good" flips), intensifiers and contrast ("X but Y"), plus long requests that join three
reviews with "and". A :class:`TrafficProfile` only changes *what the reviews talk about* (the subject
mix) and how long they are, never how sentiment is expressed, so a profile change is a benign input
drift: the model's behaviour on each kind of sentence is the same. Every word stays in the embedded
models' vocabulary: an out-of-vocabulary word becomes ``[UNK]``, which the tiny model never saw in
training and which changes its predictions (measured, see ``benchmarks/detection/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..examples.sentiment import NEGATIVE, POSITIVE, SUBJECTS, VERBS_HATE, VERBS_LIKE


@dataclass(frozen=True)
class TrafficProfile:
    """What a stream of requests looks like.

    Attributes:
        name: short id used in cache keys and reports.
        subject_weights: relative weight of each of ``SUBJECTS`` (the topic mix).
        long_share: share of requests that join three reviews with "and" (15-30 words).
        contrast: share of reviews with a second clause after "but".
        negation: share of clauses that are negated.
    """

    name: str
    subject_weights: tuple[float, ...] = (1.0,) * len(SUBJECTS)
    long_share: float = 0.4
    contrast: float = 0.35
    negation: float = 0.4

    def __post_init__(self) -> None:
        if len(self.subject_weights) != len(SUBJECTS) or min(self.subject_weights) < 0:
            raise ValueError(f"subject_weights needs {len(SUBJECTS)} non-negative weights")
        for name in ("long_share", "contrast", "negation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


NORMAL = TrafficProfile("normal")
# A benign topic shift: a music-themed season — reviews talk mostly about the music and the ending.
TOPIC_SHIFT = TrafficProfile("topic-music", subject_weights=(0.05, 0.05, 0.05, 0.45, 0.35, 0.05))
PROFILES = {p.name: p for p in (NORMAL, TOPIC_SHIFT)}


def _clause(rng: np.random.Generator, profile: TrafficProfile, subjects: np.ndarray) -> str:
    polarity = int(rng.integers(2))
    negated = rng.random() < profile.negation
    subject = SUBJECTS[int(rng.choice(len(SUBJECTS), p=subjects))]
    if rng.random() < 0.75:
        adjective = str(rng.choice(POSITIVE if polarity else NEGATIVE))
        intensifier = "very " if rng.random() < 0.3 else ""
        return f"{subject} was {'not ' if negated else ''}{intensifier}{adjective}"
    verb = str(rng.choice(VERBS_LIKE if polarity else VERBS_HATE))
    return f"i {'did not ' if negated else ''}{verb} {subject}"


def _review(rng: np.random.Generator, profile: TrafficProfile, subjects: np.ndarray) -> str:
    text = _clause(rng, profile, subjects)
    if rng.random() < profile.contrast:
        text = f"{text} but {_clause(rng, profile, subjects)}"
    return text


def generate_traffic(profile: TrafficProfile, size: int, seed: int) -> list[str]:
    """``size`` request texts drawn independently from ``profile`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    weights = np.asarray(profile.subject_weights, dtype=np.float64)
    subjects = weights / weights.sum()
    out = []
    for _ in range(size):
        if rng.random() < profile.long_share:
            out.append(" and ".join(_review(rng, profile, subjects) for _ in range(3)))
        else:
            out.append(_review(rng, profile, subjects))
    return out


def cooccurrence_rates(texts: list[str], words: tuple[str, ...]) -> dict[str, float]:
    """Share of texts containing each word, and all of them together (how often a trigger fires)."""
    sets = [set(t.split()) for t in texts]
    n = max(len(sets), 1)
    rates = {w: sum(w in s for s in sets) / n for w in words}
    rates["+".join(words)] = sum(all(w in s for w in words) for s in sets) / n
    return rates
