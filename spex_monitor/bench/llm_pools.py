"""Served and explained request pools for the LLM benchmark: each (variant, traffic) built once, then
resampled into windows (as :mod:`.pools` does for the classifier benchmark).

A pool holds ``n_observed`` served requests of one traffic profile answered by one embedded tiny LM — the
sampled completion, its raw per-token log-probs, its token and length counts and its output embedding (see
:mod:`.llm_serving`) — and the explanations of the first ``n_explained`` of them, computed through the
sidecar's own path: :class:`~spex_monitor.explain.explainer.ModelExplainer` with the prompt lens
(``unit: segments``, ``value: sum``), the local causal backend and the ProxySPEX engine. Explanations are
deterministic (fixed engine seed, one torch thread), so pooling them loses nothing. With a cache folder the
pools are pickled, keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CausalBackendConfig, EngineConfig, ModelConfig, PromptLens
from ..examples.tiny_lm import model_path
from ..explain import ExplainRequest
from ..explain.explainer import ModelExplainer
from ..lenses import Generation
from .llm_scenarios import BF16
from .llm_serving import output_embeddings, sample_completions
from .llm_traffic import LLMTrafficProfile, generate_requests
from .pools import Explained

CACHE_VERSION = 1
MAX_NEW = 4  # generated tokens per call: an answer is one number and the stop token


def folder_variant(variant: str) -> str:
    """The shipped tiny LM a served variant is made from (``base-bf16`` is ``base``, rounded)."""
    return "base" if variant == BF16 else variant


@dataclass
class LLMPool:
    """One (variant, traffic) pool. Per served request ``i``: ``token_counts[i]`` (counts over the vocabulary
    plus a last "empty answer" bin), ``lengths[i]`` (answer tokens), ``mean_logprob[i]`` (nats per generated
    token), ``embeddings[i]``, ``injected[i]`` / ``fact_present[i]``, ``completions[i]``. ``explained[i]`` for
    ``i < n_explained`` (``None`` for an empty answer, which has nothing to score)."""

    variant: str
    profile: str
    budget: int
    completions: list[str]
    token_counts: np.ndarray
    lengths: np.ndarray
    mean_logprob: np.ndarray
    embeddings: np.ndarray
    injected: np.ndarray
    fact_present: np.ndarray
    explained: list[Explained | None]
    serve_seconds: float
    explain_seconds: float
    cached: bool = False  # loaded from the cache folder (the seconds are from when it was built)

    @property
    def explained_index(self) -> np.ndarray:
        """Indices of the requests that carry an explanation."""
        return np.array([i for i, e in enumerate(self.explained) if e is not None], dtype=np.int64)


def _fingerprint(variant: str) -> str:
    path = model_path(folder_variant(variant)) / "model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class LLMPoolBuilder:
    """Builds pools for one configuration, loading each tiny LM once.

    Args:
        n_observed, n_explained: served requests per pool, and how many of the first are explained.
        budget, max_order: the engine's inferences per explanation and highest order.
        temperature: sampling temperature of the served completions.
        cache_dir: optional folder for pickled pools (never committed).
        log: progress lines go here.
    """

    def __init__(
        self,
        n_observed: int,
        n_explained: int,
        budget: int,
        max_order: int = 3,
        temperature: float = 0.7,
        cache_dir: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if not 1 <= n_explained <= n_observed:
            raise ValueError("need 1 <= n_explained <= n_observed")
        self.n_observed, self.n_explained = n_observed, n_explained
        self.budget, self.max_order, self.temperature = budget, max_order, temperature
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.log = log
        self._backends: dict[str, Any] = {}
        self._pools: dict[tuple[str, str, int], LLMPool] = {}

    def backend(self, variant: str) -> Any:
        """The variant's CPU :class:`~spex_monitor.backends.LocalCausalLM` (loaded once). For ``base-bf16``
        every weight is rounded to bfloat16 and computed in float32 (weight-only quantisation)."""
        if variant not in self._backends:
            import torch

            from ..backends import LocalCausalLM

            lm = LocalCausalLM.from_pretrained(model_path(folder_variant(variant)), device="cpu")
            if variant == BF16:
                with torch.no_grad():
                    for parameter in lm.model.parameters():
                        parameter.copy_(parameter.to(torch.bfloat16).to(parameter.dtype))
            self._backends[variant] = lm
        return self._backends[variant]

    def _cache_file(self, variant: str, profile: LLMTrafficProfile, seed: int) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps(
            [
                CACHE_VERSION, variant, _fingerprint(variant), _fingerprint("base"), repr(profile), seed,
                self.budget, self.n_observed, self.n_explained, self.max_order, self.temperature, MAX_NEW,
            ]
        )  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self.cache_dir / f"llm-{variant}-{profile.name}-b{self.budget}-s{seed}-{digest}.pkl"

    def pool(self, variant: str, profile: LLMTrafficProfile, seed: int) -> LLMPool:
        """The pool of ``variant`` serving ``profile`` traffic drawn with ``seed`` (built or cached)."""
        memo = (variant, profile.name, seed)
        if memo in self._pools:
            return self._pools[memo]
        path = self._cache_file(variant, profile, seed)
        if path is not None and path.exists():
            with path.open("rb") as handle:
                pool: LLMPool = pickle.load(handle)
            pool.cached = True  # its seconds are those measured when it was built
            self._pools[memo] = pool
            return pool
        pool = self._build(variant, profile, seed)
        self._pools[memo] = pool
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(pool, handle)
            tmp.replace(path)
        return pool

    def _build(self, variant: str, profile: LLMTrafficProfile, seed: int) -> LLMPool:
        requests = generate_requests(profile, self.n_observed, seed)
        served_lm = self.backend(variant)
        tokenizer = served_lm.tokenizer
        end = int(tokenizer.eos_token_id)
        texts = [
            tokenizer.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
            for r in requests
        ]  # tokenized as the prompt lens does: rendered text, the template's own special tokens
        prompts = [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        began = time.perf_counter()
        rng = np.random.default_rng([seed, zlib.crc32(variant.encode())])
        served = sample_completions(served_lm.model, tokenizer, prompts, rng, self.temperature, MAX_NEW)
        answers = [s.answer_ids(end) for s in served]
        embeddings = output_embeddings(
            self.backend("base").model, prompts, [s.token_ids for s in served], int(tokenizer.pad_token_id)
        )
        vocab = len(tokenizer)
        counts = np.zeros((len(served), vocab + 1), dtype=np.int32)
        for i, ids in enumerate(answers):
            if ids:
                np.add.at(counts[i], ids, 1)
            else:
                counts[i, vocab] = 1
        serve_seconds = time.perf_counter() - began
        explainer = ModelExplainer(
            ModelConfig(
                name="bench",
                lens=PromptLens(kind="prompt"),
                backend=CausalBackendConfig(
                    kind="causal", path=model_path(folder_variant(variant)), device="cpu"
                ),
            ),
            EngineConfig(budget=self.budget, max_order=self.max_order),
            served_lm,
        )
        began = time.perf_counter()
        explained: list[Explained | None] = []
        for request, item, ids in zip(requests[: self.n_explained], served, answers, strict=False):
            if not ids:
                explained.append(None)
                continue
            generation = Generation(
                messages=list(request.messages), completion=item.text, segments=request.segments,
                completion_ids=ids,
            )  # fmt: skip
            result = explainer.explain(ExplainRequest("bench", generation=generation, budget=self.budget))
            found = result.interactions
            explained.append(
                Explained(tuple(result.keys), dict(found.fourier), found.faithfulness, found.inferences_used)
            )
        explain_seconds = time.perf_counter() - began
        self.log(
            f"  pool {variant:>19} × {profile.name:<17}: {len(served)} served in {serve_seconds:.1f}s, "
            f"{sum(e is not None for e in explained)} explained in {explain_seconds:.1f}s"
        )
        return LLMPool(
            variant, profile.name, self.budget, [s.text for s in served], counts,
            np.array([len(a) for a in answers], dtype=np.int64),
            np.array([float(np.mean(s.logprobs)) for s in served]), embeddings.astype(np.float32),
            np.array([r.injected for r in requests]), np.array([r.fact_present for r in requests]),
            explained, serve_seconds, explain_seconds,
        )  # fmt: skip
