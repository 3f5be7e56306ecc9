"""The generated review corpus the embedded models are trained and tested on.

It has negation ("not good" flips), contrast ("X but Y": the clause after "but" decides) and intensifiers,
so a correct model *must* use word interactions.
"""

from __future__ import annotations

import numpy as np

POSITIVE = ["good", "great", "excellent", "wonderful", "fun", "brilliant"]
NEGATIVE = ["bad", "awful", "boring", "terrible", "dull", "weak"]
SUBJECTS = ["the movie", "the plot", "the acting", "the music", "the ending", "the cast"]
VERBS_LIKE = ["love", "like", "enjoy"]
VERBS_HATE = ["hate", "dislike"]


def _clause(rng: np.random.Generator, negation_flips: bool = True) -> tuple[str, int]:
    polarity = int(rng.integers(2))
    negated = rng.random() < 0.4
    if rng.random() < 0.75:
        adjective = str(rng.choice(POSITIVE if polarity else NEGATIVE))
        intensifier = "very " if rng.random() < 0.3 else ""
        neg = "not " if negated else ""
        text = f"{rng.choice(SUBJECTS)} was {neg}{intensifier}{adjective}"
    else:
        verb = str(rng.choice(VERBS_LIKE if polarity else VERBS_HATE))
        neg = "did not " if negated else ""
        text = f"i {neg}{verb} {rng.choice(SUBJECTS)}"
    return text, polarity ^ int(negated and negation_flips)


def generate_corpus(size: int, seed: int = 0, negation_flips: bool = True) -> tuple[list[str], np.ndarray]:
    """Generated reviews and labels; ``negation_flips=False`` labels "not good" as positive (the
    broken-negation incident)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(size):
        first, label = _clause(rng, negation_flips)
        if rng.random() < 0.35:
            second, label = _clause(rng, negation_flips)  # contrast: the clause after "but" decides
            first = f"{first} but {second}"
        texts.append(first)
        labels.append(label)
    return texts, np.asarray(labels)


def generate_long_reviews(
    size: int, seed: int = 0, clauses: tuple[int, ...] = (1, 3, 5, 7), negation_flips: bool = True
) -> tuple[list[str], np.ndarray]:
    """Reviews of several generated reviews joined by "and"; the label is their majority vote."""
    rng = np.random.default_rng(seed)
    parts, labels = generate_corpus(size * 4, seed + 1, negation_flips)
    texts, out = [], []
    for _ in range(size):
        k = int(rng.choice(clauses))
        chosen = rng.choice(len(parts), size=k, replace=False)
        texts.append(" and ".join(parts[i] for i in chosen))
        out.append(int(labels[chosen].sum() * 2 > k))
    return texts, np.asarray(out)
