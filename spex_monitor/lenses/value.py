"""Value functions: what number a masked input is scored by.

* Sequence classifiers: the log-odds of the class predicted on the *unmasked* input,
  ``logit_c - logsumexp(other logits)`` (for two classes simply ``logit_c - logit_other``).
* Causal LMs: the summed log-probability of the original completion given the masked prompt
  (teacher forcing, one forward per masked prompt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from scipy.special import logsumexp

from .features import Feature, Strategy, TextMasker, Unit, segment_text

ValueFunction = Callable[[np.ndarray], np.ndarray]


class ClassifierBackend(Protocol):
    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


class CompletionBackend(Protocol):
    def completion_logprob(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: list[int]
    ) -> np.ndarray: ...


def log_odds(logits: np.ndarray, target: int) -> np.ndarray:
    """``log p(target) - log(1 - p(target))`` from logits, stable for any number of classes."""
    logits = np.asarray(logits, dtype=np.float64)
    others = np.delete(logits, target, axis=1)
    return logits[:, target] - logsumexp(others, axis=1)


def text_masker(
    text: str,
    tokenizer: Any,
    unit: Unit = "words",
    max_features: int | None = None,
    strategy: Strategy = "mask",
    spans: list[tuple[int, int]] | None = None,
    max_length: int | None = None,
) -> TextMasker:
    """Tokenize ``text`` once (a transformers fast tokenizer) and build its feature masker.

    The mask id is the tokenizer's mask token, else its unk token; "remove" pads with its pad token.
    ``max_length`` truncates like a serving stack must for a model with a fixed context: what lies past it
    never reached the model, so it gets no features (and a 100k-word request costs what a full context does).
    """
    encoded = tokenizer(
        text,
        return_offsets_mapping=True,
        add_special_tokens=True,
        truncation=max_length is not None,
        max_length=max_length,
    )
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    if max_length is not None:
        text = text[: max((end for _, end in offsets), default=0)]
    features: list[Feature] = segment_text(text, unit, max_features, spans=spans, token_offsets=offsets)
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    if mask_id is None and strategy == "mask":
        raise ValueError(
            "the tokenizer has neither a mask nor an unk token; use strategy='remove' or 'attention'"
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TextMasker(encoded["input_ids"], offsets, features, int(mask_id or 0), int(pad_id), strategy)


def classifier_value_function(masker: TextMasker, backend: ClassifierBackend) -> tuple[ValueFunction, int]:
    """Value = log-odds of the class predicted on the unmasked input; returns ``(value_fn, class)``."""
    ids, attention = masker.build(np.ones((1, masker.n_features), dtype=bool))
    target = int(np.argmax(backend.logits(ids, attention)[0]))

    def value_fn(masks: np.ndarray) -> np.ndarray:
        batch_ids, batch_attention = masker.build(masks)
        return log_odds(backend.logits(batch_ids, batch_attention), target)

    return value_fn, target


def completion_value_function(
    masker: TextMasker, backend: CompletionBackend, completion_ids: list[int]
) -> ValueFunction:
    """Value = summed log-probability of ``completion_ids`` given the masked prompt."""

    def value_fn(masks: np.ndarray) -> np.ndarray:
        batch_ids, batch_attention = masker.build(masks)
        return backend.completion_logprob(batch_ids, batch_attention, completion_ids)

    return value_fn
