"""Lenses: what gets ablated. Each turns an input (or model, or training set) into features with keys
and a batched mask → masked-input builder; backends turn those into value functions."""

from .features import (
    Feature,
    FieldMasker,
    TextMasker,
    cap_features,
    normalize_key,
    segment_text,
)

__all__ = ["Feature", "FieldMasker", "TextMasker", "cap_features", "normalize_key", "segment_text"]
