"""``models[]`` sections for LLM generations: the prompt lens and the two causal-LM backends.

Kept beside :mod:`.config` (which re-exports these classes) so that module stays one screenful per section.
A model with ``lens.kind: prompt`` explains generations (a prompt or chat messages plus the completion the
model served, issue 17); its backend scores completions: ``causal`` (a local transformers folder) or
``openai`` (OpenAI-compatible ``/v1/completions`` replicas such as vLLM, on the shared replica pool).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .config_server import Strict, TLSConfig

__all__ = ["CausalBackendConfig", "OpenAIBackendConfig", "PromptLens", "llm_pairing_problem"]


class PromptLens(Strict):
    """``models[].lens`` for LLM generations: what a feature of the prompt is, and the completion's value.

    ``value``: ``sum`` = log p(served completion | masked prompt) in nats (teacher forcing), ``mean`` = per
    completion token, ``label`` = log p(label) - log p(best other label) over ``labels`` (classification-style
    prompts). Source: issue 17 §1.
    """

    kind: Literal["prompt"]
    unit: Literal["segments", "messages", "sentences", "words"] = Field(
        "segments",
        description="segments: the caller's named segments (doc:<id>, question, ...); messages: one feature "
        "per chat message (keyed by role); sentences / words inside the prompt's text",
    )
    max_features: int = Field(64, ge=1, le=4096, description="cap; neighbours merge beyond it")
    filler: Literal["unk", "pad", "space", "remove"] = Field(
        "unk", description="what a masked prompt token becomes (remove: dropped)"
    )
    value: Literal["sum", "mean", "label"] = "sum"
    labels: list[str] = Field(
        default_factory=list, description="value: label — the label set (at least two, distinct)"
    )
    context_prefixes: list[str] = Field(
        default_factory=lambda: ["doc:", "tool"],
        description="keys starting with one of these are context segments (retrieved documents, tool "
        "outputs) for spex_monitor_generation_context_share_ratio",
    )

    @model_validator(mode="after")
    def _labels(self) -> PromptLens:
        if self.value == "label":
            if len(self.labels) < 2:
                raise ValueError("labels: value 'label' needs at least two labels")
            if len(set(self.labels)) != len(self.labels) or not all(self.labels):
                raise ValueError("labels: must be distinct and non-empty")
        elif self.labels:
            raise ValueError("labels: only used with value 'label'")
        return self


class CausalBackendConfig(Strict):
    """``models[].backend`` for a transformers causal LM loaded in the sidecar (or its explain workers)."""

    kind: Literal["causal"]
    path: Path = Field(description="local transformers model folder and tokenizer (nothing is downloaded)")
    device: str = "auto"
    token_budget: int = Field(16384, ge=1, description="most tokens per forward batch (rows x width)")
    max_batch_rows: int = Field(256, ge=1)


class OpenAIBackendConfig(Strict):
    """``models[].backend`` for OpenAI-compatible completion replicas (vLLM, SGLang, KServe HF, llama.cpp).

    Token-id prompts go to ``/v1/completions`` (no re-tokenisation drift), so the model's tokenizer must be
    on local disk (``tokenizer_path``). The API key is read from ``api_key_file`` or the environment variable
    ``api_key_env`` at start, never from the YAML itself.
    """

    kind: Literal["openai"]
    endpoints: list[str]
    served_model: str = Field(min_length=1, description="the served model name (vLLM --served-model-name)")
    tokenizer_path: Path = Field(description="local folder holding the model's tokenizer (and chat template)")
    api_key_file: Path | None = Field(None, description="file whose (stripped) content is the bearer token")
    api_key_env: str | None = Field(None, min_length=1, description="environment variable holding the token")
    logprobs_mode: Literal["auto", "prompt_logprobs", "echo"] = "auto"
    deadline_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    max_concurrency: int = Field(4, ge=1, le=256)
    batch_rows: int = Field(64, ge=1)
    breaker_failures: int = Field(
        3, ge=1, le=100, description="consecutive failures that open a replica's breaker"
    )
    breaker_reset_s: float = Field(
        10.0, gt=0, description="how long an open breaker waits before one probe call"
    )
    tls: TLSConfig | None = Field(None, description="CA (ca_file) and client certificate for https replicas")

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one replica host:port or base URL is required")
        for endpoint in value:
            if "://" in endpoint:
                if not endpoint.startswith(("http://", "https://")):
                    raise ValueError(f"{endpoint!r}: a base URL must be http:// or https://")
                continue
            host, _, port = endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{endpoint!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> OpenAIBackendConfig:
        if self.api_key_file is not None and self.api_key_env is not None:
            raise ValueError("api_key_file: give api_key_file or api_key_env, not both")
        return self

    def api_key(self) -> str | None:
        """The bearer token from ``api_key_file`` / ``api_key_env`` (``None`` when neither is set).

        Raises:
            ValueError: the file cannot be read or is empty, or the variable is unset or empty (the message
                names the field, never the key).
        """
        if self.api_key_file is not None:
            try:
                key = self.api_key_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"api_key_file: {self.api_key_file}: {exc.strerror or exc}") from exc
            if not key:
                raise ValueError(f"api_key_file: {self.api_key_file} is empty")
            return key
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "").strip()
            if not key:
                raise ValueError(f"api_key_env: the variable {self.api_key_env} is unset or empty")
            return key
        return None


def llm_pairing_problem(lens_kind: str, backend_kind: str) -> str | None:
    """Why a lens and a backend cannot go together (``None`` when they can): the prompt lens needs a
    completion scorer (``causal`` / ``openai``), and those backends score nothing else."""
    llm_backend = backend_kind in ("causal", "openai")
    if lens_kind == "prompt" and not llm_backend:
        return f"backend.kind: lens.kind 'prompt' needs backend 'causal' or 'openai', not {backend_kind!r}"
    if lens_kind != "prompt" and llm_backend:
        return f"lens.kind: backend {backend_kind!r} scores generations; use lens.kind 'prompt'"
    return None
