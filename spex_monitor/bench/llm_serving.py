"""Serving the embedded tiny LM for the LLM detection benchmark: sampled completions with their log-probs,
and an output embedding from the LM's own hidden states.

What an output-level LLM monitor sees of a served call is computed here, once per request:

* the completion the variant sampled (temperature ``T``, at most ``max_new`` tokens, up to ``<|end|>``);
* the served model's log-probability of each generated token — the *raw* distribution (temperature 1), as
  vLLM reports ``logprobs`` — whose mean per token is the perplexity signal;
* an embedding of the output: the last hidden layer of a **fixed encoder** (the pre-rollout
  ``grounded-lm-base``; an embedding monitor does not swap its encoder with the served model), run on the
  prompt followed by the completion and mean-pooled over the generated tokens (stop token included). The
  encoder reads the output in its context, a stronger signal than the output text alone, which for one-token
  answers would only repeat the token frequencies.

The sampler is our own ten-line loop rather than ``generate``: it needs the raw per-token log-probs and a
numpy generator so that a pool is reproducible from its seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Served:
    """One served completion: generated token ids (stop token included when reached), the text shown to the
    caller, and the served model's raw log-probability (nats) of every generated token."""

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]

    def answer_ids(self, end_id: int) -> list[int]:
        """The completion's tokens without the stop token (what the explainer scores)."""
        return [t for t in self.token_ids if t != end_id]


def _left_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
        attention[i, width - len(row) :] = 1
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return ids, attention, positions


@torch.inference_mode()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    rng: np.random.Generator,
    temperature: float = 0.7,
    max_new: int = 4,
    batch: int = 64,
) -> list[Served]:
    """Sample one completion per prompt (token ids) from ``model``; deterministic in ``rng``.

    Raises:
        ValueError: ``temperature`` not > 0, ``max_new`` < 1, or an empty prompt.
    """
    if not temperature > 0 or max_new < 1:
        raise ValueError("temperature must be > 0 and max_new >= 1")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt")
    end, pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
    out: list[Served] = []
    for start in range(0, len(prompts), batch):
        rows = [list(p) for p in prompts[start : start + batch]]
        generated: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[float]] = [[] for _ in rows]
        live = list(range(len(rows)))
        for _ in range(max_new):
            ids, attention, positions = _left_padded([rows[i] + generated[i] for i in live], pad)
            logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, -1]
            raw = torch.log_softmax(logits.double(), dim=-1).numpy()
            scaled = torch.softmax(logits.double() / temperature, dim=-1).numpy()
            still = []
            for j, i in enumerate(live):
                p = scaled[j] / scaled[j].sum()
                token = int(rng.choice(p.size, p=p))
                generated[i].append(token)
                logprobs[i].append(float(raw[j, token]))
                if token != end:
                    still.append(i)
            live = still
            if not live:
                break
        for gen, lp in zip(generated, logprobs, strict=True):
            text = tokenizer.decode([t for t in gen if t != end], skip_special_tokens=True).strip()
            out.append(Served(tuple(gen), text, tuple(lp)))
    return out


@torch.inference_mode()
def output_embeddings(
    encoder: Any,
    prompts: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
    pad: int,
    batch: int = 64,
) -> np.ndarray:
    """``(len(prompts), hidden)`` float64: the encoder's last hidden layer over prompt + output, mean-pooled
    over the output's positions (right padding; an output with no tokens pools the prompt's last position).
    """
    vectors = []
    for start in range(0, len(prompts), batch):
        rows = [
            list(p) + list(o)
            for p, o in zip(prompts[start : start + batch], outputs[start : start + batch], strict=True)
        ]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        pool = torch.zeros((len(rows), width), dtype=torch.float64)
        for i, (row, prompt, output) in enumerate(
            zip(rows, prompts[start : start + batch], outputs[start : start + batch], strict=True)
        ):
            ids[i, : len(row)] = torch.as_tensor(row)
            attention[i, : len(row)] = 1
            first = len(prompt) if output else len(prompt) - 1
            pool[i, first : len(row)] = 1.0 / (len(row) - first)
        hidden = encoder(input_ids=ids, attention_mask=attention, output_hidden_states=True).hidden_states[-1]
        vectors.append(torch.einsum("bt,btd->bd", pool, hidden.double()).numpy())
    return np.concatenate(vectors) if vectors else np.zeros((0, 0))
