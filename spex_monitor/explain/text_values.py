"""Text lens → value function: the log-odds of the class predicted on the unmasked text.

A backend that tokenizes in-process (it has a ``tokenizer``: the local transformers backend) is scored on
token-id variants built from one tokenization (:func:`~spex_monitor.lenses.text_masker`); a backend that
takes text (OIP-V2 BYTES replicas) is scored on masked strings, one per mask, with words (or sentences) as
features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import TextLens
from ..lenses import classifier_value_function, log_odds, mask_texts, segment_text, text_masker
from .problem import ValueProblem, missing_input
from .request import ExplainRequest


def text_value_problem(lens: TextLens, backend: Any, request: ExplainRequest, seed: int = 0) -> ValueProblem:
    """The value problem of ``request.text`` under a text lens.

    Shapes: ``n`` = the number of features (at most ``lens.max_features``); the value function maps
    ``(k, n)`` masks to ``(k,)`` log-odds (nats). Costs one backend call for the target class.

    Raises:
        ValueError: the request carries no text.
    """
    text = request.text
    if text is None:
        raise missing_input(request, "text", lens.kind)
    if getattr(backend, "tokenizer", None) is not None:
        masker = text_masker(
            text,
            backend.tokenizer,
            lens.unit,
            lens.max_features,
            lens.strategy,
            max_length=backend.max_length,
        )
        value_fn, target = classifier_value_function(masker, backend)
        return ValueProblem(value_fn, [f.key for f in masker.features], target, boundary=0.0)
    features = segment_text(text, "words" if lens.unit == "tokens" else lens.unit, lens.max_features)
    replacement = "" if lens.strategy == "remove" else "[MASK]"
    target = int(np.argmax(backend.infer_texts([text])[0]))

    def value_fn(masks: np.ndarray) -> np.ndarray:
        return log_odds(backend.infer_texts(mask_texts(text, features, masks, replacement)), target)

    return ValueProblem(value_fn, [f.key for f in features], target, boundary=0.0)
