"""Value functions: what number a masked input is scored by.

* Sequence classifiers: the log-odds of the class predicted on the *unmasked* input,
  ``logit_c - logsumexp(other logits)`` (for two classes simply ``logit_c - logit_other``).
* Causal LMs (generations): the summed log-probability of the original completion given the masked
  prompt (teacher forcing, one scoring pass per masked prompt, never sampling), or its mean per completion
  token; for label-style prompts, ``log p(label) - log p(best other label)`` over a label set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
from scipy.special import logsumexp

from .features import Feature, Strategy, TextMasker, Unit, segment_text
from .prompt import PromptMasker

ValueFunction = Callable[[np.ndarray], np.ndarray]
Reduce = Literal["sum", "mean"]


class ClassifierBackend(Protocol):
    """What a classifier value function needs from a backend."""

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Class logits ``(k, classes)`` for ``(k, L)`` token ids and attention mask."""


class CompletionBackend(Protocol):
    """What a generation value function needs from a backend."""

    def completion_logprob(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: list[int]
    ) -> np.ndarray:
        """Summed log-probability (nats) of ``completion_ids`` after each ``(k, L)`` prompt row, ``(k,)``."""


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
    masker: PromptMasker | TextMasker,
    backend: CompletionBackend,
    completion_ids: Sequence[int] | None = None,
    reduce: Reduce = "sum",
) -> ValueFunction:
    """Value of a mask = log-probability of the completion given the masked prompt (teacher forcing).

    Args:
        masker: a :class:`PromptMasker` (its ``completion_ids`` are scored) or a :class:`TextMasker`
            (then ``completion_ids`` is required).
        backend: anything with ``completion_logprob(prompt_ids (k, L), prompt_attention (k, L),
            completion_ids) -> (k,)``: :class:`~spex_monitor.backends.LocalCausalLM`,
            :class:`~spex_monitor.backends.openai.OpenAICompletionsBackend`, ``LocalBackend(causal-lm)``.
        completion_ids: overrides the masker's completion.
        reduce: ``"sum"`` (nats, the log-likelihood of the whole completion) or ``"mean"`` (per token).

    Returns:
        ``value_fn(masks (k, n) bool) -> (k,) float64``.

    Raises:
        ValueError: an unknown ``reduce``; no completion ids.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    ids = list(completion_ids) if completion_ids is not None else getattr(masker, "completion_ids", None)
    if not ids:
        raise ValueError("completion_ids: none given and the masker carries none (use prompt_masker)")
    scale = 1.0 / len(ids) if reduce == "mean" else 1.0

    def value_fn(masks: np.ndarray) -> np.ndarray:
        batch_ids, batch_attention = masker.build(masks)
        return np.asarray(backend.completion_logprob(batch_ids, batch_attention, ids), np.float64) * scale

    return value_fn


def label_value_function(
    masker: PromptMasker,
    backend: CompletionBackend,
    labels: Sequence[str] | Sequence[Sequence[int]],
    tokenizer: Any = None,
    target: int | None = None,
) -> tuple[ValueFunction, int]:
    """Value = ``log p(target label) - max over other labels of log p(label)`` given the masked prompt.

    For classification-style prompts ("Sentiment:" → "positive" / "negative" / "neutral"). Each label is
    scored as a completion (its summed token log-probability), so a mask costs one scoring pass per label.

    Args:
        labels: label strings (tokenized with ``tokenizer``, no special tokens) or token-id lists; >= 2.
        target: index of the label to explain; default: the label the model ranks highest on the
            unmasked prompt.

    Returns:
        ``(value_fn, target)``.

    Raises:
        ValueError: fewer than two labels, an empty or duplicate label, strings without a tokenizer, a
            target out of range.
    """
    if len(labels) < 2:
        raise ValueError("labels: at least two labels are needed")
    label_ids: list[list[int]] = []
    for label in labels:
        if isinstance(label, str):
            if tokenizer is None:
                raise ValueError("labels given as strings need tokenizer=")
            label_ids.append(list(tokenizer(label, add_special_tokens=False)["input_ids"]))
        else:
            label_ids.append([int(t) for t in label])
        if not label_ids[-1]:
            raise ValueError(f"labels[{len(label_ids) - 1}] is empty")
    if len({tuple(t) for t in label_ids}) != len(label_ids):
        raise ValueError("labels: two labels tokenize to the same ids")

    def scores(masks: np.ndarray) -> np.ndarray:
        batch_ids, batch_attention = masker.build(masks)
        return np.stack(
            [np.asarray(backend.completion_logprob(batch_ids, batch_attention, ids)) for ids in label_ids],
            axis=1,
        )

    if target is None:
        target = int(np.argmax(scores(np.ones((1, masker.n_features), dtype=bool))[0]))
    if not 0 <= target < len(label_ids):
        raise ValueError(f"target {target} is not a label index (0..{len(label_ids) - 1})")

    def value_fn(masks: np.ndarray) -> np.ndarray:
        table = scores(masks).astype(np.float64)
        return table[:, target] - np.delete(table, target, axis=1).max(axis=1)

    return value_fn, target
