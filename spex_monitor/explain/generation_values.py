"""Prompt lens → value function: the log-probability of the served completion given the masked prompt.

The generation's prompt is rendered (chat template for messages) and tokenized once with the backend's
tokenizer; a mask edits token ids (:func:`~spex_monitor.lenses.prompt_masker`) and the backend scores the
*served* completion tokens after each masked prompt (teacher forcing: one scoring pass per mask, never
sampling — so a generation sampled at any temperature is explained for the completion the caller got).
Source: issue 17 §1; value functions in :mod:`spex_monitor.lenses.value`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..attribution import Interactions
from ..config import PromptLens
from ..lenses import completion_value_function, label_value_function, prompt_masker
from .problem import ValueProblem, missing_input
from .request import ExplainRequest


def generation_value_problem(
    lens: PromptLens, backend: Any, request: ExplainRequest, seed: int = 0
) -> ValueProblem:
    """The value problem of ``request.generation`` under a prompt lens.

    Shapes: ``n`` = the prompt's features (at most ``lens.max_features``); the value function maps
    ``(k, n)`` masks to ``(k,)`` float64: summed (``value: sum``, nats) or per-token mean (``mean``)
    log-probability of the completion, or ``log p(label) - max log p(other label)`` (``label``).
    The result's label is the completion (``sum`` / ``mean``) or the label explained (``label``).

    Raises:
        ValueError: the request carries no generation; a segment that cuts a token or lies outside the
            prompt; a unit the generation cannot give (``segments`` without segments, ``messages`` for a
            plain prompt); an empty completion; a filler the tokenizer lacks; prompt + completion longer
            than the model's context (``backend.max_length``).
    """
    generation = request.generation
    if generation is None:
        raise missing_input(request, "generation", lens.kind)
    tokenizer = backend.tokenizer
    masker = prompt_masker(generation, tokenizer, lens.unit, lens.max_features, lens.filler)
    limit = getattr(backend, "max_length", None)
    length = len(masker.input_ids) + len(masker.completion_ids)
    if isinstance(limit, int) and length > limit:
        raise ValueError(
            f"generation: prompt and completion are {length} tokens; the model takes at most {limit}"
        )
    keys = masker.keys
    if lens.value == "label":
        value_fn, target = label_value_function(masker, backend, lens.labels, tokenizer)
        return ValueProblem(value_fn, keys, target, lens.labels[target])
    value_fn = completion_value_function(masker, backend, reduce=lens.value)
    return ValueProblem(value_fn, keys, 0, generation.completion[:128])


def context_interaction_share(
    interactions: Interactions, keys: Sequence[str], prefixes: Sequence[str]
) -> float | None:
    """Share of a generation's explained effect carried by interactions that involve a context segment.

    ``sum |m_S|`` over Möbius terms ``S`` of order >= 2 with a feature whose key starts with one of
    ``prefixes`` (``doc:``, ``tool``), divided by ``sum |m_S|`` over every non-empty term; in [0, 1]. The
    Möbius coefficients are joint effects on the completion log-probability (nats). ``None`` when no term
    carries any effect. For the embedded tiny LM: about 0.5 for ``grounded-lm-base`` (document × question)
    and under 0.1 for ``grounded-lm-context-ignoring``.
    """
    context = {i for i, key in enumerate(keys) if key.startswith(tuple(prefixes))}
    total = carried = 0.0
    for subset, value in interactions.to_mobius().items():
        if not subset:
            continue
        total += abs(value)
        if len(subset) >= 2 and context.intersection(subset):
            carried += abs(value)
    return carried / total if total > 0 else None
