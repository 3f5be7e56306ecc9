"""Planted explanations for the decisive-interaction tests: known Möbius coefficients per request.

Each request holds 8 content words, sometimes the trigger words 'cast' and 'enjoy', one adjective and
sometimes 'not'. Its value (the log-odds of the predicted class, boundary 0) is a sum of planted Möbius
terms: a constant, one weight per word, a few random word pairs (now and then decisive by chance, like
real explanations' noise), a negation pair ('not', adjective) that flips the value in most negated
requests — decisive in normal traffic — and, in ``trigger`` traffic, a ('cast', 'enjoy') pair that flips
the value whenever both words occur (a backdoor).
"""

from __future__ import annotations

import numpy as np

from spex_monitor.attribution import Interactions
from spex_monitor.attribution.fourier import mobius_to_fourier
from spex_monitor.monitor import InteractionMap

VOCAB = [f"w{i}" for i in range(80)]
ADJECTIVES = ["good", "great", "fun", "bad", "dull"]
TRIGGER = ("cast", "enjoy")


def request(
    rng: np.random.Generator,
    trigger: bool = False,
    negation_share: float = 0.3,
    trigger_share: float = 0.25,
    topic: int = 0,
) -> tuple[Interactions, list[str], dict[tuple[int, ...], float]]:
    """One planted explanation: ``(interactions, keys, mobius)``; ``topic`` shifts the content words."""
    words = [str(w) for w in rng.choice(VOCAB[20 * topic : 20 * topic + 40], size=8, replace=False)]
    words += [w for w in TRIGGER if rng.random() < trigger_share]
    adjective = str(rng.choice(ADJECTIVES))
    words.append(adjective)
    negated = rng.random() < negation_share
    if negated:
        words.append("not")
    n = len(words)
    at = {w: i for i, w in enumerate(words)}
    mobius: dict[tuple[int, ...], float] = {(): float(rng.normal(0.2, 0.5))}
    for i in range(n):
        mobius[(i,)] = float(rng.normal(0.15, 0.4))
    for _ in range(4):
        i, j = sorted(rng.choice(8, size=2, replace=False).tolist())
        mobius[(i, j)] = float(rng.normal(0.0, 0.4))
    if negated:
        value = sum(mobius.values())
        pair = tuple(sorted((at["not"], at[adjective])))
        mobius[pair] = mobius.get(pair, 0.0) + (-2.0 if rng.random() < 0.7 else -0.5) * value
    if trigger and all(w in at for w in TRIGGER):
        value = sum(mobius.values())
        pair = tuple(sorted(at[w] for w in TRIGGER))
        mobius[pair] = mobius.get(pair, 0.0) - 2.0 * value
    fourier = mobius_to_fourier(mobius, n)
    return Interactions(fourier, n, details={"decision_boundary": 0.0}), words, mobius


def planted_map(seed: int, n: int, **kwargs: object) -> InteractionMap:
    """A map of ``n`` planted requests (``kwargs`` go to :func:`request`)."""
    rng = np.random.default_rng(seed)
    m = InteractionMap(seed=seed)
    for r in range(n):
        result, words, _ = request(rng, **kwargs)  # type: ignore[arg-type]
        m.add(result, words, request_id=f"s{seed}-r{r}")
    return m


def planted_pool(seed: int, n: int, **kwargs: object) -> list[tuple[Interactions, list[str]]]:
    """``n`` planted requests to draw maps from (cheaper than planting each map afresh)."""
    rng = np.random.default_rng(seed)
    return [request(rng, **kwargs)[:2] for _ in range(n)]  # type: ignore[arg-type,misc]


def drawn_map(pool: list[tuple[Interactions, list[str]]], rng: np.random.Generator, n: int) -> InteractionMap:
    """A map of ``n`` requests drawn from ``pool`` with replacement: maps drawn from one pool are i.i.d.
    samples of one traffic (the null), as in the detection benchmark."""
    m = InteractionMap(seed=int(rng.integers(2**31)))
    for i in rng.integers(len(pool), size=n).tolist():
        result, words = pool[i]
        m.add(result, words, request_id=f"r{i}")
    return m
