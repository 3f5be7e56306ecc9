"""Lenses: what gets ablated. Each turns an input (or model, or training set) into features with keys
and a batched mask → masked-input builder; backends turn those into value functions."""

from .features import (
    Feature,
    FieldMasker,
    TextMasker,
    cap_features,
    mask_texts,
    normalize_key,
    segment_text,
)
from .generation import Generation
from .prompt import PromptFeature, PromptMasker, prompt_masker
from .value import (
    classifier_value_function,
    completion_value_function,
    label_value_function,
    log_odds,
    text_masker,
)

__all__ = [
    "Feature",
    "FieldMasker",
    "Generation",
    "PromptFeature",
    "PromptMasker",
    "TextMasker",
    "cap_features",
    "classifier_value_function",
    "completion_value_function",
    "label_value_function",
    "log_odds",
    "mask_texts",
    "normalize_key",
    "prompt_masker",
    "segment_text",
    "text_masker",
]
