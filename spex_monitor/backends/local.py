"""In-process transformers backend: batches sized by a token budget, length-sorted to cut padding.

Device is chosen automatically: CUDA with bf16 (fp16 where bf16 is unsupported) when present, else CPU in
fp32. Models load from a local folder only (``local_files_only=True``); nothing is downloaded at run time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .base import BatchTiming, local_model_folder, token_budget_batches

Task = Literal["sequence-classification", "causal-lm"]


def pick_device(device: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Resolve ``device`` to a torch device and the dtype to run in.

    ``"auto"`` means CUDA when available, else CPU. CUDA runs in bf16 (fp16 where bf16 is unsupported), the
    CPU in fp32.

    Raises:
        RuntimeError: torch does not recognise the device string.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    return dev, dtype


@dataclass
class LocalBackend:
    """Runs masked token-id batches through a local model.

    Args:
        model: a transformers model (or any module returning ``.logits``) already on ``device``.
        tokenizer: its tokenizer (used for ids of special tokens and by the lens for offsets).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        token_budget: most padded tokens per forward batch (rows × longest row).
        max_batch_rows: most rows per forward batch.
        on_batch: called with a :class:`BatchTiming` after every forward batch.
    """

    model: Any
    tokenizer: Any = None
    device: str = "auto"
    token_budget: int = 16384
    max_batch_rows: int = 512
    on_batch: Callable[[BatchTiming], None] | None = None
    # the most recent batches only: a sidecar runs for months and must not grow without bound
    timings: deque[BatchTiming] = field(default_factory=lambda: deque(maxlen=1024))

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_batch_rows < 1:
            raise ValueError("token_budget and max_batch_rows must be >= 1")
        self._device, self._dtype = pick_device(self.device)
        self.model.to(self._device)
        if self._device.type == "cuda":
            self.model.to(self._dtype)
        self.model.eval()

    @property
    def max_length(self) -> int | None:
        """Longest input the model takes (position embeddings, or the tokenizer's limit), if it has one."""
        limits = [getattr(getattr(self.model, "config", None), "max_position_embeddings", None)]
        limits.append(getattr(self.tokenizer, "model_max_length", None))
        usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
        return min(usable) if usable else None

    @classmethod
    def from_pretrained(
        cls, path: str | Path, task: Task = "sequence-classification", **kwargs: Any
    ) -> LocalBackend:
        """Load model and tokenizer from a local folder (never from a hub); safetensors weights only.

        Raises:
            FileNotFoundError: the folder does not exist or holds no ``*.safetensors`` weights.
        """
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a sidecar's logs are no place for progress bars

        folder = local_model_folder(path)
        loader = (
            AutoModelForSequenceClassification if task == "sequence-classification" else AutoModelForCausalLM
        )
        model = loader.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(model=model, tokenizer=tokenizer, **kwargs)

    @property
    def device_name(self) -> str:
        """The torch device the model runs on, as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
        return str(self._device)

    def _batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Row index groups, longest first, each within the token budget."""
        return token_budget_batches(lengths, self.token_budget, self.max_batch_rows)

    @torch.inference_mode()
    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Classifier logits ``(k, classes)`` for ``(k, L)`` rows.

        Rows may be right-padded (``attention_mask`` 0 at the tail) or carry masked positions inside;
        each batch is cut to its longest row before the forward.
        """
        return self._run(input_ids, attention_mask, lambda out, rows: out.logits.float())

    @torch.inference_mode()
    def completion_logprob(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: list[int]
    ) -> np.ndarray:
        """Summed log-probability of ``completion_ids`` after each (masked) prompt, one forward per row.

        Teacher forcing: the completion is appended right after each prompt's last attended token (so
        right padding from the "remove" strategy is dropped, while attention-masked positions inside
        the prompt stay in place), and its tokens' log-probabilities are read at the preceding positions.
        """
        completion = np.asarray(completion_ids, dtype=np.int64)
        if completion.size == 0:
            raise ValueError("completion_ids is empty")
        prompt_ids = np.asarray(prompt_ids, dtype=np.int64)
        prompt_attention = np.asarray(prompt_attention, dtype=np.int64)
        k = prompt_ids.shape[0]
        starts = _effective_lengths(prompt_attention)
        width = int(starts.max()) + completion.size
        ids = np.zeros((k, width), dtype=np.int64)
        attention = np.zeros((k, width), dtype=np.int64)
        for row in range(k):
            start = int(starts[row])
            ids[row, :start] = prompt_ids[row, :start]
            attention[row, :start] = prompt_attention[row, :start]
            ids[row, start : start + completion.size] = completion
            attention[row, start : start + completion.size] = 1
        steps = np.arange(completion.size)

        def reduce(out: Any, rows: np.ndarray) -> torch.Tensor:
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
            positions = torch.as_tensor(starts[rows][:, None] - 1 + steps[None, :], device=logprobs.device)
            index = torch.arange(len(rows), device=logprobs.device)[:, None]
            tokens = torch.as_tensor(completion, device=logprobs.device)[None, :]
            return logprobs[index, positions, tokens].sum(dim=1, keepdim=True)

        return self._run(ids, attention, reduce)[:, 0]

    def _run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        reduce: Callable[[Any, np.ndarray], torch.Tensor],
    ) -> np.ndarray:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must match (k, L)"
            )
        lengths = _effective_lengths(attention_mask)
        results: list[tuple[np.ndarray, np.ndarray]] = []
        for rows in self._batches(lengths):
            width = int(lengths[rows].max())
            ids = torch.as_tensor(input_ids[rows, :width], device=self._device)
            att = torch.as_tensor(attention_mask[rows, :width], device=self._device)
            began = time.perf_counter()
            out = self.model(input_ids=ids, attention_mask=att)
            values = reduce(out, rows).cpu().numpy()
            seconds = time.perf_counter() - began
            timing = BatchTiming(
                rows=len(rows), tokens=len(rows) * width, seconds=seconds, device=self.device_name
            )
            self.timings.append(timing)
            if self.on_batch is not None:
                self.on_batch(timing)
            results.append((rows, values))
        first = results[0][1]
        out_arr = np.empty((input_ids.shape[0], *first.shape[1:]), dtype=np.float64)
        for rows, values in results:
            out_arr[rows] = values
        return out_arr


def _effective_lengths(attention_mask: np.ndarray) -> np.ndarray:
    """Per row, one past the last attended position (at least 1)."""
    attended = np.asarray(attention_mask) > 0
    last = attended.shape[1] - np.argmax(attended[:, ::-1], axis=1)
    return np.where(attended.any(axis=1), last, 1)
