"""The embedded grounded tiny LM as :mod:`.openai_server` runs it: batched scoring of prompts (every
prompt token's log-probability, its rank and top alternatives), greedy continuation, and the OpenAI/vLLM
answer pieces built from them (the legacy ``logprobs`` object, vLLM's ``prompt_logprobs`` entries, usage).

Sources: the OpenAI API reference (completions ``logprobs``: tokens, token_logprobs, top_logprobs,
text_offset) and vLLM's ``prompt_logprobs`` (per prompt position ``{token_id: {logprob, rank,
decoded_token}}``, ``null`` for the first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .openai_requests import RequestError
from .tiny_lm import model_path

SCORE_ROWS = 64  # prompts per batched forward pass when scoring


@dataclass
class Scored:
    """One prompt row after a forward pass: per prompt token ``(log-prob, rank, top-k dict)`` (the first
    token has none; rank 1 = the most likely token) and the next token's distribution (log-probs)."""

    ids: list[int]
    prompt: list[tuple[float, int, dict[int, float]] | None]  # (log-prob, rank, top-k), None first
    next_logprobs: torch.Tensor


class ServedLM:
    """One variant: its tokenizer and model, with the scoring and greedy steps the routes need."""

    def __init__(self, variant: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = model_path(variant)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        self.context = int(self.model.config.max_position_embeddings)
        self.vocab = len(self.tokenizer)

    def encode(self, prompt: str | list[int], param: str) -> list[int]:
        """Token ids of a text prompt (or a checked id list); :class:`RequestError` names ``param``."""
        ids = (
            self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if isinstance(prompt, str)
            else prompt
        )
        bad = next((t for t in ids if not 0 <= t < self.vocab), None)
        if bad is not None:
            raise RequestError(f"{param}: token id {bad} is outside the vocabulary [0, {self.vocab})", param)
        if not ids:
            raise RequestError(f"{param}: the prompt has no tokens", param)
        if len(ids) > self.context:
            raise RequestError(f"{param}: this model's maximum context length is {self.context} tokens; the "
                               f"prompt has {len(ids)}", param)  # fmt: skip
        return list(ids)

    def score(self, rows: list[list[int]], top: int) -> list[Scored]:
        """Right-padded batched forward passes of ``SCORE_ROWS`` rows: every prompt token's log-prob (and its
        ``top`` alternatives) and each row's next-token distribution."""
        out: list[Scored] = []
        for start in range(0, len(rows), SCORE_ROWS):
            chunk = rows[start : start + SCORE_ROWS]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), int(self.tokenizer.pad_token_id or 0), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, row in enumerate(chunk):
                ids[j, : len(row)] = torch.as_tensor(row)
                mask[j, : len(row)] = 1
            with torch.inference_mode():
                logprobs = torch.log_softmax(
                    self.model(input_ids=ids, attention_mask=mask).logits.float(), -1
                )
            # every position's next-token log-prob, rank and top-k at once; one .tolist() per tensor
            following = ids[:, 1:].unsqueeze(-1)
            chosen = logprobs[:, :-1].gather(-1, following)
            ranks = (1 + (logprobs[:, :-1] > chosen).sum(-1)).tolist()
            values = chosen.squeeze(-1).tolist()
            tops: tuple[list[Any], list[Any]] | None = None
            if top > 0:
                found = torch.topk(logprobs[:, :-1], min(top, self.vocab), dim=-1)
                tops = (found.indices.tolist(), found.values.tolist())
            for j, row in enumerate(chunk):
                prompt: list[tuple[float, int, dict[int, float]] | None] = [None]
                for t in range(len(row) - 1):
                    alternatives = dict(zip(tops[0][j][t], tops[1][j][t], strict=True)) if tops else {}
                    prompt.append((values[j][t], ranks[j][t], alternatives))
                out.append(Scored(row, prompt, logprobs[j, len(row) - 1].clone()))
        return out

    def greedy(self, scored: Scored, max_tokens: int) -> Iterator[tuple[int, float, torch.Tensor]]:
        """Greedy continuation of a scored row: ``(token id, its log-prob, the distribution it came
        from)`` per step, stopping after the end token, ``max_tokens`` steps, or at the context length."""
        ids, step = list(scored.ids), scored.next_logprobs
        for _ in range(min(max_tokens, self.context - len(ids))):
            token = int(step.argmax())
            yield token, float(step[token]), step
            if token == self.tokenizer.eos_token_id:
                return
            ids.append(token)
            if len(ids) >= self.context:
                return
            with torch.inference_mode():
                step = torch.log_softmax(
                    self.model(input_ids=torch.as_tensor([ids])).logits[0, -1].float(), -1
                )

    @staticmethod
    def top(logprobs: torch.Tensor, k: int) -> dict[int, float]:
        """The ``k`` most likely token ids of a ``(vocab,)`` log-prob vector, best first (``{}`` for 0)."""
        if k <= 0:
            return {}
        values, indices = torch.topk(logprobs, min(k, logprobs.numel()))
        return {int(i): float(v) for i, v in zip(indices, values, strict=True)}

    def text(self, ids: list[int]) -> str:
        """The text of generated ids (special tokens such as the end token left out)."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token(self, token_id: int) -> str:
        """The vocabulary entry of one token id (``decoded_token`` / a ``top_logprobs`` key)."""
        return str(self.tokenizer.convert_ids_to_tokens(token_id))


def finish_reason(lm: ServedLM, generated: list[int]) -> str:
    """``stop`` when the end token was generated, else ``length`` (max_tokens or the context ran out)."""
    return "stop" if generated and generated[-1] == lm.tokenizer.eos_token_id else "length"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI ``usage`` object (token counts)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


def prompt_logprob_entry(
    lm: ServedLM, token: int, logprob: float, rank: int, top: dict[int, float]
) -> dict[str, Any]:
    """vLLM's prompt_logprobs entry: the actual token and the top alternatives (in rank order), keyed by
    token id: ``{"<id>": {"logprob", "rank", "decoded_token"}}``."""
    out = {str(token): {"logprob": logprob, "rank": rank, "decoded_token": lm.token(token)}}
    for place, (t, v) in enumerate(top.items(), start=1):
        out.setdefault(str(t), {"logprob": v, "rank": place, "decoded_token": lm.token(t)})
    return out


def logprobs_object(lm: ServedLM, scored: Scored, steps: list[tuple[int, float, torch.Tensor]], echo: bool,
                     k: int, text: str) -> dict[str, Any]:  # fmt: skip
    """The legacy completions ``logprobs`` object: tokens, token_logprobs (null for the first echoed token),
    top_logprobs (the top ``k`` plus the chosen token, by token text) and text_offset (each token's start
    in ``text``, the choice's text, found near the previous token's end)."""
    tokens: list[int] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if echo:
        for token, entry in zip(scored.ids, scored.prompt, strict=True):
            tokens.append(token)
            values.append(None if entry is None else entry[0])
            tops.append(
                None if entry is None else {lm.token(t): v for t, v in {token: entry[0], **entry[2]}.items()}
            )
    for token, value, distribution in steps:
        tokens.append(token)
        values.append(value)
        tops.append({lm.token(t): v for t, v in {token: value, **ServedLM.top(distribution, k)}.items()})
    names = [lm.token(t) for t in tokens]
    offsets, cursor = [], 0
    lowered = text.lower()  # the tokenizer lower-cases
    for name in names:  # a bounded look-ahead per token: linear in the text's length
        found = lowered.find(name, cursor, cursor + len(name) + 64)
        offsets.append(cursor if found < 0 else found)
        cursor = cursor if found < 0 else found + len(name)
    return {"tokens": names, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}
