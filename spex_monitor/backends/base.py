"""What every backend reports (batch timings for the budget) and the numpy helpers they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BatchTiming:
    """One forward batch: rows sent, padded tokens computed, wall seconds, and where it ran."""

    rows: int
    tokens: int
    seconds: float
    device: str


def token_budget_batches(lengths: np.ndarray, token_budget: int, max_rows: int) -> list[np.ndarray]:
    """Row index groups, longest first, each within ``token_budget`` padded tokens and ``max_rows`` rows.

    Sorting by length keeps padding small; a row longer than the budget gets a batch of its own.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    groups, current, width = [], [], 0
    for row in order.tolist():
        new_width = max(width, int(lengths[row]))
        if current and (new_width * (len(current) + 1) > token_budget or len(current) >= max_rows):
            groups.append(np.asarray(current))
            current, new_width = [], int(lengths[row])
        current.append(row)
        width = new_width
    if current:
        groups.append(np.asarray(current))
    return groups


def check_completion_inputs(
    prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: Sequence[int], vocab: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated int64 copies of the scoring inputs; raises ``ValueError`` naming the argument."""
    ids = np.asarray(prompt_ids)
    attention = np.asarray(prompt_attention)
    if ids.ndim != 2 or ids.shape != attention.shape:
        raise ValueError(
            f"prompt_ids {ids.shape} and prompt_attention {attention.shape} must have one shape (k, L)"
        )
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"prompt_ids must be integers, got {ids.dtype}")
    completion = np.asarray(list(completion_ids), dtype=np.int64)
    if completion.ndim != 1 or completion.size == 0:
        raise ValueError("completion_ids must be a non-empty list of token ids")
    for name, values in (("prompt_ids", ids), ("completion_ids", completion)):
        if values.size and (values.min() < 0 or (vocab is not None and values.max() >= vocab)):
            raise ValueError(f"{name} holds ids outside the vocabulary [0, {vocab})")
    empty = ~(attention > 0).any(axis=1)
    if empty.any():
        raise ValueError(f"prompt row {int(np.argmax(empty))} has no attended token (an empty prompt)")
    return ids.astype(np.int64), (attention > 0).astype(np.int64), completion


def row_bounds(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first attended position and one past the last (left / right padding stripped)."""
    attended = attention > 0
    first = np.argmax(attended, axis=1)
    last = attended.shape[1] - np.argmax(attended[:, ::-1], axis=1)
    return first, last


def local_model_folder(path: str | Path) -> Path:
    """``path`` as a folder a local backend may load weights from: it exists and holds ``*.safetensors``.

    Only safetensors weights load (transformers' ``use_safetensors=True``): a pickled ``pytorch_model.bin``
    can run code when it is unpickled, and a sidecar loads whatever folder its configuration names.

    Raises:
        FileNotFoundError: the folder does not exist, or has no ``*.safetensors`` file (the message says how
            to convert one).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (models load from local paths only)")
    if not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"model folder {folder} has no *.safetensors weights; only safetensors are loaded (pickled "
            "weights can run code): convert with model.save_pretrained(folder, safe_serialization=True)"
        )
    return folder
