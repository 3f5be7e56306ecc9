"""A retrainable model's training set, as the data lens needs it: texts, labels, groups, a frozen featurizer
and a factory of the retrainable head.

A model is registered for ``spex-monitor trace --data`` by naming a factory, ``"package.module:function"``
(``models[].training.factory`` in the sidecar's YAML): a function of no arguments returning a
:class:`TrainingSet`. Examples: :func:`spex_monitor.examples.poisoned.planted_training_set` (a logistic
regression on word and word-pair counts) and :func:`spex_monitor.examples.poisoned.backdoor_head_training_set`
(the embedded backdoored model's classifier head on its frozen encoder).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..keys import normalize_key
from .features import segment_text

Featurize = Callable[[Sequence[str]], Any]


@dataclass(frozen=True)
class TrainingSet:
    """The training data of a model whose head can be retrained cheaply.

    Attributes:
        texts: the ``n`` training texts (shown beside the training groups the trace names).
        labels: ``(n,)`` binary labels 0/1 the model was trained on (poisoned ones included).
        groups: ``n`` group names (a data source, shard or contributor); the data lens's features.
        featurize: maps texts to the head's inputs, ``(k, d)`` dense or SciPy sparse; frozen (not retrained).
        model_factory: returns a fresh unfitted head with ``fit`` and ``predict_proba`` (scikit-learn API).
        name: shown in the trace; part of the result cache's key.
        mask_word: what a removed word becomes in an ablated request ("" deletes it; "[MASK]" mirrors the
            text lens's ``mask`` strategy for a transformer featurizer).
        class_names: label names by class id, for printing.
    """

    texts: Sequence[str]
    labels: np.ndarray
    groups: Sequence[str]
    featurize: Featurize
    model_factory: Callable[[], Any]
    name: str = "training set"
    mask_word: str = ""
    class_names: Sequence[str] = ("0", "1")
    _features: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or len(labels) != len(self.texts) or len(self.groups) != len(self.texts):
            raise ValueError(
                f"texts ({len(self.texts)}), labels ({labels.shape}) and groups ({len(self.groups)}) "
                "must have one entry per training example"
            )
        if len(labels) == 0:
            raise ValueError("the training set is empty")
        if set(np.unique(labels).tolist()) != {0, 1}:
            raise ValueError("labels must be binary 0/1, with both classes present")
        object.__setattr__(self, "labels", labels.astype(int))

    def train_features(self) -> Any:
        """``featurize(texts)``, computed once and kept (frozen embeddings of the whole training set)."""
        if "x" not in self._features:
            self._features["x"] = self.featurize(list(self.texts))
        return self._features["x"]

    def fingerprint(self) -> str:
        """A SHA-256 of what decides a data-lens result: the name, mask word, class names, the featurizer's
        and the head factory's names and the head's parameters, and the texts, labels and groups (the
        training set's part of a cache key). Give a changed featurizer a new ``name``: its code is not hashed.
        """
        head = self.model_factory()
        parts = [self.name, self.mask_word, *self.class_names, _qualified(self.featurize),
                 _qualified(self.model_factory), re.sub(r" at 0x[0-9a-fA-F]+", "", repr(head))]  # fmt: skip
        digest = hashlib.sha256(json.dumps(parts).encode())
        for text, label, group in zip(self.texts, self.labels.tolist(), self.groups, strict=True):
            digest.update(f"{len(text)}:{text}|{label}|{group}\n".encode())
        return digest.hexdigest()


def load_training_set(spec: str) -> TrainingSet:
    """Import ``"package.module:function"`` and call it; the result must be a :class:`TrainingSet`.

    Raises:
        ValueError: a malformed spec, a module or function that does not exist, or a result of another type
            (the message names the spec).
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"training factory {spec!r}: give it as 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"training factory {spec!r}: {error}") from error
    except Exception as error:  # the user's module failed while importing
        failure = f"{type(error).__name__}: {error}"
        raise ValueError(f"training factory {spec!r}: importing failed: {failure}") from error
    try:
        found = factory()
    except Exception as error:  # the user's code: say what failed, never a traceback
        raise ValueError(f"training factory {spec!r} failed: {type(error).__name__}: {error}") from error
    if not isinstance(found, TrainingSet):
        raise ValueError(f"training factory {spec!r} returned {type(found).__name__}, not a TrainingSet")
    return found


def ablate_words(text: str, drop: set[str], mask_word: str = "") -> str:
    """``text`` with every word whose monitor key is in ``drop`` replaced by ``mask_word`` ("" removes it),
    as the text lens ablates a word feature."""
    features = segment_text(text)
    out, last = [], 0
    for feature in features:
        start, end = feature.span or (0, 0)
        out.append(text[last:start])
        out.append(mask_word if feature.key in drop else text[start:end])
        last = end
    out.append(text[last:])
    return " ".join("".join(out).split())


def word_keys(text: str) -> set[str]:
    """The monitor keys of ``text``'s words (as the text lens names its word features)."""
    return {f.key for f in segment_text(text)}


def class_name(names: Sequence[str], label: int) -> str:
    """``names[label]``, or the label's number when ``names`` does not reach it."""
    return str(names[label]) if 0 <= label < len(names) else str(label)


def tuple_contrast(text: str, keys: Sequence[str], mask_word: str = "") -> tuple[list[str], np.ndarray]:
    """The ``2^|T|`` ablations of ``text`` that remove each subset ``U`` of the key tuple ``T`` (the other
    words kept), and weights ``(-1)^|U|``: ``sum_j w_j f(texts_j)`` is the tuple's joint (Möbius) effect on
    ``text`` — the mixed difference of ``f`` over its words.

    Raises:
        ValueError: a key that is not a word of ``text``, a repeated key, or more than 6 keys.
    """
    wanted = [normalize_key(k) for k in keys]
    if not 1 <= len(wanted) <= 6 or len(set(wanted)) != len(wanted):
        raise ValueError(f"give 1 to 6 distinct keys, got {list(keys)}")
    present = word_keys(text)
    missing = [k for k in wanted if k not in present]
    if missing:
        raise ValueError(f"the exemplar has no word {missing[0]!r} of the tuple {' × '.join(wanted)}")
    texts, weights = [], []
    for bits in range(2 ** len(wanted)):
        drop = {k for i, k in enumerate(wanted) if bits >> i & 1}
        texts.append(ablate_words(text, drop, mask_word))
        weights.append((-1.0) ** len(drop))
    return texts, np.array(weights)


def _qualified(function: object) -> str:
    """``module.qualname`` of a function (a ``functools.partial``: of its function, with its arguments)."""
    inner = getattr(function, "func", function)
    name = f"{getattr(inner, '__module__', '')}.{getattr(inner, '__qualname__', type(inner).__name__)}"
    if inner is not function:
        name += repr((getattr(function, "args", ()), getattr(function, "keywords", {})))
    return name
