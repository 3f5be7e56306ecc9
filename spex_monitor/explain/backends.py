"""``models[].backend`` configuration → a backend object, and what can be read about its labels.

:data:`BACKENDS` maps ``backend.kind`` to a builder. Builders import their backend module when called, so
configuring (or importing) an OIP-only sidecar never loads torch. A new backend is a module in
``backends/`` plus a builder and one line here (and its config class in :mod:`spex_monitor.config`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import CausalBackendConfig, LocalBackendConfig, OIPBackendConfig, OpenAIBackendConfig

BackendConfig = LocalBackendConfig | OIPBackendConfig | CausalBackendConfig | OpenAIBackendConfig


def build_local(config: LocalBackendConfig) -> Any:
    """An in-process transformers model from ``config.path`` (torch loads here, never on import).

    Raises:
        FileNotFoundError: the model folder does not exist (nothing is ever downloaded).
    """
    from ..backends.local import LocalBackend

    return LocalBackend.from_pretrained(
        config.path, task=config.task, device=config.device, token_budget=config.token_budget
    )


def build_oip(config: OIPBackendConfig) -> Any:
    """An Open Inference Protocol V2 gRPC client over ``config.endpoints`` (TLS when ``config.tls``).

    Raises:
        OSError: a configured TLS file cannot be read.
    """
    from ..backends.oip import OIPBackend

    credentials = None
    if config.tls is not None:
        import grpc

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        credentials = grpc.ssl_channel_credentials(
            read(config.tls.ca_file), read(config.tls.key_file), read(config.tls.cert_file)
        )
    backend = OIPBackend(
        config.endpoints,
        config.model_name,
        config.model_version,
        config.input_name,
        config.input_kind,
        output_name=config.output_name,
        deadline_s=config.deadline_s,
        retries=config.retries,
        max_concurrency=config.max_concurrency,
        batch_rows=config.batch_rows,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        credentials=credentials,
    )
    backend.class_names = list(config.labels or [])  # for label_name: replicas send scores, not names
    return backend


def build_causal(config: CausalBackendConfig) -> Any:
    """A local transformers causal LM (and its tokenizer) from ``config.path``; torch loads here.

    Raises:
        FileNotFoundError: the model folder does not exist (nothing is ever downloaded).
    """
    from ..backends.causal import LocalCausalLM

    return LocalCausalLM.from_pretrained(
        config.path,
        device=config.device,
        token_budget=config.token_budget,
        max_batch_rows=config.max_batch_rows,
    )


def build_openai(config: OpenAIBackendConfig) -> Any:
    """An OpenAI-compatible ``/v1/completions`` client over ``config.endpoints``, with the model's
    tokenizer read from ``config.tokenizer_path`` (transformers' tokenizer only: torch is not loaded for it).

    Raises:
        FileNotFoundError: the tokenizer folder or a TLS file does not exist.
        ValueError: the API key file/variable is unreadable or empty (named, never shown).
    """
    from transformers import AutoTokenizer

    from ..backends.openai import OpenAICompletionsBackend
    from ..backends.pool import TLSFiles

    if not config.tokenizer_path.is_dir():
        raise FileNotFoundError(f"tokenizer_path: {config.tokenizer_path} is not a folder")
    tokenizer = AutoTokenizer.from_pretrained(config.tokenizer_path, local_files_only=True)
    tls = None
    if config.tls is not None:
        files = {k: str(v) if v is not None else None for k, v in config.tls.model_dump().items()}
        tls = TLSFiles(**files)
    return OpenAICompletionsBackend(
        config.endpoints,
        config.served_model,
        tokenizer=tokenizer,
        api_key=config.api_key(),
        deadline_s=config.deadline_s,
        max_concurrency=config.max_concurrency,
        batch_rows=config.batch_rows,
        retries=config.retries,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        logprobs_mode=config.logprobs_mode,
        tls=tls,
    )


BACKENDS: dict[str, Callable[[Any], Any]] = {
    "local": build_local,
    "oip": build_oip,
    "causal": build_causal,
    "openai": build_openai,
}


def build_backend(config: BackendConfig) -> Any:
    """The backend ``config.kind`` names, built (see :data:`BACKENDS`)."""
    return BACKENDS[config.kind](config)


def class_labels(config: BackendConfig) -> dict[int, str] | None:
    """Class names by index: a remote backend's configured ``labels``, a local model folder's
    ``config.json`` (no model load), else ``None``."""
    if not isinstance(config, LocalBackendConfig):
        labels = getattr(config, "labels", None)
        return dict(enumerate(labels)) if labels else None
    try:
        id2label = json.loads((Path(config.path) / "config.json").read_text()).get("id2label") or {}
    except (OSError, ValueError):
        return None
    return {int(index): str(name) for index, name in id2label.items()} or None


def label_name(backend: Any, target: int) -> str:
    """The name of class ``target``: the loaded model's ``config.id2label`` entry when the backend holds a
    model (the local backend), a remote backend's configured ``labels``, else the index as text (remote
    replicas send scores, not names)."""
    names = getattr(backend, "class_names", None)
    if isinstance(names, list) and 0 <= target < len(names):
        return names[target]
    model_config = getattr(getattr(backend, "model", None), "config", None)
    id2label = getattr(model_config, "id2label", None)
    if isinstance(id2label, Mapping):
        return str(id2label.get(target, target))
    return str(target)
