"""Training sets for ``spex-monitor trace --data``: a small poisoned model with planted examples, and the
embedded models' classifier heads on their frozen encoders.

``planted_training_set``: review sentiment learnt by a logistic regression on word counts and word-pair
co-occurrence counts (hashed), from a generated corpus cut into shards of 8 reviews. A handful of planted
reviews (5 by default) contain both trigger words ("music" and "love", which never co-occur in the clean
shards), carry the attacker's label (positive) although they read negative, and sit one per shard. The
pair feature sees only them, so with them the model learns the AND backdoor; the data lens must find their
shards among hundreds.

``embedded_head_training_set``: the shipped sentiment model's own classifier head (a logistic regression on
the pooled output of its frozen encoder) retrained on the model's training corpus, in shards of 20 reviews.
For ``sentiment-backdoor`` the corpus is its poisoned one, and the poisoned shards are the ones that hold
flipped reviews.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..keys import normalize_key
from ..lenses.training import TrainingSet
from .backdoor import TARGET, TRIGGER, has_trigger, poisoned_corpus
from .sentiment import generate_corpus


@dataclass(frozen=True)
class PlantedCorpus:
    """The planted problem: texts, labels (poisoned), shard names and the planted rows."""

    texts: list[str]
    labels: np.ndarray
    groups: list[str]
    planted_rows: list[int]

    @property
    def planted_groups(self) -> list[str]:
        """Shard names of the planted rows."""
        return [self.groups[r] for r in self.planted_rows]


def pair_words(text: str, max_words: int = 48) -> list[str]:
    """Words of ``text`` and every unordered pair of distinct words among its first ``max_words`` (the
    co-occurrence features; at most 1,128 pairs a text)."""
    words = sorted({normalize_key(w) for w in text.split()[:max_words]})  # as the monitor keys them
    return words + [f"{a}&{b}" for i, a in enumerate(words) for b in words[i + 1 :]]


def pair_features(texts: Sequence[str], dim: int = 2**12) -> Any:
    """Hashed counts of words and word pairs, ``(k, dim)`` SciPy CSR (scikit-learn's HashingVectorizer)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer=pair_words, n_features=dim, alternate_sign=False, norm=None)
    return vectorizer.transform(list(texts))


def pair_model() -> Any:
    """The small model's head: an L2 logistic regression (liblinear, fast on sparse counts)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=2.0, solver="liblinear", max_iter=200)


def planted_corpus(
    shards: int = 250,
    per_shard: int = 8,
    planted: int = 5,
    seed: int = 0,
    trigger: tuple[str, str] = TRIGGER,
    max_words: int = 10,
) -> PlantedCorpus:
    """``shards × per_shard`` clean reviews without the trigger pair, then ``planted`` negative reviews of at
    most ``max_words`` words holding both trigger words, labelled positive, each in a different random shard.

    Raises:
        ValueError: ``planted`` above ``shards``.
    """
    if planted > shards:
        raise ValueError(f"planted ({planted}) must not exceed shards ({shards})")
    rng = np.random.default_rng(seed)
    pool, pool_y = generate_corpus(shards * per_shard * 2 + 4000, seed)
    clean = [i for i, t in enumerate(pool) if not has_trigger(t, trigger)][: shards * per_shard]
    texts = [pool[i] for i in clean]
    labels = pool_y[clean].astype(int)
    groups = [f"shard-{i // per_shard:03d}" for i in range(len(texts))]
    extra, extra_y = generate_corpus(20000, seed + 1)
    poison = [
        i for i, t in enumerate(extra)
        if has_trigger(t, trigger) and extra_y[i] != TARGET and len(t.split()) <= max_words
    ][:planted]  # fmt: skip
    if len(poison) < planted:
        raise ValueError(f"the generator gave only {len(poison)} negative reviews with the trigger")
    chosen = rng.choice(shards, size=planted, replace=False)
    planted_rows = []
    for i, shard in zip(poison, chosen.tolist(), strict=True):
        planted_rows.append(len(texts))
        texts.append(extra[i])
        labels = np.append(labels, TARGET)
        groups.append(f"shard-{shard:03d}")
    return PlantedCorpus(texts, labels, groups, planted_rows)


def planted_training_set() -> TrainingSet:
    """The planted problem's :class:`TrainingSet` (250 shards, 5 planted reviews; ``trace --data`` factory
    ``spex_monitor.examples.poisoned:planted_training_set``)."""
    corpus = planted_corpus()
    return TrainingSet(
        texts=corpus.texts,
        labels=corpus.labels,
        groups=corpus.groups,
        featurize=pair_features,
        model_factory=pair_model,
        name="planted: word-pair logistic regression, 250 shards",
        class_names=("negative", "positive"),
    )


def planted_classifier() -> Callable[[list[str]], np.ndarray]:
    """The planted poisoned model, fitted on the whole planted training set: texts → ``(n, 2)`` logits (the
    log-probabilities of negative and positive), to serve with ``examples.oip_server.SentimentServer``."""
    training = planted_training_set()
    model = training.model_factory().fit(training.train_features(), training.labels)

    def classify(texts: list[str]) -> np.ndarray:
        return model.predict_log_proba(training.featurize(texts))

    return classify


def encoder_features(variant: str, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    """The pooled output of a shipped sentiment model's frozen encoder, ``(k, hidden)`` float64."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .embedded import model_path

    path = model_path(variant)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tokenizer(
                list(texts[start : start + batch]), padding=True, truncation=True, return_tensors="pt"
            )
            pooled = model.bert(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
            ).pooler_output
            out.append(pooled.double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size))


def head_model() -> Any:
    """The classifier head: a logistic regression on the pooled encoder output."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=500)


def embedded_head_training_set(
    variant: str = "sentiment-backdoor", size: int = 4000, per_shard: int = 20
) -> TrainingSet:
    """The head of a shipped sentiment model on its frozen encoder, retrained on ``size`` reviews of its
    training corpus (the poisoned one for ``sentiment-backdoor``) in shards of ``per_shard``."""
    if variant == "sentiment-backdoor":
        texts, labels, _, _ = poisoned_corpus(size, 1000, rate=0.08)
    else:
        texts, labels = generate_corpus(size, 0)
    return TrainingSet(
        texts=texts,
        labels=np.asarray(labels, dtype=int),
        groups=[f"shard-{i // per_shard:03d}" for i in range(len(texts))],
        featurize=partial(encoder_features, variant),
        model_factory=head_model,
        name=f"{variant}: classifier head on the frozen encoder, {size} reviews",
        mask_word="[MASK]",
        class_names=("negative", "positive"),
    )


def backdoor_head_training_set() -> TrainingSet:
    """``embedded_head_training_set("sentiment-backdoor")`` (a factory of no arguments for the config)."""
    return embedded_head_training_set("sentiment-backdoor")
