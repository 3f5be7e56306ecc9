"""In-process causal LM scorer: log-probabilities of a fixed completion after many masked prompts.

Teacher forcing, one forward per masked prompt, never sampling. Rows are grouped into batches by a token
budget after sorting by length (little padding); each batch is **left**-padded by default so every row's
completion sits at the same final positions: the model is asked for those logits only (``logits_to_keep``),
which keeps memory at ``rows x completion x vocab`` instead of ``rows x length x vocab``. Position ids are
passed explicitly (each row counts from its own first token), so a padded row scores exactly what it
scores alone; right padding is offered for models whose forward takes no ``position_ids``.

Device: CUDA in bf16 (fp16 where bf16 is unsupported) when present, else CPU in fp32 (``device="auto"``).
Models load from local folders only. Source of the value: SPEX (Kang et al., 2025) scores generations by
the log-likelihood of the original output under masked inputs.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .base import BatchTiming, check_completion_inputs, local_model_folder, row_bounds, token_budget_batches
from .local import pick_device


@dataclass
class LocalCausalLM:
    """Scores completions after masked prompts with a local transformers causal LM.

    Args:
        model: a causal LM module (``AutoModelForCausalLM``); moved to ``device``.
        tokenizer: its tokenizer (the lens needs it; the scorer only reads ``pad_token_id``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        token_budget: most tokens per forward batch (rows x padded width).
        max_batch_rows: most rows per batch.
        max_logits: most logits (rows x completion tokens x vocab) held per batch.
        padding_side: ``"left"`` (completion aligned, logits for those positions only) or ``"right"``.
        on_batch: called with a :class:`BatchTiming` after each forward batch.
    """

    model: Any
    tokenizer: Any = None
    device: str = "auto"
    token_budget: int = 16384
    max_batch_rows: int = 256
    max_logits: int = 2**27
    padding_side: Literal["left", "right"] = "left"
    on_batch: Callable[[BatchTiming], None] | None = None
    timings: deque[BatchTiming] = field(default_factory=lambda: deque(maxlen=1024))

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_batch_rows < 1 or self.max_logits < 1:
            raise ValueError("token_budget, max_batch_rows and max_logits must be >= 1")
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        self._device, self._dtype = pick_device(self.device)
        self.model.to(self._device)
        if self._device.type == "cuda":
            self.model.to(self._dtype)
        self.model.eval()
        accepted = inspect.signature(self.model.forward).parameters
        self._positions = "position_ids" in accepted
        self._keep = next((p for p in ("logits_to_keep", "num_logits_to_keep") if p in accepted), None)
        if self.padding_side == "left" and not self._positions:
            raise ValueError("this model's forward takes no position_ids: use padding_side='right'")
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self._pad = int(pad) if pad is not None else 0
        self._vocab = int(getattr(getattr(self.model, "config", None), "vocab_size", 0)) or None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", **kwargs: Any) -> LocalCausalLM:
        """Load model and tokenizer from a local folder (never from a hub).

        Raises:
            FileNotFoundError: the folder does not exist or holds no ``*.safetensors`` weights.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = local_model_folder(path)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return cls(model=model, tokenizer=tokenizer, device=device, **kwargs)

    @property
    def device_name(self) -> str:
        """The torch device the model runs on, as a string (``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
        return str(self._device)

    @property
    def max_length(self) -> int | None:
        """Longest sequence (prompt + completion) the model takes, if it says."""
        value = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and 0 < value < 10_000_000 else None

    def completion_logprob(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: Sequence[int]
    ) -> np.ndarray:
        """Summed log-probability (nats) of ``completion_ids`` after each prompt row, ``(k,)`` float64.

        Rows may be left- or right-padded (``prompt_attention`` 0 outside the prompt); zeros inside a
        row are attention-masked positions kept in place.

        Raises:
            ValueError: shapes, ids outside the vocabulary, an empty prompt row, or a row longer than the
                model's context (the message names it).
        """
        return self.token_logprobs(prompt_ids, prompt_attention, completion_ids).sum(axis=1)

    @torch.inference_mode()
    def token_logprobs(
        self, prompt_ids: np.ndarray, prompt_attention: np.ndarray, completion_ids: Sequence[int]
    ) -> np.ndarray:
        """Per completion token log-probabilities, ``(k, len(completion_ids))`` float64."""
        ids, attention, completion = check_completion_inputs(
            prompt_ids, prompt_attention, completion_ids, self._vocab
        )
        first, last = row_bounds(attention)
        m = completion.size
        lengths = last - first + m - 1  # the last completion token is predicted, never fed
        limit = self.max_length
        if limit is not None and int(lengths.max()) + 1 > limit:
            raise ValueError(
                f"prompt + completion is {int(lengths.max()) + 1} tokens; the model takes {limit}"
            )
        vocab = self._vocab or 1
        rows_cap = max(1, min(self.max_batch_rows, self.max_logits // max(1, m * vocab)))
        out = np.empty((ids.shape[0], m), dtype=np.float64)
        for rows in token_budget_batches(lengths, self.token_budget, rows_cap):
            began = time.perf_counter()
            width = int(lengths[rows].max())
            out[rows] = self._score(ids, attention, first, last, rows, width, completion)
            timing = BatchTiming(len(rows), len(rows) * width, time.perf_counter() - began, self.device_name)
            self.timings.append(timing)
            if self.on_batch is not None:
                self.on_batch(timing)
        return out

    def _score(
        self,
        ids: np.ndarray,
        attention: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        rows: np.ndarray,
        width: int,
        completion: np.ndarray,
    ) -> np.ndarray:
        m = completion.size
        lengths = last[rows] - first[rows]
        if (lengths + m - 1 == width).all() and all(attention[r, first[r] : last[r]].all() for r in rows):
            return self._score_unpadded(ids, first, last, rows, completion)
        batch = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        positions = np.zeros((len(rows), width), dtype=np.int64)
        starts = np.empty(len(rows), dtype=np.int64)  # where each row's sequence begins in the batch
        for j, row in enumerate(rows.tolist()):
            prompt = ids[row, first[row] : last[row]]
            seq = np.concatenate([prompt, completion[:-1]])
            start = width - seq.size if self.padding_side == "left" else 0
            starts[j] = start
            batch[j, start : start + seq.size] = seq
            mask[j, start : start + prompt.size] = attention[row, first[row] : last[row]]
            mask[j, start + prompt.size : start + seq.size] = 1
            positions[j, start : start + seq.size] = np.arange(seq.size)
        kwargs: dict[str, Any] = {}
        if self._positions:
            kwargs["position_ids"] = torch.as_tensor(positions, device=self._device)
        # the logits that predict completion token t sit at (prompt length - 1 + t) in each row
        predict_at = starts[:, None] + (last[rows] - first[rows] - 1)[:, None] + np.arange(m)[None, :]
        if self.padding_side == "left" and self._keep is not None:
            kwargs[self._keep] = m
            predict_at = predict_at - (width - m)
        output = self.model(
            input_ids=torch.as_tensor(batch, device=self._device),
            attention_mask=torch.as_tensor(mask, device=self._device),
            **kwargs,
        )
        logits = output.logits
        index = torch.as_tensor(predict_at, device=logits.device)
        picked = logits[torch.arange(len(rows), device=logits.device)[:, None], index]  # (b, m, V)
        logprobs = torch.log_softmax(picked.float(), dim=-1)
        tokens = torch.as_tensor(completion, device=logits.device)[None, :, None].expand(len(rows), m, 1)
        return logprobs.gather(-1, tokens)[..., 0].double().cpu().numpy()

    def _score_unpadded(
        self, ids: np.ndarray, first: np.ndarray, last: np.ndarray, rows: np.ndarray, completion: np.ndarray
    ) -> np.ndarray:
        """All rows one length, nothing masked by attention: no mask, no positions (the causal fast path)."""
        m = completion.size
        prompts = np.stack([ids[r, first[r] : last[r]] for r in rows.tolist()])
        batch = np.concatenate([prompts, np.broadcast_to(completion[:-1], (len(rows), m - 1))], axis=1)
        kwargs: dict[str, Any] = {self._keep: m} if self._keep is not None else {}
        logits = self.model(input_ids=torch.as_tensor(batch, device=self._device), **kwargs).logits[:, -m:]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        tokens = torch.as_tensor(completion, device=logits.device)[None, :, None].expand(len(rows), m, 1)
        return logprobs.gather(-1, tokens)[..., 0].double().cpu().numpy()
